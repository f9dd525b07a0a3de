"""Fit the extractive answerer's numbers (``assistant/answer/calibration.json``).

    assistant calibrate [--train-dir ../shared/train] [--reader-dir DIR] [--out FILE]

Fitted, in order:
1. ``reader_weight``: how much the reader's margin counts in the sentence ranking (the value whose
   top sentence holds a gold answer most often on the calibration half of
   ``evaluation/questions.jsonl``, ``evaluation/split.json``);
2. the decision "do the documents answer this?": a logistic model over the quoted sentence's
   features, fitted on thousands of the answer step's own decisions on other domains — the
   development split of the reading-comprehension files, asked as is, with the paragraph removed
   and entity-swapped (``training/selective.py``), cross-validated by question; its ``threshold``
   for at most ``--false-abstention`` (5%) false abstention on the calibration half's answerable
   questions (``--operating-point calibration-half``, the default: the threshold cross-validated on
   the other domains abstained on 14% of them) or on the other domains (``cross-validated``);
3. ``short_answer_margin``: from which reader margin the span alone is the answer, on the
   calibration half (the lowest margin at which short answers cost at most 3 points of "the answer
   holds a gold answer" against always quoting the sentence);
4. ``highlight_margin``: from which reader margin the span is marked inside the quoted sentence
   (the lowest margin at which the marked span holds a gold answer for at least 4 in 5 of the
   calibration half's answered questions).

The calibration half then also checks how the decision transfers (false abstention and abstention
on its unanswerable and answer-removed questions, at both thresholds, are recorded).
The test half, the unseen and near-miss questions and the public benchmarks are never read here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from assistant.answer.decision import CALIBRATION_FILE, FEATURES, Calibration
from assistant.answer.extractive import Candidate, ExtractiveAnswerer, ranked
from assistant.answer.kinds import wants_explanation
from assistant.config import Settings
from assistant.evaluation.harness import Question, answer_removed, load_questions
from assistant.evaluation.metrics import contains_answer, token_f1
from assistant.search.embedders import create_embedder
from assistant.service import assemble, load_reader, open_service
from training import selective
from training.swaps import Pools, swap

log = logging.getLogger("training.calibrate")
ROOT = Path(__file__).resolve().parent.parent
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 3.0)
MARGIN_GRID = tuple(np.round(np.arange(-2.0, 8.01, 0.5), 2))
MIN_SHORT = 10  # a margin is judged on at least this many short answers
SHORT_TOLERANCE = 0.03  # how much "answer holds a gold answer" short answers may cost, against sentences only
HIGHLIGHT_PRECISION = 0.8  # how often a marked span must hold a gold answer


@dataclass
class Case:
    """One calibration question asked once: its candidates (reader features included) and labels."""

    question: Question
    variant: str  # "original" or "answer-removed"
    answerable: bool
    cands: list[Candidate]
    answerer: ExtractiveAnswerer

    def best(self, weight: float) -> Candidate:
        return ranked(self.cands, weight)[0]

    def blocked(self, weight: float) -> str:
        """A hard check (acronym, number) that abstains whatever the scores, on the ranking served."""
        return self.answerer.hard_check(self.question.question, ranked(self.cands, weight)) if self.cands else "nothing retrieved"

    def features(self, weight: float) -> dict[str, float]:
        cands = ranked(self.cands, weight)
        return self.answerer.decision_inputs(self.question.question, cands[0], cands)

    def text(self, c: Candidate, span: tuple[int, int] | None = None) -> str:
        a, b = span or (c.start, c.end)
        return self.answerer.index.documents[c.passage.doc_id].text[a:b]


def neutral_answerer(service) -> ExtractiveAnswerer:
    """The service's answerer with the reader and no calibration: raw features, reader weight 0."""
    reader = load_reader(service.settings)
    if reader is None:
        raise SystemExit("the reader is not available (weights missing?): nothing to calibrate")
    return ExtractiveAnswerer(service.settings, service.index, reader=reader, calibration=Calibration(0.0, {}, 0.0, 99.0))


# ---------------------------------------------------------------- the product's calibration half


