"""Wiring, in one place: settings -> embedder -> index -> retriever -> answerers -> pipeline.

The server, the command line, the benchmarks and the tests all build the assistant here.
``open_service`` loads (and, when asked, builds) everything once; ``live.LiveService`` is what a
long-running server holds on top of it.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from assistant.answer.decision import Calibration, CalibrationMismatch
from assistant.answer.extractive import ExtractiveAnswerer
from assistant.answer.pipeline import Condenser, Pipeline
from assistant.answer.types import Answerer
from assistant.config import Settings
from assistant.errors import ConfigError
from assistant.search.backend import create_backend
from assistant.search.build import BuildReport, Progress
from assistant.search.embedders import Embedder, create_embedder
from assistant.search.retriever import Retriever
from assistant.search.store import Store

if TYPE_CHECKING:
    from assistant.answer.llm.client import LLMClient, LLMHealth
    from assistant.e5.reader import Reader

log = logging.getLogger(__name__)


class LLMEndpoint(Protocol):
    """What the service and the server use of the LLM client (``LLMClient``): its reachability and its close."""

    def health(self, wait: bool = True) -> LLMHealth | None: ...

    def close(self) -> None: ...


@dataclass
class Service:
    """Everything a question needs, loaded once."""

    settings: Settings
    embedder: Embedder
    index: Store
    retriever: Retriever
    pipeline: Pipeline
    llm_client: LLMEndpoint | None = None
    build_report: BuildReport | None = None

    def warm_up(self) -> None:
        """One search and one answer, so the first real question is not the slow one (keyword index, caches)."""
        self.pipeline.ask("warm-up", mode="extractive")

    def close(self) -> None:
        if self.llm_client is not None:
            self.llm_client.close()


@cache
def _load_reader(weights_dir: Path | None, threads: int | None, engine: str, cache_dir: Path | None) -> Reader:
    from assistant.e5.reader import Reader, packaged_weights_dir

    path = weights_dir or packaged_weights_dir()
    return Reader(path, threads=threads, engine=engine, cache_dir=cache_dir)


def load_reader(settings: Settings) -> Reader | None:
    """The trained reader (loaded once per process), or None when it is off or its weights are missing."""
    if not settings.reader or settings.embedder != "e5":
        return None
    try:
        return _load_reader(settings.reader_dir, settings.embed_threads or 2, settings.reader_engine, settings.model_cache_dir)
    except (FileNotFoundError, ValueError) as exc:
        log.warning("answering without the reader: %s", exc)
        return None


def build_answerers(settings: Settings, index: Store) -> tuple[Answerer, Answerer | None, LLMClient | None]:
    """The extractive answerer, and the LLM answerer with its client when an endpoint is configured."""
    reader = load_reader(settings)
    calibration = Calibration.load(settings.calibration_file) if reader is not None else None
    if reader is not None and calibration is None:
        log.warning("the reader has no calibration (run 'assistant calibrate'); answering with the hand-tuned rules")
    if calibration is not None and reader is not None:  # a calibration is only loaded with the reader
        try:
            calibration.check(reader.info.weights_sha256)
        except CalibrationMismatch as exc:
            raise ConfigError(str(exc)) from exc
    extractive = ExtractiveAnswerer(settings, index, reader=reader, calibration=calibration)
    if not settings.llm_base_url:
        return extractive, None, None
    from assistant.answer.llm.answerer import LLMAnswerer
    from assistant.answer.llm.client import LLMClient

    client = LLMClient(settings)
    return extractive, LLMAnswerer(settings, index, client), client


def assemble(settings: Settings, embedder: Embedder, index: Store, report: BuildReport | None = None) -> Service:
    """A Service over an already loaded index."""
    retriever = Retriever(index, embedder, settings)
    extractive, llm, client = build_answerers(settings, index)
    condense = None
    if client is not None:
        from assistant.answer.llm.prompt import Prompt

        condense = Condenser(client, Prompt.load(name="condense.md"))
    pipeline = Pipeline(settings, retriever, extractive, llm, condense)
    _return_freed_memory()
    return Service(settings, embedder, index, retriever, pipeline, client, report)


def _return_freed_memory() -> None:
    """Hand back to the system the heap freed after loading (float32 copies of the weights made on
    the way in): glibc keeps it otherwise, ~75 MB of the server's resident memory."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def open_service(
    settings: Settings,
    embedder: Embedder | None = None,
    build: bool = True,
    progress: Progress | None = None,
) -> Service:
    """Load everything once. With ``build``, a missing or stale index is (re)built first."""
    embedder = embedder or create_embedder(settings)
    store, report = open_store(settings, embedder, build, progress)
    return assemble(settings, embedder, store, report)


def open_store(
    settings: Settings, embedder: Embedder, build: bool = True, progress: Progress | None = None
) -> tuple[Store, BuildReport | None]:
    """The store the settings name, brought up to date with the corpus folder first when ``build``."""
    return create_backend(settings).open(embedder, build, progress)


def reload_if_rebuilt(service: Service) -> Service | None:
    """A new Service when another build has gone live since ``service`` loaded, else None.

    The caller swaps it in; requests already running keep the old one until they finish.
    """
    index = create_backend(service.settings).reload(service.index, service.embedder)
    return None if index is None else assemble(service.settings, service.embedder, index)
