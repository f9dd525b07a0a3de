"""The HTTP API and chat page: ``uvicorn assistant.server.app:create_app --factory``
(``assistant serve`` adds the limits of ``uvicorn_options``).

The assistant is loaded once, in the lifespan (``assistant.service``); routes only read it.
Answers are admitted to a bounded number of slots with a short queue (``admission``, else 503) and
run in worker threads step by step (``streaming``); when the client goes away first, its LLM call
is cut off and no further step starts, so abandoned requests do not keep the workers busy. ``/health`` never calls
the LLM itself: it reports the client's cached reachability.
"""

import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from assistant.answer.llm.client import HEALTH_TIMEOUT_S
from assistant.answer.pipeline import Pipeline, StreamFailed
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import Cancelled, NotFound
from assistant.live import LiveService
from assistant.search.embedders import Embedder
from assistant.server.admission import Admission
from assistant.server.errors import ERRORS, ApiError, error_body, install_error_handlers
from assistant.server.middleware import Guard, key_ok, timed_h11_protocol
from assistant.server.schemas import AskFields, AskResponse, DocumentList, DocumentText, ErrorResponse, ask_request_model
from assistant.server.static import WebFiles, page_paths, web_dir
from assistant.server.streaming import AdmittedStream, answer_stream, run_cancellable
from assistant.service import Service

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, service: Service | None = None, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI app. Pass an already built ``service``, or an ``embedder`` to build one with
    (tests and benchmarks inject fakes this way); by default everything is built from ``settings``."""
    settings = settings or Settings()
    live = LiveService(settings, service, embedder)
    admission = Admission(settings.max_answers, settings.answer_queue, settings.answer_queue_wait_s)

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
    app.state.admission = admission
    install_error_handlers(app, settings)

    async def json_body(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "Send the request body as JSON with 'Content-Type: application/json'.")

    Ask = ask_request_model(settings.max_question_chars)
    guards = [Depends(json_body)]

    @app.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=guards, tags=["answers"])
    async def ask(body: Ask, request: Request) -> dict:
        """Answer a question with citations, or abstain when the documents do not hold the answer."""
        pipeline = live.ready().pipeline
        answer = await run_cancellable(request, admission, pipeline.ask, body.question, body.top_k, body.mode, body.turns())
        return answer.to_dict()

    @app.post(
        "/ask/stream",
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: delta*, then done or error"}},
        dependencies=guards,
        tags=["answers"],
    )
    async def ask_stream(body: Ask) -> AdmittedStream:
        """Stream the answer: ``delta`` events with text, then ``done`` with the full /ask response.

        One stream is one answer: when the LLM fails after some of its text was sent, the stream
        ends with an ``error`` event (code ``llm_failed``; ask again with mode "extractive"), not
        with a different answer in ``done``.
        """
        pipeline = live.ready().pipeline
        slot = await admission.acquire()
        return AdmittedStream(_sse(pipeline, admission, body), slot)

    @app.head("/health", include_in_schema=False)
    @app.get("/health", tags=["service"])
    async def health(request: Request) -> dict:
        """Index, embedder and LLM status. With an API key configured, a request without the key
        gets only ``{"status"}`` (a liveness probe)."""
        service = live.service
        building = {**live.building, "message": live.describe_progress()} if live.building is not None else None
        status = "ok" if service is not None else "building" if building else "unavailable"
        if settings.api_key is not None and not key_ok(request.headers.get("authorization", ""), settings):
            return {"status": status}
        llm = {"configured": bool(settings.llm_base_url)}
        if service is not None and service.llm_client is not None:
            llm.update(await _llm_health(service.llm_client))
        if service is None:
            return {"status": status, "error": live.error, "building": building, "llm": llm}
        m = service.index.manifest
        return {
            "status": "ok",
            "building": building,
            "index": {
                "documents": len(service.index.documents),
                "chunks": service.index.chunk_count,
                "build": m["build"],
                "built_at": m["built_at"],
                "index_type": m["index_type"],
                "skipped": m.get("skipped", []),
            },
            "embedder": {"name": service.embedder.name, "dim": service.embedder.dim},
            "store": settings.store,
            "answers": admission.status(),  # in flight and queued, of the limits (ASSISTANT_MAX_ANSWERS, ASSISTANT_ANSWER_QUEUE)
            "process": os.getpid(),  # which worker answered (assistant serve --workers N)
            "llm": llm,
        }

    # Plain lookups: async, so they never wait for a worker thread behind long answers.
    @app.get("/documents", response_model=DocumentList, responses=ERRORS, tags=["documents"])
    async def documents() -> dict:
        """The corpus with its metadata and warnings, and the files that could not be indexed (with why)."""
        index = live.ready().index
        return {"documents": [d.info() for d in index.documents.values()], "skipped": index.manifest.get("skipped", [])}

    @app.get(
        "/documents/{doc_id:path}", response_model=DocumentText, responses={**ERRORS, 404: {"model": ErrorResponse}}, tags=["documents"]
    )
    async def document(doc_id: str) -> dict:
        """One document's metadata and full text (citation offsets point into ``text``)."""
        doc = live.ready().index.documents.get(doc_id)
        if doc is None:
            raise NotFound(f"No document with id {doc_id!r}.")
        return {**doc.info(), "text": doc.text}

    # The OpenAI-compatible routes (/v1/chat/completions, /v1/models); imported here: they use this module's helpers.
    from assistant.server.openai_api import OpenAIErrors, openai_router

    app.include_router(openai_router(live, settings, admission))
    # POST /documents (uploads) and DELETE /documents/{doc_id}: added as the app's own routes (include_router keeps
    # a router's routes apart from app.routes), so that the methods listed below name them too.
    from assistant.server.uploads import uploads_router

    app.router.routes.extend(uploads_router(live, settings).routes)

    api_methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            api_methods.setdefault(route.path, set()).update(route.methods)
    app.mount("/", WebFiles(api_methods, directory=str(web_dir()), html=True), name="web")
    # With an API key, everything but the chat page's own files and /health needs it.
    page = page_paths()
    # Added last, so CORS is outermost and error answers carry its headers too.
    app.add_middleware(Guard, settings=settings, open_paths=frozenset(page | {"/health"}))
    app.add_middleware(OpenAIErrors)  # outside Guard: its 401 and 413 under /v1/ get OpenAI's error shape too
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _serve_single_queries() -> None:
    """One question is one vector: FAISS threads only add overhead when serving."""
    import faiss

    faiss.omp_set_num_threads(1)


