"""An OpenAI-compatible face of the assistant: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Chat tools that speak OpenAI's API (the ``openai`` SDK, Open WebUI, ...) can ask the documents:
the last ``user`` message is the question, the earlier user and assistant messages are the
conversation (a follow-up is searched as a standalone question, as with ``/ask``'s ``history``),
and ``system`` messages are ignored. The model id names the answer mode. The answer is the same
as ``/ask``'s, with its citations in the extra ``citations`` field (on the message and on the
completion; in a stream, on the final chunk).

Errors under ``/v1/`` have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
whichever layer made them (the API key and size checks of ``Guard``, routing, validation):
``OpenAIErrors`` reshapes them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.answer.followup import MAX_TURNS, Turn, rewrite
from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import Cancelled, StreamFailed
from assistant.server.admission import Admission
from assistant.server.errors import error_body
from assistant.server.routes.state import AppState, app_state, json_body
from assistant.server.schemas import (
    AskFields,
    AskResponse,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ModelCard,
    ModelList,
    OpenAIErrorResponse,
)
from assistant.server.streaming import AdmittedStream, answer_stream, run_cancellable

log = logging.getLogger(__name__)

State = Annotated[AppState, Depends(app_state)]

PREFIX = "/v1"
# Model id -> answer mode (None: the server's configured default, "auto" unless changed).
MODES: dict[str, str | None] = {"assistant": None, "assistant-extractive": "extractive", "assistant-llm": "llm"}
OWNER = "tajikistan-documents-assistant"

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorResponse, "description": text}
    for status, text in {
        400: "Malformed request (OpenAI's error shape)",
        401: "Missing or wrong API key",
        404: "Unknown model",
        413: "Request body too large",
        415: "Body is not JSON",
        503: "Index not ready, or busy (code overloaded, with Retry-After)",
    }.items()
}

_MARKERS = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
# A "Sources" appendix (as the chat page copies an answer, or a chat tool lists citations): from its heading to the end.
_SOURCES = re.compile(
    r"(?:\A|\n)[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?(?:sources|references|closest passages|источники)"
    r"(?:\*\*|__)?[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*(?:\n.*)?\Z",
    re.IGNORECASE | re.DOTALL,
)


def openai_error(
    status: int, message: str, code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _model_not_found(model: str, models: list[str]) -> JSONResponse:
    return openai_error(404, f"The model {model!r} does not exist; use one of {', '.join(models)}.", "model_not_found", "model")


def text_of(content: object) -> str:
    """A message's text: the string, or its ``text`` parts joined (images and other parts are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.text for p in content if getattr(p, "type", None) in ("text", "input_text") and p.text)
    return ""


def plain_answer(text: str) -> str:
    """An earlier assistant reply without its "[n]" markers and any "Sources" appendix.

    >>> plain_answer("Switzerland funds it [1], with the World Bank [2].\\n\\nSources:\\n[1] SDC page")
    'Switzerland funds it, with the World Bank.'
    """
    return _MARKERS.sub("", _SOURCES.sub("", text)).strip()


def conversation(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]] | None:
    """The question (the last user message) and the earlier turns as /ask ``history`` items; None without a user message.

    Each earlier user message is paired with the assistant reply after it. An assistant message
    may carry this server's extra ``citations`` (their documents become the retrieval prior) and
    ``search_question``; a turn without one gets the rule-based standalone question, as the
    server would have searched it.
    """
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last is None:
        return None
    turns: list[Turn] = []
    answered = False
    for m in messages[:last]:
        if m.role == "user":
            text = text_of(m.content).strip()
            if text:
                turns.append(Turn(text[:4000]))
                answered = False
        elif m.role == "assistant" and turns and not answered:
            answered = True
            turn = turns[-1]
            turn.answer = plain_answer(text_of(m.content))[:8000]
            extra = m.model_extra or {}
            cited = extra.get("citations")
            if isinstance(cited, list):
                ids = [c.get("doc_id") for c in cited if isinstance(c, dict)]
                turn.doc_ids = list(dict.fromkeys(d for d in ids if isinstance(d, str) and 0 < len(d) <= 500))[:20]
            searched = extra.get("search_question")
            if isinstance(searched, str) and searched.strip():
                turn.search_question = searched.strip()[:8000]
    turns = turns[-2 * MAX_TURNS :]
    for i, turn in enumerate(turns):
        if turn.search_question is None:
            turn.search_question = rewrite(turn.question, turns[:i]).question[:8000]
    history = [
        {"question": t.question, "answer": t.answer, "doc_ids": t.doc_ids, "search_question": t.search_question} for t in turns[-MAX_TURNS:]
    ]
    return text_of(messages[last].content), history


