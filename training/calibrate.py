"""Fit the extractive answerer's numbers (``assistant/answer/calibration.json``) on held-out data.

    assistant calibrate [--reader-dir DIR] [--out FILE]

Uses only the calibration half of ``evaluation/questions.jsonl`` (``evaluation/split.json``):
its answerable and unanswerable questions, plus an answer-removed variant of every answerable
one (the sentences holding the evidence deleted from the document, the corpus re-indexed, the
question asked again: the right behaviour is to abstain). The test half, the unseen questions
and the public benchmarks are never read here.

Fitted, in order:
1. ``reader_weight``: how much the reader's margin counts in the sentence score (the value whose
   top sentence holds a gold answer most often);
2. the logistic decision "do the documents answer this?" over the best sentence's features, and
   its ``threshold``: the highest one whose false abstentions on answerable questions stay within
   ``--false-abstention`` (5% by default);
3. ``short_answer_margin``: from which reader margin the span alone is the answer: the lowest one
   at which answering with the spans costs at most 3 points of "the answer holds a gold answer"
   against always quoting the sentence (a span a few words shorter than the labelled answer
   counts as a miss; the sentence is still quoted beneath the short answer).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from assistant.answer.decision import CALIBRATION_FILE, Calibration, fit_logistic
from assistant.answer.extractive import Candidate, ExtractiveAnswerer
from assistant.answer.kinds import wants_explanation
from assistant.config import Settings
from assistant.evaluation.harness import Question, answer_removed, load_questions
from assistant.evaluation.metrics import contains_answer, token_f1
from assistant.search.embedders import create_embedder
from assistant.service import assemble, load_reader, open_service

log = logging.getLogger("training.calibrate")
ROOT = Path(__file__).resolve().parent.parent
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 3.0)
MARGIN_GRID = tuple(np.round(np.arange(-2.0, 8.01, 0.5), 2))
MIN_SHORT = 10  # a margin is judged on at least this many short answers
SHORT_TOLERANCE = 0.03  # how much "answer holds a gold answer" short answers may cost, against sentences only


@dataclass
class Case:
    """One question asked once: its candidates (reader features included) and labels."""

    question: Question
    variant: str  # "original" or "answer-removed"
    answerable: bool
    cands: list[Candidate]
    answerer: ExtractiveAnswerer
    blocked: str  # a hard check (acronym, number) that abstains whatever the scores


def _answerer(service) -> ExtractiveAnswerer:
    """The service's answerer with the reader and no calibration: raw features, reader weight 0."""
    reader = load_reader(service.settings)
    if reader is None:
        raise SystemExit("the reader is not available (weights missing?): nothing to calibrate")
    neutral = Calibration(0.0, {}, 0.0, 99.0)
    return ExtractiveAnswerer(service.settings, service.index, reader=reader, calibration=neutral)


def ranked(cands: list[Candidate], weight: float) -> list[Candidate]:
    def score(c: Candidate) -> float:
        m = -15.0 if c.margin is None else max(-15.0, min(15.0, c.margin))
        return c.score + weight * m / 5.0

    return sorted(cands, key=lambda c: -score(c))


def text_of(case: Case, c: Candidate, span: tuple[int, int] | None = None) -> str:
    a, b = span or (c.start, c.end)
    return case.answerer.index.documents[c.passage.doc_id].text[a:b]


def features(case: Case, best: Candidate) -> dict[str, float]:
    return case.answerer.decision_inputs(case.question.question, best)