def product_cases(args, base: Settings, embedder, work: Path) -> list[Case]:
    """The calibration half, asked as is, with each answerable question's evidence removed, and
    (``--in-domain-swaps``) with one name, year or number swapped for one its evidence document
    does not hold (``training/swaps.py``)."""
    ids = set(json.loads(args.split.read_text(encoding="utf-8"))["calibration"])
    service = open_service(base, embedder)
    questions = load_questions(args.questions, {d: doc.text for d, doc in service.index.documents.items()}, ids)
    if args.limit:
        questions = questions[: args.limit]
    log.info("calibration questions: %d (%d answerable)", len(questions), sum(q.answerable for q in questions))
    answerer = neutral_answerer(service)
    cases = [Case(q, "original", q.answerable, answerer.candidates(q.question, service.retriever.search(q.question)), answerer)
             for q in questions]  # fmt: skip
    for n, q in enumerate([q for q in questions if q.answerable], 1):
        corpus = answer_removed(args.corpus_dir, work, q)
        if corpus is None:
            continue
        settings = base.model_copy(update={"corpus_dir": corpus, "index_dir": work / "variants-index"})
        variant = assemble(settings, embedder, open_service(settings, embedder).index)
        v_answerer = neutral_answerer(variant)
        cases.append(Case(q, "answer-removed", False, v_answerer.candidates(q.question, variant.retriever.search(q.question)), v_answerer))
        if n % 10 == 0:
            log.info("answer-removed variants: %d", n)
    if args.in_domain_swaps:
        cases += swapped_cases(questions, service, answerer, args.seed)
    return cases


def swapped_cases(questions: list[Question], service, answerer: ExtractiveAnswerer, seed: int) -> list[Case]:
    """Each answerable question with one of its names, years or numbers replaced by one of the
    collection's (its questions' and documents') that the evidence document does not hold."""
    documents = {d: doc.text for d, doc in service.index.documents.items()}
    pools = Pools.gather([q.question for q in questions] + list(documents.values()))
    rng = random.Random(seed)
    out = []
    for q in questions:
        if not q.answerable or not q.evidence:
            continue
        text = swap(q.question, " ".join(documents[ev.doc_id] for ev in q.evidence), pools, rng)
        if text:
            asked = replace(q, question=text, answerable=False, answers=[])
            out.append(Case(asked, "swapped", False, answerer.candidates(text, service.retriever.search(text)), answerer))
    log.info("entity-swapped variants: %d", len(out))
    return out


def fit_reader_weight(cases: list[Case]) -> tuple[float, dict]:
    answerable = [c for c in cases if c.answerable and c.cands]
    hits = {w: float(np.mean([contains_answer(c.text(c.best(w)), c.question.answers) for c in answerable])) for w in WEIGHT_GRID}
    weight = max(WEIGHT_GRID, key=lambda w: (round(hits[w], 4), -w))
    log.info("top sentence holds a gold answer, by reader weight: %s -> %s", hits, weight)
    return weight, hits


def fit_short_margin(cases: list[Case], calibration: Calibration) -> tuple[float, dict, float]:
    """The lowest reader margin from which answering with the span costs (nearly) nothing."""
    w = calibration.reader_weight
    answered = [
        (c, c.best(w))
        for c in cases
        if c.answerable and c.cands and not c.blocked(w) and calibration.probability(c.features(w)) >= calibration.threshold
    ]

    def outcome(m: float) -> tuple[float, float, float, float, int]:
        contains, f1, span_ok, sentence_ok = [], [], [], []
        for c, best in answered:
            short = best.span is not None and best.margin is not None and best.margin >= m and not wants_explanation(c.question.question)
            text = c.text(best, best.span if short else None)
            contains.append(contains_answer(text, c.question.answers))
            f1.append(token_f1(text, c.question.answers))
            if short:
                span_ok.append(contains_answer(text, c.question.answers))
                sentence_ok.append(contains_answer(c.text(best), c.question.answers))
        mean = lambda xs: float(np.mean(xs)) if xs else 0.0  # noqa: E731
        return mean(contains), mean(f1), mean(span_ok), mean(sentence_ok), len(span_ok)

    scored = {m: outcome(m) for m in MARGIN_GRID}
    sentence_contains = outcome(99.0)[0]
    eligible = [m for m in MARGIN_GRID if scored[m][4] >= MIN_SHORT and scored[m][0] >= sentence_contains - SHORT_TOLERANCE]
    return (float(min(eligible)) if eligible else 99.0), scored, sentence_contains


