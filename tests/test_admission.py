"""Admission control against a real uvicorn server on 127.0.0.1 with real sockets: a bounded number of
answers in flight, a short queue, 503 with Retry-After beyond it, the same bound for /ask, /ask/stream and
/v1/chat/completions; a client that drops its stream frees its slot, and its steps stop at the next boundary.

The fast tests use ``tests/admission_app.py`` (fake embedder, a slow scripted answerer); one slow test runs
the real model path (e5 and the reader).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.admission_app import APP
from tests.conftest import ROOT
from tests.servers import Server, uvicorn_server

QUESTION = "Who finances the Digital Foundations Project in Tajikistan?"
SLOTS, QUEUE = 2, 2


def server_env(corpus: Path, index: Path, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_CORPUS_DIR=str(corpus), ASSISTANT_INDEX_DIR=str(index))
    env.update({f"ASSISTANT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import shutil

    work = tmp_path_factory.mktemp("admission")
    shutil.copytree(ROOT / "corpus", work / "corpus", ignore=shutil.ignore_patterns("uploads"))
    env = server_env(work / "corpus", work / "index", reader="false", max_answers=SLOTS, answer_queue=QUEUE, answer_queue_wait_s=5)
    env["TEST_STEP_S"] = "0.25"  # 8 steps: a streamed answer takes about 2 s
    with uvicorn_server(env, cwd=ROOT, log_path=work / "server.log", timeout_s=120, app=APP) as running:
        yield running


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


STREAMS = {
    "/ask/stream": {"question": QUESTION},
    "/v1/chat/completions": {"model": "assistant", "stream": True, "messages": [{"role": "user", "content": QUESTION}]},
}


def open_and_drop(base_url: str, path: str) -> bytes:
    """Send a streamed request on a raw socket, read the first bytes of the answer and close the socket."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(STREAMS[path]).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def dropping_clients(base_url: str, clients: int, seconds: float) -> list[bytes]:
    """``clients`` threads that open a stream, read one chunk and drop it, again and again, for ``seconds``."""
    deadline = time.monotonic() + seconds
    firsts: list[bytes] = []

    def client(n: int) -> None:
        path = list(STREAMS)[n % 2]
        while time.monotonic() < deadline:
            try:
                firsts.append(open_and_drop(base_url, path)[:12])
            except OSError:
                pass

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return firsts


def answers(server: Server) -> dict:
    return httpx.get(f"{server.base_url}/health", timeout=10).json()["answers"]


