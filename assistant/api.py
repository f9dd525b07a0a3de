"""HTTP API and chat page: ``uvicorn assistant.api:create_app --factory``.

Models and the index are loaded once, in the lifespan. Every error leaves as one JSON shape:
``{"error": {"code": str, "message": str, "details": ...}}``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .answering import Answer, Pipeline
from .config import Settings
from .extractive import ExtractiveAnswerer
from .service import Service, open_service

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- request and response models


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="The question, in plain language (English, French or Russian).")
    top_k: int | None = Field(default=None, ge=1, le=20, description="How many passages to retrieve.")
    mode: Literal["auto", "extractive", "llm"] | None = Field(default=None, description="Answerer; auto uses the LLM when configured.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("question must not be empty")
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise ValueError("question must not contain control characters")
        return value


class CitationModel(BaseModel):
    n: int
    doc_id: str
    title: str
    publisher: str | None
    source: str
    text: str
    start: int
    end: int
    quote: str
    quote_start: int
    quote_end: int
    score: float


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    mode: Literal["extractive", "llm"]
    citations: list[CitationModel]
    related: list[CitationModel]
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
    def __init__(self, status: int, code: str, message: str, details: object | None = None):
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: object | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status)


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
    llm: object | None = None
    startup_error: str | None = None


def build_pipeline(settings: Settings, service: Service) -> tuple[Pipeline, object | None]:
    extractive = ExtractiveAnswerer(settings, service.index)
    llm_client = llm = None
    if settings.llm_base_url:
        from .llm import LLMAnswerer, LLMClient

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
            state.pipeline, state.llm = build_pipeline(settings, state.service)
            log.info("ready: %d documents, %d chunks", len(state.service.index.documents), len(state.service.index.chunks))
        except Exception as exc:  # the server stays up and explains itself on every request
            log.exception("start-up failed")
            state.startup_error = f"{exc.__class__.__name__}: {exc}"
        yield
        client = getattr(state.llm, "close", None)
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
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "bad_request", "Content-Length is not a number.")
            if int(length) > settings.max_body_bytes:
                return error_response(413, "too_large", f"Request body is larger than {settings.max_body_bytes} bytes.")
        return await call_next(request)

    def ready() -> State:
        state: State = app.state.assistant
        if state.pipeline is None:
            reason = state.startup_error or "the index is still loading"
            raise ApiError(503, "not_ready", f"The assistant is not ready: {reason}. Run 'assistant index' and restart.")
        return state

    def authorised(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        expected = settings.api_key.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise ApiError(401, "unauthorised", "A valid API key is required: send 'Authorization: Bearer <key>'.")

    def json_body(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "Send the request body as JSON with 'Content-Type: application/json'.")

    def check_question(body: AskRequest) -> None:
        if len(body.question) > settings.max_question_chars:
            raise ApiError(422, "invalid_request", f"question is longer than {settings.max_question_chars} characters.")

    guards = [Depends(authorised), Depends(json_body)]

    @app.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=guards, tags=["answers"])
    def ask(body: AskRequest) -> dict:
        """Answer a question with citations, or abstain when the documents do not hold the answer."""
        check_question(body)
        answer = ready().pipeline.ask(body.question, body.top_k, body.mode)
        return answer.to_dict()

    @app.post(
        "/ask/stream",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: delta*, then done or error"}},
        dependencies=guards,
        tags=["answers"],
    )
    def ask_stream(body: AskRequest) -> StreamingResponse:
        """Stream the answer: ``delta`` events with text, then ``done`` with the full /ask response."""
        check_question(body)
        pipeline = ready().pipeline
        return StreamingResponse(_sse(pipeline, body), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Index, embedder and LLM status."""
        state: State = app.state.assistant
        llm = {"configured": bool(settings.llm_base_url)}
        if state.llm is not None:
            llm.update(state.llm.health())
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
        app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")
    return app


def _sse(pipeline: Pipeline, body: AskRequest) -> Iterator[str]:
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
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": str(e.get("msg", "")).removeprefix("Value error, "),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
        return error_response(422, "invalid_request", message or "Invalid request.", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "Internal server error.")
