"""The ``ann`` section: the local FAISS indexes (flat, HNSW, IVF-PQ) on clustered synthetic unit vectors."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from assistant.evaluation.metrics import neighbour_recall, percentile
from benchmarks.common import Mixture, log, summary_ms, table
from benchmarks.context import Context


def _search_times(index, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    """One query per call, as the service searches."""
    ids = np.empty((len(queries), k), dtype=np.int64)
    durations = []
    for i in range(len(queries)):
        q = queries[i : i + 1]
        t = time.perf_counter()
        _, found = index.search(q, k)
        durations.append(time.perf_counter() - t)
        ids[i] = found[0]
    return durations, ids


def section_ann(ctx: Context) -> dict:
    from assistant.search.index import HNSW_FROM

    k, dim, nq = 10, 384, ctx.args.ann_queries
    results = []
    for n in ctx.args.sizes:
        data, queries, exact, gen_s = _vectors(n, dim, nq, k)
        for kind in ctx.args.ann_types:
            results.append(_measure(ctx, kind, n, data, queries, exact, k, gen_s))
        del data
    _tables(ctx, results, dim, nq, k)
    print(f"resolve_index_type('auto') switches flat -> hnsw at HNSW_FROM = {HNSW_FROM:,} chunks.")
    return {
        "dim": dim,
        "queries": nq,
        "k": k,
        "search_threads": ctx.args.ann_threads or "faiss default",
        "hnsw_from": HNSW_FROM,
        "rows": results,
    }


def _vectors(n: int, dim: int, nq: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``n`` clustered vectors, ``nq`` queries, their exact top ``k`` and the seconds generating took."""
    import faiss

    clusters = max(10, n // 1000)
    mix = Mixture(dim, clusters, seed=7)
    log(f"ann: generating {n:,} x {dim} clustered vectors ({clusters} clusters)")
    t = time.perf_counter()
    data = mix.sample(n, seed=1)
    queries = mix.sample(nq, seed=2)
    gen_s = time.perf_counter() - t
    exact_index = faiss.IndexFlatIP(dim)
    exact_index.add(data)
    _, exact = exact_index.search(queries, k)
    del exact_index
    return data, queries, exact, gen_s


def _measure(ctx: Context, kind: str, n: int, data: np.ndarray, queries: np.ndarray, exact: np.ndarray, k: int, gen_s: float) -> dict:
    """Build one index type over ``data``; its size, build time, search times and recall."""
    import faiss

    from assistant.search.index import make_faiss_index, resolve_index_type

    log(f"ann: {kind} at {n:,}")
    t = time.perf_counter()
    index = make_faiss_index(data, kind)
    build_s = time.perf_counter() - t
    with tempfile.NamedTemporaryFile(dir=ctx.tmp, suffix=".faiss") as fh:
        faiss.write_index(index, fh.name)  # the bytes faiss.serialize_index would give
        size = os.path.getsize(fh.name)
    built_threads = faiss.omp_get_max_threads()
    if ctx.args.ann_threads:
        faiss.omp_set_num_threads(ctx.args.ann_threads)
    durations, found = _search_times(index, queries, k)
    row = {
        **summary_ms(durations),
        "n": n,
        "type": kind,
        "faiss_class": type(index).__name__,
        "build_s": build_s,
        "bytes_per_chunk": size / n,
        "index_mb": size / 2**20,
        "recall_at_10": neighbour_recall(found, exact),
        "generate_s": gen_s,
        "auto_would_pick": resolve_index_type("auto", n),
        "sweep": [],
    }
    _sweep(index, kind, queries, exact, k, row)
    faiss.omp_set_num_threads(built_threads)
    log(
        f"ann: {kind} at {n:,}: build {build_s:.1f} s, recall@10 {row['recall_at_10']:.3f}, "
        f"p50 {row['p50_ms']:.3f} ms, {row['bytes_per_chunk']:.0f} B/chunk"
    )
    return row


def _sweep(index, kind: str, queries: np.ndarray, exact: np.ndarray, k: int, row: dict) -> None:
    """Recall and median time by efSearch (HNSW) or nprobe (IVF-PQ), into ``row["sweep"]``."""
    import faiss

    if kind == "hnsw":
        for ef in (16, 32, 64, 128, 256):
            index.hnsw.efSearch = ef
            d, f = _search_times(index, queries, k)
            row["sweep"].append(
                {"efSearch": ef, "recall_at_10": neighbour_recall(f, exact), "p50_ms": percentile([x * 1000 for x in d], 50)}
            )
        index.hnsw.efSearch = 128
    elif kind == "ivfpq" and hasattr(index, "base_index"):
        ivf = faiss.extract_index_ivf(index.base_index)
        row["nlist"] = ivf.nlist
        for nprobe in (8, 16, 32, 64, 128):
            ivf.nprobe = min(nprobe, ivf.nlist)
            d, f = _search_times(index, queries, k)
            row["sweep"].append(
                {"nprobe": nprobe, "recall_at_10": neighbour_recall(f, exact), "p50_ms": percentile([x * 1000 for x in d], 50)}
            )


def _tables(ctx: Context, results: list[dict], dim: int, nq: int, k: int) -> None:
    table(
        f"ANN on clustered synthetic unit vectors (dim {dim}, {nq} queries one at a time, k={k}, "
        f"{ctx.args.ann_threads or 'default'} search thread(s); recall vs exact)",
        ["chunks", "type", "faiss class", "build s", "bytes/chunk", "index MB", "recall@10", "p50 ms", "p95 ms", "p99 ms"],
        [
            [
                r["n"],
                r["type"],
                r["faiss_class"],
                r["build_s"],
                r["bytes_per_chunk"],
                r["index_mb"],
                r["recall_at_10"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
            ]
            for r in results
        ],
        digits=3,
    )
    sweep_rows = []
    for r in results:
        for s in r["sweep"]:
            knob = "efSearch" if "efSearch" in s else "nprobe"
            sweep_rows.append([r["n"], r["type"], f"{knob}={s[knob]}", s["recall_at_10"], s["p50_ms"]])
    if sweep_rows:
        table(
            "ANN knob sweep (same queries; make_faiss_index defaults are efSearch=128, nprobe=32 + refine x4)",
            ["chunks", "type", "setting", "recall@10", "p50 ms"],
            sweep_rows,
            digits=3,
        )