def fit_highlight_margin(scored: dict) -> float:
    """The lowest margin from which the marked span holds a gold answer often enough (``fit_short_margin``'s table)."""
    eligible = [m for m in MARGIN_GRID if scored[m][4] >= MIN_SHORT and scored[m][2] >= HIGHLIGHT_PRECISION]
    return float(min(eligible)) if eligible else 99.0


def transfer(cases: list[Case], calibration: Calibration) -> dict:
    """How the decision fitted elsewhere does on the calibration half."""
    w = calibration.reader_weight

    def abstains(c: Case) -> bool:
        return bool(c.blocked(w)) or calibration.probability(c.features(w)) < calibration.threshold

    def share(cs: list[Case]) -> float | None:
        return round(float(np.mean([abstains(c) for c in cs])), 4) if cs else None

    return {
        "questions": {
            "answerable": sum(c.answerable for c in cases),
            "unanswerable": sum(not c.answerable and c.variant == "original" for c in cases),
            "answer_removed": sum(c.variant == "answer-removed" for c in cases),
            "swapped": sum(c.variant == "swapped" for c in cases),
        },
        "false_abstention": share([c for c in cases if c.answerable]),
        "abstention_on_unanswerable": share([c for c in cases if not c.answerable and c.variant == "original"]),
        "abstention_on_answer_removed": share([c for c in cases if c.variant == "answer-removed"]),
        "abstention_on_swapped": share([c for c in cases if c.variant == "swapped"]),
    }


def in_domain_threshold(cases: list[Case], calibration: Calibration, false_abstention: float) -> float:
    """The threshold at which the decision (fitted elsewhere) abstains on at most ``false_abstention``
    of the calibration half's answerable questions: one number fitted in the domain."""
    w = calibration.reader_weight
    answerable = [c for c in cases if c.answerable]
    blocked = sum(1 for c in answerable if c.blocked(w))
    p = np.array([calibration.probability(c.features(w)) for c in answerable if not c.blocked(w)])
    return selective.threshold_for(p, blocked, len(answerable), false_abstention)


def in_domain_cross_validation(cases: list[Case], decisions: list[selective.Decision], weight: float, in_domain_weight: int,
                               false_abstention: float, folds: int = 5) -> dict:  # fmt: skip
    """How a decision fitted this way does on calibration questions it was not fitted on: folds
    grouped by evidence (a question's variants and translations stay together), each fold scored by
    a model fitted on the other domains plus the other folds; one threshold for ``false_abstention``
    on the out-of-fold answerable questions. Chooses between fitting options without the test half."""
    other = [d for d in decisions if d.features is not None and not d.blocked]
    group = [c.question.evidence[0].quote if c.question.evidence else c.question.id for c in cases]
    fold = [int(hashlib.sha256(g.encode()).hexdigest(), 16) % folds for g in group]
    blocked = [bool(c.blocked(weight)) or not c.cands for c in cases]
    feats = [c.features(weight) if c.cands else None for c in cases]
    p = np.zeros(len(cases))
    for k in range(folds):
        own = [i for i in range(len(cases)) if fold[i] != k and not blocked[i]] * in_domain_weight
        coefficients, scale = selective._fit([d.features for d in other] + [feats[i] for i in own],
                                             [int(d.answerable) for d in other] + [int(cases[i].answerable) for i in own], 1.0)  # fmt: skip
        test = [i for i in range(len(cases)) if fold[i] == k and not blocked[i]]
        if test:
            p[test] = selective._probabilities(coefficients, scale, [feats[i] for i in test])
    answerable = [i for i, c in enumerate(cases) if c.answerable]
    threshold = selective.threshold_for(p[[i for i in answerable if not blocked[i]]], sum(blocked[i] for i in answerable),
                                        len(answerable), false_abstention)  # fmt: skip

    def share(keep) -> float | None:
        idx = [i for i, c in enumerate(cases) if keep(c)]
        return round(float(np.mean([blocked[i] or p[i] < threshold for i in idx])), 4) if idx else None

    return {
        "in_domain_weight": in_domain_weight,
        "false_abstention": share(lambda c: c.answerable),
        "abstention_on_unanswerable": share(lambda c: not c.answerable and c.variant == "original"),
        "abstention_on_answer_removed": share(lambda c: c.variant == "answer-removed"),
        "abstention_on_swapped": share(lambda c: c.variant == "swapped"),
        "abstention_on_all_unanswerable": share(lambda c: not c.answerable),
    }


