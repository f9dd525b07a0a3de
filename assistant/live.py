"""What a long-running server holds: ``LiveService``, the current ``Service`` (or why there is none yet).

A missing or stale index is built in a background thread while the server already listens; a
watcher swaps in builds made by other processes; uploads are indexed in the background too.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from assistant.config import Settings
from assistant.errors import AssistantError, BuildInProgress, IndexNotReady
from assistant.search.backend import Backend, changed_during_build, create_backend
from assistant.search.embedders import Embedder, create_embedder
from assistant.service import Service, assemble

if TYPE_CHECKING:
    from assistant.ingest.documents import Document
    from assistant.search.build import BuildProgress, BuildReport
    from assistant.search.store import Store

log = logging.getLogger(__name__)


__all__ = ["LiveService", "changed_during_build"]


class LiveService:
    """What a server holds: the current Service, or why there is none yet.

    ``start`` loads a ready index at once. A missing or stale index is built in a background
    thread while the server already listens (a stale build keeps answering meanwhile); the new
    build goes live when it is done. A watcher swaps in builds that ``assistant index`` makes
    live from another process. ``status`` is what ``/health`` reports.
    """

    WATCH_EVERY_S = 2.0
    RETRY_S = 2.0  # a failed upload is retried after 2, 4, 8 ... s (at most RETRY_MAX_S), and with the next upload
    RETRY_MAX_S = 300.0

    def __init__(
        self, settings: Settings, service: Service | None = None, embedder: Embedder | None = None, backend: Backend | None = None
    ):
        self.settings = settings
        self.backend = backend or create_backend(settings)
        self.service = service
        self.error: str | None = None
        self.building: dict[str, Any] | None = None  # progress of a build running in this process
        self._embedder = embedder
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._updates = threading.Lock()  # guards the queue of upload jobs below (``update``)
        self._queued: list[Document] = []  # uploaded Documents to add (a store that takes writes at once)
        self._rebuild = False  # the corpus folder changed: rebuild (a store rebuilt to take writes)
        self._updating = False
        # source (or "removed:" + doc id) -> what failed: document (None for a removal), file, doc_id, error, attempts, retry_at
        self._failed: dict[str, dict[str, Any]] = {}
        self._removed: dict[str, str] = {}  # doc id -> source: deleted files still in the index until a rebuild goes live
        self._failure: str | None = None  # why the last build failed
        self._retry: threading.Timer | None = None

    def start(self, watch: bool = True) -> None:
        """Load (or start building) the index; failures are kept to explain later, never raised."""
        try:
            if self.service is None:
                self._open()
            if self.service is not None:
                self.service.warm_up()
                log.info("ready: %d documents, %d chunks", len(self.service.index.documents), self.service.index.chunk_count)
        except AssistantError as exc:  # the server stays up and explains itself
            log.error("start-up failed: %s", exc)
            self.error = str(exc)
        except Exception:
            log.exception("start-up failed")
            self.error = "start-up failed (see the server log)"
        if watch:
            self._spawn(self._watch, "index-watcher")

    @property
    def embedder(self) -> Embedder:
        """The embedder the index is built and searched with (made from the settings on first use)."""
        if self._embedder is None:
            self._embedder = create_embedder(self.settings)
        return self._embedder

    def _open(self) -> None:
        embedder = self.embedder
        store, build, changed = self.backend.open_for_serving(embedder)
        if store is not None:  # a stale one answers until the build is done
            self.service = assemble(self.settings, embedder, store)
        if changed:  # fingerprinted but not read (or the other way round): the build missed them
            log.info("index needs a rebuild: the corpus changed while it was built (%s)", ", ".join(changed[:5]))
            self.update()
        if build:
            self._start_build()

    def _start_build(self) -> None:
        self.building = {"started_at": time.time(), "documents_done": 0, "documents_total": None, "eta_s": None}
        self._spawn(self._build, "index-builder")

    def _try_open(self) -> Service | None:
        """The service over the store as it is now, or None when it cannot serve yet (missing, empty, another config)."""
        try:
            store, _ = self.backend.open(self.embedder, build=False)
        except IndexNotReady as exc:
            log.info("the index cannot serve yet: %s", exc)
            return None
        service = assemble(self.settings, self.embedder, store)
        service.warm_up()
        return service

    def _build(self, force: bool = False) -> bool:
        """Bring the index up to date (``force``: rebuild the local index even when it looks current) and make it
        live; False when it did not (``_failure`` says why, None when another process is building it)."""
        started = time.monotonic()
        self._failure = None

        def progress(state: BuildProgress) -> None:
            elapsed = time.monotonic() - started
            rate = state.chars_done / elapsed if elapsed > 0 and state.chars_done else None
            eta = (state.chars_total - state.chars_done) / rate if rate else None
            self.building = {
                **(self.building or {}),
                "documents_done": state.documents_done,
                "documents_total": state.documents_total,
                "characters_done": state.chars_done,
                "characters_total": state.chars_total,
                "eta_s": None if eta is None else round(eta, 1),
            }

        try:
            report: BuildReport | None
            if force:
                store, report = self.backend.rebuild(self.embedder, progress)
            else:
                store, report = self.backend.open(self.embedder, build=True, progress=progress)
            return self._go_live(store, report)
        except BuildInProgress as exc:  # another worker or `assistant index` is building: the watcher picks its result up
            log.info("%s; waiting for it", exc)
        except AssistantError as exc:
            log.error("index build failed: %s", exc)
            self.error = self._failure = str(exc)
        except Exception as exc:
            log.exception("index build failed")
            self.error = "the index build failed (see the server log)"
            self._failure = describe_failure(exc)
        finally:
            self.building = None
        return False

    def _go_live(self, store: Store, report: BuildReport | None) -> bool:
        """Serve ``store`` just built or synced (``report``; None when it was current already: another process
        brought it up to date meanwhile)."""
        if self.backend.incremental and self.service is not None:
            if report is not None:
                log.warning(
                    "index sync done: %d documents, %d chunks (%d embedded)", report.documents, report.chunks, report.embedded_chunks
                )
            return True  # the store is live: the workers see the new data as it is written
        fresh = assemble(self.settings, self.embedder, store, report)
        fresh.warm_up()
        with self._lock:
            old, self.service, self.error = self.service, fresh, None
        if report is None:
            log.warning("index build %s is current and live: %d documents", store.manifest.get("build"), len(store.documents))
        else:
            log.warning(
                "new index build %s is live: %d documents, %d chunks (%d embedded) in %.1f s",
                report.build,
                report.documents,
                report.chunks,
                report.embedded_chunks,
                report.seconds,
            )
        if old is not None and old.llm_client is not fresh.llm_client:
            old.close()
        return True

    # ------------------------------------------------------------- uploads (assistant/server/uploads.py)

    def update(self, added: Sequence[Document] = ()) -> None:
        """Index what changed in the corpus folder, in the background: ``added`` are Documents whose files were
        just saved there (uploads), and files may have been removed. One job at a time, visible in ``building``;
        changes that arrive meanwhile are taken up by the next one.

        A store that is rebuilt to take writes (local): a rebuild (unchanged documents reuse their vectors) that
        goes live when done. A store that takes writes at once (PostgreSQL): each added document in its own
        transaction (``Backend.add_documents``). Whatever a job has not finished when the
        process stops, the next start's build or sync does, from the files.
        """
        with self._updates:
            self._queued.extend(added)
            self._queued.extend(f["document"] for f in self._failed.values() if f["document"])  # retried with any new job
            self._rebuild = self._rebuild or not self.backend.incremental
            if self._updating:
                return
            self._updating = True
        self._spawn(self._apply_updates, "index-builder")

    def forget(self, doc_id: str) -> bool:
        """Drop a document whose file was just removed from the corpus folder: at once where the store takes
        writes at once (True), else by a background rebuild (False)."""
        service = self.service
        if self.backend.delete_document(service.index if service is not None else None, doc_id):
            return True
        doc = service.index.documents.get(doc_id) if service is not None else None
        with self._updates:  # shown in failures() if the rebuild without it fails
            self._removed[doc_id] = doc.source if doc is not None else doc_id
        self.update()
        return False

    def _apply_updates(self) -> None:
        for thread in self._live_threads():  # a build started with the server finishes first
            if thread.name == "index-builder" and thread is not threading.current_thread():
                thread.join()
        try:
            self.embedder  # noqa: B018 - made now, so that a failure to make it is reported here
        except Exception:
            log.exception("cannot index the uploads: no embedder (they are indexed at the next start)")
            with self._updates:
                self._updating = False
            return
        while True:
            with self._updates:
                documents, self._queued = self._queued, []
                rebuild, self._rebuild = self._rebuild, False
                removing = set(self._removed)  # deleted before this job's rebuild reads the folder
                if not documents and not rebuild:
                    self._updating = False
                    return
            documents = list({d.doc_id: d for d in documents}.values())
            self.building = {"started_at": time.time(), "documents_done": 0, "documents_total": len(documents) or None, "eta_s": None}
            done: list[int] = [0]
            try:
                if rebuild:
                    if self._build(force=True):
                        self._stored(None, removing)  # the rebuild read every file there
                    elif self._failure is not None:
                        self._failed_uploads(documents, self._failure)
                        continue
                    if self.backend.another_build_running():  # which may have read the folder before the change: build after it
                        while self.backend.another_build_running() and not self._stop.wait(self.WATCH_EVERY_S):
                            pass
                        with self._updates:
                            self._rebuild = True
                else:
                    self._add_documents(documents, done)
                    self._stored(documents)
            except Exception as exc:  # the files are saved: retried later, and the next start's sync indexes them
                log.exception("indexing the uploads failed")
                self._stored(documents[: done[0]])
                self._failed_uploads(documents[done[0] :], describe_failure(exc))
            finally:
                self.building = None

    def failures(self) -> list[dict[str, Any]]:
        """The uploads whose indexing failed and that are still there, and deleted files the index still holds
        because the rebuild without them failed (``/health``, ``GET /documents``)."""
        now = time.time()
        with self._updates:
            for source in [s for s, f in self._failed.items() if f["document"] and not (self.settings.corpus_dir / s).is_file()]:
                del self._failed[source]  # deleted since
            failed = list(self._failed.values())
        return [
            {
                "file": f["file"],
                "doc_id": f["doc_id"],
                "error": f["error"],
                "attempts": f["attempts"],
                "retry_in_s": max(0.0, round(f["retry_at"] - now, 1)),
            }
            for f in failed
        ]

    def _failed_uploads(self, documents: list[Document], error: str) -> None:
        with self._updates:
            removed = [(f"removed:{d}", None, s, d, f"deleted, but still in the index: {error}") for d, s in self._removed.items()]
            for key, doc, file, doc_id, why in [(d.source, d, d.source, d.doc_id, error) for d in documents] + removed:
                attempts = self._failed.get(key, {}).get("attempts", 0) + 1
                delay = min(self.RETRY_MAX_S, self.RETRY_S * 2 ** (attempts - 1))
                entry = {"document": doc, "file": file, "doc_id": doc_id, "error": why, "attempts": attempts}
                self._failed[key] = {**entry, "retry_at": time.time() + delay}
            if not self._failed or self._stop.is_set():
                return
            delay = max(0.0, min(f["retry_at"] for f in self._failed.values()) - time.time())
            if self._retry is not None:
                self._retry.cancel()
            self._retry = threading.Timer(delay, self.update)
            self._retry.daemon = True
            self._retry.start()
        log.warning("indexing %d upload(s) failed (%s); retried in %.0f s", len(documents), error, delay)

    def _stored(self, documents: list[Document] | None, removed: Collection[str] = ()) -> None:
        """These uploads (None: every one, after a rebuild that read every file) are in the store now, and the
        ``removed`` documents gone from it."""
        with self._updates:
            for doc_id in removed:
                self._removed.pop(doc_id, None)
                self._failed.pop(f"removed:{doc_id}", None)
            if documents is None:
                self._failed = {k: f for k, f in self._failed.items() if f["document"] is None and f["doc_id"] in self._removed}
            for doc in documents or ():
                self._failed.pop(doc.source, None)

    def _add_documents(self, documents: list[Document], done: list[int]) -> None:
        def added(n: int) -> None:
            done[0] = n
            self.building = {**(self.building or {}), "documents_done": n}

        service = self.service
        self.backend.add_documents(service.index if service is not None else None, documents, self.embedder, added)
        log.warning("indexed %d uploaded documents", len(documents))
        if self.service is None:
            with self._lock:
                self.error = None
                self.service = self._try_open()

    def _live_threads(self) -> list[threading.Thread]:
        with self._updates:
            self._threads = [t for t in self._threads if t.is_alive()]
            return list(self._threads)

    def _spawn(self, target: Callable[[], object], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._updates:  # only threads still running are kept
            self._threads = [t for t in self._threads if t.is_alive()]
            thread.start()
            self._threads.append(thread)

    def _watch(self) -> None:
        while not self._stop.wait(self.WATCH_EVERY_S):
            self.refresh()

    def refresh(self) -> None:
        """Swap in a build that another process made live since the current one loaded (or, with no
        service yet, the first one that can serve: another worker may have built it)."""
        if self.building is not None or not self._lock.acquire(blocking=False):
            return
        try:
            if self.service is None:
                if self._embedder is not None and not self.error:
                    self.service = self._try_open()
                return
            service = self.service
            store = self.backend.reload(service.index, service.embedder)
            if store is not None:
                self.service = fresh = assemble(service.settings, service.embedder, store)
                log.warning("new index build %s is live: %d documents", self.backend.generation(store), len(fresh.index.documents))
        except IndexNotReady as exc:
            log.error("not reloading the index: %s", exc)
        finally:
            self._lock.release()

    def ready(self) -> Service:
        """The current Service, or IndexNotReady saying why there is none (and how far a build is)."""
        service = self.service
        if service is not None:
            return service
        if self.building is not None:
            raise IndexNotReady(f"The index is being built ({self.describe_progress()}); ask again shortly.", self.building)
        reason = self.error or "the index is still loading"
        raise IndexNotReady(f"The assistant is not ready: {reason}. Run 'assistant index' and restart.")

    def describe_progress(self) -> str:
        b = self.building or {}
        if not b.get("documents_total"):
            return "reading the documents"
        text = f"{b['documents_done']} of {b['documents_total']} documents embedded"
        return text + (f", about {b['eta_s']:.0f} s left" if b.get("eta_s") is not None else "")

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background build (tests, benchmarks)."""
        for thread in self._live_threads():
            if thread.name == "index-builder":
                thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._retry is not None:
            self._retry.cancel()
        if self.service is not None:
            self.service.close()


def describe_failure(exc: BaseException) -> str:
    """What a failure says, fit for ``/health``: the message without addresses or passwords."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"\b\w+://\S+", "<address>", text or type(exc).__name__)
    return re.sub(r"(?i)(password\s*[=:]\s*)\S+", r"\1***", text)[:300]
