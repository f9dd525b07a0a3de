"""The documents of a PostgreSQL store as a ``Mapping`` (what ``Store.documents`` is), and their infos in one query."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from assistant.ingest.documents import Document

DOC_COLUMNS = "doc_id, source, title, text, sha256, publisher, date, period, language, description, warnings"
INFO_NAMES = ["doc_id", "source", "title", "chars", "sha256", "publisher", "date", "period", "language", "description", "warnings"]


class Documents(Mapping[str, Document]):
    """The store's documents by id; texts are loaded on demand and a few are kept (cleared on a new generation).

    ``connection`` lends a pooled connection (a context manager); ``refresh`` lets the store notice a new
    generation first (which calls ``clear``).
    """

    def __init__(self, connection: Callable[[], AbstractContextManager[Any]], refresh: Callable[[], object], size: int):
        self._connection = connection
        self._refresh = refresh
        self._size = size
        self._cache: OrderedDict[str, Document] = OrderedDict()
        self._listing: tuple[list[str], frozenset[str]] | None = None  # the ids in order, and as a set
        self._lock = threading.Lock()
        self._epoch = 0  # counts the clears: what was read before one is not kept after it

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._cache.clear()
            self._listing = None

    def _doc_ids(self) -> tuple[list[str], frozenset[str]]:
        self._refresh()
        with self._lock:
            listing, epoch = self._listing, self._epoch
        if listing is None:
            with self._connection() as conn:
                ids = [r[0] for r in conn.execute("SELECT doc_id FROM documents ORDER BY source, doc_id")]
            listing = (ids, frozenset(ids))
            with self._lock:
                if self._epoch == epoch:
                    self._listing = listing
        return listing

    def __getitem__(self, doc_id: str) -> Document:
        self._refresh()
        with self._lock:
            epoch = self._epoch
            doc = self._cache.get(doc_id)
            if doc is not None:
                self._cache.move_to_end(doc_id)
                return doc
        with self._connection() as conn:
            row = conn.execute(f"SELECT {DOC_COLUMNS} FROM documents WHERE doc_id = %s", (doc_id,)).fetchone()
        if row is None:
            raise KeyError(doc_id)
        stored_id, source, title, text, sha256, publisher, date, period, language, description, warnings = row
        doc = Document(
            stored_id,
            source,
            title,
            text,
            sha256,
            publisher,
            date,
            period,
            language=list(language),
            description=description,
            warnings=list(warnings),
        )
        with self._lock:
            if self._epoch == epoch:
                self._cache[doc_id] = doc
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return doc

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._doc_ids()[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc_ids()[0])

    def __len__(self) -> int:
        return len(self._doc_ids()[0])

    def infos(self) -> list[dict[str, Any]]:
        """Every document's ``Document.info()`` (metadata, warnings, length) in one query, without loading the texts."""
        sql = f"SELECT {DOC_COLUMNS.replace('text,', 'length(text),')} FROM documents ORDER BY source, doc_id"
        with self._connection() as conn:
            rows = conn.execute(sql).fetchall()
        # This store keeps no page spans yet: a PDF's page count is unknown here.
        return [{**dict(zip(INFO_NAMES, row, strict=True)), "pages": None} for row in rows]
