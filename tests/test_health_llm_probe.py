"""/health never probes the LLM more than once per cache period and never blocks for long; real calls
keep what it reports current.

In-process tests use the deterministic ``FakeEmbedder`` and the fake LLM of ``tests/fake_llm.py``
(a real HTTP server on 127.0.0.1).
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from assistant.errors import AnswerError
from assistant.server.app import create_app
from tests import markup_service as shared
from tests.markup_service import HELLO, llm_client, make_service

corpus, index_dir, fake_llm = shared.corpus, shared.index_dir, shared.fake_llm  # shared fixtures (tests/markup_service.py)


def test_health_probes_the_llm_at_most_once_per_cache_period(fake_llm, corpus, index_dir):
    fake_llm.behaviour = "hang"
    service = make_service(corpus, index_dir, llm_base_url=fake_llm.base_url, llm_timeout_s=1.0)
    with TestClient(create_app(service.settings, service)) as client:
        started = time.monotonic()
        first = client.get("/health").json()["llm"]
        assert time.monotonic() - started < 3, "the first /health waited too long for the LLM"
        assert first["reachable"] is False and "1 s" in first["error"]
        started = time.monotonic()
        for _ in range(60):
            assert client.get("/health").json()["llm"]["reachable"] is False
        assert time.monotonic() - started < 5, "/health waits for the LLM"
    assert fake_llm.requests.count("/v1/models") == 1


def test_real_calls_keep_the_health_cache_current(fake_llm):
    client = llm_client(fake_llm, llm_retries=0)
    assert client.health()["reachable"] is True
    fake_llm.stop()
    with pytest.raises(AnswerError, match="cannot reach"):
        client.chat(HELLO)
    assert client.health()["reachable"] is False  # no new probe: the failed call told it
    assert fake_llm.requests.count("/v1/models") == 1
