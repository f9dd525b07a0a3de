"""Checks made before a request is handled: the API key and the body's size (``Guard``), and
the time a client may take to send its request (``timed_h11_protocol``, for uvicorn)."""

from __future__ import annotations

import asyncio
import hmac
import logging

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from assistant.config import Settings
from assistant.server.errors import UNAUTHORISED, error_response

log = logging.getLogger(__name__)


UPLOAD_PATH = "/documents"  # POST: file uploads (uploads.py), held to max_upload_mb instead of max_body_bytes


def upload_limit_bytes(settings: Settings) -> int:
    """The largest ``POST /documents`` body (all its files together)."""
    return int(settings.max_upload_mb * 1024 * 1024)


class Guard:
    """The API key and the request size limit (declared or streamed bodies), checked before the body is parsed.

    With an API key configured every path needs it except ``open_paths`` (the chat page's own
    files and the ``/health`` liveness probe) and CORS preflights: deny by default, so a new
    route is never open by mistake. File uploads (``POST /documents``) have their own, larger
    limit (``max_upload_mb``); a streamed upload is counted as it passes, not held in memory.
    """

    def __init__(self, app: ASGIApp, settings: Settings, open_paths: frozenset[str] = frozenset()):
        self.app, self.settings, self.open_paths = app, settings, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        upload = scope["method"] == "POST" and scope["path"] == UPLOAD_PATH
        limit = upload_limit_bytes(self.settings) if upload else self.settings.max_body_bytes
        if upload:
            message = f"The upload is larger than {self.settings.max_upload_mb:g} MiB (ASSISTANT_MAX_UPLOAD_MB); send fewer files at once."
            too_large = error_response(413, "too_large", message, {"limit_bytes": limit})
        else:
            too_large = error_response(413, "too_large", f"The request body is larger than {limit} bytes.")
        if self.settings.api_key is not None and scope["method"] != "OPTIONS" and scope["path"] not in self.open_paths:
            if not key_ok(headers.get("authorization", ""), self.settings):
                e = UNAUTHORISED
                await error_response(e.status, e.code, e.message, headers=e.headers)(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                await error_response(400, "bad_request", "Content-Length is not a number.")(scope, receive, send)
            elif int(length) > limit:
                await too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        elif scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
        elif upload:
            await _counted(self.app, scope, receive, send, limit, too_large)
        else:
            await _buffered(self.app, scope, receive, send, limit, too_large)


async def _buffered(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, too_large: ASGIApp) -> None:
    """A body of unknown length read here, up to ``limit`` bytes (else ``too_large``), then handed to ``app``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            await too_large(scope, receive, send)
            return
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    await app(scope, replay, send)


async def _counted(app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, too_large: ASGIApp) -> None:
    """Run ``app`` on a body of unknown length, passed through as it arrives; past ``limit`` bytes the app sees
    the client go away, its answer is dropped and ``too_large`` is sent instead."""
    size, over, started = 0, False, False

    async def counted_receive() -> Message:
        nonlocal size, over
        if over:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                over = True
                return {"type": "http.disconnect"}
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if over and not started:
            return  # the app's answer to a body cut short; the 413 below replaces it
        started = True
        await send(message)

    await app(scope, counted_receive, guarded_send)
    if over and not started:
        await too_large(scope, receive, send)


def key_ok(authorization: str, settings: Settings) -> bool:
    scheme, _, token = authorization.partition(" ")
    if settings.api_key is None:
        return False
    expected = settings.api_key.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with time limits on receiving each request; made by ``timed_h11_protocol``."""

    header_timeout_s: float
    body_timeout_s: float
    _phase: str | None = None
    _phase_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn annotates BaseTransport
        super().connection_made(transport)
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the limit of the part of a request that is arriving now; none while the app answers."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm("body")
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm("headers")  # part of the next request is in
        elif state is h11.IDLE and self.cycle is None:
            pass  # a new connection, still waiting for its first byte: armed in connection_made
        else:
            self._disarm()  # the request is in (the app answers), or between requests (keep-alive)

    def _arm(self, phase: str) -> None:
        if self._phase == phase:
            return  # the limit runs from the start of the phase, not from the latest byte
        self._disarm()
        seconds = self.header_timeout_s if phase == "headers" else self.body_timeout_s
        self._phase = phase
        self._phase_timer = self.loop.call_later(seconds, self._too_slow, phase, seconds)

    def _disarm(self) -> None:
        if self._phase_timer is not None:
            self._phase_timer.cancel()
        self._phase, self._phase_timer = None, None

    def _too_slow(self, phase: str, seconds: float) -> None:
        self._phase, self._phase_timer = None, None
        if self.transport.is_closing():
            return
        log.warning("closing a connection from %s: the request %s did not arrive within %g s", self.client, phase, seconds)
        if phase == "headers" and self.conn.our_state is h11.IDLE:
            body = b"The request headers did not arrive in time.\n"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        self.transport.close()


def timed_h11_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedH11Protocol]:
    """uvicorn's h11 protocol with time limits on receiving each request (``uvicorn.run(http=...)``).

    uvicorn itself never times out a request that is still arriving: a client that sends its
    headers or body a byte at a time holds the connection for as long as it likes. Here the
    headers must be complete within ``header_timeout_s`` of the connection opening or of the
    request's first byte (else a 408 and the connection is closed), and the body within
    ``body_timeout_s`` after the headers (else the connection is closed; the app sees a
    disconnect). Idle kept-alive connections are uvicorn's ``timeout_keep_alive``.
    """
    limits = {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s}
    return type("TimedH11Protocol", (TimedH11Protocol,), limits)
