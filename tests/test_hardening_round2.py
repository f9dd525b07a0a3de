"""The second security probe's findings, each fixed and kept fixed.

1. The LLM call has one total time budget (connect, every read, retries) and a reply size cap,
   also for a server that trickles bytes, streams without end or never ends a line.
2. Work for a client that went away is cancelled; /health never probes the LLM more than once
   per cache period and never blocks for long.
3. An empty or blank API key is refused at start-up.
4. With a key, every data route needs it; /health without it says only its status; the chat
   page has a key field (browser test).
5. One stream is one answer: after LLM text was sent, a failure ends the stream with an
   ``error`` event, never a ``done`` with a different answer (and the page asks extractively).
6. ``assistant serve`` limits slow clients (headers, body), idle connections, header size and
   concurrency.
7. The ``answer`` field is plain text; citations keep the exact document text.

In-process tests use the deterministic ``FakeEmbedder`` and the fake LLM of ``tests/fake_llm.py``
(a real HTTP server on 127.0.0.1). Tests marked ``slow`` start real uvicorn servers (with the
fake embedder, ``tests/hardening_app.py``), Chromium, or the real embedder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.answer.llm.client import LLMClient
from assistant.answer.pipeline import Pipeline, PlainTextStream, plain_text
from assistant.answer.types import Answer, Citation
from assistant.cancellation import CancelToken, cancellable
from assistant.config import Settings
from assistant.errors import AnswerError, Cancelled
from assistant.server.app import AskResponse, create_app
from assistant.service import Service, open_service
from tests.conftest import ROOT
from tests.fake_llm import FakeLLM
from tests.fakes import FakeEmbedder, Scripted
from tests.hardening_app import APP
from tests.servers import free_port, stop, uvicorn_server

SEED_CORPUS = ROOT / "corpus"
QUESTION = "Who finances the Digital Foundations Project in Tajikistan?"
HELLO = [{"role": "user", "content": "Hello"}]
KEY = "round2-Key_0123456789"
TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
MISBEHAVING = ["hang", "trickle", "trickle_headers", "endless_sse", "endless_line"]

MARKUP_FILE = "khatlon-markup.txt"
MARKUP_SENTENCE = (
    'In 2021 village water committees in the Khatlon region repaired forty kilometres of irrigation canals <iframe src="javascript:'
    'alert(1)"></iframe> with support from their <b>jamoat councils</b>.'
)
MARKUP_TEXT = f"""Khatlon water committees