def approx_tokens(text: str) -> int:
    # Not a tokenizer: "tokens" in usage are word counts, an approximation for clients that show or log usage.
    return len(text.split())


def openai_router(Ask: type[AskFields]) -> APIRouter:
    """The /v1 routes for the app's request model ``Ask`` (included by ``create_app``; ``OpenAIErrors``
    gives their errors OpenAI's shape)."""
    router = APIRouter(prefix=PREFIX, tags=["OpenAI-compatible"], responses=ERRORS)
    started = int(time.time())

    @router.get("/models", response_model=ModelList)
    async def list_models(state: State) -> dict[str, Any]:
        """The model ids, one per answer mode: ``assistant`` (the server's default, auto: the LLM
        when one is configured), ``assistant-extractive`` and, with an LLM, ``assistant-llm``."""
        return {"object": "list", "data": [_card(m, started) for m in _models(state.settings)]}

    @router.get("/models/{model_id:path}", response_model=ModelCard)
    async def get_model(model_id: str, state: State) -> dict[str, Any] | JSONResponse:
        """One model id (404 ``model_not_found`` for another)."""
        known = _models(state.settings)
        return _card(model_id, started) if model_id in known else _model_not_found(model_id, known)

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or with stream: true OpenAI's chunks"}},
        dependencies=[Depends(json_body)],
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request, state: State) -> dict[str, Any] | Response:
        """OpenAI's chat completion over the documents: the answer with "[n]" markers in
        ``content`` and its sources in the extra ``citations`` field."""
        return await _chat_completion(Ask, body, request, state)

    return router


def _models(settings: Settings) -> list[str]:
    return [m for m, mode in MODES.items() if mode != "llm" or settings.llm_base_url]


def _card(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": OWNER}


def _asked(Ask: type[AskFields], body: ChatCompletionRequest, settings: Settings) -> AskFields | JSONResponse:
    """The /ask request the conversation makes (the last user message is the question), or the 400 or 404 to answer."""
    known = _models(settings)
    if body.model not in known:
        return _model_not_found(body.model, known)
    found = conversation(body.messages)
    if found is None:
        return openai_error(400, "The messages hold no user message: the last one is the question.", None, "messages")
    question, history = found
    try:
        return Ask.model_validate({"question": question, "mode": MODES[body.model], "history": history})
    except ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        if any(e.get("loc", ())[:1] == ("question",) for e in exc.errors()):
            message = (
                "The question (the last user message) must hold some text, no control characters"
                f" and at most {settings.max_question_chars} characters."
            )
        else:
            message = f"The conversation could not be read: {problems}."
        return openai_error(400, message, None, "messages")


async def _chat_completion(
    Ask: type[AskFields], body: ChatCompletionRequest, request: Request, state: AppState
) -> dict[str, Any] | Response:
    ask = _asked(Ask, body, state.settings)
    if isinstance(ask, JSONResponse):
        return ask
    admission = state.admission
    pipeline = state.live.ready().pipeline
    prompt_tokens = sum(approx_tokens(text_of(m.content)) for m in body.messages)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.stream:
        slot = await admission.acquire()
        return AdmittedStream(_chunks(pipeline, admission, ask, body.model, prompt_tokens, include_usage), slot)
    answer = await run_cancellable(request, admission, pipeline.ask, ask.question, ask.top_k, ask.mode, ask.turns())
    out = AskResponse.model_validate(answer.to_dict()).model_dump()
    completion = approx_tokens(out["answer"])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out["answer"], "citations": out["citations"]},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
        **_extras(out),
    }


def _extras(out: dict[str, Any]) -> dict[str, Any]:
    """This server's fields beside OpenAI's (clients read them as extras)."""
    keys = ("citations", "search_question", "rewrite", "abstained", "warnings")
    return {k: out[k] for k in keys}


