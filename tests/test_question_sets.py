"""The question sets against the corpus texts (no model): the near-miss set and the evidence-grouped split."""

import importlib.util
import json

import pytest

from assistant.evaluation import harness as ev
from tests.conftest import ROOT

EVALUATION = ROOT / "evaluation"
DOCUMENTS = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "corpus").glob("*.txt")}


def _resplit():
    spec = importlib.util.spec_from_file_location("resplit", EVALUATION / "resplit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_near_miss_set_loads_and_is_unanswerable():
    questions = ev.load_set("near_miss", DOCUMENTS, EVALUATION)
    assert "near_miss" in ev.SETS
    assert len(questions) >= 60 and len({q.id for q in questions}) == len(questions)
    languages = [q.language for q in questions]
    assert languages.count("fr") >= 15 and languages.count("ru") >= 15
    assert all(not q.answerable and not q.answers and not q.evidence and q.type == "near-miss" for q in questions)
    others = {q.id for name in ("all", "unseen") for q in ev.load_set(name, DOCUMENTS, EVALUATION)}
    assert not others & {q.id for q in questions}
    rows = [json.loads(line) for line in (EVALUATION / "questions_near_miss.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        assert row["near"]["quote"] in DOCUMENTS[row["near"]["doc_id"]], row["id"]
        assert row["why"].strip(), row["id"]


def test_a_near_quote_missing_from_its_document_is_refused(tmp_path):
    row = {"id": "x1", "question": "?", "language": "en", "type": "near-miss", "answerable": False, "answers": [], "evidence": []}
    doc = next(iter(DOCUMENTS))
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({**row, "near": {"doc_id": doc, "quote": DOCUMENTS[doc][:40]}})
        + "\n"
        + json.dumps({**row, "id": "x2", "near": {"doc_id": doc, "quote": "words that are in no document"}})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"q\.jsonl:2: 'near' quote not found"):
        ev.load_questions(path, DOCUMENTS)
    path.write_text(json.dumps({**row, "near": {"doc_id": "no-such-document", "quote": "x"}}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q\.jsonl:1: unknown document"):
        ev.load_questions(path, DOCUMENTS)


def test_split_is_grouped_by_evidence():
    resplit = _resplit()
    rows = resplit.load_rows(EVALUATION / "questions.jsonl")
    split = json.loads((EVALUATION / "split.json").read_text(encoding="utf-8"))
    assert set(split) == {"about", "calibration", "test"}
    cal, test = set(split["calibration"]), set(split["test"])
    ids = [r["id"] for r in rows]
    assert not cal & test and cal | test == set(ids) and len(split["calibration"]) + len(split["test"]) == len(ids)
    spans = {r["id"]: resplit.evidence_spans(r, DOCUMENTS) for r in rows}
    for t in test:
        for c in cal:
            assert not resplit.overlap(spans[t], spans[c]), (t, c)
    for a, b in resplit.TRANSLATION_OF.items():
        assert (a in cal) == (b in cal), (a, b)
    assert abs(len(cal) - len(test)) <= 0.1 * len(ids)
    for lang in ("en", "fr", "ru"):
        for answerable in (True, False):
            n = [sum(r["language"] == lang and r["answerable"] == answerable for r in rows if r["id"] in half) for half in (cal, test)]
            assert abs(n[0] - n[1]) <= max(2, 0.2 * sum(n)), (lang, answerable, n)


def test_split_json_is_what_the_script_writes():
    resplit = _resplit()
    rows = resplit.load_rows(EVALUATION / "questions.jsonl")
    split = json.loads((EVALUATION / "split.json").read_text(encoding="utf-8"))
    expected = resplit.assign(rows, resplit.groups(rows, DOCUMENTS))
    assert {k: sorted(split[k]) for k in ("calibration", "test")} == expected
