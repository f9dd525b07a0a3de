"""Uploads under faults and concurrency (issue 21): identical uploads at once make one document; a DELETE while the
PostgreSQL store is down loses nothing; a failed background write shows in /health and is retried."""

from __future__ import annotations

import errno
import threading
import time

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from assistant.server.uploads import Claims, save_upload
from tests.fakes import FakeEmbedder
from tests.test_uploads import NOTE, QUESTION, GatedEmbedder, cites, doc_ids, indexed, upload, wait_until


@pytest.fixture
def local(settings: Settings) -> Settings:
    return settings.model_copy(update={"reader": False, "embedder": "use", "ocr": False})


def _concurrently(client: TestClient, n: int, name: str, data: bytes) -> list:
    barrier = threading.Barrier(n)
    responses: list = [None] * n

    def send(i: int) -> None:
        barrier.wait()
        responses[i] = upload(client, (f"{i}-{name}", data))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return responses


def test_concurrent_identical_uploads_make_one_document(local):
    with TestClient(create_app(local, embedder=FakeEmbedder())) as client:
        client.app.state.live.wait(60)
        before = doc_ids(client)
        responses = _concurrently(client, 8, "orchards.txt", NOTE)
        accepted = [r for r in responses if r.status_code == 202]
        assert len(accepted) == 1, [(r.status_code, r.text) for r in responses]
        doc_id = accepted[0].json()["files"][0]["doc_id"]
        for r in responses:
            if r is accepted[0]:
                continue
            assert r.status_code == 400 and r.json()["error"]["code"] == "no_documents", r.text
            [result] = r.json()["error"]["details"]["files"]
            assert result["status"] == "skipped" and result["doc_id"] == doc_id and doc_id in result["reason"]
        files = [p.name for p in (local.corpus_dir / "uploads").iterdir() if not p.name.startswith(".")]
        assert len(files) == 1, files
        wait_until(lambda: indexed(client, doc_id), what="the upload indexed")
        assert doc_ids(client) - before == {doc_id}
        assert cites(client, QUESTION, doc_id)

        # Deleted, the same bytes may come again (the claim is gone with the file); refused bytes claim nothing.
        assert client.delete(f"/documents/{doc_id}").status_code in (200, 202)
        wait_until(lambda: doc_id not in doc_ids(client) and client.get("/health").json()["building"] is None, what="deleted")
        assert upload(client, ("again.txt", NOTE)).status_code == 202
        assert [r.json()["error"]["code"] for r in _concurrently(client, 3, "empty.txt", b"")] == ["empty_file"] * 3


def _fail_once(monkeypatch, backend, method: str, exc: Exception) -> list:
    calls: list = []
    real = getattr(backend, method)

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(backend, method, failing)
    return calls


def test_a_failed_background_write_shows_in_health_and_is_retried_with_the_next_upload(local, monkeypatch):
    with TestClient(create_app(local, embedder=FakeEmbedder())) as client:
        live = client.app.state.live
        live.wait(60)
        live.RETRY_S = 600.0  # no retry by the clock here: the next upload retries it
        calls = _fail_once(monkeypatch, live.backend, "rebuild", OSError(errno.ENOSPC, "No space left on device"))
        r = upload(client, ("orchards.txt", NOTE))
        assert r.status_code == 202, r.text
        doc_id = r.json()["files"][0]["doc_id"]
        health = wait_until(lambda: (h := client.get("/health").json())["status"] == "degraded" and h, what="degraded")
        [failed] = health["failed"]
        assert failed["file"] == "uploads/orchards.txt" and failed["doc_id"] == doc_id and failed["attempts"] == 1
        assert failed["error"] == "No space left on device" and failed["retry_in_s"] > 250
        listing = client.get("/documents").json()
        assert doc_id not in doc_ids(client)
        assert any(s["source"] == "uploads/orchards.txt" and "No space left on device" in s["reason"] for s in listing["skipped"])
        assert (local.corpus_dir / "uploads" / "orchards.txt").is_file()  # nothing lost

        r = upload(client, ("other.txt", b"The Khatlon bakery trained 17 apprentices in 2022.\n"))
        assert r.status_code == 202, r.text
        wait_until(lambda: indexed(client, doc_id), what="the failed upload indexed with the next one")
        assert r.json()["files"][0]["doc_id"] in doc_ids(client)
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["failed"] == [] and len(calls) >= 2
        [info] = [d for d in client.get("/documents").json()["documents"] if d["doc_id"] == doc_id]
        assert info["uploaded"] and info["source"] == "uploads/orchards.txt"
        assert cites(client, QUESTION, doc_id)


