"""What bounds one LLM call: its time budget (a timer that cuts the connection at the deadline) and
its cancellation (``assistant.cancellation``: the token the server cancels when the client goes away)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx

from assistant.cancellation import CancelToken
from assistant.errors import AnswerError, Cancelled

log = logging.getLogger(__name__)

# ------------------------------------------------------------ one call's budget


class Call:
    """The time budget of one LLM call, and what enforces it.

    ``deadline`` bounds connecting, every read and every retry. httpx only bounds each read, so a
    timer fires at the deadline and shuts the call's connections down: a read blocked on a server
    that trickles bytes or never stops wakes up, and the reader, seeing ``expired``, reports the
    time limit. A cancelled token cuts the connections the same way.
    """

    def __init__(self, budget_s: float, cancel: CancelToken | None):
        self.budget_s = budget_s
        self.deadline = time.monotonic() + budget_s
        self.expired = False
        self.cancelled = False
        self._done = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._streams: list[object] = []
        self._timer = threading.Timer(budget_s, self._expire)
        self._timer.daemon = True
        self._timer.start()
        self._forget = cancel.on_cancel(self._cancel) if cancel is not None else None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(max(0.001, self.remaining()))

    def trace(self, event: str, info: dict[str, object]) -> None:
        """httpcore's trace hook: each connection is watched from the moment it is made."""
        if event.endswith(".complete"):
            self.watch(info.get("return_value"))

    def watch(self, stream: object) -> None:
        if stream is None or not hasattr(stream, "get_extra_info"):
            return
        with self._lock:
            if self._done:
                return
            if stream not in self._streams:
                self._streams.append(stream)
            cut = self.expired or self.cancelled
        if cut:
            _shut_down(stream)

    def _expire(self) -> None:
        self._cut("expired")

    def _cancel(self) -> None:
        self._cut("cancelled")

    def _cut(self, why: str) -> None:
        with self._lock:
            if self._done:
                return
            setattr(self, why, True)
            streams = list(self._streams)
        self._wake.set()
        for stream in streams:
            _shut_down(stream)

    def sleep(self, seconds: float) -> None:
        """Wait (between retries), waking early when the call is cut."""
        self._wake.wait(seconds)

    def check(self, what: str, clock: bool = True) -> None:
        """Raise when the call was cancelled or its time is up (``clock=False``: only when it was cut)."""
        if self.cancelled:
            raise Cancelled("the request was cancelled (the client went away)")
        if self.expired or (clock and self.remaining() <= 0):
            raise self.timed_out(what)

    def timed_out(self, what: str) -> AnswerError:
        return AnswerError(f"{what} within the {self.budget_s:g} s time limit")

    def failure(self, exc: BaseException, what: str, broke: str) -> AnswerError | Cancelled:
        """What a transport error while reading means: the cut (time limit, cancel) or a real break."""
        if self.cancelled:
            return Cancelled("the request was cancelled (the client went away)")
        if self.expired or self.remaining() <= 0 or isinstance(exc, httpx.TimeoutException):
            return self.timed_out(what)
        return AnswerError(f"{broke} ({type(exc).__name__})")

    def close(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        if self._forget is not None:
            self._forget()


def _shut_down(stream: object) -> None:
    """Shut the connection's socket down (from another thread): a blocked read returns at once."""
    try:
        sock = stream.get_extra_info("socket")  # type: ignore[attr-defined]
        if isinstance(sock, socket.socket):
            # The plain socket's shutdown, also for an SSLSocket (whose own would drop its SSL state).
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError, AttributeError):
        pass  # already closed
