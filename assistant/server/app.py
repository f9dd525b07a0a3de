"""HTTP API and chat page: ``uvicorn assistant.server.app:create_app --factory``.

Models and the index are loaded once, in the lifespan. Every error leaves as one JSON shape:
``{"error": {"code": str, "message": str, "details": ...}}``.
"""

import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.answer.extractive import ExtractiveAnswerer
from assistant.answer.pipeline import Answer, Citation, Pipeline
from assistant.config import Settings
from assistant.search.index import IndexNotReady
from assistant.service import Service, open_service, reload_if_rebuilt

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- request and response models


# Some text, and no control characters other than tab, newline and carriage return.
_OK = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
QUESTION_PATTERN = rf"^{_OK}*[^\s\x00-\x1F\x7F-\x9F]{_OK}*$"


class AskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, pattern=r"\S", description="The question, in plain language (English, French or Russian).")
    top_k: int | None = Field(default=None, ge=1, le=20, description="How many passages to retrieve.")
    mode: Literal["auto", "extractive", "llm"] | None = Field(default=None, description="Answerer; auto uses the LLM when configured.")

    @field_validator("top_k", mode="before")
    @classmethod
    def _json_integer(cls, value: object) -> object:
        # A JSON integer (5 or 5.0), not a string or a boolean.
        if isinstance(value, bool) or isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("top_k must be a whole number from 1 to 20")
        return value


def ask_request_model(max_chars: int) -> type[AskFields]:
    """The /ask body, with the configured question length in its schema."""

    class AskRequest(AskFields):
        question: str = Field(
            min_length=1,
            max_length=max_chars,
            pattern=QUESTION_PATTERN,
            description="The question, in plain language (English, French or Russian); not blank, no control characters.",
        )

    return AskRequest


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    mode: Literal["extractive", "llm"]
    citations: list[Citation]
    related: list[Citation]
    timings_ms: dict[str, float]
    warnings: list[str]
    check: dict | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DocumentInfo(BaseModel):
    doc_id: str
    title: str
    publisher: str | None
    date: str | None
    period: str | None
    language: list[str]
    description: str | None
    source: str
    chars: int


class DocumentList(BaseModel):
    documents: list[DocumentInfo]


class DocumentText(DocumentInfo):
    text: str


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: object | None = None, headers: dict | None = None):
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details, headers


def error_response(status: int, code: str, message: str, details: object | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


UNAUTHORISED = ApiError(
    401, "unauthorised", "A valid API key is required: send 'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": "Bearer"}
)
QUESTION_PATHS = ("/ask", "/ask/stream")


ERRORS = {
    400: {"model": ErrorResponse, "description": "Malformed request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    415: {"model": ErrorResponse, "description": "Body is not JSON"},
    422: {"model": ErrorResponse, "description": "Invalid field values"},
    503: {"model": ErrorResponse, "description": "Index not ready"},
}


# ---------------------------------------------------------------- app state


@dataclass
class State:
    settings: Settings
    service: Service | None = None
    pipeline: Pipeline | None = None
    llm_client: object | None = None
    startup_error: str | None = None
    checked_at: float = 0.0
    reload_lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, every_s: float = 2.0) -> None:
        """Swap in a build that ``assistant index`` made live meanwhile (checked every few seconds)."""
        now = time.monotonic()
        if self.service is None or now - self.checked_at < every_s or not self.reload_lock.acquire(blocking=False):
            return
        try:
            self.checked_at = now
            fresh = reload_if_rebuilt(self.service)
            if fresh is not None:
                pipeline, client = build_pipeline(self.settings, fresh)
                self.service, self.pipeline, self.llm_client = fresh, pipeline, client
        except IndexNotReady as exc:
            log.error("not reloading the index: %s", exc)
        finally:
            self.reload_lock.release()


