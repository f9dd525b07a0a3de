"""Work for a client that went away is cancelled: the LLM call stops at once, and a cancelled question
is never answered another way (not extractively either); other errors keep their status.

In-process tests use the deterministic ``FakeEmbedder`` and the fake LLM of ``tests/fake_llm.py``
(a real HTTP server on 127.0.0.1). Tests marked ``slow`` start a real uvicorn server (with the fake
embedder, ``tests/hardening_app.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer
from assistant.cancellation import CancelToken, cancellable
from assistant.errors import Cancelled
from assistant.server.app import create_app
from tests import markup_service as shared
from tests.conftest import ROOT
from tests.fake_llm import FakeLLM
from tests.fakes import Scripted
from tests.hardening_app import APP
from tests.markup_service import HELLO, QUESTION, llm_client, make_service, server_env, within
from tests.servers import uvicorn_server

corpus, index_dir, fake_llm = shared.corpus, shared.index_dir, shared.fake_llm  # shared fixtures (tests/markup_service.py)


def test_a_cancelled_token_cuts_the_llm_call_at_once(fake_llm):
    fake_llm.behaviour = "hang"
    client = llm_client(fake_llm, llm_timeout_s=60, llm_retries=0)
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    started = time.monotonic()

    def call():
        with cancellable(token):
            return client.chat(HELLO)

    with pytest.raises(Cancelled, match="cancelled"):
        within(10, call)
    assert time.monotonic() - started < 2
    assert fake_llm.wait_for_no_connections(2)


@pytest.fixture(scope="module")
def hung_llm() -> Iterator[FakeLLM]:
    with FakeLLM(behaviour="hang") as server:
        yield server


@pytest.fixture(scope="module")
def patient_server(hung_llm: FakeLLM, corpus: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server whose LLM hangs and may take 60 s."""
    work = tmp_path_factory.mktemp("patient-server")
    shutil.copytree(index_dir, work / "index")
    # Slots for all the questions below at once: admission control is tested in test_admission.py.
    env = server_env(corpus, work / "index", llm_base_url=hung_llm.base_url, llm_timeout_s=60, llm_retries=0, max_answers=64)
    with uvicorn_server(env, cwd=ROOT, log_path=work / "server.log", timeout_s=120, app=APP) as server:
        yield server


async def _abandon(base_url: str, path: str, n: int, after_s: float) -> int:
    """``n`` concurrent questions whose clients give up after ``after_s``; returns how many gave up."""

    async def one(client: httpx.AsyncClient) -> bool:
        try:
            await client.post(path, json={"question": QUESTION, "mode": "llm"})
        except httpx.TimeoutException:
            return True
        return False

    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(after_s, connect=10)) as client:
        return sum(await asyncio.gather(*(one(client) for _ in range(n))))


@pytest.mark.slow
@pytest.mark.parametrize(("path", "n"), [("/ask", 45), ("/ask/stream", 10)])
def test_abandoned_questions_stop_their_llm_calls(patient_server, hung_llm, path, n):
    gave_up = asyncio.run(_abandon(patient_server.base_url, path, n, after_s=2.0))
    assert gave_up == n
    assert hung_llm.wait_for_no_connections(5), f"{hung_llm.open_connections} LLM calls still run for clients that left"
    started = time.monotonic()
    response = httpx.get(f"{patient_server.base_url}/documents", timeout=60)
    assert response.status_code == 200 and time.monotonic() - started < 2


def test_errors_inside_a_cancellable_question_keep_their_status(corpus, index_dir):
    from assistant.errors import IndexNotReady

    service = make_service(corpus, index_dir)

    def not_ready(*_args, **_kwargs):
        raise IndexNotReady("The index is being rebuilt; ask again shortly.")

    broken = type("Broken", (), {"search": staticmethod(not_ready)})()
    pipeline = Pipeline(service.settings, broken, service.pipeline.extractive)
    app = create_app(service.settings, dataclasses.replace(service, pipeline=pipeline))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/ask", json={"question": QUESTION})
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"


def test_a_cancelled_question_is_not_answered_extractively(corpus, index_dir):
    """A cancelled call (the client left) is not a failure to cover with the extractive answer."""
    service = make_service(corpus, index_dir)
    token = CancelToken()
    token.cancel()
    pipeline = Pipeline(service.settings, service.retriever, service.pipeline.extractive, Scripted(Answer("x", False, "llm")))
    with cancellable(token), pytest.raises(Cancelled, match="cancelled"):
        pipeline.ask(QUESTION, mode="llm")