def test_a_failed_background_write_is_retried_with_backoff(local, monkeypatch):
    with TestClient(create_app(local, embedder=FakeEmbedder())) as client:
        live = client.app.state.live
        live.wait(60)
        live.RETRY_S = 0.5
        calls = _fail_once(monkeypatch, live.backend, "rebuild", OSError(errno.ENOSPC, "No space left on device"))
        doc_id = upload(client, ("orchards.txt", NOTE)).json()["files"][0]["doc_id"]
        wait_until(lambda: indexed(client, doc_id) and client.get("/health").json()["status"] == "ok", what="retried")
        assert len(calls) == 2 and client.get("/health").json()["failed"] == []


def test_a_failed_rebuild_after_a_delete_shows_in_health_and_is_retried(local, monkeypatch):
    """Local store: a DELETE removes the file and rebuilds the index without it. When that rebuild fails, /health
    and GET /documents say the document is still in the index, and the retry drops it."""
    with TestClient(create_app(local, embedder=FakeEmbedder())) as client:
        live = client.app.state.live
        live.wait(60)
        live.RETRY_S = 600.0  # no retry by the clock here: asked for below
        doc_id = upload(client, ("orchards.txt", NOTE)).json()["files"][0]["doc_id"]
        wait_until(lambda: indexed(client, doc_id) and client.get("/health").json()["building"] is None, what="indexed")
        calls = _fail_once(monkeypatch, live.backend, "rebuild", OSError(errno.ENOSPC, "No space left on device"))
        r = client.delete(f"/documents/{doc_id}")
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        health = wait_until(lambda: (h := client.get("/health").json())["status"] == "degraded" and h, what="degraded")
        [failed] = health["failed"]
        assert failed["doc_id"] == doc_id and failed["file"] == "uploads/orchards.txt" and failed["attempts"] == 1
        assert failed["error"] == "deleted, but still in the index: No space left on device" and failed["retry_in_s"] > 250
        assert doc_id in doc_ids(client)  # still cited until the rebuild succeeds: and said so
        assert any(s["source"] == "uploads/orchards.txt" for s in client.get("/documents").json()["skipped"])

        live.update()  # what the retry timer does
        wait_until(lambda: doc_id not in doc_ids(client) and client.get("/health").json()["status"] == "ok", what="retried")
        assert client.get("/health").json()["failed"] == [] and len(calls) == 2


BAKERY = b"The Khatlon bakery trained 17 apprentices in 2022 and sold bread to 40 schools.\n"


def test_two_worker_processes_saving_the_same_bytes_make_one_file(local):
    """Each worker has its own claims: the check under the folder lock (across processes) sees the other's file."""
    import io

    first = save_upload(local, "a.txt", io.BytesIO(NOTE), len(NOTE), {}, Claims(local.corpus_dir))
    second = save_upload(local, "b.txt", io.BytesIO(NOTE), len(NOTE), {}, Claims(local.corpus_dir))
    assert first.status == "queued" and (second.status, second.kind, second.doc_id) == ("skipped", "duplicate", first.doc_id)
    assert [p.name for p in (local.corpus_dir / "uploads").iterdir() if not p.name.startswith(".")] == ["a.txt"]
    other = save_upload(local, "c.txt", io.BytesIO(NOTE + b"More."), None, {}, Claims(local.corpus_dir))
    assert other.status == "queued"


