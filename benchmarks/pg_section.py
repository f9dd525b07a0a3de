"""The ``postgres`` section: the PostgreSQL store beside the local one (figures from ``benchmarks/postgres.py``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from assistant.evaluation.report import fmt
from benchmarks.common import _time_calls, distinct_question, free_port, log, summary_ms, table
from benchmarks.context import Context
from benchmarks.load import _http_level


def section_postgres(ctx: Context) -> dict:
    """The PostgreSQL store beside the local one: HNSW search at scale, ingestion, and /ask with 1 and 2 workers."""
    from benchmarks import postgres as pg

    try:
        import psycopg  # noqa: F401
    except ImportError:
        log("postgres: psycopg is not installed (pip install -e '.[postgres]'): skipped")
        return {"skipped": "psycopg not installed"}
    result: dict = {"ann": [], "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    for n in ctx.args.pg_sizes:
        log(f"postgres: HNSW search over {n:,} synthetic vectors")
        result["ann"].append(pg.ann(n=n, queries=ctx.args.ann_queries))
    log("postgres: ingestion through the store")
    result["ingest"] = pg.ingest(documents=20 if ctx.args.quick else 200)
    result["ask"] = _pg_ask(ctx)
    rows = []
    for a in result["ann"]:
        for h in a["hnsw"]:
            latency = h["latency_ms"]
            rows.append([f"{a['n']:,}", h["ef_search"], h["recall_at_k"], latency["p50"], latency["p95"], a["index_build_s"]])
        exact = a["exact_scan_latency_ms"]
        rows.append([f"{a['n']:,}", "exact", a["exact_scan_recall_at_k"], exact["p50"], exact["p95"], None])
    headers = ["chunks", "ef_search", "recall@10", "p50 ms", "p95 ms", "HNSW build s"]
    table("PostgreSQL + pgvector: search over synthetic 384-d vectors, one query at a time", headers, rows)
    ing = result["ingest"]
    print(f"ingestion through PostgresStore: {fmt(ing.get('chunks_per_s'))} chunks/s ({ing.get('documents')} documents, vectors given)")
    table(
        "/ask on the seed corpus, local store against PostgreSQL (first-time questions)",
        ["store", "path", "n", "p50 ms", "p95 ms", "answers/s"],
        [[r["store"], r["path"], r["n"], r["p50_ms"], r["p95_ms"], r.get("answers_per_s")] for r in result["ask"]["rows"]],
    )
    return result


def _pg_ask(ctx: Context) -> dict:
    """In-process /ask on both stores, then HTTP with 1 and 2 workers on PostgreSQL (2 clients each)."""
    from assistant.service import open_service
    from benchmarks.postgres import _database

    ctx.ensure_index()
    local = ctx.open_service()
    n = min(ctx.args.requests, 40)
    questions = [distinct_question(i) for i in range(1000, 1000 + n)]
    rows = []
    with _database(None) as url:
        settings = ctx.settings().model_copy(update={"store": "postgres", "database_url": url})
        shared = open_service(settings, local.embedder)  # syncs the seed corpus into the database
        for store, service in (("local", local), ("postgres", shared)):
            durations, _ = _time_calls(lambda q, s=service: s.pipeline.ask(q, mode="extractive"), questions, n)
            rows.append({"store": store, "path": "Pipeline.ask in-process", **summary_ms(durations), "answers_per_s": None})
        for workers in (1, 2):
            env = ctx.env(ASSISTANT_STORE="postgres", ASSISTANT_DATABASE_URL=url)
            port = free_port()
            cmd = [sys.executable, "-m", "assistant.cli", "serve", "--workers", str(workers), "--port", str(port)]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                base = f"http://127.0.0.1:{port}"
                _wait_healthy(base, 600)
                level = asyncio.run(_http_level(base, 2, ctx.args.http_requests, ctx.args.http_seconds))
                path = f"HTTP, {workers} worker(s), 2 clients"
                rows.append(
                    {
                        "store": "postgres",
                        "path": path,
                        "n": level["ok"],
                        "p50_ms": level["p50_ms"],
                        "p95_ms": level["p95_ms"],
                        "answers_per_s": level["answers_per_s"],
                    }  # fmt: skip
                )
            finally:
                proc.terminate()
                proc.wait(60)
    return {"rows": rows}


def _wait_healthy(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")
