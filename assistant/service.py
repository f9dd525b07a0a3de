"""Wiring: settings -> embedder -> index (built when missing or stale) -> retriever."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from assistant.config import Settings
from assistant.search.embedders import Embedder, create_embedder
from assistant.search.index import BuildReport, LoadedIndex, Progress, build_index, current_build, index_status, load_index
from assistant.search.retriever import Retriever

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    embedder: Embedder
    index: LoadedIndex
    retriever: Retriever
    build_report: BuildReport | None = None


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
    index = load_index(settings.index_dir)
    return Service(settings, embedder, index, Retriever(index, embedder, settings), report)


def reload_if_rebuilt(service: Service) -> Service | None:
    """A new Service when ``assistant index`` has made another build live since ``service`` loaded.

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
    return Service(service.settings, service.embedder, index, Retriever(index, service.embedder, service.settings))
