"""Wiring, in one place: settings -> embedder -> index -> retriever -> answerers -> pipeline.

The server, the command line, the benchmarks and the tests all build the assistant here.
``open_service`` loads (and, when asked, builds) everything once; ``LiveService`` is what a
long-running server holds: the current ``Service``, swapped for a new one when another build
of the index goes live.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from assistant.answer.extractive import ExtractiveAnswerer
from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answerer
from assistant.config import Settings
from assistant.errors import AssistantError, IndexNotReady
from assistant.search.embedders import Embedder, create_embedder
from assistant.search.index import BuildReport, LoadedIndex, Progress, build_index, current_build, index_status, load_index
from assistant.search.retriever import Retriever

log = logging.getLogger(__name__)


@dataclass
class Service:
    """Everything a question needs, loaded once."""

    settings: Settings
    embedder: Embedder
    index: LoadedIndex
    retriever: Retriever
    pipeline: Pipeline
    llm_client: object | None = None
    build_report: BuildReport | None = None

    def close(self) -> None:
        close = getattr(self.llm_client, "close", None)
        if close:
            close()


def build_answerers(settings: Settings, index: LoadedIndex) -> tuple[Answerer, Answerer | None, object | None]:
    """The extractive answerer, and the LLM answerer with its client when an endpoint is configured."""
    extractive = ExtractiveAnswerer(settings, index)
    if not settings.llm_base_url:
        return extractive, None, None
    from assistant.answer.llm import LLMAnswerer
    from assistant.answer.llm_client import LLMClient

    client = LLMClient(settings)
    return extractive, LLMAnswerer(settings, index, client), client


def assemble(settings: Settings, embedder: Embedder, index: LoadedIndex, report: BuildReport | None = None) -> Service:
    """A Service over an already loaded index."""
    retriever = Retriever(index, embedder, settings)
    extractive, llm, client = build_answerers(settings, index)
    return Service(settings, embedder, index, retriever, Pipeline(settings, retriever, extractive, llm), client, report)


def open_service(
    settings: Settings,
    embedder: Embedder | None = None,
    build: bool = True,
    progress: Progress | None = None,
) -> Service:
    """Load everything once. With ``build``, a missing or stale index is (re)built first."""
    embedder = embedder or create_embedder(settings)
    report = None
    status = index_status(settings, embedder.name, embedder.dim)
    if not status.ready:
        for reason in status.reasons:
            log.info("index needs a rebuild: %s", reason)
        if build:
            report = build_index(settings, embedder, progress)
    return assemble(settings, embedder, load_index(settings.index_dir), report)


def reload_if_rebuilt(service: Service) -> Service | None:
    """A new Service when another build has gone live since ``service`` loaded, else None.

    The caller swaps it in; requests already running keep the old one until they finish.
    """
    build = current_build(service.settings.index_dir)
    if build is None or build.name == service.index.manifest["build"]:
        return None
    index = load_index(service.settings.index_dir)
    if index.manifest["config"]["embedder"] != service.embedder.name:
        log.warning("index %s was built with another embedder; keeping the loaded one", build.name)
        return None
    log.info("loaded the new index build %s", build.name)
    return assemble(service.settings, service.embedder, index)


class LiveService:
    """What a server holds: the current Service (or why there is none), refreshed as builds go live."""

    def __init__(self, settings: Settings, service: Service | None = None, embedder: Embedder | None = None):
        self.settings = settings
        self.service = service
        self.error: str | None = None
        self._embedder = embedder
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open the service (building the index when needed); failures are kept to explain later."""
        try:
            if self.service is None:
                self.service = open_service(self.settings, self._embedder)
            self.service.retriever.embed_query("warm-up", {})  # the first real question is not the slow one
            log.info("ready: %d documents, %d chunks", len(self.service.index.documents), len(self.service.index.chunks))
        except AssistantError as exc:  # the server stays up and explains itself
            log.error("start-up failed: %s", exc)
            self.error = str(exc)
        except Exception:
            log.exception("start-up failed")
            self.error = "start-up failed (see the server log)"

    def refresh(self, every_s: float = 2.0) -> None:
        """Swap in a build that ``assistant index`` made live meanwhile (checked every few seconds)."""
        now = time.monotonic()
        if self.service is None or now - self._checked_at < every_s or not self._lock.acquire(blocking=False):
            return
        try:
            self._checked_at = now
            fresh = reload_if_rebuilt(self.service)
            if fresh is not None:
                self.service = fresh
        except IndexNotReady as exc:
            log.error("not reloading the index: %s", exc)
        finally:
            self._lock.release()

    def ready(self) -> Service:
        """The current Service, or IndexNotReady saying why there is none."""
        self.refresh()
        if self.service is None:
            reason = self.error or "the index is still loading"
            raise IndexNotReady(f"The assistant is not ready: {reason}. Run 'assistant index' and restart.")
        return self.service

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
