"""Cancellation: a token the server cancels when the client that asked goes away.

The answer step and the LLM client read the current token (``cancellable``, ``current_cancel_token``) and stop:
an LLM call cuts its connection at once, the pipeline stops at its next step (``check_cancelled``), and
``Cancelled`` (``assistant.errors``) is raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from assistant.errors import Cancelled

log = logging.getLogger(__name__)


class CancelToken:
    """Cancelled by the server when the client that asked has gone away; LLM calls made while it is
    current (``cancellable``) cut their connection at once and raise ``Cancelled``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one failing callback must not stop the others
                log.exception("cancel callback failed")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already); returns a function that forgets it."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)

                def forget() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return forget
        callback()
        return lambda: None


_CANCEL: ContextVar[CancelToken | None] = ContextVar("assistant_cancel_token", default=None)


@contextmanager
def cancellable(token: CancelToken | None) -> Iterator[CancelToken | None]:
    """LLM calls started inside the block stop when ``token`` is cancelled."""
    reset = _CANCEL.set(token)
    try:
        yield token
    finally:
        _CANCEL.reset(reset)


def current_cancel_token() -> CancelToken | None:
    return _CANCEL.get()


def check_cancelled() -> None:
    """Raise ``Cancelled`` when the current token was cancelled (between the steps of an answer)."""
    token = current_cancel_token()
    if token is not None and token.cancelled:
        raise Cancelled("the request was cancelled (the client went away)")
