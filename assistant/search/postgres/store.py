"""``PostgresStore``: the ``Store`` seam over PostgreSQL with pgvector, for several workers sharing one database.

Dense search is pgvector's inner product (``<#>``) over an HNSW index, or an exact scan below
``HNSW_FROM`` chunks (as the local index's "auto"); keyword search is BM25 with the local index's
formula and tokens (``keyword.tokenize``: folded, accent-insensitive, any script), matched through a
GIN-indexed ``tsvector`` of those tokens and scored from per-chunk term frequencies and the ``terms``
table, so its ranking is the local one. Writers (``sync``, ``add_document``, ``delete_document``)
change one document per transaction and bump ``state.generation``; readers notice within
``refresh_s`` seconds (``generation()`` asks at once). Schema: ``schema.py``; writing: ``sync.py``; the documents mapping:
``documents.py``; connections and the serving pool: ``connections.py``; the lexemes and the BM25 query: ``bm25.py``.

Example (needs a server)::

    store = PostgresStore("postgresql://assistant@db/assistant")
    store.sync(settings, embedder)
    Retriever(store, embedder, settings).search("Who finances the project?")
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from assistant.config import Settings
from assistant.errors import BuildInProgress, IndexNotReady
from assistant.ingest.chunking import Chunk
from assistant.ingest.documents import Document, Limits, load_corpus
from assistant.search.build import Progress
from assistant.search.embedders import Embedder
from assistant.search.index import HNSW_FROM, embedding_config
from assistant.search.keyword import tokenize
from assistant.search.postgres import bm25 as pg_bm25
from assistant.search.postgres import schema as pg_schema
from assistant.search.postgres import sync as pg_sync
from assistant.search.postgres.connections import Connections
from assistant.search.postgres.documents import Documents
from assistant.search.postgres.schema import CHUNK_COLUMNS, one
from assistant.search.store import SentenceRow

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

PHASE_ONE_CANDIDATES = 20_000  # keyword search scores the chunks of the rarest words first (see keyword_search)
CHUNK_CACHE = 20_000


class PostgresStore:
    """The ``Store`` in PostgreSQL; safe to share between threads (a connection pool), one per worker process.

    ``index_type`` is the local setting's meaning: "flat" searches exactly, "hnsw"/"ivfpq" use the
    HNSW index, "auto" switches at ``HNSW_FROM`` chunks. ``ef_search`` is HNSW's candidate list
    (raised to the number of results asked for, at most 1000); 200 keeps recall@10 at 0.97 over
    1M chunks (8 ms p50 on 2 cores; 100 gave 0.95, see evaluation/BENCHMARKS.md).
    """

    def __init__(
        self,
        url: str,
        *,
        index_type: str = "auto",
        ef_search: int = 200,
        pool_size: int = 4,
        cached_documents: int = 32,
        refresh_s: float = 1.0,
    ):
        self.url = url
        self.index_type = index_type
        self.ef_search = ef_search
        self.pool_size = pool_size
        self.refresh_s = refresh_s
        self._db = Connections(url, pool_size)
        self.documents = Documents(self._db.serving, self.state, cached_documents)  # a Mapping[str, Document]
        self._lock = threading.RLock()
        self._state: dict[str, Any] | None = None
        self._state_at = 0.0
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()
        self._terms: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------- connections and state

    def connect(self) -> psycopg.Connection[TupleRow]:
        """A new autocommit connection with the vector type registered (the schema must exist)."""
        return self._db.connect()

    def close(self) -> None:
        """Close the connection pool (the store can be used again: it reopens)."""
        self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def state(self, fresh: bool = False) -> dict[str, Any]:
        """The ``state`` row, re-read when older than ``refresh_s``; a new generation clears the caches."""
        with self._lock:
            if not fresh and self._state is not None and time.monotonic() - self._state_at < self.refresh_s:
                return self._state
        with self._db.serving() as conn:
            state = pg_sync.read_state(conn)
        with self._lock:
            if self._state is None or self._state["generation"] != state["generation"]:
                self.documents.clear()
                self._terms = {}
            self._state, self._state_at = state, time.monotonic()
        return state

    def generation(self) -> int:
        """The data's generation number, read now: it changes whenever a document is written or deleted."""
        generation: int = self.state(fresh=True)["generation"]
        return generation

    @property
    def manifest(self) -> dict[str, Any]:
        """What ``LoadedIndex.manifest`` says, from the ``state`` row (``build`` names the generation)."""
        s = self.state()
        when = s["synced_at"] or s["updated_at"]
        return {
            "format": f"postgres-{pg_schema.SCHEMA_VERSION}",
            "build": f"pg-{s['generation']}",
            "built_at": when.isoformat(timespec="seconds") if isinstance(when, datetime) else when,
            "generation": s["generation"],
            "config": s["config"] or {},
            "index_type": self.resolved_index_type(s["chunks"]),
            "counts": {"documents": s["documents"], "chunks": s["chunks"], "sentences": s["sentences"]},
            "skipped": s["skipped"],
        }

    def resolved_index_type(self, chunks: int | None = None) -> str:
        """How dense search runs at this size: "hnsw" or "flat"."""
        n: int = self.state()["chunks"] if chunks is None else chunks
        if self.index_type == "auto":
            return "hnsw" if n >= HNSW_FROM else "flat"
        return "flat" if self.index_type == "flat" else "hnsw"

    def check(self, embedder_name: str, dim: int, settings: Settings | None = None) -> None:
        """Raise ``IndexNotReady`` with the reason when this embedder's vectors (and these settings' chunks) do not fit the store."""
        wanted = embedding_config(settings, embedder_name, dim) if settings else {"embedder": embedder_name, "dim": dim}
        problem = pg_sync.config_problem(self.state(fresh=True), wanted)
        if problem:
            raise IndexNotReady(problem + ": sync again with rebuild=True")

    @classmethod
    def open(cls, url: str, settings: Settings, embedder: Embedder, **options: Any) -> PostgresStore:
        """A store for serving, checked against the embedder and chunking in ``settings``."""
        store = cls(url, index_type=settings.index_type, **options)
        try:
            store.check(embedder.name, embedder.dim, settings)
        except BaseException:
            store.close()
            raise
        return store

    # ------------------------------------------------------------- the Store interface

    @property
    def chunk_count(self) -> int:
        chunks: int = self.state()["chunks"]
        return chunks

    def chunk(self, i: int) -> Chunk:
        with self._lock:
            chunk = self._chunks.get(i)
        if chunk is None:
            with self._db.serving() as conn:
                sql = f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document WHERE c.id = %s"
                row = conn.execute(sql, (i,)).fetchone()
            if row is None:
                raise KeyError(f"no chunk {i} (its document was replaced or deleted)")
            chunk = self._remember(row)
        return chunk

    def _remember(self, row: tuple[Any, ...]) -> Chunk:
        i, doc_id, ordinal, start, end, text = row
        chunk = Chunk(f"{doc_id}#{ordinal}", doc_id, start, end, text)
        with self._lock:
            self._chunks[i] = chunk
            self._chunks.move_to_end(i)
            while len(self._chunks) > CHUNK_CACHE:
                self._chunks.popitem(last=False)
        return chunk

    def dense_search(self, vector: NDArray[np.float32], n: int) -> tuple[list[int], dict[int, float]]:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        exact = self.resolved_index_type() == "flat"
        sql = f"""SELECT {CHUNK_COLUMNS}, -(c.embedding <#> %(q)s) AS score FROM chunks c JOIN documents d ON d.id = c.document
                  ORDER BY c.embedding <#> %(q)s{", c.id" if exact else ""} LIMIT %(n)s"""
        with self._db.serving() as conn, conn.transaction():
            if exact:
                conn.execute("SET LOCAL enable_indexscan = off")
            else:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, max(self.ef_search, n))),))
            rows = conn.execute(sql, {"q": q, "n": n}).fetchall()
        rows.sort(key=lambda row: (-row[6], row[0]))  # equal scores in id order, as the exact scan gives them
        ranked = [row[0] for row in rows]
        for row in rows:
            self._remember(row[:6])
        return ranked, {row[0]: float(row[6]) for row in rows}

    def _term_stats(self, tokens: set[str]) -> dict[str, tuple[int, int]]:
        """(chunk df, sentence df) of the tokens the corpus has, cached for the current generation."""
        self.state()
        with self._lock:
            terms = self._terms
            missing = sorted(t for t in tokens if t not in terms)
        if missing:
            with self._db.serving() as conn:
                rows = conn.execute("SELECT term, chunk_df, sentence_df FROM terms WHERE term = ANY(%s)", (missing,)).fetchall()
            found = {t: (0, 0) for t in missing} | {t: (c, s) for t, c, s in rows}
            with self._lock:
                if len(terms) > 100_000:
                    terms.clear()
                terms.update(found)
        return {t: terms[t] for t in tokens if terms.get(t, (0, 0)) != (0, 0)}

    def keyword_search(self, query: str, n: int) -> tuple[list[int], dict[int, float]]:
        """BM25 as ``KeywordIndex`` scores it, exact, in two phases (MaxScore).

        Phase one scores the chunks holding the query's rarest words (at most about
        ``PHASE_ONE_CANDIDATES``); a word's contribution is below ``weight * idf``, so if the other
        words' bounds add up to no more than the n-th score found, no other chunk can rank, and the
        answer is final. Otherwise phase two scores every chunk holding a word that could still matter.
        """
        tokens = tokenize(query)
        s = self.state()
        stats = {t: c for t, (c, _) in self._term_stats(set(tokens)).items() if c > 0}
        weights = Counter(t for t in tokens if t in stats)
        if not weights or not s["chunks"]:
            return [], {}
        total = s["chunks"]
        idf = {t: math.log(1 + (total - df + 0.5) / (df + 0.5)) for t, df in stats.items()}
        bound = {t: weights[t] * idf[t] for t in weights}
        by_rarity = sorted(weights, key=lambda t: (stats[t], t))
        first: list[str] = []
        size = 0
        for t in by_rarity:
            if first and size + stats[t] > PHASE_ONE_CANDIDATES:
                break
            first.append(t)
            size += stats[t]
        avg = s["tokens"] / total
        rows = self._bm25(first, weights, idf, avg, n)
        rest = [t for t in by_rarity if t not in first]
        if rest:
            theta = rows[-1][6] if len(rows) >= n else 0.0
            optional: set[str] = set()
            acc = 0.0
            for t in sorted(rest, key=lambda t: bound[t]):
                if acc + bound[t] > theta:
                    break
                optional.add(t)
                acc += bound[t]
            needed = [t for t in rest if t not in optional]
            if needed:
                rows = self._bm25(first + needed, weights, idf, avg, n)
        for row in rows:
            self._remember(row[:6])
        return [row[0] for row in rows], {row[0]: float(row[6]) for row in rows}

    def _bm25(self, match: list[str], weights: Counter[str], idf: dict[str, float], avg: float, n: int) -> list[tuple[Any, ...]]:
        """The ``n`` best chunks holding any of ``match``, scored over all query words (``bm25.query``)."""
        sql, params = pg_bm25.query(match, weights, idf, avg, n)
        with self._db.serving() as conn:
            return conn.execute(sql, params).fetchall()

    def keyword_coverage(self, query: str) -> float:
        tokens = tokenize(query)
        if not tokens:
            return 0.0
        known = {t for t, (c, _) in self._term_stats(set(tokens)).items() if c > 0}
        return sum(t in known for t in tokens) / len(tokens)

    def sentences_in(self, doc_id: str, start: int, end: int) -> list[SentenceRow]:
        sql = """
            WITH doc AS (SELECT id FROM documents WHERE doc_id = %(doc)s),
            hit AS (SELECT min(s.ordinal) AS lo, max(s.ordinal) AS hi FROM sentences s, doc
                    WHERE s.document = doc.id AND s.start < %(end)s AND s."end" > %(start)s)
            SELECT s.id, s.ordinal, s.start, s."end", s.embedding, s.ordinal >= hit.lo AS inside
            FROM sentences s, doc, hit WHERE s.document = doc.id AND s.ordinal BETWEEN hit.lo - 1 AND hit.hi ORDER BY s.ordinal"""
        with self._db.serving() as conn:
            rows = conn.execute(sql, {"doc": doc_id, "start": start, "end": end}).fetchall()
        out: list[SentenceRow] = []
        previous: tuple[int, NDArray[np.float32]] | None = None
        for row_id, ordinal, s, e, stored, inside in rows:
            vector = pg_sync.as_array(stored)
            if inside:
                before = previous if previous is not None and previous[0] == ordinal - 1 else None
                out.append(SentenceRow(row_id, doc_id, s, e, vector, None if before is None else before[1]))
            previous = (ordinal, vector)
        return out

    def sentence_idf(self, tokens: set[str]) -> tuple[dict[str, float], float]:
        n = max(1, self.state()["sentences"])
        stats = self._term_stats(set(tokens))
        return {t: math.log(1 + n / s) for t, (_, s) in stats.items() if s > 0}, math.log(1 + n)

    def document_infos(self) -> list[dict[str, Any]]:
        """Every document's ``Document.info()`` (metadata, warnings, length) in one query, without loading the texts."""
        return self.documents.infos()

    # ------------------------------------------------------------- writing

    def migrate(self, dim: int) -> int:
        """Create or update the schema (``dim`` is used only when creating it); the schema version."""

        with self._db.plain() as conn:
            return pg_schema.migrate(conn, dim)

    def sync(self, settings: Settings, embedder: Embedder, progress: Progress | None = None, rebuild: bool = False) -> pg_sync.SyncReport:
        """Make the store hold ``settings.corpus_dir``: changed documents re-indexed (one transaction each), vanished ones deleted.

        A store built with another embedder or chunking is refused unless ``rebuild`` (which empties it
        first; with another dimension the tables are recreated).
        """

        config = embedding_config(settings, embedder.name, embedder.dim)
        self.migrate(embedder.dim)
        with self._db.plain() as probe:
            if not one(probe.execute("SELECT pg_try_advisory_lock(%s)", (pg_schema.LOCK_SYNC,)).fetchone())[0]:
                raise BuildInProgress("another sync of this PostgreSQL store is running")
            try:
                problem = pg_sync.config_problem(pg_sync.read_state(probe), config)
                if problem and not rebuild:
                    raise IndexNotReady(problem + ": sync with rebuild=True to re-embed everything")
                if problem:
                    log.warning("%s: rebuilding", problem)
                    previous = pg_sync.read_state(probe)
                    if previous["dim"] != embedder.dim:
                        self.close()
                        pg_schema.drop_schema(probe)
                        pg_schema.migrate(probe, embedder.dim)
                        probe.execute("UPDATE state SET generation = %s", (previous["generation"],))  # generations only grow
                    with self.connect() as conn:
                        pg_sync.reset(conn, config)
                corpus = load_corpus(settings.corpus_dir, Limits.from_settings(settings))
                if not corpus.documents:
                    skipped = "".join(f"; skipped {s.source}: {s.reason}" for s in corpus.skipped[:5])
                    raise IndexNotReady(f"no documents to index in {settings.corpus_dir}{skipped}")
                with self.connect() as conn:
                    report = pg_sync.sync(conn, corpus, config, embedder, progress)
            finally:
                probe.execute("SELECT pg_advisory_unlock(%s)", (pg_schema.LOCK_SYNC,))
        report.index_type = self.resolved_index_type(report.chunks)
        self.state(fresh=True)
        return report

    def add_document(self, document: Document, embedder: Embedder, settings: Settings | None = None) -> dict[str, Any]:
        """Index (or replace) one uploaded document in one transaction; its counts.

        Chunking follows the store's configuration (``settings`` only for an empty store).
        """
        self.migrate(embedder.dim)
        with self.connect() as conn:
            s = pg_sync.read_state(conn)
            config = s["config"]
            if config is None:
                config = embedding_config(settings or Settings(_env_file=None), embedder.name, embedder.dim)
                conn.execute("UPDATE state SET embedder = %s, config = %s", (config["embedder"], json.dumps(config)))
            problem = pg_sync.config_problem(s, {**config, "embedder": embedder.name, "dim": embedder.dim})
            if problem:
                raise IndexNotReady(problem)
            [prepared], counts = pg_sync.prepare(conn, [document], config, embedder)
            pg_sync.write(conn, prepared, origin="upload")
        self.state(fresh=True)
        return {"doc_id": document.doc_id, "chunks": len(prepared.chunks), "sentences": len(prepared.sentences), **counts}

    def delete_document(self, doc_id: str) -> bool:
        """Remove one document (any origin) in one transaction; False if there was none."""
        with self.connect() as conn:
            pg_schema.check_schema(conn)
            deleted = pg_sync.delete(conn, doc_id)
        self.state(fresh=True)
        return deleted