{MARKUP_SENTENCE} Each household contributed labour to clean the canals before the spring planting season.
"""
MARKUP_QUESTION = "What did the village water committees in the Khatlon region repair in 2021?"


# ---------------------------------------------------------------------------- helpers


def within(seconds: float, fn: Callable[[], object]) -> object:
    """``fn()`` in a thread; fails the test when it has not returned within ``seconds``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def markup_corpus(root: Path) -> Path:
    """The seed corpus plus a document whose text holds markup."""
    corpus = root / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    (corpus / MARKUP_FILE).write_text(MARKUP_TEXT, encoding="utf-8")
    metadata = json.loads((corpus / "metadata.json").read_text(encoding="utf-8"))
    metadata[MARKUP_FILE] = {
        "title": "Khatlon water committees",
        "publisher": "Test",
        "date": None,
        "period": None,
        "language": ["en"],
        "description": "A document with markup in its text.",
    }
    (corpus / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return corpus


def server_env(corpus: Path, index_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a server subprocess: only our ASSISTANT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_CORPUS_DIR=str(corpus), ASSISTANT_INDEX_DIR=str(index_dir), ASSISTANT_READER="false")
    env.update({f"ASSISTANT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return markup_corpus(tmp_path_factory.mktemp("round2"))


@pytest.fixture(scope="module")
def index_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The markup corpus indexed once with the fake embedder (servers copy it: no rebuild)."""
    index_dir = tmp_path_factory.mktemp("round2-index")
    open_service(Settings(_env_file=None, corpus_dir=corpus, index_dir=index_dir, reader=False), embedder=FakeEmbedder())
    return index_dir


def make_settings(corpus: Path, index_dir: Path, **overrides) -> Settings:
    return Settings(_env_file=None, corpus_dir=corpus, index_dir=index_dir, reader=False, **overrides)


def make_service(corpus: Path, index_dir: Path, **overrides) -> Service:
    return open_service(make_settings(corpus, index_dir, **overrides), embedder=FakeEmbedder(), build=False)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def llm_client(fake: FakeLLM, **overrides) -> LLMClient:
    values = {"llm_base_url": fake.base_url, "llm_timeout_s": 1.5, "llm_retries": 1} | overrides
    return LLMClient(Settings(_env_file=None, **values))


def scripted_client(service: Service, answerer: Scripted, **settings) -> TestClient:
    pipeline = Pipeline(service.settings, service.retriever, service.pipeline.extractive, answerer)
    app_settings = service.settings.model_copy(update=settings)
    return TestClient(create_app(app_settings, dataclasses.replace(service, pipeline=pipeline)), raise_server_exceptions=False)


def markup_answer() -> Answer:
    quote = 'canals <iframe src="javascript:alert(1)"></iframe> with'
    cite = Citation(
        n=1,
        doc_id="khatlon-markup",
        title="Khatlon water committees",
        publisher="Test",
        source=MARKUP_FILE,
        text=MARKUP_SENTENCE,
        start=26,
        end=26 + len(MARKUP_SENTENCE),
        quote=quote,
        quote_start=26 + MARKUP_SENTENCE.index(quote),
        quote_end=26 + MARKUP_SENTENCE.index(quote) + len(quote),
        score=1.0,
    )
    text = 'They repaired canals <iframe src="javascript:alert(1)"></iframe>with <b>jamoat</b> help [1]. <a href="[1]">More</a> [1]'
    return Answer(answer=text, abstained=False, mode="llm", citations=[cite])


# ============================================================================ 1. the LLM budget


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


# ============================================================================ 2. cancellation and /health


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


# ============================================================================ 3. an empty API key


@pytest.mark.parametrize("key", ["", " ", "\t \n"], ids=["empty", "space", "blank"])
def test_an_empty_or_blank_api_key_is_refused(key, monkeypatch):
    with pytest.raises(ValueError, match="api_key is empty or blank"):
        Settings(_env_file=None, api_key=key)
    monkeypatch.setenv("ASSISTANT_API_KEY", key)
    with pytest.raises(ValueError, match="api_key is empty or blank"):
        Settings(_env_file=None)


def test_serve_refuses_to_start_with_an_empty_key(tmp_path):
    env = server_env(tmp_path / "corpus", tmp_path / "index", api_key="")
    done = subprocess.run(
        [sys.executable, "-m", "tests.hardening_app", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "api_key is empty or blank" in done.stderr


# ============================================================================ 4. the key on every data route


@pytest.fixture(scope="module")
def keyed(corpus, index_dir) -> Iterator[TestClient]:
    service = make_service(corpus, index_dir, api_key=KEY)
    with TestClient(create_app(service.settings, service), raise_server_exceptions=False) as client:
        yield client


PROTECTED = [
    ("POST", "/ask"),
    ("POST", "/ask/stream"),
    ("GET", "/documents"),
    ("GET", "/documents/khatlon-markup"),
    ("GET", "/documents/nope"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("HEAD", "/documents"),
    ("GET", "/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer wrong-key", f"Basic {KEY}"], ids=["none", "empty", "wrong", "basic"])
def test_every_data_route_needs_the_key(keyed, method, path, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    kwargs = {"json": {"question": QUESTION}} if method == "POST" else {}
    response = keyed.request(method, path, headers=headers, **kwargs)
    assert response.status_code == 401, (method, path, response.status_code)
    if method != "HEAD":
        assert response.json()["error"]["code"] == "unauthorised"
        assert "khatlon" not in response.text.lower()


@pytest.mark.parametrize(("method", "path"), [p for p in PROTECTED if p[0] != "HEAD" and "nope" not in p[1] and "no-such" not in p[1]])
def test_the_key_opens_every_data_route(keyed, method, path):
    kwargs = {"json": {"question": QUESTION}} if method == "POST" else {}
    response = keyed.request(method, path, headers={"authorization": f"Bearer {KEY}"}, **kwargs)
    assert response.status_code == 200, (method, path, response.text[:300])


def test_health_without_the_key_says_only_its_status(keyed):
    for headers in ({}, {"authorization": "Bearer wrong"}):
        assert keyed.get("/health", headers=headers).json() == {"status": "ok"}
    assert keyed.head("/health").status_code == 200
    detailed = keyed.get("/health", headers={"authorization": f"Bearer {KEY}"}).json()
    assert detailed["status"] == "ok" and detailed["index"]["documents"] == 6 and "llm" in detailed


@pytest.mark.parametrize("path", ["/", "/index.html", "/app.js", "/style.css", "/favicon.svg"])
def test_the_chat_page_itself_stays_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_the_chat_page_has_a_key_field(keyed):
    page = keyed.get("/").text
    assert 'id="api-key"' in page and 'type="password"' in page
    script = keyed.get("/app.js").text
    assert "sessionStorage" in script and "Authorization: `Bearer ${key}`" in script


# ============================================================================ 5. one stream, one answer


def test_a_stream_that_fails_after_text_ends_with_an_error_event(corpus, index_dir):
    service = make_service(corpus, index_dir)
    answerer = Scripted("The project is financed by Switzerland [1]. ", "It also ", AnswerError("the LLM stream broke off"))
    with scripted_client(service, answerer) as client:
        events = sse_events(client.post("/ask/stream", json={"question": QUESTION, "mode": "llm"}).text)
    names = [name for name, _ in events]
    assert names == ["delta", "delta", "error"], names
    error = events[-1][1]["error"]
    assert error["code"] == "llm_failed" and "broke off" in error["message"]
    assert error["details"] == {"retry_mode": "extractive"}


def test_a_stream_that_fails_before_any_text_falls_back_in_done(corpus, index_dir):
    service = make_service(corpus, index_dir)
    with scripted_client(service, Scripted(AnswerError("the LLM endpoint did not answer"))) as client:
        events = sse_events(client.post("/ask/stream", json={"question": QUESTION, "mode": "llm"}).text)
    assert [name for name, _ in events] == ["done"]
    done = events[-1][1]
    assert done["mode"] == "extractive" and any("did not answer" in w for w in done["warnings"])


def test_a_cancelled_question_is_not_answered_extractively(corpus, index_dir):
    """A cancelled call (the client left) is not a failure to cover with the extractive answer."""
    service = make_service(corpus, index_dir)
    token = CancelToken()
    token.cancel()
    pipeline = Pipeline(service.settings, service.retriever, service.pipeline.extractive, Scripted(Answer("x", False, "llm")))
    with cancellable(token), pytest.raises(Cancelled, match="cancelled"):
        pipeline.ask(QUESTION, mode="llm")


# ============================================================================ 6. slow clients


def test_serve_runs_uvicorn_with_limits(monkeypatch, tmp_path):
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from assistant import cli

    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: captured.update(kwargs))
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASSISTANT_HTTP_MAX_CONNECTIONS", "77")
    assert cli.main(["serve", "--corpus-dir", str(tmp_path), "--index-dir", str(tmp_path / "index"), "--port", "0"]) == 0
    assert issubclass(captured["http"], H11Protocol) and captured["http"] is not H11Protocol
    assert captured["timeout_keep_alive"] == 5
    assert captured["h11_max_incomplete_event_size"] == 16 * 1024
    assert captured["limit_concurrency"] == 77


@pytest.fixture(scope="module")
def served(corpus: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``assistant serve`` itself (fake embedder) with 1 s for headers and for the body."""
    work = tmp_path_factory.mktemp("served")
    shutil.copytree(index_dir, work / "index")
    env = server_env(corpus, work / "index", http_header_timeout_s=1, http_body_timeout_s=1, http_max_header_bytes=4096)
    port = free_port()
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hardening_app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (work / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json().get("status") == "ok":
                    break
            except (httpx.TransportError, ValueError):
                pass
            assert time.monotonic() < deadline, (work / "serve.log").read_text()
            time.sleep(0.25)
        yield port
    finally:
        stop(proc)
        log.close()


def _seconds_until_closed(port: int, data: bytes, limit_s: float = 10) -> tuple[float, bytes]:
    """Send ``data``, then stall; how long until the server closes the connection, and what it said."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(data)
        started = time.monotonic()
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except TimeoutError:
            return float("inf"), received
        except ConnectionResetError:
            pass
        return time.monotonic() - started, received


@pytest.mark.slow
def test_a_client_that_stalls_in_its_headers_is_disconnected(served):
    elapsed, said = _seconds_until_closed(served, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert elapsed < 1 + 1.5, f"a half-sent request held the connection for {elapsed:.1f} s"
    assert said.startswith(b"HTTP/1.1 408"), said


@pytest.mark.slow
def test_a_client_that_stalls_in_its_body_is_disconnected(served):
    head = b"POST /ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    elapsed, _ = _seconds_until_closed(served, head + b'{"question": "Who')
    assert elapsed < 1 + 1.5, f"a half-sent body held the connection for {elapsed:.1f} s"


@pytest.mark.slow
def test_a_client_that_opens_and_sends_nothing_is_disconnected(served):
    elapsed, _ = _seconds_until_closed(served, b"")
    assert elapsed < 1 + 1.5


@pytest.mark.slow
def test_headers_growing_past_the_cap_are_refused(served):
    # Still incomplete at 8000 bytes, past http_max_header_bytes (4096): refused at once, not buffered on.
    elapsed, said = _seconds_until_closed(served, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
    assert said.startswith(b"HTTP/1.1 400"), said[:200]
    assert elapsed < 1


@pytest.mark.slow
def test_a_kept_alive_connection_still_serves_its_next_request(served):
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(request)
            reply = b""
            while b'"status"' not in reply:
                chunk = sock.recv(4096)
                assert chunk, f"the connection was closed: {reply!r}"
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)  # longer than the header limit, shorter than keep-alive


# ============================================================================ 7. plain-text answers


@pytest.mark.parametrize("path", ["/ask", "/ask/stream"])
def test_the_answer_field_is_plain_text(corpus, index_dir, path):
    service = make_service(corpus, index_dir)
    answer = markup_answer()
    quote = answer.citations[0].quote
    with scripted_client(service, Scripted(*re.findall(r".{1,7}", answer.answer, flags=re.S), answer)) as client:
        response = client.post(path, json={"question": MARKUP_QUESTION, "mode": "llm"})
    if path == "/ask":
        body = response.json()
        deltas = None
    else:
        events = sse_events(response.text)
        assert events[-1][0] == "done", events
        body = events[-1][1]
        deltas = "".join(data["text"] for name, data in events if name == "delta")
    AskResponse.model_validate(body)
    assert not TAG.search(body["answer"]), body["answer"]
    assert body["answer"] == "They repaired canals with jamoat help [1]. [1]More [1]"  # a marker inside a tag is kept
    assert body["citations"][0]["quote"] == quote  # citations keep the exact document text
    if deltas is not None:
        assert deltas == body["answer"] and not TAG.search(deltas)


def test_plain_text_in_pieces_equals_plain_text_of_the_whole():
    rng = random.Random(7)
    texts = [
        markup_answer().answer,
        "5 < 7 and <b",
        "a<b c <d> e",
        "<!-- note --> text <?xml x?> </p> [3]",
        "<<b>>" + "x" * 50 + "<" + "y" * 1200 + ">",
    ]
    for text in texts:
        for _ in range(300):
            cuts = sorted(rng.sample(range(len(text) + 1), rng.randint(0, min(6, len(text)))))
            pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            stream = PlainTextStream()
            assert "".join(stream.feed(p) for p in pieces) + stream.flush() == plain_text(text), (text, pieces)


@pytest.fixture(scope="module")
def real_markup_client(real_index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real embedder over the seed corpus plus the markup document (only it is embedded anew)."""
    root = tmp_path_factory.mktemp("round2-real")
    corpus = markup_corpus(root)
    shutil.copytree(real_index_dir, root / "index")
    settings = Settings(_env_file=None, corpus_dir=corpus, index_dir=root / "index")
    service = open_service(settings)
    with TestClient(create_app(settings, service)) as client:
        yield client


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/ask", "/ask/stream"])
def test_markup_quoted_by_the_extractive_answer_is_removed_from_the_answer(real_markup_client, path):
    response = real_markup_client.post(path, json={"question": MARKUP_QUESTION, "mode": "extractive"})
    body = response.json() if path == "/ask" else sse_events(response.text)[-1][1]
    assert not TAG.search(body["answer"]), body["answer"]
    assert "javascript:" not in body["answer"]
    for c in body["citations"]:
        text = real_markup_client.get(f"/documents/{c['doc_id']}").json()["text"]
        assert text[c["quote_start"] : c["quote_end"]] == c["quote"]
    if not body["abstained"]:
        assert re.search(r"\[\d+\]", body["answer"]) or body["citations"], body
        assert "forty kilometres" in body["answer"], body["answer"]
        assert any("<iframe" in c["quote"] for c in body["citations"]), "the quote keeps the document's exact text"


# ============================================================================ the chat page (Chromium)


CHROMIUM = os.environ.get("ASSISTANT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


@pytest.fixture(scope="module")
def keyed_server(corpus: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server with an API key (fake embedder)."""
    work = tmp_path_factory.mktemp("keyed-server")
    shutil.copytree(index_dir, work / "index")
    env = server_env(corpus, work / "index", api_key=KEY)
    with uvicorn_server(env, cwd=ROOT, log_path=work / "server.log", timeout_s=120, app=APP) as server:
        yield server.base_url + "/"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, keyed_server):
    """Opens the chat page in a fresh context (``init_script`` runs first); checks for page errors at the end."""
    contexts, errors = [], []

    def open_(init_script: str | None = None):
        context = browser.new_context(viewport={"width": 1280, "height": 820})
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(keyed_server)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _ask(page, question: str):
    from playwright.sync_api import expect

    before = page.locator("#conversation > li").count()
    page.locator("#question").fill(question)
    page.locator("#question").press("Enter")
    turn = page.locator("#conversation > li").nth(before)
    expect(turn.locator("article.msg-assistant")).to_have_attribute("aria-busy", "false", timeout=60_000)
    return turn


@pytest.mark.slow
def test_the_page_asks_for_the_key_and_sends_it(open_page):
    from playwright.sync_api import expect

    page = open_page()
    turn = _ask(page, QUESTION)
    box = turn.locator(".error-box")
    expect(box).to_contain_text("This server needs an API key")
    expect(box).to_contain_text("unauthorised · HTTP 401")
    expect(page.locator("#api-key")).to_be_visible()
    expect(page.locator("#api-key")).to_be_focused()

    page.locator("#api-key").fill(KEY)
    assert page.evaluate("sessionStorage.getItem('assistant.apiKey')") == KEY
    with page.expect_request("**/ask/stream") as sent:
        box.get_by_role("button", name="Retry").click()
    assert sent.value.headers.get("authorization") == f"Bearer {KEY}"
    answer = page.locator("#conversation > li").last.locator("article.msg-assistant")
    expect(answer).to_have_attribute("aria-busy", "false", timeout=60_000)
    expect(answer.locator(".error-box")).to_have_count(0)
    expect(answer.locator(".answer-meta")).to_contain_text("Mode:")

    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#docs-list .doc-card")).to_have_count(6)
    page.locator("#docs-list .doc-card .doc-open").first.click()
    expect(page.locator("#panel .doc-text")).not_to_be_empty()

    page.reload()  # the key stays for the tab's session
    expect(page.locator("#api-key")).to_have_value(KEY)


@pytest.mark.slow
def test_a_wrong_key_is_named(open_page):
    from playwright.sync_api import expect

    page = open_page("sessionStorage.setItem('assistant.apiKey', 'not-the-key')")
    turn = _ask(page, QUESTION)
    expect(turn.locator(".error-box")).to_contain_text("did not accept the API key")
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#docs-status")).to_contain_text("did not accept the API key")


@pytest.mark.slow
def test_the_page_answers_extractively_when_the_llm_breaks_off(open_page):
    from playwright.sync_api import expect

    page = open_page(f"sessionStorage.setItem('assistant.apiKey', {json.dumps(KEY)})")
    failed = {"error": {"code": "llm_failed", "message": "The LLM endpoint failed part-way.", "details": {"retry_mode": "extractive"}}}
    body = f"event: delta\ndata: {json.dumps({'text': 'Partial LLM words '})}\n\nevent: error\ndata: {json.dumps(failed)}\n\n"
    page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    with page.expect_request(lambda r: r.url.endswith("/ask") and r.method == "POST") as again:
        turn = _ask(page, QUESTION)
    assert json.loads(again.value.post_data)["mode"] == "extractive"
    assert again.value.headers.get("authorization") == f"Bearer {KEY}"
    article = turn.locator("article.msg-assistant")
    expect(article.locator(".fallback-note")).to_contain_text("quoted from the documents instead")
    expect(article.locator(".error-box")).to_have_count(0)
    expect(article.locator(".answer-meta")).to_contain_text("Mode: extractive")
    expect(article).not_to_contain_text("Partial LLM words")
