"""`assistant serve` listens at once: a missing index is built in the background with progress."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from assistant.server.app import create_app
from tests.fakes import FakeEmbedder


class SlowEmbedder(FakeEmbedder):
    """Embeds passages only when allowed to, so a test can look at a build in progress."""

    def __init__(self):
        super().__init__()
        self.go = threading.Event()

    def embed_passages(self, texts):
        assert self.go.wait(30)
        return super().embed_passages(texts)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_missing_index_is_built_while_the_server_answers_503_with_progress(settings):
    embedder = SlowEmbedder()
    with TestClient(create_app(settings, embedder=embedder), raise_server_exceptions=False) as client:
        assert client.get("/health").json()["status"] == "building"
        _wait_for(lambda: client.get("/health").json()["building"]["documents_total"] is not None)
        health = client.get("/health").json()
        assert health["building"]["documents_total"] == 5 and health["building"]["documents_done"] == 0
        response = client.post("/ask", json={"question": "Who finances the Digital Foundations Project?"})
        assert response.status_code == 503
        body = response.json()["error"]
        assert body["code"] == "not_ready" and "being built" in body["message"]
        assert body["details"]["documents_total"] == 5

        embedder.go.set()
        _wait_for(lambda: client.get("/health").json()["status"] == "ok")
        health = client.get("/health").json()
        assert health["building"] is None and health["index"]["documents"] == 5
        assert client.post("/ask", json={"question": "Who finances the Digital Foundations Project?"}).status_code == 200


def test_a_stale_index_keeps_answering_while_the_new_build_runs(settings):
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as client:
        client.app.state.live.wait(30)
        assert client.get("/health").json()["index"]["documents"] == 5
    (settings.corpus_dir / "rasht.md").write_text("# Rasht Valley note\n\nThe Rasht Valley programme trained 12 teachers.\n")
    embedder = SlowEmbedder()
    with TestClient(create_app(settings, embedder=embedder)) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["building"] is not None and health["index"]["documents"] == 5
        assert client.post("/ask", json={"question": "Who finances the Digital Foundations Project?"}).status_code == 200
        embedder.go.set()
        _wait_for(lambda: client.get("/health").json()["index"]["documents"] == 6)
        assert client.get("/health").json()["building"] is None
