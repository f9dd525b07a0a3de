"""Metrics shared by the evaluation harness and the benchmarks.

Answers: normalised containment, exact match and token F1 against acceptable answers.
Rankings: recall@k and nDCG@k over ids; nearest-neighbour recall of approximate vector search.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from assistant.search.keyword import fold

_DIGIT_SEP = re.compile(r"(?<=\d)[\s’',.\u202f](?=\d{3}\b)")


def normalise_answer(text: str) -> str:
    """Case, accents, punctuation and digit grouping folded: 'CHF 9’200’000.' -> 'chf 9200000'."""
    text = _DIGIT_SEP.sub("", fold(text))
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\b(the|a|an)\b", " ", text)
    return " ".join(text.split())


def contains_answer(prediction: str, answers: list[str]) -> bool:
    pred = f" {normalise_answer(prediction)} "
    return any(f" {normalise_answer(a)} " in pred for a in answers if normalise_answer(a))


def exact_match(prediction: str, answers: list[str]) -> bool:
    return any(normalise_answer(prediction) == normalise_answer(a) for a in answers)


def token_f1(prediction: str, answers: list[str]) -> float:
    pred = normalise_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalise_answer(answer).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, float] | set[str], k: int = 10) -> float:
    """nDCG@k with linear gains (as pytrec_eval's ``ndcg_cut``); duplicates count once.

    >>> round(ndcg_at_k(["a", "b", "c"], {"b"}), 4)
    0.6309
    >>> ndcg_at_k(["x"], {"b"}), ndcg_at_k(["b", "b"], {"b"})
    (0.0, 1.0)
    """
    gains = relevant if isinstance(relevant, dict) else {d: 1.0 for d in relevant}
    ranked = list(dict.fromkeys(ranked))[:k]
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(gains.values(), reverse=True)[:k]))
    return dcg / ideal if ideal > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the relevant ids found in the first ``k`` distinct ranked ids.

    >>> recall_at_k(["a", "b", "c"], {"c", "d"}, 3)
    0.5
    """
    relevant = set(relevant)
    top = set(list(dict.fromkeys(ranked))[:k])
    return len(top & relevant) / len(relevant) if relevant else 0.0


def neighbour_recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k neighbours that an approximate search found (-1 = none).

    >>> neighbour_recall(np.array([[1, 2, -1]]), np.array([[2, 3, 1]]))
    0.6666666666666666
    """
    k = exact.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(e)) / k for f, e in zip(found, exact, strict=False)]))


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None