def calibrate(cases: list[Case], false_abstention: float) -> tuple[Calibration, dict]:
    answerable = [c for c in cases if c.answerable and c.cands]
    # 1. The reader's weight in the sentence score.
    hits = {}
    for w in WEIGHT_GRID:
        hits[w] = float(np.mean([contains_answer(text_of(c, ranked(c.cands, w)[0]), c.question.answers) for c in answerable]))
    weight = max(WEIGHT_GRID, key=lambda w: (round(hits[w], 4), -w))
    log.info("top sentence holds a gold answer, by reader weight: %s -> %s", hits, weight)
    # 2. The decision over the best sentence's features (hard checks abstain regardless).
    open_cases = [c for c in cases if c.cands and not c.blocked]
    rows = [features(c, ranked(c.cands, weight)[0]) for c in open_cases]
    labels = [int(c.answerable) for c in open_cases]
    coefficients = fit_logistic(rows, labels)
    probe = Calibration(weight, coefficients, 0.0, 99.0)
    p_answerable = sorted(probe.probability(r) for r, y in zip(rows, labels, strict=True) if y)
    blocked_answerable = sum(1 for c in answerable if c.blocked)
    allowed = max(0, int(false_abstention * len(answerable)) - blocked_answerable)
    threshold = p_answerable[allowed] - 1e-6 if p_answerable else 0.5
    # 3. The short answer.
    answered = [
        (c, ranked(c.cands, weight)[0])
        for c in answerable
        if not c.blocked and probe.probability(features(c, ranked(c.cands, weight)[0])) >= threshold
    ]

    def outcome(m: float) -> tuple[float, float, float, float, int]:
        """Overall (answer holds gold, F1), and over the answers made short: (span holds gold, sentence holds gold, n)."""
        contains, f1, span_ok, sentence_ok = [], [], [], []
        for c, best in answered:
            short = best.span is not None and best.margin is not None and best.margin >= m and not wants_explanation(c.question.question)
            text = text_of(c, best, best.span if short else None)
            contains.append(contains_answer(text, c.question.answers))
            f1.append(token_f1(text, c.question.answers))
            if short:
                span_ok.append(contains_answer(text, c.question.answers))
                sentence_ok.append(contains_answer(text_of(c, best), c.question.answers))
        mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
        return mean(contains), mean(f1), mean(span_ok), mean(sentence_ok), len(span_ok)

    # The span alone is the answer from the lowest reader margin at which answers stay (nearly) as
    # often right as when every answer is its sentence: short where the reader is sure.
    scored = {m: outcome(m) for m in MARGIN_GRID}
    sentence_contains = outcome(99.0)[0]
    eligible = [m for m in MARGIN_GRID if scored[m][4] >= MIN_SHORT and scored[m][0] >= sentence_contains - SHORT_TOLERANCE]
    short_margin = float(min(eligible)) if eligible else 99.0

    removed = [c for c in cases if c.variant == "answer-removed"]
    unanswerable = [c for c in cases if not c.answerable]
    final = Calibration(weight, coefficients, threshold, short_margin)

    def abstains(c: Case) -> bool:
        return bool(c.blocked) or not c.cands or final.probability(features(c, ranked(c.cands, weight)[0])) < threshold

    report = {
        "questions": {
            "answerable": len([c for c in cases if c.answerable]),
            "unanswerable": len([c for c in cases if not c.answerable and c.variant == "original"]),
            "answer_removed": len(removed),
        },
        "top_sentence_holds_gold_by_reader_weight": {str(k): round(v, 4) for k, v in hits.items()},
        "false_abstention": round(float(np.mean([abstains(c) for c in cases if c.answerable])), 4),
        "abstention_on_unanswerable": round(float(np.mean([abstains(c) for c in unanswerable])), 4) if unanswerable else None,
        "abstention_on_answer_removed": round(float(np.mean([abstains(c) for c in removed])), 4) if removed else None,
        "answer_holds_gold_sentence_always": round(sentence_contains, 4),
        "by_short_margin": {
            str(m): {
                "answer_holds_gold": round(a, 4),
                "f1": round(b, 4),
                "short_span_holds_gold": round(c, 4),
                "its_sentence": round(d, 4),
                "short": n,
            }
            for m, (a, b, c, d, n) in scored.items()
        },
    }
    return final, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="assistant calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions", type=Path, default=ROOT / "evaluation" / "questions.jsonl")
    p.add_argument("--split", type=Path, default=ROOT / "evaluation" / "split.json")
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus")
    p.add_argument("--reader-dir", type=Path, help="reader weights to calibrate (default: the packaged ones)")
    p.add_argument("--out", type=Path, default=ROOT / "assistant" / "answer" / CALIBRATION_FILE)
    p.add_argument("--false-abstention", type=float, default=0.05, help="allowed false abstentions on the calibration questions")
    p.add_argument("--work-dir", type=Path, help="indexes for the runs (default: a temporary folder)")
    p.add_argument("--limit", type=int, default=0, help="only the first N calibration questions (a smoke test)")
    p.add_argument("--dump", type=Path, help="also write each case's features of its best sentences (JSON lines) for analysis")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.time()
    ids = set(json.loads(args.split.read_text(encoding="utf-8"))["calibration"])
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="calibrate-"))
    base = Settings(_env_file=None, corpus_dir=args.corpus_dir, index_dir=work / "index", reader_dir=args.reader_dir)
    embedder = create_embedder(base)
    service = open_service(base, embedder)
    questions = load_questions(args.questions, {d: doc.text for d, doc in service.index.documents.items()}, ids)
    if args.limit:
        questions = questions[: args.limit]
    log.info("calibration questions: %d (%d answerable)", len(questions), sum(q.answerable for q in questions))
    answerer = _answerer(service)
    cases = []
    for q in questions:
        cands = answerer.candidates(q.question, service.retriever.search(q.question))
        blocked = answerer.hard_check(q.question, cands) if cands else "nothing retrieved"
        cases.append(Case(q, "original", q.answerable, cands, answerer, blocked))
    variants_index = work / "variants-index"
    for n, q in enumerate([q for q in questions if q.answerable], 1):
        corpus = answer_removed(args.corpus_dir, work, q)
        if corpus is None:
            continue
        settings = base.model_copy(update={"corpus_dir": corpus, "index_dir": variants_index})
        variant = assemble(settings, embedder, open_service(settings, embedder).index)
        v_answerer = _answerer(variant)
        cands = v_answerer.candidates(q.question, variant.retriever.search(q.question))
        blocked = v_answerer.hard_check(q.question, cands) if cands else "nothing retrieved"
        cases.append(Case(q, "answer-removed", False, cands, v_answerer, blocked))
        if n % 10 == 0:
            log.info("answer-removed variants: %d", n)
    calibration, report = calibrate(cases, args.false_abstention)
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as fh:
            for c in cases:
                top = ranked(c.cands, calibration.reader_weight)[:5] if c.cands else []
                rows = [{**features(c, b), "holds_gold": contains_answer(text_of(c, b), c.question.answers)} for b in top]
                fh.write(json.dumps({"id": c.question.id, "variant": c.variant, "answerable": c.answerable, "blocked": c.blocked,
                                     "language": c.question.language, "top": rows}) + "\n")  # fmt: skip
    reader = load_reader(base)
    calibration = Calibration(
        calibration.reader_weight,
        {k: round(v, 6) for k, v in calibration.coefficients.items()},
        round(calibration.threshold, 6),
        calibration.short_answer_margin,
        {
            "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "assistant calibrate " + " ".join(sys.argv[1:] if argv is None else argv),
            "data": "calibration half of evaluation/questions.jsonl (evaluation/split.json) and answer-removed variants of it",
            "reader_weights_sha256": reader.info.weights_sha256 if reader else None,
            "seconds": round(time.time() - started, 1),
            **report,
        },
    )
    args.out.write_text(calibration.to_json(), encoding="utf-8")
    print(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
