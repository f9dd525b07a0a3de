"""The store's lifecycle behind one seam: ``Backend``, and ``create_backend``, the one place that reads ``settings.store``.

A ``Store`` (``store.py``) is what a question searches; a ``Backend`` is how a store is opened, kept in step
with the corpus folder, written to and reloaded. Two implementations:

- ``LocalBackend``: FAISS and BM25 files under ``index_dir``. A write is a rebuild into a new build folder,
  which goes live when done (``incremental`` is False): the served store is a snapshot, swapped by ``reload``.
- ``PostgresBackend``: PostgreSQL with pgvector. A write is one transaction, seen by every worker at once
  (``incremental`` is True): the served store is live and ``reload`` has nothing to swap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import SecretStr

from assistant.config import Settings
from assistant.errors import ConfigError, IndexNotReady, StoreUnavailable
from assistant.ingest.documents import Document
from assistant.search.build import BuildReport, Progress, build_index
from assistant.search.embedders import Embedder
from assistant.search.index import build_lock, current_build, index_status, load_index
from assistant.search.store import Store

if TYPE_CHECKING:
    from assistant.search.postgres.store import PostgresStore

log = logging.getLogger(__name__)


def changed_during_build(manifest: dict[str, Any]) -> list[str]:
    """Files of the corpus that a local build fingerprinted (when it was written) but did not read as they are,
    or read but no longer found: the folder changed while the build ran (an upload, a deletion). ``index_status``
    cannot see this, since the fingerprint is taken after the documents were read."""
    files = manifest.get("files", {})
    documents = {d["source"]: d.get("sha256") for d in manifest.get("documents", {}).values()}
    read = set(documents) | {s["source"] for s in manifest.get("skipped", [])}
    unread = [f for f in files if f != "metadata.json" and f not in read]
    changed = [source for source, sha in documents.items() if files.get(source) != sha]
    return sorted(unread + changed)


@runtime_checkable
class Backend(Protocol):
    """What both stores share in their lifecycle."""

    name: str  # "local" or "postgres", what /health reports
    incremental: bool  # writes reach the served store at once (True), or through a rebuild that goes live (False)

    def open(self, embedder: Embedder, build: bool = True, progress: Progress | None = None) -> tuple[Store, BuildReport | None]:
        """The store, brought up to date with the corpus folder first when ``build``; ``IndexNotReady`` when it cannot serve."""
        ...

    def open_for_serving(self, embedder: Embedder) -> tuple[Store | None, bool, list[str]]:
        """At server start: the store that can answer now (or None), whether a build or sync should run in the
        background, and the files a finished build missed (to be taken up by an update)."""
        ...

    def sync(self, embedder: Embedder, progress: Progress | None = None, rebuild: bool = False) -> BuildReport:
        """Make the store hold the corpus folder (``rebuild``: re-embed everything)."""
        ...

    def rebuild(self, embedder: Embedder, progress: Progress | None = None) -> tuple[Store, BuildReport]:
        """Index the corpus folder again even when it looks current, and open the result."""
        ...

    def add_documents(
        self, store: Store | None, documents: Sequence[Document], embedder: Embedder, on_added: Callable[[int], None] | None = None
    ) -> None:
        """Index documents whose files were just saved in the corpus folder (into ``store`` when given)."""
        ...

    def delete_document(self, store: Store | None, doc_id: str) -> bool:
        """Drop a document whose file was just removed: True when it is gone from the store now."""
        ...

    def reload(self, store: Store, embedder: Embedder) -> Store | None:
        """A newer store than ``store`` (a build made live by another process), or None."""
        ...

    def generation(self, store: Store) -> str:
        """The id of the data ``store`` serves; it changes with every write."""
        ...

    def document_list(self, store: Store) -> list[dict[str, Any]]:
        """Every document's info (``doc_id``, ``source``, ``sha256``, ...) without loading the texts."""
        ...

    def another_build_running(self) -> bool:
        """Is another process building this store now?"""
        ...


class LocalBackend:
    """FAISS and BM25 files under ``settings.index_dir``."""

    name = "local"
    incremental = False

    def __init__(self, settings: Settings):
        self.settings = settings

    def open(self, embedder: Embedder, build: bool = True, progress: Progress | None = None) -> tuple[Store, BuildReport | None]:
        report = None
        status = index_status(self.settings, embedder.name, embedder.dim)
        if not status.ready:
            for reason in status.reasons:
                log.info("index needs a rebuild: %s", reason)
            if build:
                report = build_index(self.settings, embedder, progress)
        return load_index(self.settings.index_dir), report

    def open_for_serving(self, embedder: Embedder) -> tuple[Store | None, bool, list[str]]:
        status = index_status(self.settings, embedder.name, embedder.dim)
        if status.ready:
            return load_index(self.settings.index_dir), False, changed_during_build(status.manifest or {})
        for reason in status.reasons:
            log.info("index needs a rebuild: %s", reason)
        store: Store | None = None
        if status.manifest is not None and status.manifest.get("config", {}).get("embedder") == embedder.name:
            try:  # a stale build answers until the new one is ready
                store = load_index(self.settings.index_dir)
            except IndexNotReady as exc:
                log.warning("the previous build cannot serve meanwhile: %s", exc)
        return store, True, []

    def sync(self, embedder: Embedder, progress: Progress | None = None, rebuild: bool = False) -> BuildReport:
        return build_index(self.settings, embedder, progress)

    def rebuild(self, embedder: Embedder, progress: Progress | None = None) -> tuple[Store, BuildReport]:
        report = build_index(self.settings, embedder, progress)
        return load_index(self.settings.index_dir), report

    def add_documents(
        self, store: Store | None, documents: Sequence[Document], embedder: Embedder, on_added: Callable[[int], None] | None = None
    ) -> None:
        self.rebuild(embedder)

    def delete_document(self, store: Store | None, doc_id: str) -> bool:
        return False  # the next rebuild drops it

    def reload(self, store: Store, embedder: Embedder) -> Store | None:
        build = current_build(self.settings.index_dir)
        if build is None or build.name == store.manifest["build"]:
            return None
        index = load_index(self.settings.index_dir)
        if index.manifest["config"]["embedder"] != embedder.name:
            log.warning("index %s was built with another embedder; keeping the loaded one", build.name)
            return None
        log.info("loaded the new index build %s", build.name)
        return index

    def generation(self, store: Store) -> str:
        build: str = store.manifest["build"]
        return build

    def document_list(self, store: Store) -> list[dict[str, Any]]:
        return [d.info() for d in store.documents.values()]

    def another_build_running(self) -> bool:
        try:
            with build_lock(self.settings.index_dir):
                return False
        except IndexNotReady:
            return True


