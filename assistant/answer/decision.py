"""When to answer, and how short: the calibrated decision of the extractive answerer.

A small logistic model turns the evidence for the sentence to quote into the probability that the
documents answer the question (``FEATURES``): the reader's margin (its best span in the sentence
against its "no answer here" score) and its probability that the passage holds an answer at all,
the sentence's evidence score, whether it holds the kind of thing asked for, whether the question
is in another language, how much of the question the passage covers, whether names and numbers of
the question are missing from the document, whether the span is made of the question's own words,
how far the sentence's margin stands above the next one's, and the question's language. The
answerer abstains below ``threshold``.

The coefficients are fitted by ``assistant calibrate`` (``training/calibrate.py``) on thousands of
the answer step's own decisions over other domains (the reading-comprehension files' dev split:
asked, paragraph removed, entity swapped); the threshold, the reader's weight in the ranking and
the short-answer margin on the calibration half of the labelled questions — never on the questions
the figures are reported on. ``calibration.json`` beside this file records them with the reader's
hash and the features; a calibration that does not match the loaded reader is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

FEATURES = (
    "margin",
    "answer_p",
    "evidence",
    "kind",
    "crosslingual",
    "passage_rank",
    "passage_overlap",
    "names_missing",
    "span_in_question",
    "margin_gap",
    "question_fr",
    "question_ru",
)
CALIBRATION_FILE = "calibration.json"
MARGIN_CLIP = 15.0
MARGIN_SCALE = 5.0


def scaled_margin(margin: float | None) -> float:
    """The reader's margin as the answer step uses it everywhere: clipped to +-15 and divided by 5;
    a sentence the reader did not read counts as a strong "no answer" (-3).

    >>> scaled_margin(None), scaled_margin(2.5), scaled_margin(40.0)
    (-3.0, 0.5, 3.0)
    """
    m = -MARGIN_CLIP if margin is None else max(-MARGIN_CLIP, min(MARGIN_CLIP, margin))
    return m / MARGIN_SCALE


def decision_features(
    margin: float | None,
    evidence: float,
    kind_ok: bool,
    answer_p: float,
    crosslingual: bool,
    *,
    passage_rank: int = 0,
    passage_overlap: float = 1.0,
    names_missing: float = 0.0,
    span_in_question: float = 0.0,
    margin_gap: float = 0.0,
    question_language: str = "en",
) -> dict[str, float]:
    """The model's inputs for quoting one sentence.

    ``answer_p`` is the reader's probability that the sentence's passage holds an answer at all;
    ``crosslingual`` says the question is not in the sentence's language, where similarity and the
    reader's scores run lower for answerable questions too; ``passage_overlap`` is the share of the
    question's (IDF-weighted) words found in the passage, ``names_missing`` the share of the
    question's names and numbers it lacks (a question about another country, year or figure),
    ``span_in_question`` the share of the reader's span made of the question's own words, and
    ``margin_gap`` how far the best sentence's margin stands above the next sentence's.
    """
    return {
        "margin": scaled_margin(margin),
        "answer_p": answer_p,
        "evidence": evidence,
        "kind": float(kind_ok),
        "crosslingual": float(crosslingual),
        "passage_rank": min(passage_rank, 10) / 10,
        "passage_overlap": passage_overlap,
        "names_missing": names_missing,
        "span_in_question": span_in_question,
        "margin_gap": max(-3.0, min(3.0, margin_gap)),
        "question_fr": float(question_language == "fr"),
        "question_ru": float(question_language == "ru"),
    }


class CalibrationMismatch(ValueError):
    """A calibration fitted for another reader or another set of features."""


@dataclass(frozen=True)
class Calibration:
    """Fitted numbers of the extractive answerer, with where they came from."""

    reader_weight: float  # weight of the (scaled) reader margin in the sentence score
    coefficients: dict[str, float]  # logistic model over FEATURES, plus "bias"
    threshold: float  # abstain when the probability is below this
    short_answer_margin: float  # answer with the reader's span alone when its margin reaches this
    provenance: dict[str, Any] = field(default_factory=dict)  # how the numbers were fitted (JSON)
    features: tuple[str, ...] = ()  # the inputs the coefficients were fitted on (empty: those of ``coefficients``)
    reader_sha256: str | None = None  # the reader weights the numbers were fitted with
    scale: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, std) per feature, applied before the coefficients
    highlight_margin: float = 99.0  # from this reader margin the span is marked inside the quoted sentence

    def probability(self, features: dict[str, float]) -> float:
        """P(the documents answer the question); every fitted feature must be given.

        >>> Calibration(0.1, {"bias": 0.0, "margin": 1.0}, 0.5, 3.0).probability({"margin": 0.0})
        0.5
        """
        z = self.coefficients.get("bias", 0.0)
        for name, weight in self.coefficients.items():
            if name == "bias":
                continue
            if name not in features:
                raise CalibrationMismatch(f"the decision needs the feature {name!r}, which the answer step does not compute")
            mean, std = self.scale.get(name, (0.0, 1.0))
            z += weight * (features[name] - mean) / std
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def check(self, reader_sha256: str | None, features: tuple[str, ...] = FEATURES) -> None:
        """Refuse numbers fitted for another reader or on features the answer step no longer computes."""
        if self.reader_sha256 and reader_sha256 and self.reader_sha256 != reader_sha256:
            raise CalibrationMismatch(
                f"the calibration was fitted for reader weights {self.reader_sha256[:12]}, but the loaded reader is "
                f"{reader_sha256[:12]}: run 'assistant calibrate' for this reader (or point ASSISTANT_CALIBRATION_FILE at its calibration)"
            )
        unknown = sorted(set(self.features or (k for k in self.coefficients if k != "bias")) - set(features))
        if unknown:
            raise CalibrationMismatch(f"the calibration uses features the answer step does not compute: {', '.join(unknown)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        provenance = data.get("provenance", {})
        return cls(
            data["reader_weight"],
            data["coefficients"],
            data["threshold"],
            data["short_answer_margin"],
            provenance,
            tuple(data.get("features", ())),
            data.get("reader_sha256") or provenance.get("reader_weights_sha256"),
            {k: tuple(v) for k, v in data.get("scale", {}).items()},
            data.get("highlight_margin", data["short_answer_margin"]),
        )

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
