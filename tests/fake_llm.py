"""A scriptable fake OpenAI-compatible server on 127.0.0.1 (a thread of the test process), for
tests of how the LLM client and the server cope with an endpoint that misbehaves.

Set ``server.behaviour`` to one of:

- ``"echo"``: a well-formed answer (plain JSON, or an event stream when asked for one) that
  quotes the first sentence of passage 1 of the prompt with ``[1]``, so the answer check keeps it;
- ``"hang"``: reads the request and never answers;
- ``"trickle"``: answers 200 and then sends its JSON body one byte every ``interval`` seconds;
- ``"trickle_headers"``: sends the status line and headers one byte every ``interval`` seconds;
- ``"endless_sse"``: an event stream of supported sentences that never ends;
- ``"endless_line"``: an event stream whose first ``data:`` line never ends;
- ``"huge"``: a JSON reply of ``huge_bytes`` bytes (no Content-Length), as fast as the client reads.

Every handler stops when the client closes the connection or the server stops. ``open_connections``,
``requests`` (paths), ``bytes_sent`` and ``max_open`` say what the client did.

Usage::

    with FakeLLM() as llm:
        llm.behaviour = "hang"
        settings = Settings(llm_base_url=llm.base_url, ...)
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FALLBACK_SENTENCE = "The documents describe development programmes in Tajikistan"


def first_sentence(payload: dict) -> str:
    """A sentence of passage 1 of the prompt, to quote with [1] (the answer check keeps it)."""
    try:
        user = payload["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return FALLBACK_SENTENCE
    match = re.search(r'<passage n="1"[^>]*>\n(.*?)\n</passage>', user, flags=re.S)
    if not match:
        return FALLBACK_SENTENCE
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(match.group(1).split())):
        if 40 <= len(sentence) <= 300 and sentence[-1] in ".!?":
            return sentence[:-1]
    return FALLBACK_SENTENCE


def chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    data = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def handle(self) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.open_connections += 1
            fake.max_open = max(fake.max_open, fake.open_connections)
        try:
            super().handle()
        except OSError:
            pass
        finally:
            with fake.lock:
                fake.open_connections -= 1

    # ------------------------------------------------------------ helpers

    def _send(self, data: bytes) -> bool:
        """Write ``data``; False when the client has gone or the server stops."""
        if self.server.fake.stopping.is_set():
            return False
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        with self.server.fake.lock:
            self.server.fake.bytes_sent += len(data)
        return True

    def _client_gone(self, wait_s: float) -> bool:
        """Wait up to ``wait_s``; True when the client closed the connection (or the server stops)."""
        if self.server.fake.stopping.wait(0):
            return True
        readable, _, _ = select.select([self.connection], [], [], wait_s)
        if readable:
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True
        return self.server.fake.stopping.is_set()

    def _headers(self, status: int, ctype: str, length: int | None = None) -> bytes:
        lines = [f"HTTP/1.1 {status} OK", f"Content-Type: {ctype}"]
        lines.append(f"Content-Length: {length}" if length is not None else "Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    # ------------------------------------------------------------ routes

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        fake = self.server.fake
        with fake.lock:
            fake.requests.append(self.path)
        if fake.behaviour == "hang":
            while not self._client_gone(0.1):
                pass
            return
        body = json.dumps({"object": "list", "data": [{"id": "fake"}]}).encode()
        self._send(self._headers(200, "application/json", len(body)) + body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        with fake.lock:
            fake.requests.append(self.path)
        sentence = first_sentence(payload)
        stream = bool(payload.get("stream"))
        behaviour = fake.behaviour
        interval = fake.interval

        if behaviour == "echo":
            text = f"{sentence} [1]."
            if stream:
                body = chunk(text[: len(text) // 2]) + chunk(text[len(text) // 2 :]) + chunk(finish="stop") + b"data: [DONE]\n\n"
                self._send(self._headers(200, "text/event-stream", len(body)) + body)
            else:
                data = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
                body = json.dumps(data).encode()
                self._send(self._headers(200, "application/json", len(body)) + body)
        elif behaviour == "hang":
            while not self._client_gone(0.1):
                pass
        elif behaviour == "trickle":
            data = {"choices": [{"index": 0, "message": {"role": "assistant", "content": sentence + " [1]. " * 200}}]}
            body = json.dumps(data).encode()
            if not self._send(self._headers(200, "application/json", len(body))):
                return
            for byte in body:
                if not self._send(bytes([byte])) or self._client_gone(interval):
                    return
        elif behaviour == "trickle_headers":
            for byte in self._headers(200, "application/json", 10_000):
                if not self._send(bytes([byte])) or self._client_gone(interval):
                    return
        elif behaviour == "endless_sse":
            if not self._send(self._headers(200, "text/event-stream")):
                return
            while self._send(chunk(f"{sentence} [1]. ")) and not self._client_gone(interval):
                pass
        elif behaviour == "endless_line":
            if not self._send(self._headers(200, "text/event-stream") + b'data: {"choices": [{"delta": {"content": "'):
                return
            while self._send(b"x" * 4096) and not self._client_gone(interval):
                pass
        elif behaviour == "huge":
            head = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "'
            tail = b'"}, "finish_reason": "stop"}]}'
            size = fake.huge_bytes  # sent without Content-Length: the client only learns the size by reading
            if not self._send(self._headers(200, "application/json") + head):
                return
            block = b"x" * 65536
            sent = 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                if not self._send(piece):
                    return
                sent += len(piece)
            self._send(tail)
        else:
            raise AssertionError(f"unknown behaviour {behaviour!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients at once
    fake: FakeLLM


class FakeLLM:
    def __init__(self, behaviour: str = "echo", interval: float = 0.2, huge_bytes: int = 300_000_000):
        self.behaviour = behaviour
        self.interval = interval
        self.huge_bytes = huge_bytes
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.open_connections = 0
        self.max_open = 0
        self.bytes_sent = 0
        self.requests: list[str] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_for_no_connections(self, timeout_s: float) -> bool:
        """True once no client connection is open (within ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.open_connections == 0:
                    return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
