"""POST /ask in LLM mode against a real OpenAI-compatible server (xllamacpp + SmolLM2) on 127.0.0.1."""

import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from assistant.service import open_service
from tests.llm_server import llm_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
QUESTION = "When did Tajikistan become an IOM Member State?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with llm_server(log_dir=tmp_path_factory.mktemp("llm")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server, real_index_dir):
    settings = Settings(
        _env_file=None,
        corpus_dir=ROOT / "corpus",
        index_dir=real_index_dir,
        llm_base_url=server.base_url,
        llm_timeout_s=120,
        llm_max_tokens=64,
        llm_retries=0,
        top_k=3,
    )
    with TestClient(create_app(settings, open_service(settings, build=False))) as c:
        yield c


def test_llm_answer_is_checked_and_cited(client):
    health = client.get("/health").json()["llm"]
    assert health["configured"] is True and health["reachable"] is True
    body = client.post("/ask", json={"question": QUESTION, "mode": "llm"}).json()
    assert body["mode"] == "llm" and isinstance(body["check"], dict)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert cited == {c["n"] for c in body["citations"]}
    for c in body["citations"]:
        doc = client.get(f"/documents/{c['doc_id']}").json()["text"]
        assert doc[c["quote_start"] : c["quote_end"]] == c["quote"]
    if body["abstained"]:
        assert body["citations"] == [] and body["related"]


def test_llm_stream_ends_with_the_checked_answer(client):
    with client.stream("POST", "/ask/stream", json={"question": QUESTION, "mode": "llm"}) as r:
        raw = "".join(r.iter_text())
    blocks = [b for b in raw.strip().split("\n\n") if b]
    assert blocks[-1].startswith("event: done")
    done = json.loads(blocks[-1].split("\n", 1)[1].removeprefix("data: "))
    assert done["mode"] == "llm" and isinstance(done["check"], dict)


def test_stopped_server_falls_back_to_extractive(client, server):
    server.stop()
    started = time.monotonic()
    body = client.post("/ask", json={"question": QUESTION, "mode": "llm"}).json()
    assert time.monotonic() - started < 30
    assert body["mode"] == "extractive" and "November 1994" in body["answer"]
    assert any("LLM endpoint failed" in w for w in body["warnings"])
    assert client.get("/health").json()["llm"]["reachable"] is False
