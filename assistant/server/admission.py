"""Admission control: a bounded number of answers in flight, a short bounded queue, and beyond it ``503``.

Every answer route (``/ask``, ``/ask/stream``, ``/v1/chat/completions`` plain and streamed) takes a slot
before it starts and keeps it until its last step has finished. At most ``max_answers`` answers run at
once; up to ``answer_queue`` more wait, each at most ``answer_queue_wait_s``; a request beyond the queue,
or one that waited that long, gets ``503`` with code ``overloaded`` and a ``Retry-After`` header.

An answer's steps run in worker threads of the admission's own limiter (``threads``), one step at a time
per answer, and are never abandoned: a client that goes away is noticed at the next step boundary, where
its answer stops and frees its slot. So the worker threads of answers never outnumber the slots.

>>> admission = Admission(slots=2, queue=1, wait_s=1.0)
>>> admission.status()
{'in_flight': 0, 'queued': 0, 'limit': 2, 'queue': 1}
"""

from __future__ import annotations

import logging
import math
from collections import deque

import anyio

from assistant.server.errors import ApiError

log = logging.getLogger(__name__)


class Overloaded(ApiError):
    """Every answer slot is taken and the queue is full (or the wait ran out): ask again after ``Retry-After``."""

    def __init__(self, retry_after_s: int, limit: int):
        message = f"The assistant is busy ({limit} answers in progress and the queue is full); ask again in {retry_after_s} s."
        super().__init__(503, "overloaded", message, {"retry_after_s": retry_after_s}, headers={"Retry-After": str(retry_after_s)})


class Slot:
    """One admitted answer; ``release`` (idempotent) hands the slot to the next in the queue."""

    def __init__(self, admission: Admission):
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission._release()


class Admission:
    """``slots`` answers at once, ``queue`` more waiting up to ``wait_s`` each (one event loop's requests)."""

    def __init__(self, slots: int, queue: int, wait_s: float):
        self.limit, self.queue, self.wait_s = slots, queue, wait_s
        self.retry_after_s = max(1, math.ceil(wait_s / 2))
        self.threads = anyio.CapacityLimiter(slots)  # the worker threads answers run their steps in
        self._in_flight = 0
        self._waiting: deque[anyio.Event] = deque()

    def status(self) -> dict[str, int]:
        return {"in_flight": self._in_flight, "queued": len(self._waiting), "limit": self.limit, "queue": self.queue}

    async def acquire(self) -> Slot:
        """A slot, at once or after waiting in the queue; ``Overloaded`` when the queue is full or the wait ran out."""
        if self._in_flight < self.limit and not self._waiting:
            self._in_flight += 1
            return Slot(self)
        if len(self._waiting) >= self.queue:
            raise self._refuse()
        turn = anyio.Event()
        self._waiting.append(turn)
        try:
            with anyio.move_on_after(self.wait_s):
                await turn.wait()
        except BaseException:  # cancelled while waiting
            if turn.is_set():
                self._release()  # the slot was handed over just now: pass it on
            else:
                self._waiting.remove(turn)
            raise
        if not turn.is_set():
            self._waiting.remove(turn)
            raise self._refuse()
        return Slot(self)  # handed over by a release: in_flight already counts it

    def _release(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()
        else:
            self._in_flight -= 1

    def _refuse(self) -> Overloaded:
        log.info("refused an answer: %d in flight, %d queued", self._in_flight, len(self._waiting))
        return Overloaded(self.retry_after_s, self.limit)