@pytest.fixture
def stoppable_pg():
    """A PostgreSQL server of its own that a test may stop and start again (pg_ctl): (server, pg_ctl)."""
    pytest.importorskip("psycopg")
    from benchmarks.pg_server import MissingServer, binaries, postgres_server

    try:
        context = postgres_server(settings={"synchronous_commit": "on"})  # an immediate stop keeps what was committed
        server = context.__enter__()
    except MissingServer as exc:
        pytest.skip(str(exc))
    try:
        with (server.data / "postgresql.conf").open("a") as conf:  # pg_ctl start finds it; an immediate stop keeps commits
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{server.socket_dir}'\nfsync = off\nsynchronous_commit = on\n")
        yield server, str(binaries() / "pg_ctl")
    finally:
        context.__exit__(None, None, None)


@pytest.mark.slow
def test_postgres_outage_delete_is_503_and_kept_and_a_failed_upload_is_retried_as_an_upload(settings, stoppable_pg):
    from benchmarks.pg_server import _run

    server, pg_ctl = stoppable_pg
    url = server.create_database("outage")
    shared = settings.model_copy(
        update={
            "store": "postgres",
            "database_url": url,
            "index_dir": settings.index_dir / "unused",
            "reader": False,
            "ocr": False,
            "embedder": "use",
        }
    )
    embedder = GatedEmbedder("Zarafshan")
    with TestClient(create_app(shared, embedder=embedder), raise_server_exceptions=False) as client:
        live = client.app.state.live
        live.RETRY_S = 0.5
        wait_until(lambda: client.get("/health").json()["status"] == "ok", 120, "ready")
        wait_until(lambda: client.get("/health").json()["building"] is None, 120, "synced")
        bakery = upload(client, ("bakery.txt", BAKERY)).json()["files"][0]["doc_id"]
        wait_until(lambda: indexed(client, bakery), what="the bakery note indexed")
        orchards = upload(client, ("orchards.txt", NOTE)).json()["files"][0]["doc_id"]  # held at the embedder

        _run([pg_ctl, "-D", str(server.data), "-m", "immediate", "-w", "stop"], server.user, timeout=60)
        for _ in range(2):
            started = time.monotonic()
            r = client.delete(f"/documents/{bakery}")
            assert time.monotonic() - started < 5 and r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable" and "postgresql://" not in r.text
            assert (shared.corpus_dir / "uploads" / "bakery.txt").is_file()  # nothing removed
        embedder.go.set()  # its write fails now: the database is down
        health = wait_until(lambda: (h := client.get("/health")).status_code != 500 and h.json().get("failed") and h.json(), 30, "failed")
        assert health["status"] != "ok" and health["failed"][0]["file"] == "uploads/orchards.txt", health
        assert "postgresql://" not in str(health) and "password" not in str(health)

        _run([pg_ctl, "-D", str(server.data), "-l", str(server.root / "server.log"), "-w", "-t", "60", "start"], server.user)
        r = wait_until(lambda: (r := client.delete(f"/documents/{bakery}")).status_code != 503 and r, 15, "the DELETE repeated")
        assert r.status_code == 200 and r.json()["status"] == "deleted", r.text
        assert not (shared.corpus_dir / "uploads" / "bakery.txt").exists() and bakery not in doc_ids(client)
        wait_until(lambda: indexed(client, orchards) and client.get("/health").json()["status"] == "ok", 60, "the retry")
        assert client.get("/health").json()["failed"] == []
        assert cites(client, QUESTION, orchards)

    import psycopg

    with psycopg.connect(url) as conn:
        origins = dict(conn.execute("SELECT doc_id, origin FROM documents WHERE source LIKE 'uploads/%'").fetchall())
    assert origins == {orchards: "upload"}
