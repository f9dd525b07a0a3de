"""The answer step's own decisions on other domains: the data its abstention is fitted on.

A decision fitted on a few dozen of the product's questions does not transfer to new ones; one
fitted on how the answer step behaves on thousands of questions from other domains does (Kamath,
Jia & Liang, "Selective Question Answering under Domain Shift", ACL 2020). So each training file's
development split (the articles the reader never trained on) becomes a corpus of one document per
paragraph, indexed by the product's own build, and each of its questions goes through the real
retrieval and reader three ways:

- as asked (answerable; SQuAD 2.0's unanswerable questions as they are);
- with its paragraph left out of the corpus (``removed``: the right behaviour is to abstain);
- with one entity, year or number swapped for another of the collection (``swapped``,
  ``training/swaps.py``): the passage still looks right but no longer answers.

Each decision keeps the features of the sentence the answer step would quote. ``fit`` fits the
logistic decision on them and picks its threshold by cross-validation grouped by question (the
variants of one question never straddle folds) for at most the allowed false abstention.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from assistant.answer.decision import FEATURES, fit_logistic
from assistant.answer.extractive import ExtractiveAnswerer, ranked
from assistant.answer.safety import has_content
from assistant.evaluation.metrics import contains_answer
from training.reader import Example, load_squad, split_by_article
from training.swaps import Pools, swap

log = logging.getLogger("training.calibrate")
LANGUAGE = {"piaf-v1.1": "fr", "tydi-ru-part": "ru"}


@dataclass
class Decision:
    group: str  # the question: its variants are one group in cross-validation
    variant: str  # "asked", "removed", "swapped"
    source: str
    language: str
    answerable: bool
    blocked: str  # why the answer step abstains whatever the scores ("" when the decision decides)
    features: dict[str, float] | None
    holds_gold: bool  # the quoted sentence holds a gold answer


def dev_examples(train_dir: Path, dev_share: float, per_source: int, seed: int) -> list[Example]:
    """The development split of each training file (the articles the reader never saw), up to
    ``per_source`` questions from each, chosen at random."""
    out = []
    for path in sorted(Path(train_dir).glob("*.json")):
        _, dev = split_by_article(load_squad(path), dev_share)
        rng = random.Random(f"{seed}/{path.stem}")
        rng.shuffle(dev)
        out += dev[:per_source] if per_source else dev
    return out


def write_corpus(examples: list[Example], folder: Path) -> dict[tuple[str, str], str]:
    """One text file per distinct paragraph (title: its article); the doc id of each paragraph."""
    folder.mkdir(parents=True, exist_ok=True)
    ids: dict[tuple[str, str], str] = {}
    metadata = {}
    for ex in examples:
        key = (ex.source, ex.context)
        if key in ids:
            continue
        doc_id = f"{ex.source}-{hashlib.sha256(ex.context.encode()).hexdigest()[:12]}"
        ids[key] = doc_id
        (folder / f"{doc_id}.txt").write_text(ex.context, encoding="utf-8")
        metadata[f"{doc_id}.txt"] = {"title": ex.article, "language": [LANGUAGE.get(ex.source, "en")]}
    (folder / "metadata.json").write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
    return ids


def decide(answerer: ExtractiveAnswerer, retriever, question: str, weight: float, answers: list[str], exclude=()) -> tuple:
    """What the answer step sees for ``question``: (blocked reason, features, holds gold, passages)."""
    search = retriever.search(question, exclude_docs=exclude)
    if not has_content(question, answerer.index):
        return "the question has no words to look up", None, False, search.passages
    cands = answerer.candidates(question, search)
    if not cands:
        return "nothing retrieved", None, False, search.passages
    cands = ranked(cands, weight)
    best = cands[0]
    text = answerer.index.documents[best.passage.doc_id].text[best.start : best.end]
    held = bool(answers) and contains_answer(text, answers)
    return answerer.hard_check(question, cands), answerer.decision_inputs(question, best, cands), held, search.passages


def collect(examples: list[Example], answerer: ExtractiveAnswerer, retriever, doc_ids: dict, weight: float, seed: int) -> list[Decision]:
    """Every question of ``examples`` asked as is, with its paragraph removed, and entity-swapped."""
    pools = {s: Pools.gather(e.question for e in examples if e.source == s) for s in {e.source for e in examples}}
    rng = random.Random(seed)
    out: list[Decision] = []
    t0 = time.time()
    for n, ex in enumerate(examples, 1):
        answers = [a for a, _ in ex.answers]
        language = LANGUAGE.get(ex.source, "en")
        blocked, feats, held, _ = decide(answerer, retriever, ex.question, weight, answers)
        out.append(Decision(ex.qid, "asked", ex.source, language, bool(answers), blocked, feats, held))
        if answers:
            blocked, feats, held, passages = decide(answerer, retriever, ex.question, weight, answers, {doc_ids[(ex.source, ex.context)]})
            # Another paragraph that still holds the answer makes the question answerable: leave it out.
            if not any(contains_answer(p.text, answers) for p in passages):
                out.append(Decision(ex.qid, "removed", ex.source, language, False, blocked, feats, False))
            swapped = swap(ex.question, ex.context, pools[ex.source], rng)
            if swapped:
                blocked, feats, _, _ = decide(answerer, retriever, swapped, weight, [])
                out.append(Decision(ex.qid, "swapped", ex.source, language, False, blocked, feats, False))
        if n % 50 == 0:
            rate = n / (time.time() - t0)
            log.info("other-domain questions: %d/%d  %.1f/s  ETA %.0f min", n, len(examples), rate, (len(examples) - n) / rate / 60)
    return out


def save(decisions: list[Decision], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(d), ensure_ascii=False) + "\n" for d in decisions), encoding="utf-8")


def load(path: Path) -> list[Decision]:
    return [Decision(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- fitting


def _folds(decisions: list[Decision], k: int) -> list[int]:
    return [int(hashlib.sha256(d.group.encode()).hexdigest(), 16) % k for d in decisions]


def _scale(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    x = np.array([[r[f] for f in FEATURES] for r in rows])
    return {f: (round(float(m), 6), round(float(max(s, 1e-6)), 6)) for f, m, s in zip(FEATURES, x.mean(0), x.std(0), strict=True)}


def _fit(rows: list[dict[str, float]], labels: list[int], l2: float) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    scale = _scale(rows)
    standard = [{f: (r[f] - scale[f][0]) / scale[f][1] for f in FEATURES} for r in rows]
    return fit_logistic(standard, labels, l2=l2), scale


def _probabilities(coefficients: dict, scale: dict, rows: list[dict[str, float]]) -> np.ndarray:
    z = np.full(len(rows), coefficients["bias"])
    for f in FEATURES:
        z += coefficients[f] * (np.array([r[f] for r in rows]) - scale[f][0]) / scale[f][1]
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def threshold_for(p_answerable: np.ndarray, blocked_answerable: int, total_answerable: int, false_abstention: float) -> float:
    """The highest threshold at which abstentions on answerable questions (the blocked ones
    included) stay within ``false_abstention``.

    >>> threshold_for(np.array([0.1, 0.5, 0.6, 0.9]), 0, 4, 0.25)
    0.499999
    """
    allowed = max(0, int(false_abstention * total_answerable) - blocked_answerable)
    ordered = np.sort(p_answerable)
    return round(float(ordered[min(allowed, len(ordered) - 1)]) - 1e-6, 6) if len(ordered) else 0.5


def fit(
    decisions: list[Decision], false_abstention: float, folds: int = 5, l2: float = 1.0, extra: list[Decision] = ()
) -> tuple[dict, dict, float, dict]:
    """The decision (coefficients, feature scale), its threshold from out-of-fold probabilities, and a report.

    ``extra`` decisions (the product's own) join every training fold but are never scored.
    """
    open_ = [d for d in decisions if d.features is not None and not d.blocked]
    more = [d for d in extra if d.features is not None and not d.blocked]
    rows = [d.features for d in open_]
    labels = [int(d.answerable) for d in open_]
    fold = _folds(open_, folds)
    oof = np.zeros(len(open_))
    for k in range(folds):
        train = [i for i, f in enumerate(fold) if f != k]
        test = [i for i, f in enumerate(fold) if f == k]
        coefficients, scale = _fit([rows[i] for i in train] + [d.features for d in more],
                                   [labels[i] for i in train] + [int(d.answerable) for d in more], l2)  # fmt: skip
        oof[test] = _probabilities(coefficients, scale, [rows[i] for i in test])
    answerable = [d for d in decisions if d.answerable]
    blocked_answerable = sum(1 for d in answerable if d.blocked or d.features is None)
    is_pos = np.array(labels, dtype=bool)
    threshold = threshold_for(oof[is_pos], blocked_answerable, len(answerable), false_abstention)
    coefficients, scale = _fit(rows + [d.features for d in more], labels + [int(d.answerable) for d in more], l2)
    report = {"decisions": len(decisions), "folds": folds, "l2": l2, "cross_validated": summarise(decisions, open_, oof, threshold)}
    return coefficients, scale, threshold, report


def summarise(decisions: list[Decision], open_: list[Decision], p: np.ndarray, threshold: float) -> dict:
    """False abstention, abstention per variant and per language, and precision of the answers given."""
    prob = {id(d): float(x) for d, x in zip(open_, p, strict=True)}

    def abstains(d: Decision) -> bool:
        return bool(d.blocked) or d.features is None or prob[id(d)] < threshold

    def share(ds: list[Decision]) -> float | None:
        return round(float(np.mean([abstains(d) for d in ds])), 4) if ds else None

    out: dict = {"false_abstention": share([d for d in decisions if d.answerable])}
    for variant in ("asked", "removed", "swapped"):
        out[f"abstention_{variant}"] = share([d for d in decisions if not d.answerable and d.variant == variant])
    out["by_language"] = {
        lang: {
            "false_abstention": share([d for d in decisions if d.answerable and d.language == lang]),
            "abstention_removed": share([d for d in decisions if not d.answerable and d.variant == "removed" and d.language == lang]),
            "abstention_swapped": share([d for d in decisions if not d.answerable and d.variant == "swapped" and d.language == lang]),
        }
        for lang in sorted({d.language for d in decisions})
    }
    answered = [d for d in decisions if not abstains(d)]
    out["answered_right"] = round(float(np.mean([d.answerable and d.holds_gold for d in answered])), 4) if answered else None
    return out


def risk_coverage(decisions: list[Decision], probability) -> list[dict]:
    """Accuracy of the answers given (answerable and quoting a gold answer) against the share answered."""
    scored = sorted(
        ((probability(d.features) if d.features is not None and not d.blocked else -1.0, d.answerable and d.holds_gold) for d in decisions),
        key=lambda t: -t[0],
    )
    out = []
    for coverage in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        top = scored[: max(1, int(round(coverage * len(scored))))]
        out.append({"coverage": coverage, "accuracy": round(float(np.mean([ok for _, ok in top])), 4)})
    return out
