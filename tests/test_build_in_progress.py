"""A second build of the same index is refused with ``BuildInProgress``, and the server waits for the first one.

The refusal is typed: ``LiveService`` tells "another process is building" from a real failure by the
error's class, not by its message, and the message users see is unchanged.
"""

from __future__ import annotations

import logging

import pytest

from assistant.errors import BuildInProgress, IndexNotReady
from assistant.live import LiveService
from assistant.search.build import build_index
from assistant.search.index import build_lock
from tests.fakes import FakeEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)


def test_a_second_local_build_is_refused_with_build_in_progress(settings):
    with build_lock(settings.index_dir):
        with pytest.raises(BuildInProgress, match=r"^another build of .* is running$") as refused:
            build_index(settings, FakeEmbedder())
    assert isinstance(refused.value, IndexNotReady) and refused.value.status == 503 and refused.value.code == "not_ready"


def test_the_server_waits_for_a_build_that_another_process_is_running(settings, caplog):
    with build_lock(settings.index_dir):  # what `assistant index` or another worker holds
        live = LiveService(settings, embedder=FakeEmbedder())
        with caplog.at_level(logging.INFO, logger="assistant.live"):
            live.start(watch=False)
            live.wait(30)
        assert live.error is None and live.building is None and live.service is None
        assert "is running; waiting for it" in caplog.text
        assert "index build failed" not in caplog.text
        with pytest.raises(IndexNotReady, match="still loading"):
            live.ready()
    build_index(settings, FakeEmbedder())  # the other process finishes its build
    live.refresh()  # the watcher picks its result up
    assert live.service is not None and len(live.service.index.documents) == 5
    live.close()


def test_an_index_that_is_not_ready_for_another_reason_is_kept_as_the_error(settings, monkeypatch, caplog):
    live = LiveService(settings, embedder=FakeEmbedder())

    def refuse(*args, **kwargs):
        raise IndexNotReady("the index was built with another configuration")  # "another", but no build is running

    monkeypatch.setattr(live.backend, "open", refuse)
    with caplog.at_level(logging.INFO, logger="assistant.live"):
        live.start(watch=False)
        live.wait(30)
    assert live.error == "the index was built with another configuration"
    assert "index build failed" in caplog.text and "waiting for it" not in caplog.text
    live.close()


@pytest.mark.slow
def test_a_second_sync_of_a_postgres_store_is_refused_and_the_server_waits(settings, pg_url):  # noqa: F811
    psycopg = pytest.importorskip("psycopg")
    postgres = pytest.importorskip("assistant.search.postgres.store")
    pg_schema = pytest.importorskip("assistant.search.postgres.schema")
    shared = settings.model_copy(update={"store": "postgres", "database_url": pg_url, "index_dir": settings.index_dir / "unused"})
    store = postgres.PostgresStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as other:  # another worker's sync holds the lock
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (pg_schema.LOCK_SYNC,)).fetchone()[0]
        with pytest.raises(BuildInProgress, match="^another sync of this PostgreSQL store is running$"):
            store.sync(shared, FakeEmbedder())
        live = LiveService(shared, embedder=FakeEmbedder())
        live.start(watch=False)
        live.wait(60)
        assert live.error is None and live.building is None
        other.execute("SELECT pg_advisory_unlock(%s)", (pg_schema.LOCK_SYNC,))
    assert store.sync(shared, FakeEmbedder()).documents == 5
    live.close()
    store.close()