async def _chunks(
    pipeline: Pipeline, admission: Admission, ask: AskFields, model: str, prompt_tokens: int, include_usage: bool
) -> AsyncGenerator[str, None]:
    """OpenAI's chunk stream of one answer: the role, content deltas, a final chunk with
    ``finish_reason: "stop"`` and the citations, the usage when asked for, then ``[DONE]``.

    As ``/ask/stream``: each step of the pipeline runs in a worker thread under a cancel token
    (a client that goes away cuts the LLM call off), and one stream is one answer: when the LLM
    fails after some text was sent, the stream ends with an error chunk in OpenAI's shape.
    """
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def data(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None, choices: bool = True, **extra: object) -> str:
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        payload["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []
        if include_usage:
            payload["usage"] = None
        return data({**payload, **extra})

    def error(code: str, message: str) -> str:
        return data({"error": {"message": message, "type": "server_error", "param": None, "code": code}})

    sent = ""
    try:
        yield chunk({"role": "assistant"})
        async with aclosing(answer_stream(pipeline, admission, ask.question, ask.top_k, ask.mode, ask.turns())) as items:
            async for item in items:
                if isinstance(item, Answer):
                    out = AskResponse.model_validate(item.to_dict()).model_dump()
                    rest = out["answer"][len(sent) :] if out["answer"].startswith(sent) else ""
                    if rest:  # the deltas always add up to the answer
                        yield chunk({"content": rest})
                    yield chunk({}, "stop", **_extras(out))
                    if include_usage:
                        done = approx_tokens(out["answer"])
                        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": done, "total_tokens": prompt_tokens + done}
                        yield chunk({}, choices=False, usage=usage)
                    break
                sent += item
                yield chunk({"content": item})
    except StreamFailed as exc:
        yield error(exc.code, f"{exc.message} Ask again with the model assistant-extractive.")
    except Cancelled:
        return
    except Exception:
        log.exception("streaming chat completion failed")
        yield error("internal_error", "The answer could not be completed.")
    yield "data: [DONE]\n\n"


class OpenAIErrors:
    """ASGI middleware: an error answer under /v1/ in OpenAI's shape, ``{"error": {"message",
    "type", "param", "code"}}``, whichever layer made it (the API key check, the size limit,
    routing, request validation: 422 becomes 400, as OpenAI has it). Other paths, and answers
    below 400, pass through untouched (streams included)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                original = b"".join(chunks)
                status, body = reshape(start["status"], original)
                allow = allowed_methods(path)
                if status == 404 and allow and scope["method"] not in allow:
                    # A /v1 route asked with another method (the page's files answer 404 for routes they do not know).
                    text = f"{scope['method']} is not allowed on {path}; use {allow}."
                    status, body = 405, reshape(405, json.dumps(error_body("method_not_allowed", text)).encode())[1]
                if body is original:
                    await send(start)
                else:
                    drop = (b"content-length", b"allow") if status == 405 else (b"content-length",)
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in drop]
                    headers.append((b"content-length", str(len(body)).encode()))
                    if status == 405 and allow is not None:
                        headers.append((b"allow", allow.encode()))
                    await send({**start, "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, reshaping_send)


def allowed_methods(path: str) -> str | None:
    """The methods of the /v1 route at ``path`` (None: no such route)."""
    if path == PREFIX + "/chat/completions":
        return "POST"
    if path == PREFIX + "/models" or path.startswith(PREFIX + "/models/"):
        return "GET"
    return None


def reshape(status: int, body: bytes) -> tuple[int, bytes]:
    """The server's error body ``{"error": {"code", "message", "details"}}`` in OpenAI's shape."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return status, body
    if not isinstance(error, dict) or "type" in error:
        return status, body  # not ours, or already OpenAI's
    code, details = error.get("code"), error.get("details")
    param = None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        param = details[0].get("field") or None
    if status == 422:
        status = 400
    if code == "unauthorised":
        code = "invalid_api_key"
    kind = "server_error" if status >= 500 else "invalid_request_error"
    shaped = {"error": {"message": str(error.get("message", "")), "type": kind, "param": param, "code": code}}
    return status, json.dumps(shaped, ensure_ascii=False).encode()
