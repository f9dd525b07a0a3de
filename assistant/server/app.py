"""The HTTP API and chat page: ``uvicorn assistant.server.app:create_app --factory``
(``assistant serve`` adds the limits of ``uvicorn_options``).

The assistant is loaded once, in the lifespan (``assistant.service``); routes only read it, through
the typed state of ``routes.state``. Answers are admitted to a bounded number of slots with a short
queue (``admission``, else 503) and run in worker threads step by step (``streaming``); when the
client goes away first, its LLM call is cut off and no further step starts, so abandoned requests
do not keep the workers busy. ``/health`` never calls the LLM itself: it reports the client's cached
reachability. The routes live in ``routes`` (``/ask``, ``/health``, ``/documents``),
``openai_api`` (``/v1``) and ``uploads`` (``POST``/``DELETE /documents``).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from assistant.config import Settings
from assistant.live import LiveService
from assistant.search.embedders import Embedder
from assistant.server.admission import Admission
from assistant.server.errors import install_error_handlers
from assistant.server.middleware import Guard, timed_h11_protocol
from assistant.server.openai_api import OpenAIErrors, openai_router
from assistant.server.routes import documents, health, pages
from assistant.server.routes.ask import ask_router
from assistant.server.routes.state import AppState
from assistant.server.schemas import AskResponse, ErrorResponse, ask_request_model
from assistant.server.static import WebFiles, page_paths, web_dir
from assistant.server.uploads import uploads_router
from assistant.service import Service

__all__ = ["AskResponse", "ErrorResponse", "create_app", "uvicorn_options"]


def create_app(settings: Settings | None = None, service: Service | None = None, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI app. Pass an already built ``service``, or an ``embedder`` to build one with
    (tests and benchmarks inject fakes this way); by default everything is built from ``settings``."""
    settings = settings or Settings()
    live = LiveService(settings, service, embedder)
    admission = Admission(settings.max_answers, settings.answer_queue, settings.answer_queue_wait_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    app.state.assistant = AppState(live, settings, admission)
    app.state.live = live
    app.state.admission = admission
    install_error_handlers(app, settings)

    Ask = ask_request_model(settings.max_question_chars)
    app.router.routes.extend(ask_router(Ask).routes)
    app.router.routes.extend(health.router.routes)
    app.router.routes.extend(pages.router.routes)  # before /documents/{doc_id:path}, which would match its paths too
    app.router.routes.extend(documents.router.routes)
    app.include_router(openai_router(Ask))
    # POST /documents (uploads) and DELETE /documents/{doc_id}: added as the app's own routes (include_router keeps
    # a router's routes apart from app.routes), as are the routes above, so that the methods listed below name them.
    app.router.routes.extend(uploads_router(live, settings).routes)

    api_methods: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            api_methods.setdefault(route.path, set()).update(route.methods or ())
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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
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
