"""The answer step's decision: one margin scale and one ranking for serving and fitting, the
calibration tied to its reader and features, and the near-miss questions made for fitting it."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from assistant.answer.decision import FEATURES, Calibration, CalibrationMismatch, decision_features, scaled_margin
from assistant.answer.extractive import Candidate, _only_question_words, ranked
from assistant.search.retriever import Passage
from training.selective import Decision, fit, threshold_for
from training.swaps import Pools, swap


def _cand(base: float, margin: float | None) -> Candidate:
    passage = Passage("c", "d", "t", "d.txt", "0123456789", 0, 10, 0.0)
    return Candidate(0, 0, passage, 0, 10, 0.5, 0.5, True, base, base, margin)


def test_ranking_and_decision_use_one_margin_scale():
    cands = [_cand(1.0, -4.0), _cand(0.9, 6.0), _cand(0.95, None)]
    order = ranked(cands, 0.5)
    for c in order:
        assert c.score == pytest.approx(c.base_score + 0.5 * scaled_margin(c.margin))
    assert [c.margin for c in order] == [6.0, -4.0, None]
    # The decision sees the margin on the same scale as the ranking.
    for m in (-40.0, -4.0, 0.0, 6.0, None):
        assert decision_features(m, 0.9, True, 0.5, False)["margin"] == scaled_margin(m)
    # Weight 0 ranks by the reader-free score alone.
    assert [c.base_score for c in ranked(cands, 0.0)] == [1.0, 0.95, 0.9]


def test_every_feature_is_computed():
    assert set(decision_features(1.0, 0.9, True, 0.5, False)) == set(FEATURES)


def test_a_span_of_the_questions_own_words_is_not_an_answer():
    q = {"what", "is", "the", "project", "number", "of", "tajikistan", "digital", "foundations"}
    assert _only_question_words("Tajikistan Digital Foundations Project", q)
    assert not _only_question_words("7F09822", q)
    assert not _only_question_words("", q)


def test_a_calibration_for_another_reader_or_features_is_refused():
    cal = Calibration(0.1, {"bias": 0.0, "margin": 1.0}, 0.5, 3.0, features=("margin",), reader_sha256="a" * 64)
    cal.check("a" * 64)
    with pytest.raises(CalibrationMismatch, match="assistant calibrate"):
        cal.check("b" * 64)
    with pytest.raises(CalibrationMismatch, match="does not compute: colour"):
        Calibration(0.1, {"bias": 0.0, "colour": 1.0}, 0.5, 3.0).check(None)
    # A fitted feature the caller does not give is an error, not a silent zero.
    with pytest.raises(CalibrationMismatch, match="'margin'"):
        cal.probability({"evidence": 1.0})


def test_the_calibration_round_trips_with_its_scale_and_reader():
    cal = Calibration(0.1, {"bias": 0.2, "margin": 1.0}, 0.4, 3.0, {"x": 1}, ("margin",), "c" * 64, {"margin": (1.0, 2.0)})
    back = Calibration.from_json(cal.to_json())
    assert back == cal
    assert back.probability({"margin": 1.0}) == pytest.approx(1 / (1 + 2.718281828459045**-0.2))


def test_the_span_is_marked_from_a_lower_margin_than_it_answers_alone():
    from types import SimpleNamespace

    from assistant.answer.extractive import ExtractiveAnswerer

    cal = Calibration(0.1, {"bias": 0.0}, 0.5, 6.0, highlight_margin=-1.0)
    owner = SimpleNamespace(calibration=cal)
    confident, unsure, weak = (replace(_cand(1.0, m), span=(2, 5)) for m in (7.0, 0.5, -3.0))
    question = "When did the project start?"
    assert ExtractiveAnswerer.reader_span(owner, question, confident) == (2, 5)
    assert ExtractiveAnswerer.reader_span(owner, question, unsure) is None
    assert ExtractiveAnswerer.reader_span(owner, question, unsure, highlight=True) == (2, 5)
    assert ExtractiveAnswerer.reader_span(owner, question, weak, highlight=True) is None
    # An explanation is never cut down to a span.
    assert ExtractiveAnswerer.reader_span(owner, "Why did the project start?", confident, highlight=True) is None
    # A calibration written before the highlight margin existed marks only what it answers with.
    old = json.loads(cal.to_json())
    del old["highlight_margin"]
    assert Calibration.from_json(json.dumps(old)).highlight_margin == 6.0


def test_the_shipped_calibration_matches_the_shipped_reader():
    from assistant.e5.modelfile import file_sha256
    from assistant.e5.reader import WEIGHTS_FILE, packaged_weights_dir

    cal = Calibration.load()
    assert cal is not None
    cal.check(file_sha256(packaged_weights_dir() / WEIGHTS_FILE))
    assert cal.reader_sha256, "calibration.json must name the reader it was fitted for"


def test_swapped_questions_name_something_the_passage_lacks():
    context = "Tajikistan has been an IOM Member State since November 1994. The office opened in 2001 with 12 staff."
    pools = Pools.gather(["When did Kyrgyzstan join?", "What happened in 1997?", "How many of the 40 staff?"])
    rng = random.Random(3)
    seen = set()
    for _ in range(30):
        out = swap("When did Tajikistan become an IOM Member State, in 1994?", context, pools, rng)
        assert out and out != "When did Tajikistan become an IOM Member State, in 1994?"
        seen.add(out)
        changed = set(out.replace("?", "").replace(",", "").split()) - set(context.replace(".", "").split())
        assert changed - {"When", "did", "become", "an", "in"}, out  # a new word the passage does not hold
    assert len(seen) > 1
    assert swap("What does the office do?", context, pools, rng) is None  # nothing to swap


def test_the_threshold_keeps_false_abstention_within_the_budget():
    # 20 answerable questions, 1 already blocked by a hard check: 5% allows that one only.
    p = [0.05 * i for i in range(1, 20)]
    import numpy as np

    t = threshold_for(np.array(p), 1, 20, 0.05)
    assert sum(x < t for x in p) == 0
    t = threshold_for(np.array(p), 0, 20, 0.10)
    assert sum(x < t for x in p) == 2


def test_fitting_separates_made_negatives_and_cross_validates_by_question():
    rng = random.Random(0)
    decisions = []
    for i in range(200):
        good = {**decision_features(rng.gauss(3, 2), rng.random(), True, rng.random(), False), "passage_overlap": 0.9}
        bad = {**decision_features(rng.gauss(-3, 2), rng.random(), True, rng.random(), False), "passage_overlap": 0.4}
        decisions.append(Decision(f"q{i}", "asked", "s", "en", True, "", good, True))
        decisions.append(Decision(f"q{i}", "removed", "s", "en", False, "", bad, False))
    coefficients, scale, threshold, report = fit(decisions, 0.05)
    assert coefficients["margin"] > 0 and coefficients["passage_overlap"] > 0
    cv = report["cross_validated"]
    assert cv["false_abstention"] <= 0.06
    assert cv["abstention_removed"] > 0.8
    json.dumps(report)  # the report goes into calibration.json
