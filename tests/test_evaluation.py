import json
from types import SimpleNamespace

import pytest

from assistant.config import Settings
from assistant.evaluation import harness as ev
from assistant.evaluation import metrics
from assistant.ingest.documents import load_corpus
from assistant.service import open_service
from tests.conftest import ROOT

QUESTIONS = ROOT / "evaluation" / "questions.jsonl"
TOLERANCE = 0.03


def test_question_set_is_well_formed():
    docs = {d.doc_id: d.text for d in load_corpus(ROOT / "corpus").documents}
    questions = ev.load_questions(QUESTIONS, docs)  # raises if a quote is not in its document
    assert len(questions) >= 120 and len({q.id for q in questions}) == len(questions)
    assert sum(not q.answerable for q in questions) >= 20
    assert {q.language for q in questions} == {"en", "fr", "ru"}
    assert {ev_.doc_id for q in questions for ev_ in q.evidence} == set(docs)
    for q in questions:
        assert q.answerable == bool(q.answers) == bool(q.evidence), q.id


def test_metrics_on_hand_made_cases():
    assert metrics.normalise_answer("CHF 9’200’000.") == "chf 9200000"
    assert metrics.contains_answer("The budget is CHF 9,200,000 [1]", ["CHF 9’200’000"])
    assert not metrics.contains_answer("in 19945", ["1994"])
    assert metrics.exact_match("The World Bank", ["world bank"])
    assert metrics.token_f1("over 450 government officials", ["450 officials"]) == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    e = ev.Evidence("d", "quote", 100, 150)
    assert ev.supports({"doc_id": "d", "start": 0, "end": 130}, e)
    assert not ev.supports({"doc_id": "d", "start": 0, "end": 110}, e)
    assert not ev.supports({"doc_id": "x", "start": 0, "end": 500}, e)
    perfect = ev.retrieval_metrics([SimpleNamespace(doc_id="d", start=90, end=200)], [e])
    assert perfect == {"recall@1": 1.0, "recall@5": 1.0, "mrr": 1.0, "ndcg@10": 1.0}


def test_regressions_flags_only_drops_beyond_tolerance():
    summary = {
        "retrieval": {"recall@5": 0.90, "mrr": 0.80},
        "answer": {"contains": 0.70},
        "citations": {"evidence_cited": 0.85},
        "abstention": {"recall": 0.50, "false_rate": 0.10},
    }
    base = {
        "retrieval.recall@5": 0.91,
        "retrieval.mrr": 0.90,
        "answer.contains": 0.70,
        "citations.evidence_cited": 0.85,
        "abstention.recall": 0.50,
        "abstention.false_rate": 0.04,
    }
    problems = ev.regressions(summary, base, 0.03)
    assert [p.split(":")[0] for p in problems] == ["retrieval.mrr", "abstention.false_rate"]


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["test", "unseen"])
def test_pipeline_does_not_regress_below_the_baseline(real_index_dir, set_name):
    """The regression gate: the default offline pipeline against its recorded figures in evaluation/baseline.json."""
    settings = Settings(_env_file=None, corpus_dir=ROOT / "corpus", index_dir=real_index_dir)
    service = open_service(settings, build=False)
    questions = ev.load_set(set_name, {d: doc.text for d, doc in service.index.documents.items()})
    report = ev.run_evaluation(service.pipeline, questions)
    baseline = json.loads((ROOT / "evaluation" / "baseline.json").read_text())["sets"][set_name]["headline"]
    problems = ev.regressions(report["overall"], baseline, TOLERANCE)
    assert not problems, "\n".join(problems)
