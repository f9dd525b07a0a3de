"""``POST /ask`` and ``POST /ask/stream``.

The request body's model carries the configured question length in its schema and its
validation (``schemas.ask_request_model``), so this router is built once per app for that model.
"""

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer
from assistant.errors import Cancelled, StreamFailed
from assistant.server.admission import Admission
from assistant.server.errors import ERRORS, error_body
from assistant.server.routes.state import AppState, app_state, json_body
from assistant.server.schemas import AskFields, AskResponse
from assistant.server.streaming import AdmittedStream, answer_stream, run_cancellable

log = logging.getLogger(__name__)

State = Annotated[AppState, Depends(app_state)]
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: delta*, then done or error"},
}


def ask_router(Ask: type[AskFields]) -> APIRouter:
    """The answer routes for the app's request model ``Ask``."""
    router = APIRouter(tags=["answers"])
    guards = [Depends(json_body)]

    @router.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=guards)
    async def ask(body: Ask, request: Request, state: State) -> dict[str, Any]:  # type: ignore[valid-type]  # the model is built per app
        """Answer a question with citations, or abstain when the documents do not hold the answer."""
        return await answer(body, request, state)

    @router.post("/ask/stream", responses=STREAM_RESPONSES, dependencies=guards)
    async def ask_stream(body: Ask, state: State) -> AdmittedStream:  # type: ignore[valid-type]  # the model is built per app
        """Stream the answer: ``delta`` events with text, then ``done`` with the full /ask response.

        One stream is one answer: when the LLM fails after some of its text was sent, the stream
        ends with an ``error`` event (code ``llm_failed``; ask again with mode "extractive"), not
        with a different answer in ``done``.
        """
        pipeline = state.live.ready().pipeline
        slot = await state.admission.acquire()
        return AdmittedStream(sse(pipeline, state.admission, body), slot)

    return router


async def answer(body: AskFields, request: Request, state: AppState) -> dict[str, Any]:
    """The /ask response to ``body``, its steps run under the app's admission control."""
    pipeline = state.live.ready().pipeline
    found = await run_cancellable(request, state.admission, pipeline.ask, body.question, body.top_k, body.mode, body.turns())
    return found.to_dict()


async def sse(pipeline: Pipeline, admission: Admission, body: AskFields) -> AsyncGenerator[str, None]:
    """The event stream of one answer (``answer_stream``); one stream is one answer: a failure after
    text was sent ends with an ``error`` event."""

    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        async with aclosing(answer_stream(pipeline, admission, body.question, body.top_k, body.mode, body.turns())) as items:
            async for item in items:
                if isinstance(item, Answer):
                    yield event("done", AskResponse.model_validate(item.to_dict()).model_dump())
                    return
                yield event("delta", {"text": item})
    except StreamFailed as exc:
        yield event("error", error_body(exc.code, f"{exc.message} Ask again in extractive mode.", {"retry_mode": "extractive"}))
    except Cancelled:
        return
    except Exception:
        log.exception("streaming answer failed")
        yield event("error", error_body("internal_error", "The answer could not be completed."))