def build_pipeline(settings: Settings, service: Service) -> tuple[Pipeline, object | None]:
    extractive = ExtractiveAnswerer(settings, service.index)
    llm_client = llm = None
    if settings.llm_base_url:
        from assistant.answer.llm import LLMAnswerer, LLMClient

        llm_client = LLMClient(settings)
        llm = LLMAnswerer(settings, service.index, llm_client)
    return Pipeline(settings, service.retriever, extractive, llm), llm_client


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The FastAPI app. Pass ``service`` to reuse an already loaded index (tests, benchmarks)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state: State = app.state.assistant
        try:
            state.service = service or open_service(settings)
            state.pipeline, state.llm_client = build_pipeline(settings, state.service)
            _serve_single_queries()
            state.service.retriever.embed_query("warm-up", {})  # the first real question is not the slow one
            log.info("ready: %d documents, %d chunks", len(state.service.index.documents), len(state.service.index.chunks))
        except (IndexNotReady, FileNotFoundError, ValueError) as exc:  # the server stays up and explains itself
            log.error("start-up failed: %s", exc)
            state.startup_error = str(exc)
        except Exception:
            log.exception("start-up failed")
            state.startup_error = "start-up failed (see the server log)"
        yield
        client = getattr(state.llm_client, "close", None)
        if client:
            client()

    app = FastAPI(
        title="Tajikistan development documents assistant",
        version="0.1.0",
        summary="Short answers with clickable citations over development-programme documents about Tajikistan.",
        lifespan=lifespan,
    )
    app.state.assistant = State(settings)
    _install_error_handlers(app)

    def ready() -> State:
        state: State = app.state.assistant
        state.refresh()
        if state.pipeline is None:
            reason = state.startup_error or "the index is still loading"
            raise ApiError(503, "not_ready", f"The assistant is not ready: {reason}. Run 'assistant index' and restart.")
        return state

    def json_body(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "Send the request body as JSON with 'Content-Type: application/json'.")

    Ask = ask_request_model(settings.max_question_chars)
    guards = [Depends(json_body)]

    @app.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=guards, tags=["answers"])
    def ask(body: Ask) -> dict:
        """Answer a question with citations, or abstain when the documents do not hold the answer."""
        answer = ready().pipeline.ask(body.question, body.top_k, body.mode)
        return answer.to_dict()

    @app.post(
        "/ask/stream",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: delta*, then done or error"}},
        dependencies=guards,
        tags=["answers"],
    )
    def ask_stream(body: Ask) -> StreamingResponse:
        """Stream the answer: ``delta`` events with text, then ``done`` with the full /ask response."""
        pipeline = ready().pipeline
        return StreamingResponse(_sse(pipeline, body), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.head("/health", include_in_schema=False)
    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Index, embedder and LLM status."""
        state: State = app.state.assistant
        llm = {"configured": bool(settings.llm_base_url)}
        if state.llm_client is not None:
            llm.update(state.llm_client.health())
        if state.service is None:
            return {"status": "unavailable", "error": state.startup_error, "llm": llm}
        m = state.service.index.manifest
        return {
            "status": "ok",
            "index": {
                "documents": len(state.service.index.documents),
                "chunks": len(state.service.index.chunks),
                "build": m["build"],
                "built_at": m["built_at"],
                "index_type": m["index_type"],
                "skipped": m.get("skipped", []),
            },
            "embedder": {"name": state.service.embedder.name, "dim": state.service.embedder.dim},
            "llm": llm,
        }

    @app.get("/documents", response_model=DocumentList, responses=ERRORS, tags=["documents"])
    def documents() -> dict:
        """The corpus with its metadata."""
        docs = ready().service.index.documents.values()
        return {"documents": [d.info() for d in docs]}

    @app.get(
        "/documents/{doc_id:path}", response_model=DocumentText, responses={**ERRORS, 404: {"model": ErrorResponse}}, tags=["documents"]
    )
    def document(doc_id: str) -> dict:
        """One document's metadata and full text (citation offsets point into ``text``)."""
        doc = ready().service.index.documents.get(doc_id)
        if doc is None:
            raise ApiError(404, "not_found", f"No document with id {doc_id!r}.")
        return {**doc.info(), "text": doc.text}

    if settings.web_dir.is_dir():
        api_methods: dict[str, set[str]] = {}
        for route in app.routes:
            if isinstance(route, APIRoute):
                api_methods.setdefault(route.path, set()).update(route.methods)
        app.mount("/", WebFiles(api_methods, directory=settings.web_dir, html=True), name="web")
    # Added last, so CORS is outermost and error answers carry its headers too.
    app.add_middleware(Guard, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


class Guard:
    """Request size limit (declared or streamed bodies) and the API key, checked before the body is parsed."""

    def __init__(self, app, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.max_body_bytes
        too_large = error_response(413, "too_large", f"The request body is larger than {limit} bytes.")
        if self.settings.api_key is not None and scope["method"] == "POST" and scope["path"] in QUESTION_PATHS:
            if not _key_ok(headers.get("authorization", ""), self.settings):
                e = UNAUTHORISED
                return await error_response(e.status, e.code, e.message, headers=e.headers)(scope, receive, send)
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return await error_response(400, "bad_request", "Content-Length is not a number.")(scope, receive, send)
            if int(length) > limit:
                return await too_large(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # A body of unknown length is read here, up to the limit, then handed on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class WebFiles(StaticFiles):
    """The chat page's files (GET and HEAD). An API path reached here was asked with the wrong
    method (405 naming the right ones); any other method elsewhere is not found (404)."""

    def __init__(self, api_methods: dict[str, set[str]], **kwargs):
        super().__init__(**kwargs)
        self.api_methods = api_methods

    async def __call__(self, scope, receive, send) -> None:
        allowed = self.api_methods.get(scope.get("path", "")) if scope["type"] == "http" else None
        if allowed or (scope["type"] == "http" and scope["method"] not in ("GET", "HEAD")):
            if allowed:
                message = f"{scope['method']} is not allowed on {scope['path']}; use {', '.join(sorted(allowed))}."
                response = error_response(405, "method_not_allowed", message, headers={"Allow": ", ".join(sorted(allowed))})
            else:
                response = error_response(404, "not_found", f"No {scope['method']} route at {scope['path']}.")
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _key_ok(authorization: str, settings: Settings) -> bool:
    scheme, _, token = authorization.partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected)


def _serve_single_queries() -> None:
    """One question is one vector: FAISS threads only add overhead when serving."""
    import faiss

    faiss.omp_set_num_threads(1)


def _sse(pipeline: Pipeline, body: AskFields) -> Iterator[str]:
    def event(name: str, data: dict) -> str:
        return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    try:
        for item in pipeline.ask_stream(body.question, body.top_k, body.mode):
            if isinstance(item, Answer):
                yield event("done", AskResponse.model_validate(item.to_dict()).model_dump())
            else:
                yield event("delta", {"text": item})
    except Exception:
        log.exception("streaming answer failed")
        yield event("error", {"error": {"code": "internal_error", "message": "The answer could not be completed."}})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        max_chars = app.state.assistant.settings.max_question_chars
        friendly = {
            "string_too_short": "must not be empty",
            "string_pattern_mismatch": "must hold some text and no control characters",
            "string_too_long": f"is longer than {max_chars} characters",
            "string_unicode": "must be valid Unicode text",
        }
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": friendly.get(e.get("type"), str(e.get("msg", "")).removeprefix("Value error, ").removeprefix("question ")),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
        return error_response(422, "invalid_request", message or "Invalid request.", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        messages = {
            400: "The request body is not valid JSON.",
            413: f"The request body is too large (limit {app.state.assistant.settings.max_body_bytes} bytes).",
        }
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "Internal server error.")