class PostgresBackend:
    """PostgreSQL with pgvector at ``ASSISTANT_DATABASE_URL`` (psycopg and pgvector: ``pip install -e ".[postgres]"``)."""

    name = "postgres"
    incremental = True

    def __init__(self, settings: Settings):
        if settings.database_url is None:
            raise ConfigError("ASSISTANT_STORE=postgres needs ASSISTANT_DATABASE_URL (postgresql://user:password@host:5432/db)")
        self.settings = settings

    def store(self) -> PostgresStore:
        """A new ``PostgresStore`` (its pool opens on first use; close it when done)."""
        try:
            from assistant.search.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(f"the PostgreSQL store needs its client libraries: pip install -e '.[postgres]' ({exc})") from exc
        url = self.settings.database_url  # a plain string when the settings were copied without validation
        return PostgresStore(url.get_secret_value() if isinstance(url, SecretStr) else str(url), index_type=self.settings.index_type)

    def open(self, embedder: Embedder, build: bool = True, progress: Progress | None = None) -> tuple[Store, BuildReport | None]:
        store = self.store()
        report = store.sync(self.settings, embedder, progress) if build else None
        store.check(embedder.name, embedder.dim, self.settings)
        return store, report

    def open_for_serving(self, embedder: Embedder) -> tuple[Store | None, bool, list[str]]:
        store: Store | None
        # The database may already hold what this worker serves; a sync (cheap when nothing changed,
        # and one at a time across workers) brings it up to date with the corpus folder meanwhile.
        try:
            store, _ = self.open(embedder, build=False)
        except IndexNotReady as exc:
            log.info("the index cannot serve yet: %s", exc)
            store = None
        return store, True, []

    def sync(self, embedder: Embedder, progress: Progress | None = None, rebuild: bool = False) -> BuildReport:
        store = self.store()
        try:
            return store.sync(self.settings, embedder, progress, rebuild=rebuild)
        finally:
            store.close()

    def rebuild(self, embedder: Embedder, progress: Progress | None = None) -> tuple[Store, BuildReport]:
        store, report = self.open(embedder, build=True, progress=progress)
        assert report is not None  # build=True: the sync's report
        return store, report

    def _writer(self, store: Store | None) -> tuple[PostgresStore, bool]:
        """The store to write to, and whether it is a new one (to be closed after the write)."""
        return (_postgres(store), False) if store is not None else (self.store(), True)

    def add_documents(
        self, store: Store | None, documents: Sequence[Document], embedder: Embedder, on_added: Callable[[int], None] | None = None
    ) -> None:
        writer, own = self._writer(store)
        try:
            for n, doc in enumerate(documents):
                path = self.settings.corpus_dir / doc.source
                if path.exists():  # not deleted meanwhile
                    writer.add_document(doc, embedder, self.settings)
                    if not path.exists():  # deleted while it was being added
                        writer.delete_document(doc.doc_id)
                if on_added is not None:
                    on_added(n + 1)
        finally:
            if own:
                writer.close()

    def delete_document(self, store: Store | None, doc_id: str) -> bool:
        import psycopg

        writer, own = self._writer(store)
        try:
            writer.delete_document(doc_id)
        except psycopg.OperationalError as exc:  # the connection broke mid-way: nothing was committed
            raise StoreUnavailable(f"the PostgreSQL store failed while deleting {doc_id!r}: {str(exc).strip().splitlines()[0]}") from exc
        finally:
            if own:
                writer.close()
        return True

    def reload(self, store: Store, embedder: Embedder) -> Store | None:
        return None  # a live store: nothing to swap

    def generation(self, store: Store) -> str:
        return f"pg-{_postgres(store).generation()}"

    def document_list(self, store: Store) -> list[dict[str, Any]]:
        return _postgres(store).document_infos()

    def another_build_running(self) -> bool:
        return False  # a sync takes an advisory lock; a concurrent one is refused with IndexNotReady


def _postgres(store: Store) -> PostgresStore:
    """``store`` as the ``PostgresStore`` it is (``PostgresBackend`` opens no other kind)."""
    from assistant.search.postgres.store import PostgresStore

    if not isinstance(store, PostgresStore):
        raise TypeError(f"the PostgreSQL backend was given a {type(store).__name__}, not a PostgresStore")
    return store


def create_backend(settings: Settings) -> Backend:
    """The backend ``settings.store`` names: the only place that reads it."""
    if settings.store == "postgres":
        return PostgresBackend(settings)
    return LocalBackend(settings)
