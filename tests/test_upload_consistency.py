"""Uploads under faults and concurrency (issue 21): identical uploads at once make one document; a DELETE while the
PostgreSQL store is down loses nothing; a failed background write shows in /health and is retried."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from tests.fakes import FakeEmbedder
from tests.test_uploads import NOTE, QUESTION, cites, doc_ids, indexed, upload, wait_until


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