def wait_idle(server: Server, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while (a := answers(server))["in_flight"] or a["queued"]:
        assert time.monotonic() < deadline, f"answers still in flight after the clients left: {a}"
        time.sleep(0.1)


def test_dropped_streams_keep_threads_bounded_and_the_server_answering(server):
    ask = httpx.post(f"{server.base_url}/ask", json={"question": QUESTION, "mode": "extractive"}, timeout=30)
    assert ask.status_code == 200, ask.text
    baseline = threads(server.proc.pid)
    peak, stop = [baseline], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak.append(threads(server.proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        firsts = dropping_clients(server.base_url, clients=8, seconds=4)
    finally:
        stop.set()
        sampler.join()
    statuses = {f[9:12] for f in firsts if f.startswith(b"HTTP/1.1 ")}
    assert b"200" in statuses, statuses  # some streams were admitted (and dropped) ...
    assert b"503" in statuses, statuses  # ... and the ones beyond the queue were refused
    assert max(peak) <= baseline + SLOTS + 4, f"threads rose from {baseline} to {max(peak)} with {SLOTS} answers in flight at most"
    # Every dropped answer stops at its next step: the slots are free within a step or two, not after the whole answer.
    started = time.monotonic()
    wait_idle(server)
    assert time.monotonic() - started < 1.5, "dropped answers kept their slots"
    started = time.monotonic()
    ask = httpx.post(f"{server.base_url}/ask", json={"question": QUESTION, "mode": "extractive"}, timeout=30)
    elapsed = time.monotonic() - started
    assert ask.status_code == 200, ask.text
    assert elapsed < 1.0, f"/ask took {elapsed:.2f} s after the dropped streams"


def held_stream(base_url: str, path: str, opened: threading.Event) -> int:
    """A streamed request read to its end; the status it had."""
    with httpx.stream("POST", base_url + path, json=STREAMS[path], timeout=30) as response:
        opened.set()
        for _ in response.iter_bytes():
            pass
        return response.status_code


@pytest.mark.parametrize("refused", ["/ask", "/ask/stream", "/v1/chat/completions", "/v1/chat/completions plain"])
def test_beyond_the_slots_and_the_queue_a_request_gets_503_with_retry_after(server, refused):
    wait_idle(server)
    with ThreadPoolExecutor(SLOTS + QUEUE) as pool:
        held = [pool.submit(held_stream, server.base_url, list(STREAMS)[n % 2], threading.Event()) for n in range(SLOTS + QUEUE)]
        deadline = time.monotonic() + 10
        while (a := answers(server))["in_flight"] < SLOTS or a["queued"] < QUEUE:
            assert time.monotonic() < deadline, a
            time.sleep(0.02)
        assert a["limit"] == SLOTS and a["queue"] == QUEUE
        path, _, plain = refused.partition(" ")
        payload = {**STREAMS[path], "stream": False} if plain else STREAMS.get(path, {"question": QUESTION})
        response = httpx.post(server.base_url + path, json=payload, timeout=10)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit() and int(response.headers["retry-after"]) >= 1
        error = response.json()["error"]
        assert error["code"] == "overloaded"
        assert "busy" in error["message"]
        if path.startswith("/v1/"):
            assert error["type"] == "server_error"  # OpenAI's shape
        assert [f.result() for f in held] == [200] * (SLOTS + QUEUE)  # the admitted and the queued all answered


def test_a_queued_request_waits_no_longer_than_its_limit(tmp_path):
    import shutil

    shutil.copytree(ROOT / "corpus", tmp_path / "corpus", ignore=shutil.ignore_patterns("uploads"))
    env = server_env(tmp_path / "corpus", tmp_path / "index", reader="false", max_answers=1, answer_queue=1, answer_queue_wait_s=0.5)
    env["TEST_STEP_S"] = "0.5"  # one answer holds its slot 4 s
    with uvicorn_server(env, cwd=ROOT, log_path=tmp_path / "server.log", timeout_s=120, app=APP) as running:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(held_stream, running.base_url, "/ask/stream", threading.Event())
            while answers(running)["in_flight"] < 1:
                time.sleep(0.02)
            started = time.monotonic()
            response = httpx.post(f"{running.base_url}/ask", json={"question": QUESTION}, timeout=10)
            assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
            assert 0.4 < time.monotonic() - started < 2.0
            assert held.result() == 200


@pytest.mark.slow
def test_dropped_streams_on_the_real_model_path(real_index_dir, tmp_path):
    """e5 and the reader: dropped streams keep threads bounded and a normal /ask answers at once after them."""
    env = server_env(ROOT / "corpus", real_index_dir, max_answers=2, answer_queue=2)
    with uvicorn_server(env, cwd=tmp_path, log_path=tmp_path / "server.log", timeout_s=300) as running:
        ask = httpx.post(f"{running.base_url}/ask", json={"question": QUESTION}, timeout=60)
        assert ask.status_code == 200, ask.text
        unloaded = time.monotonic()
        httpx.post(f"{running.base_url}/ask", json={"question": QUESTION}, timeout=60).raise_for_status()
        unloaded = time.monotonic() - unloaded
        baseline = threads(running.proc.pid)
        peak, stop = [baseline], threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak.append(threads(running.proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            dropping_clients(running.base_url, clients=8, seconds=5)
        finally:
            stop.set()
            sampler.join()
        assert max(peak) <= baseline + 2 + 4, f"threads rose from {baseline} to {max(peak)}"
        wait_idle(running, timeout_s=5)
        started = time.monotonic()
        ask = httpx.post(f"{running.base_url}/ask", json={"question": QUESTION}, timeout=60)
        assert ask.status_code == 200, ask.text
        assert time.monotonic() - started < max(2 * unloaded, 1.0), "a normal /ask was slow after the dropped streams"