# ---------------------------------------------------------------- other domains


def other_domain_decisions(args, base: Settings, embedder, work: Path, weight: float) -> list[selective.Decision]:
    cache = work / f"decisions-w{weight}.jsonl"
    if args.decisions:
        cache = args.decisions
        if cache.exists():
            log.info("other-domain decisions: %s (reused)", cache)
            return selective.load(cache)
    reader = load_reader(base)
    if reader is None:
        raise SystemExit("calibrate: the decision is fitted on the reader's scores; turn it on (ASSISTANT_READER=true, e5 embedder)")
    manifest = json.loads((Path(reader.info.path) / "reader.json").read_text(encoding="utf-8"))
    dev_share = float(manifest.get("arguments", {}).get("dev_share", 0.1))  # the reader's own dev split: never trained on
    examples = selective.dev_examples(args.train_dir, dev_share, args.per_source, args.seed)
    doc_ids = selective.write_corpus(examples, work / "other-corpus")
    settings = base.model_copy(update={"corpus_dir": work / "other-corpus", "index_dir": work / "other-index"})
    service = open_service(settings, embedder)
    log.info("other-domain corpus: %d paragraphs, %d questions", len(doc_ids), len(examples))
    decisions = selective.collect(examples, neutral_answerer(service), service.retriever, doc_ids, weight, args.seed)
    selective.save(decisions, cache)
    return decisions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assistant calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-dir", type=Path, default=ROOT.parent / "shared" / "train", help="SQuAD-format files (their dev split is used)")
    p.add_argument("--per-source", type=int, default=400, help="dev questions per training file (0: all)")
    p.add_argument("--questions", type=Path, default=ROOT / "evaluation" / "questions.jsonl")
    p.add_argument("--split", type=Path, default=ROOT / "evaluation" / "split.json")
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus")
    p.add_argument("--reader-dir", type=Path, help="reader weights to calibrate (default: the packaged ones)")
    p.add_argument("--out", type=Path, default=ROOT / "assistant" / "answer" / CALIBRATION_FILE)
    p.add_argument("--false-abstention", type=float, default=0.05, help="allowed false abstention (cross-validated)")
    p.add_argument("--work-dir", type=Path, help="indexes for the runs (default: a temporary folder)")
    p.add_argument("--decisions", type=Path, help="other-domain decisions: reused when the file exists, else written there")
    p.add_argument("--limit", type=int, default=0, help="only the first N calibration questions (a smoke test)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--in-domain-swaps", action="store_true", help="also ask the calibration half with a name, year or number swapped")
    p.add_argument("--in-domain-weight", type=int, default=0, help="also fit on the calibration half, its questions counted N times")
    p.add_argument(
        "--operating-point",
        choices=("calibration-half", "cross-validated"),
        default="calibration-half",
        help="where the threshold comes from: the calibration half's answerable questions, or the other domains' cross-validation",
    )
    return p


