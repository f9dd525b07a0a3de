"""When to answer, and how short: the calibrated decision of the extractive answerer.

A small logistic model turns the evidence for the best sentence into the probability that the
documents answer the question: the reader's margin (its best span in the sentence against its
"no answer here" score) and its probability that the passage holds an answer at all, the
sentence's evidence score (similarity and word overlap with the question), whether it holds the
kind of thing asked for, and whether the question is in another language than the sentence.
The answerer abstains below ``threshold``.

The numbers are fitted by ``assistant calibrate`` (``training/calibrate.py``) on the calibration
half of the labelled questions plus answer-removed variants of them, never on the questions the
figures are reported on, and stored with their provenance in ``calibration.json`` beside this file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

FEATURES = ("margin", "answer_p", "evidence", "kind", "crosslingual")
CALIBRATION_FILE = "calibration.json"


def decision_features(margin: float | None, evidence: float, kind_ok: bool, answer_p: float, crosslingual: bool) -> dict[str, float]:
    """The model's inputs; a sentence the reader did not read counts as a strong "no answer".

    ``answer_p`` is the reader's probability that the sentence's passage holds an answer at all;
    ``crosslingual`` says the question is not in the sentence's language, where similarity and the
    reader's scores run lower for answerable questions too.
    """
    m = -15.0 if margin is None else max(-15.0, min(15.0, margin))
    return {"margin": m / 5.0, "answer_p": answer_p, "evidence": evidence, "kind": float(kind_ok), "crosslingual": float(crosslingual)}


@dataclass(frozen=True)
class Calibration:
    """Fitted numbers of the extractive answerer, with where they came from."""

    reader_weight: float  # weight of the (scaled) reader margin in the sentence score
    coefficients: dict[str, float]  # logistic model over FEATURES, plus "bias"
    threshold: float  # abstain when the probability is below this
    short_answer_margin: float  # answer with the reader's span alone when its margin reaches this
    provenance: dict = field(default_factory=dict)

    def probability(self, features: dict[str, float]) -> float:
        """P(the documents answer the question).

        >>> Calibration(0.1, {"bias": 0.0, "margin": 1.0}, 0.5, 3.0).probability({"margin": 0.0})
        0.5
        """
        z = self.coefficients.get("bias", 0.0) + sum(self.coefficients.get(k, 0.0) * v for k, v in features.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        return cls(data["reader_weight"], data["coefficients"], data["threshold"], data["short_answer_margin"], data.get("provenance", {}))

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration | None:
        """The given file, or the one shipped with the package; None when there is none."""
        try:
            if path is not None:
                return cls.from_json(Path(path).read_text(encoding="utf-8"))
            return cls.from_json(resources.files("assistant.answer").joinpath(CALIBRATION_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None


def fit_logistic(rows: list[dict[str, float]], labels: list[int], l2: float = 0.1, iterations: int = 50) -> dict[str, float]:
    """L2-regularised logistic regression by Newton's method (a few features, a few hundred rows).

    >>> fit = fit_logistic([{"x": -2.0}, {"x": -1.0}, {"x": 1.0}, {"x": 2.0}], [0, 0, 1, 1])
    >>> fit["x"] > 0
    True
    """
    import numpy as np

    names = sorted({k for r in rows for k in r})
    x = np.array([[1.0, *[r.get(k, 0.0) for k in names]] for r in rows])
    y = np.asarray(labels, dtype=float)
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * l2
    penalty[0, 0] = 0.0  # no penalty on the bias
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(w)), gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"bias": float(w[0]), **{k: float(v) for k, v in zip(names, w[1:], strict=True)}}
