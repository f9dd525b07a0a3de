"""A real uvicorn server of the app on 127.0.0.1, for tests that need one over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

APP = "assistant.server.app:create_app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str  # without a trailing slash
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]


@contextmanager
def uvicorn_server(env: dict[str, str], cwd: Path, log_path: Path, timeout_s: float = 300, app: str = APP) -> Iterator[Server]:
    """Start the app, wait until /health says "ok" (failing the test with the log if it cannot), stop it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode} during start-up:\n{server.log_tail()}")
            try:
                health = httpx.get(f"{server.base_url}/health", timeout=5)
                status = health.json().get("status") if health.status_code == 200 else None
                if status == "ok":
                    break
                if status == "unavailable":
                    pytest.fail(f"server started without its index: {health.json()}")
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {timeout_s} s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process; kill it if it has not stopped within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
