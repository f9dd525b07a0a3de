"""The HTTP API and chat page: ``uvicorn assistant.server.app:create_app --factory``.

The assistant is loaded once, in the lifespan (``assistant.service``); routes only read it.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import NotFound
from assistant.search.embedders import Embedder
from assistant.server.errors import ERRORS, ApiError, error_body, install_error_handlers
from assistant.server.middleware import Guard
from assistant.server.schemas import AskFields, AskResponse, DocumentList, DocumentText, ErrorResponse, ask_request_model
from assistant.server.static import WebFiles, web_dir
from assistant.service import LiveService, Service

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, service: Service | None = None, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI app. Pass an already built ``service``, or an ``embedder`` to build one with
    (tests and benchmarks inject fakes this way); by default everything is built from ``settings``."""
    settings = settings or Settings()
    live = LiveService(settings, service, embedder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        _serve_single_queries()
        live.start()
        yield
        live.close()

    app = FastAPI(
        title="Tajikistan development documents assistant",
        version="0.1.0",
        summary="Short answers with clickable citations over development-programme documents about Tajikistan.",
        lifespan=lifespan,
    )
    app.state.live = live
    install_error_handlers(app, settings)

    def json_body(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "Send the request body as JSON with 'Content-Type: application/json'.")

    Ask = ask_request_model(settings.max_question_chars)
    guards = [Depends(json_body)]

    @app.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=guards, tags=["answers"])
    def ask(body: Ask) -> dict:
        """Answer a question with citations, or abstain when the documents do not hold the answer."""
        answer = live.ready().pipeline.ask(body.question, body.top_k, body.mode)
        return answer.to_dict()

    @app.post(
        "/ask/stream",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: delta*, then done or error"}},
        dependencies=guards,
        tags=["answers"],
    )
    def ask_stream(body: Ask) -> StreamingResponse:
        """Stream the answer: ``delta`` events with text, then ``done`` with the full /ask response."""
        pipeline = live.ready().pipeline
        return StreamingResponse(_sse(pipeline, body), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.head("/health", include_in_schema=False)
    @app.get("/health", tags=["service"])
    def health() -> dict:
        """Index, embedder and LLM status."""
        service = live.service
        llm = {"configured": bool(settings.llm_base_url)}
        if service is not None and service.llm_client is not None:
            llm.update(service.llm_client.health())
        building = {**live.building, "message": live.describe_progress()} if live.building is not None else None
        if service is None:
            return {"status": "building" if building else "unavailable", "error": live.error, "building": building, "llm": llm}
        m = service.index.manifest
        return {
            "status": "ok",
            "building": building,
            "index": {
                "documents": len(service.index.documents),
                "chunks": len(service.index.chunks),
                "build": m["build"],
                "built_at": m["built_at"],
                "index_type": m["index_type"],
                "skipped": m.get("skipped", []),
            },
            "embedder": {"name": service.embedder.name, "dim": service.embedder.dim},
            "llm": llm,
        }

    @app.get("/documents", response_model=DocumentList, responses=ERRORS, tags=["documents"])
    def documents() -> dict:
        """The corpus with its metadata."""
        docs = live.ready().index.documents.values()
        return {"documents": [d.info() for d in docs]}

    @app.get(
        "/documents/{doc_id:path}", response_model=DocumentText, responses={**ERRORS, 404: {"model": ErrorResponse}}, tags=["documents"]
    )
    def document(doc_id: str) -> dict:
        """One document's metadata and full text (citation offsets point into ``text``)."""
        doc = live.ready().index.documents.get(doc_id)
        if doc is None:
            raise NotFound(f"No document with id {doc_id!r}.")
        return {**doc.info(), "text": doc.text}

    api_methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            api_methods.setdefault(route.path, set()).update(route.methods)
    app.mount("/", WebFiles(api_methods, directory=str(web_dir()), html=True), name="web")
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
        yield event("error", error_body("internal_error", "The answer could not be completed."))