def fit_decision(args: argparse.Namespace, cases: list[Case], decisions: list[selective.Decision],
                 weight: float) -> tuple[Calibration, dict]:  # fmt: skip
    """The decision fitted on the other domains (and the calibration half ``--in-domain-weight`` times),
    at the threshold of ``--operating-point``, with a short-answer margin still to fit; and its report."""
    own = [
        selective.Decision(f"calibration/{c.question.id}", c.variant, "calibration-half", c.question.language, c.answerable,
                           c.blocked(weight), c.features(weight) if c.cands else None, False)
        for c in cases
        if c.cands
    ] * args.in_domain_weight  # fmt: skip
    coefficients, scale, threshold, fitted = selective.fit(decisions, args.false_abstention, extra=own)
    fitted["in_domain_weight"] = args.in_domain_weight
    fitted["calibration_half_cross_validated"] = [
        in_domain_cross_validation(cases, decisions, weight, w, args.false_abstention)
        for w in sorted({0, 3, 10, 30, args.in_domain_weight})
    ]
    log.info("calibration half, cross-validated by in-domain weight: %s", json.dumps(fitted["calibration_half_cross_validated"]))
    probe = Calibration(weight, coefficients, threshold, 99.0, features=FEATURES, scale=scale)
    fitted["threshold_cross_validated"] = threshold
    fitted["calibration_half_at_that_threshold"] = transfer(cases, probe)
    if args.operating_point == "calibration-half":
        threshold = in_domain_threshold(cases, probe, args.false_abstention)
        probe = Calibration(weight, coefficients, threshold, 99.0, features=FEATURES, scale=scale)
    return probe, fitted


def provenance(command: str, base: Settings, started: float, hits: dict, fitted: dict, decisions: list[selective.Decision],
               probe: Calibration, by_margin: dict, sentence_contains: float) -> dict:  # fmt: skip
    """Where the numbers came from and what they were fitted on (``calibration_half`` filled in last)."""
    return {
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "data": {
            "reader_weight_short_answer_and_highlight": "calibration half of evaluation/questions.jsonl (evaluation/split.json)",
            "decision": "the answer step's decisions on the dev split of the reading-comprehension files "
            "(asked, paragraph removed, entity swapped), cross-validated by question",
        },
        "settings": {"embedder": base.embedder, "reader_passages": base.reader_passages, "top_k": base.top_k},
        "seconds": round(time.time() - started, 1),
        "top_sentence_holds_gold_by_reader_weight": {str(k): round(v, 4) for k, v in hits.items()},
        "other_domains": fitted,
        "risk_coverage_other_domains": selective.risk_coverage(decisions, probe.probability),
        "calibration_half": None,
        "answer_holds_gold_sentence_always": round(sentence_contains, 4),
        "by_short_margin": {
            str(m): {
                "answer_holds_gold": round(a, 4),
                "f1": round(b, 4),
                "short_span_holds_gold": round(c, 4),
                "its_sentence": round(d, 4),
                "short": n,
            }
            for m, (a, b, c, d, n) in by_margin.items()
        },  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr, force=True)
    started = time.time()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="calibrate-"))
    work.mkdir(parents=True, exist_ok=True)
    # The services opened here answer with no calibration (the one being replaced may be for another reader).
    base = Settings(_env_file=None, corpus_dir=args.corpus_dir, index_dir=work / "index", reader_dir=args.reader_dir,
                    calibration_file=work / "no-calibration.json")  # fmt: skip
    embedder = create_embedder(base)
    reader = load_reader(base)

    cases = product_cases(args, base, embedder, work)
    weight, hits = fit_reader_weight(cases)
    decisions = other_domain_decisions(args, base, embedder, work, weight)
    probe, fitted = fit_decision(args, cases, decisions, weight)
    short_margin, by_margin, sentence_contains = fit_short_margin(cases, probe)
    command = "assistant calibrate " + " ".join(sys.argv[1:] if argv is None else argv)
    calibration = Calibration(
        weight,
        {k: round(v, 6) for k, v in probe.coefficients.items()},
        probe.threshold,
        short_margin,
        provenance(command, base, started, hits, fitted, decisions, probe, by_margin, sentence_contains),
        FEATURES,
        reader.info.weights_sha256 if reader else None,
        probe.scale,
        fit_highlight_margin(by_margin),
    )
    calibration.provenance["calibration_half"] = transfer(cases, calibration)
    args.out.write_text(calibration.to_json(), encoding="utf-8")
    print(json.dumps({k: calibration.provenance[k] for k in ("other_domains", "calibration_half")}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
