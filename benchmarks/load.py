"""The ``http`` section: /ask over real HTTP against a uvicorn server at several levels of concurrent clients."""

from __future__ import annotations

import asyncio
import time

from assistant.evaluation.metrics import median
from assistant.evaluation.report import fmt
from benchmarks.common import QUESTIONS, distinct_question, log, summary_ms, table
from benchmarks.context import Context, Server


async def _http_level(url: str, clients: int, max_requests: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    timings: list[dict] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker(w: int) -> None:
            nonlocal sent, errors
            i = w
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                question = distinct_question(i)
                i += clients
                t = time.perf_counter()
                try:
                    r = await client.post(f"{url}/ask", json={"question": question, "mode": "extractive"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                    timings.append(r.json()["timings_ms"])
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "ok": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "answers_per_s": len(latencies) / elapsed if elapsed else None,
        **summary_ms(latencies),
        "timings": timings,
        "latencies_s": latencies,
    }


def section_http(ctx: Context) -> dict:
    ctx.ensure_index()
    server, ctx.server = ctx.server, None
    if server is None:
        server = Server(ctx)
        server.wait_first_answer(QUESTIONS[0])
    try:
        for _ in range(3):  # warm-up
            asyncio.run(_http_level(server.url, 1, 1, 60))
        levels = []
        for clients in ctx.args.clients:
            log(f"http: {clients} client(s)")
            levels.append(asyncio.run(_http_level(server.url, clients, ctx.args.http_requests, ctx.args.http_seconds)))
        memory = server.memory()
    finally:
        server.stop()
    for level in levels:
        ctx.timings[f"http{level['clients']}"] = level.pop("timings")
    # client-side latency minus the server's own total: HTTP, JSON and framework overhead
    one = next((lv for lv in levels if lv["clients"] == 1), None)
    overhead = None
    if one:
        server_total = [t.get("total", 0.0) for t in ctx.timings["http1"]]
        overhead = median([lat * 1000 - tot for lat, tot in zip(one["latencies_s"], server_total, strict=False)])
    for level in levels:
        level.pop("latencies_s")
    result = {
        "levels": levels,
        "server_rss_mb": memory.get("VmRSS"),
        "server_peak_rss_mb": memory.get("VmHWM"),
        "overhead_1_client_ms": overhead,
    }
    table(
        "HTTP POST /ask on 127.0.0.1 (uvicorn, 1 worker; clients in this process with httpx)",
        ["clients", "ok", "errors", "seconds", "answers/s", "p50 ms", "p95 ms", "p99 ms"],
        [
            [lv["clients"], lv["ok"], lv["errors"], lv["seconds"], lv["answers_per_s"], lv["p50_ms"], lv["p95_ms"], lv["p99_ms"]]
            for lv in levels
        ],
    )
    print(
        f"server RSS now {fmt(result['server_rss_mb'])} MB, peak {fmt(result['server_peak_rss_mb'])} MB; "
        f"median HTTP+framework overhead at 1 client (client latency - server total) {fmt(overhead, 2)} ms"
    )
    return result
