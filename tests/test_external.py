"""The external benchmarks (SciFact, XQuAD en/ru) on a fixed small slice, with real models."""

import json
from pathlib import Path

import pytest

from assistant.evaluation.metrics import ndcg_at_k
from benchmarks import external

# The benchmark data lives outside the repository (shared/bench), so these may skip even in CI.
pytestmark = [pytest.mark.slow, pytest.mark.may_skip]

DATA = external.DATA_DIR
# Metrics that are undefined (None) when the answerer never answered.
CONDITIONAL = {"short_answers", "cited_gold_paragraph"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (DATA / "scifact" / "corpus.jsonl").exists() or not (DATA / "xquad" / "xquad.ru.json").exists():
        pytest.skip(f"benchmark data not found in {DATA}")
    out = tmp_path_factory.mktemp("external")
    assert external.main(["--slice", "--json", str(out / "slice.json"), "--markdown", str(out / "slice.md")]) == 0
    assert "| retriever |" in (out / "slice.md").read_text(encoding="utf-8")
    return json.loads((out / "slice.json").read_text(encoding="utf-8"))


def test_every_metric_is_a_number_in_unit_range(report: dict) -> None:
    metrics = list(external._walk_metrics(report))
    assert len(metrics) > 30
    for path, value in metrics:
        if value is None and path.rsplit(".", 1)[-1] in CONDITIONAL:
            continue
        assert isinstance(value, (int, float)) and not isinstance(value, bool), path
        assert 0.0 <= value <= 1.0, (path, value)


def test_slice_covers_both_benchmarks(report: dict) -> None:
    scifact = report["scifact"]
    assert set(scifact["corpora"]) == {"subset"}  # the slice never touches the full corpus
    assert {(r["retriever"], r["embedder"]) for r in scifact["results"]} == {
        ("bm25", None),
        ("dense", "use"),
        ("hybrid-convex", "use"),
        ("hybrid-rrf", "use"),
    }
    assert scifact["corpora"]["subset"]["queries"] == 20
    for lang in ("en", "ru"):
        info = report["xquad"]["languages"][lang]
        assert (info["questions"], info["paragraphs"]) == (10, 20)
        assert {r["retriever"] for r in info["retrieval"]} == set(external.CONFIGS)
        assert info["answering"]["use"]["questions"] == 10
    assert [t["target"].split()[0] for t in report["targets"]] == ["SciFact", "XQuAD-ru"]


def test_bm25_is_sane_on_the_slice(report: dict) -> None:
    bm25 = next(r for r in report["scifact"]["results"] if r["retriever"] == "bm25")
    assert bm25["ndcg@10"] > 0.3
    assert bm25["recall@100"] > 0.5
    for lang in ("en", "ru"):
        rows = report["xquad"]["languages"][lang]["retrieval"]
        assert next(r for r in rows if r["retriever"] == "bm25")["ndcg@10"] > 0.5


def test_metric_helpers() -> None:
    assert ndcg_at_k(["a", "b"], {"a"}) == 1.0
    assert ndcg_at_k([], {"a"}) == 0.0
    assert external.recall_at_k(["a", "b", "c"], {"c"}, 2) == 0.0
    assert external.recall_at_k(["a", "b", "c"], {"c"}, 3) == 1.0


def test_subset_keeps_every_relevant_document() -> None:
    data = external.SciFact(
        order=[f"d{i}" for i in range(50)],
        titles={f"d{i}": "" for i in range(50)},
        texts={f"d{i}": "" for i in range(50)},
        queries={"q1": "a", "q2": "b", "q3": "c"},
        qrels={"q1": {"d40": 1.0}, "q2": {"d41": 1.0, "d7": 1.0}, "q3": {"d49": 1.0}},
    )
    qids, docs = external.scifact_subset(data, 2, 10)
    assert qids == ["q1", "q2"]
    assert len(docs) == len(set(docs)) == 10
    assert docs[:3] == ["d7", "d40", "d41"]  # the relevant ones first
    assert external.scifact_subset(data, 2, 10) == (qids, docs)  # deterministic
    assert external.scifact_subset(data, 2, 6)[1] == docs[:6]  # a smaller subset is a prefix


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        external.main(["--embedders", "nope"])
    assert external.main(["--data-dir", str(Path("/nonexistent")), "--only", "xquad"]) == 2