def uvicorn_options(settings: Settings) -> dict:
    """How ``assistant serve`` runs uvicorn: limits for slow, idle and too many clients.

    Headers must arrive within ``http_header_timeout_s`` and the body within
    ``http_body_timeout_s`` (else the connection is closed), idle kept-alive connections close
    after ``http_keep_alive_s``, headers are capped at ``http_max_header_bytes`` and at most
    ``http_max_connections`` connections are served at once (then 503). In public, put a proxy
    in front as well (README, "Public deployment").
    """
    return {
        "host": settings.host,
        "port": settings.port,
        "http": timed_h11_protocol(settings.http_header_timeout_s, settings.http_body_timeout_s),
        "timeout_keep_alive": settings.http_keep_alive_s,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "limit_concurrency": settings.http_max_connections,
        "timeout_graceful_shutdown": 10,
    }


async def _llm_health(client) -> dict:
    """The LLM client's cached reachability; waits (without blocking the loop) only for the very first probe."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S + 1.0
    info = client.health(wait=False)
    while info is None and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        info = client.health(wait=False)
    return info if info is not None else {"reachable": None, "error": "the first reachability check has not finished"}


async def _sse(pipeline: Pipeline, admission: Admission, body: AskFields) -> AsyncIterator[str]:
    """The event stream of one answer (``answer_stream``); one stream is one answer: a failure after
    text was sent ends with an ``error`` event."""

    def event(name: str, data: dict) -> str:
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
