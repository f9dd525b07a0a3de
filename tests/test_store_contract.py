"""The ``Backend`` contract, checked on both stores: the local files and PostgreSQL (a real server, ``tests/pg.py``).

Each backend opens the corpus, takes a new document, finds it, drops it again and reports a new generation at
every write; ``reload`` gives the store that serves the change (a new snapshot for the local files, the same
live store for PostgreSQL).
"""

from __future__ import annotations

import pytest

from assistant.ingest.documents import Limits, load_corpus
from assistant.search.backend import Backend, LocalBackend, PostgresBackend, create_backend
from tests.fakes import FakeEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)

NOTE = "# Zarafshan orchard note\n\nThe Zarafshan orchard cooperative planted 4,200 apricot trees in Penjikent.\n"
DOC_ID = "zarafshan-orchards"


@pytest.fixture(params=["local", "postgres"])
def backend_settings(request, settings):
    if request.param == "local":
        return settings
    pytest.importorskip("psycopg")
    url = request.getfixturevalue("pg_url")
    return settings.model_copy(update={"store": "postgres", "database_url": url})


def current(backend: Backend, store, embedder):
    """The store that serves what was written last."""
    return backend.reload(store, embedder) or store


def finds(store, query: str, doc_id: str) -> bool:
    ids, _ = store.keyword_search(query, 10)
    return any(store.chunk(i).doc_id == doc_id for i in ids)


def test_the_factory_picks_the_backend_the_settings_name(backend_settings):
    backend = create_backend(backend_settings)
    assert isinstance(backend, Backend)
    assert isinstance(backend, PostgresBackend if backend_settings.store == "postgres" else LocalBackend)
    assert backend.name == backend_settings.store


def test_add_search_delete_reload_and_generations(backend_settings):
    settings = backend_settings
    embedder = FakeEmbedder()
    backend = create_backend(settings)
    store, report = backend.open(embedder, build=True)
    try:
        first = backend.generation(store)
        listed = backend.document_list(store)
        assert len(listed) == 5 and {d["doc_id"] for d in listed} == set(store.documents)
        assert all(d["sha256"] and d["source"] for d in listed)
        assert backend.reload(store, embedder) is None  # nothing changed
        assert not finds(store, "Zarafshan apricot orchard", DOC_ID)

        path = settings.corpus_dir / f"{DOC_ID}.md"
        path.write_text(NOTE, encoding="utf-8")
        [doc] = [d for d in load_corpus(settings.corpus_dir, Limits.from_settings(settings)).documents if d.doc_id == DOC_ID]
        backend.add_documents(store, [doc], embedder)
        added = current(backend, store, embedder)
        second = backend.generation(added)
        assert second != first
        assert finds(added, "Zarafshan apricot orchard", DOC_ID)
        assert DOC_ID in {d["doc_id"] for d in backend.document_list(added)}
        assert added.documents[DOC_ID].text.count("4,200 apricot trees") == 1

        path.unlink()
        if not backend.delete_document(added, DOC_ID):  # not at once: a rebuild drops it
            backend.sync(embedder)
        dropped = current(backend, added, embedder)
        assert backend.generation(dropped) not in (first, second)
        assert not finds(dropped, "Zarafshan apricot orchard", DOC_ID)
        assert {d["doc_id"] for d in backend.document_list(dropped)} == {d["doc_id"] for d in listed}
        assert backend.reload(dropped, embedder) is None
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def test_a_store_opened_without_building_serves_what_is_there(backend_settings):
    embedder = FakeEmbedder()
    backend = create_backend(backend_settings)
    built, _ = backend.open(embedder, build=True)
    served, build, missed = backend.open_for_serving(embedder)
    try:
        assert served is not None and missed == []
        assert backend.generation(served) == backend.generation(built)
        assert set(served.documents) == set(built.documents)
        assert build == backend.incremental  # PostgreSQL syncs in the background at every start; a current local build does not
    finally:
        for store in (built, served):
            close = getattr(store, "close", None)
            if close is not None:
                close()
