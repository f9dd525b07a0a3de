"""The ``Store`` seam: where a built index lives and how it is searched.

Two implementations: ``LoadedIndex`` (``index.py``: FAISS and BM25 in memory, built from files,
the default for one person on a laptop) and ``PostgresStore`` (``postgres.py``: PostgreSQL with
pgvector, for a shared deployment). The retriever and the answer step see only this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from assistant.ingest.chunking import Chunk
from assistant.ingest.documents import Document


@dataclass(frozen=True)
class SentenceRow:
    """A sentence of a document with its vector (and the previous sentence's, when it has one)."""

    row: int  # the sentence's id in the store
    doc_id: str
    start: int
    end: int
    vector: NDArray[np.float32]
    previous_vector: NDArray[np.float32] | None


@runtime_checkable
class Store(Protocol):
    @property
    def manifest(self) -> dict[str, Any]:
        """Build id, built_at, index_type, counts, skipped files."""
        ...

    @property
    def documents(self) -> Mapping[str, Document]:
        """By id; a document's text is what citation offsets index into."""
        ...

    @property
    def chunk_count(self) -> int: ...

    def chunk(self, i: int) -> Chunk: ...

    def dense_search(self, vector: NDArray[np.float32], n: int) -> tuple[list[int], dict[int, float]]:
        """The ``n`` chunks closest to the (unit) query vector: ranked ids and inner products."""
        ...

    def keyword_search(self, query: str, n: int) -> tuple[list[int], dict[int, float]]:
        """The ``n`` best keyword matches (chunks with a positive score): ranked ids and scores."""
        ...

    def keyword_coverage(self, query: str) -> float:
        """Share of the query's words that occur anywhere in the corpus (0..1)."""
        ...

    def sentences_in(self, doc_id: str, start: int, end: int) -> list[SentenceRow]:
        """The sentences of ``doc_id`` that overlap [start, end), in document order."""
        ...

    def sentence_idf(self, tokens: set[str]) -> tuple[dict[str, float], float]:
        """Inverse document frequency over sentences for ``tokens``, and the value for an unseen word."""
        ...
