"""The LLM call has one total time budget (connect, every read, retries) and a reply size cap,
also for a server that trickles bytes, streams without end or never ends a line.

In-process tests use the deterministic ``FakeEmbedder`` and the fake LLM of ``tests/fake_llm.py``
(a real HTTP server on 127.0.0.1). Tests marked ``slow`` start a real uvicorn server (with the fake
embedder, ``tests/hardening_app.py``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.config import Settings
from assistant.errors import AnswerError
from tests import markup_service as shared
from tests.conftest import ROOT
from tests.fake_llm import FakeLLM
from tests.hardening_app import APP
from tests.markup_service import HELLO, MISBEHAVING, QUESTION, llm_client, server_env, sse_events, within
from tests.servers import uvicorn_server

corpus, index_dir, fake_llm = shared.corpus, shared.index_dir, shared.fake_llm  # shared fixtures (tests/markup_service.py)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("behaviour", MISBEHAVING)
def test_an_llm_call_is_bounded_in_total_time(fake_llm, behaviour, streamed):
    fake_llm.behaviour = behaviour
    client = llm_client(fake_llm)  # 1.5 s in all, one retry
    call = (lambda: list(client.stream_chat(HELLO))) if streamed else (lambda: client.chat(HELLO))
    started = time.monotonic()
    with pytest.raises(AnswerError) as raised:
        within(10, call)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 0.6, f"the call took {elapsed:.1f} s with a 1.5 s budget"
    assert "within the 1.5 s time limit" in str(raised.value), raised.value
    assert fake_llm.wait_for_no_connections(2), "the connection to the LLM was left open"


def test_retries_fit_inside_the_budget(fake_llm):
    fake_llm.behaviour = "hang"
    client = llm_client(fake_llm, llm_timeout_s=1.0, llm_retries=5)
    started = time.monotonic()
    with pytest.raises(AnswerError, match="did not answer within the 1 s time limit"):
        within(10, lambda: client.chat(HELLO))
    assert time.monotonic() - started < 1.6


def test_a_huge_reply_is_cut_off_at_the_size_cap(fake_llm):
    fake_llm.behaviour = "huge"
    fake_llm.huge_bytes = 100_000_000
    client = llm_client(fake_llm, llm_timeout_s=30, llm_max_reply_bytes=1_000_000)
    with pytest.raises(AnswerError, match=r"larger than 1,000,000 bytes"):
        within(30, lambda: client.chat(HELLO))
    assert fake_llm.wait_for_no_connections(5)
    assert fake_llm.bytes_sent < 20_000_000, f"{fake_llm.bytes_sent:,} bytes were sent before the client stopped reading"


def test_a_stream_line_that_never_ends_is_cut_off_at_the_size_cap(fake_llm):
    fake_llm.behaviour = "endless_line"
    fake_llm.interval = 0.0
    client = llm_client(fake_llm, llm_timeout_s=30, llm_max_reply_bytes=1_000_000)
    with pytest.raises(AnswerError, match=r"larger than 1,000,000 bytes"):
        within(30, lambda: list(client.stream_chat(HELLO)))
    assert fake_llm.wait_for_no_connections(5)


def test_the_reply_cap_has_a_sensible_default():
    assert Settings(_env_file=None).llm_max_reply_bytes == 2_000_000
    with pytest.raises(ValueError):
        Settings(_env_file=None, llm_max_reply_bytes=0)


def test_a_well_behaved_endpoint_still_answers(fake_llm):
    client = llm_client(fake_llm)
    assert client.chat(HELLO).text.endswith("[1].")
    *deltas, completion = client.stream_chat(HELLO)
    assert "".join(deltas) == completion.text and completion.finish_reason == "stop"


@pytest.fixture(scope="module")
def budget_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def budget_server(budget_llm: FakeLLM, corpus: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server whose LLM has 2 s in all (one retry)."""
    work = tmp_path_factory.mktemp("budget-server")
    shutil.copytree(index_dir, work / "index")
    env = server_env(corpus, work / "index", llm_base_url=budget_llm.base_url, llm_timeout_s=2, llm_retries=1)
    with uvicorn_server(env, cwd=ROOT, log_path=work / "server.log", timeout_s=120, app=APP) as server:
        yield server


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize("behaviour", ["hang", "trickle", "trickle_headers", "endless_line"])
def test_ask_answers_extractively_when_the_llm_budget_is_spent(budget_server, budget_llm, behaviour):
    budget_llm.behaviour = behaviour
    budget_llm.interval = 0.2
    started = time.monotonic()
    response = httpx.post(f"{budget_server.base_url}/ask", json={"question": QUESTION, "mode": "llm"}, timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "extractive"
    assert elapsed < 2 + 3, f"/ask took {elapsed:.1f} s with a 2 s LLM budget"
    assert any("within the 2 s time limit" in w for w in body["warnings"]), body["warnings"]


@pytest.mark.slow
def test_a_huge_llm_reply_does_not_grow_the_server(budget_server, budget_llm):
    budget_llm.behaviour = "huge"
    budget_llm.huge_bytes = 300_000_000
    before = _rss_kib(budget_server.proc.pid)
    response = httpx.post(f"{budget_server.base_url}/ask", json={"question": QUESTION, "mode": "llm"}, timeout=60)
    assert response.status_code == 200 and response.json()["mode"] == "extractive"
    assert any("larger than 2,000,000 bytes" in w for w in response.json()["warnings"])
    grown = (_rss_kib(budget_server.proc.pid) - before) / 1024
    assert grown < 100, f"the server grew by {grown:.0f} MiB"


@pytest.mark.slow
def test_an_endless_llm_stream_ends_with_an_error_event_at_the_budget(budget_server, budget_llm):
    budget_llm.behaviour = "endless_sse"
    budget_llm.interval = 0.1
    started = time.monotonic()
    with httpx.stream("POST", f"{budget_server.base_url}/ask/stream", json={"question": QUESTION, "mode": "llm"}, timeout=60) as r:
        text = "".join(r.iter_text())
    elapsed = time.monotonic() - started
    events = sse_events(text)
    names = [name for name, _ in events]
    assert elapsed < 2 + 3, f"the stream took {elapsed:.1f} s with a 2 s LLM budget"
    assert names.count("delta") >= 1 and names[-1] == "error" and "done" not in names, names
    error = events[-1][1]["error"]
    assert error["code"] == "llm_failed" and "2 s time limit" in error["message"], error


@pytest.mark.slow
def test_a_hung_llm_stream_falls_back_before_any_text_was_sent(budget_server, budget_llm):
    budget_llm.behaviour = "hang"
    with httpx.stream("POST", f"{budget_server.base_url}/ask/stream", json={"question": QUESTION, "mode": "llm"}, timeout=60) as r:
        events = sse_events("".join(r.iter_text()))
    assert events[-1][0] == "done" and events[-1][1]["mode"] == "extractive"
    assert any("2 s time limit" in w for w in events[-1][1]["warnings"])
