"""The ``latency`` and ``stages`` sections: in-process /ask latency per path, and the median time per stage."""

from __future__ import annotations

from assistant.evaluation.metrics import median
from benchmarks.common import (
    QUESTIONS,
    STAGES,
    _interleaved,
    _interleaved_distinct,
    _time_calls,
    first_time_questions,
    proc_status,
    summary_ms,
    table,
)
from benchmarks.context import Context

LATENCY_PATHS = {
    "retrieval_only": "Retriever.search only (main thread)",
    "pipeline": "Pipeline.ask (main thread)",
    "pipeline_worker_thread": "Pipeline.ask (worker thread)",
    "testclient": "TestClient POST /ask",
}


def section_latency(ctx: Context) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from assistant.server.app import create_app

    service = ctx.open_service()
    settings = ctx.settings()
    pipeline = service.pipeline
    n = ctx.args.requests
    with TestClient(create_app(settings, service)) as client, ThreadPoolExecutor(1) as worker:

        def post(q: str) -> dict:
            r = client.post("/ask", json={"question": q, "mode": "extractive"})
            r.raise_for_status()
            return r.json()

        paths = {
            "retrieval_only": lambda q: service.retriever.search(q),
            "pipeline": lambda q: pipeline.ask(q, mode="extractive"),
            # uvicorn runs /ask in a worker thread: this is the server's path
            "pipeline_worker_thread": lambda q: worker.submit(pipeline.ask, q, mode="extractive").result(),
            "testclient": post,
        }
        pool = first_time_questions()
        _interleaved(paths, ["warm-up question one", "warm-up question two"], 2)
        # Each path gets questions of its own, every one asked for the first time.
        n = min(n, len(pool) // len(paths))
        durations, outputs = _interleaved_distinct(paths, pool, n)
    ctx.timings["direct"] = [a.timings_ms for a in outputs["pipeline"]]
    ctx.timings["worker_thread"] = [a.timings_ms for a in outputs["pipeline_worker_thread"]]
    ctx.timings["testclient"] = [r["timings_ms"] for r in outputs["testclient"]]
    result = {
        "questions": n,
        "first_time_questions": True,
        "reader": service.pipeline.extractive.reader is not None,
        "abstained_share": sum(a.abstained for a in outputs["pipeline"]) / n if n else None,
        **{key: summary_ms(durations[key]) for key in LATENCY_PATHS},
        "chunks": service.index.chunk_count,
        "bench_process_rss_mb": proc_status().get("VmRSS"),
    }
    rows = []
    for key, label in LATENCY_PATHS.items():
        s = result[key]
        rows.append([label, s["n"], s["p50_ms"], s["p95_ms"], s["p99_ms"], 1000 / s["mean_ms"] if s["mean_ms"] else None])
    table(
        f"In-process extractive /ask latency, seed corpus ({result['chunks']} chunks; reader {'on' if result['reader'] else 'off'}; "
        f"{n} first-time en/fr/ru questions per path, paths interleaved)",
        ["path", "n", "p50 ms", "p95 ms", "p99 ms", "answers/s"],
        rows,
    )
    return result


def section_stages(ctx: Context) -> dict:
    if not ctx.timings:
        pipeline = ctx.open_service().pipeline
        _time_calls(lambda q: pipeline.ask(q, mode="extractive"), QUESTIONS, len(QUESTIONS))
        _, answers = _time_calls(lambda q: pipeline.ask(q, mode="extractive"), QUESTIONS, ctx.args.requests)
        ctx.timings["direct"] = [a.timings_ms for a in answers]
    result: dict = {}
    for source, rows in ctx.timings.items():
        stages = {s: median([r[s] for r in rows if s in r]) for s in (*STAGES, "total")}
        # per request: total minus the named stages (building the response, the LLM choice...)
        stages["unaccounted"] = median([r["total"] - sum(r.get(s, 0.0) for s in STAGES) for r in rows if "total" in r])
        result[source] = {"n": len(rows), "median_ms": stages}
    sources = list(result)
    first = result[sources[0]]["median_ms"]
    rows = []
    for stage in (*STAGES, "unaccounted", "total"):
        share = 100 * first[stage] / first["total"] if first.get(stage) is not None and first["total"] else None
        rows.append([stage, *(result[s]["median_ms"][stage] for s in sources), share])
    table(
        "Median time per stage from timings_ms (ms); share of the first column's total",
        ["stage", *sources, f"share % ({sources[0]})"],
        rows,
        digits=2,
    )
    return result
