"""Running answers for the routes: in worker threads under a cancel token, inside an admission slot.

``run_cancellable`` runs one call (``/ask``, a plain chat completion); ``answer_stream`` runs a streamed
answer step by step; ``AdmittedStream`` is the streaming response that frees its slot when it ends,
however it ends. No step is ever abandoned: when the client goes away, the step that is running
finishes (its LLM call is cut off at once by the token), and no further step starts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from assistant.answer.followup import Turn
from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer
from assistant.cancellation import CancelToken, cancellable
from assistant.config import AnswerMode
from assistant.server.admission import Admission, Slot

T = TypeVar("T")
_END = object()


def _with_token(token: CancelToken, fn: Callable[..., T], *args: object) -> T:
    with cancellable(token):
        return fn(*args)


async def run_cancellable(request: Request, admission: Admission, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, inside an admission slot (``Overloaded`` when there is none); when the
    client disconnects first, the token cuts its LLM call off at once (``Cancelled`` is raised) and the slot is
    freed as soon as the thread returns."""
    slot = await admission.acquire()
    try:
        token = CancelToken()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            token.cancel()

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            try:
                result = await anyio.to_thread.run_sync(_with_token, token, fn, *args, limiter=admission.threads)
            except Exception as exc:  # raised below, outside the group (which would wrap it in an ExceptionGroup)
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result
    finally:
        slot.release()


async def answer_stream(
    pipeline: Pipeline, admission: Admission, question: str, top_k: int | None, mode: AnswerMode | None, history: list[Turn]
) -> AsyncGenerator[str | Answer, None]:
    """``pipeline.ask_stream``'s items (text deltas, then the ``Answer``), each step run in a worker thread
    under a cancel token. When the consumer stops (the client went away, or it was closed), the running step
    is waited for, not abandoned (its LLM call is cut off at once by the token) and no other step starts.
    Use it under ``contextlib.aclosing``, inside the stream's admission slot."""
    token = CancelToken()
    items = pipeline.ask_stream(question, top_k, mode, history)

    def step() -> object:
        with cancellable(token):
            return next(items, _END)

    try:
        while True:
            item = await _step(step, token, admission.threads)
            if not isinstance(item, str | Answer):
                raise RuntimeError("the answer stream ended without an answer")
            yield item
            if isinstance(item, Answer):
                return
    finally:
        token.cancel()  # a step that is still to come is not started; an LLM connection still open is cut
        items.close()  # no step is running: each run_sync above returned before we got here


async def _step(step: Callable[[], object], token: CancelToken, limiter: anyio.CapacityLimiter) -> object:
    """``step()`` in a worker thread. When this is cancelled meanwhile (the client went away), ``token`` is
    cancelled at once, so that an LLM call inside the step is cut off, and the step is waited for: never abandoned
    to run on while new ones start."""
    outcome: list[tuple[bool, Any]] = []

    async def run() -> None:
        try:
            outcome.append((True, await anyio.to_thread.run_sync(step, limiter=limiter)))  # shielded: waits for the thread
        except Exception as exc:  # noqa: BLE001 - handed to the caller below, outside the task group
            outcome.append((False, exc))
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if not outcome:  # cancelled from outside while the step runs
                token.cancel()
            raise
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class AdmittedStream(StreamingResponse):
    """A streaming response that holds an admission slot until it has ended: sent in full, the client gone,
    or never started at all."""

    def __init__(self, content: AsyncGenerator[str, None], slot: Slot):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.content, self.slot = content, slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.content.aclose()  # a stream cut short stops here, before its slot is handed on
            self.slot.release()
