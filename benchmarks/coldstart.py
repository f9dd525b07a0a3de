"""The ``coldstart`` section: process start to the first answered POST /ask, and where the start-up time goes."""

from __future__ import annotations

from assistant.evaluation.metrics import median
from benchmarks.common import QUESTIONS, table
from benchmarks.context import Context, Server, run_child


def section_coldstart(ctx: Context) -> dict:
    ctx.ensure_index()
    runs = []
    count = max(1, ctx.args.cold_runs)
    for i in range(count):
        server = Server(ctx)
        try:
            ready_s, first_request_s = server.wait_first_answer(QUESTIONS[i % len(QUESTIONS)])
            runs.append({"first_answer_s": ready_s, "first_request_s": first_request_s, **server.memory()})
        except BaseException:
            server.stop()
            raise
        if i == count - 1 and "http" in ctx.args.only:
            ctx.server = server  # reused by the http section
        else:
            server.stop()
    phases = run_child(ctx, "phases", {})
    second_answer_s = phases["phases"].pop("second_answer_s")
    result = {
        "runs": runs,
        "median_first_answer_s": median([r["first_answer_s"] for r in runs]),
        "min_first_answer_s": min(r["first_answer_s"] for r in runs),
        "median_first_request_s": median([r["first_request_s"] for r in runs]),
        "server_rss_after_start_mb": median([r.get("VmRSS", 0.0) for r in runs]),
        "breakdown_s": {"interpreter_start_s": phases["interpreter_start_s"], **phases["phases"]},
        "breakdown_second_answer_s": second_answer_s,  # not part of cold start: a warm query for comparison
        "breakdown_rss_mb": phases["rss_mb"],
    }
    table(
        "Cold start: process start -> first answered POST /ask (uvicorn, seed index already built)",
        ["run", "first answer s", "that request s", "RSS MB"],
        [[i + 1, r["first_answer_s"], r["first_request_s"], r.get("VmRSS")] for i, r in enumerate(runs)]
        + [["median", result["median_first_answer_s"], result["median_first_request_s"], result["server_rss_after_start_mb"]]],
        digits=2,
    )
    total = sum(result["breakdown_s"].values())
    table(
        "Cold start breakdown (one fresh process, in-process steps)",
        ["step", "seconds", "share %"],
        [[k.removesuffix("_s"), v, 100 * v / total] for k, v in result["breakdown_s"].items()]
        + [["(second answer, for comparison)", second_answer_s, None]],
        digits=2,
    )
    return result
