"""``assistant serve`` limits slow clients (headers, body), idle connections, header size and concurrency.

Tests marked ``slow`` start ``assistant serve`` itself (with the fake embedder, ``tests/hardening_app.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import markup_service as shared
from tests.conftest import ROOT
from tests.markup_service import server_env
from tests.servers import free_port, stop

corpus, index_dir = shared.corpus, shared.index_dir  # shared fixtures (tests/markup_service.py)


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
