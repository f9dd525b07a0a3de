"""The benchmark's targets, checked at the end of a run and printed as met / missed."""

from __future__ import annotations

from benchmarks.common import table

# Targets: (key, description, threshold, comparison)
TARGETS = [
    ("inproc_p50_ms", "/ask p50 in-process with the reader, first-time questions (seed corpus)", 200.0, "<="),
    ("inproc_p95_ms", "/ask p95 in-process with the reader, first-time questions (seed corpus)", 400.0, "<="),
    ("server_rss_mb", "server peak RSS with the reader loaded (seed corpus)", 1024.0, "<="),
    ("index_chars_per_s", "indexing characters/s, default embedder (SciFact sample)", 15_000.0, ">="),
    ("index_peak_rss_mb", "peak RSS while indexing", 1536.0, "<="),
    ("search_1m_p50_ms", "search over 1M chunks p50 at recall@10 >= 0.95 (best local index)", 20.0, "<="),
    ("coldstart_s", "cold start to first answer (median)", 15.0, "<="),
]


def check_targets(results: dict) -> list[dict]:
    figures: dict[str, tuple[float | None, str]] = {}
    lat = results.get("latency")
    if lat:
        worker = lat["pipeline_worker_thread"]
        note = f"TestClient POST /ask; Pipeline.ask in a worker thread: p50 {worker['p50_ms']:.1f}, p95 {worker['p95_ms']:.1f}"
        figures["inproc_p50_ms"] = (lat["testclient"]["p50_ms"], note)
        figures["inproc_p95_ms"] = (lat["testclient"]["p95_ms"], note)
    http = results.get("http")
    if http:
        figures["server_rss_mb"] = (http["server_peak_rss_mb"], "uvicorn VmHWM after the HTTP runs")
    cold = results.get("coldstart")
    if cold:
        figures["coldstart_s"] = (cold["median_first_answer_s"], f"{len(cold['runs'])} run(s)")
        figures.setdefault("server_rss_mb", (cold["server_rss_after_start_mb"], "uvicorn RSS after start-up"))
    indexing = results.get("indexing")
    if indexing:
        runs = [r for r in indexing["runs"] if r.get("engine", "torch") == "torch"]
        sci = next((r for r in runs if r["workload"].startswith("SciFact")), runs[-1] if runs else None)
        if sci:
            figures["index_chars_per_s"] = (sci["chars_per_s"], sci["workload"])
        if runs:
            peak = max(runs, key=lambda r: r["peak_rss_mb"] or 0)
            figures["index_peak_rss_mb"] = (peak["peak_rss_mb"], peak["workload"])
    ann = results.get("ann")
    if ann:
        at_1m = [r for r in ann["rows"] if r["n"] >= 1_000_000]
        if at_1m:
            good = [r for r in at_1m if r["recall_at_10"] >= 0.95]
            best = min(good, key=lambda r: r["p50_ms"]) if good else None
            figures["search_1m_p50_ms"] = (
                best["p50_ms"] if best else None,
                f"{best['type']}, recall {best['recall_at_10']:.3f}" if best else "no index reached recall 0.95",
            )
    out = []
    for key, label, threshold, op in TARGETS:
        value, note = figures.get(key, (None, "not measured in this run"))
        met = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
        out.append({"target": key, "description": label, "threshold": threshold, "op": op, "value": value, "met": met, "note": note})
    table(
        "Targets",
        ["target", "wanted", "measured", "status", "note"],
        [
            [t["description"], f"{t['op']} {t['threshold']:g}", t["value"], {True: "met", False: "MISSED", None: "-"}[t["met"]], t["note"]]
            for t in out
        ],
        digits=2,
    )
    return out
