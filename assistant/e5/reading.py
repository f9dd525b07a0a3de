"""What the reader says about one text: logits per token, the no-answer score, and the best spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class Reading:
    """The reader's view of one text: logits per text token and the no-answer score.

    ``null`` is the start+end logit at ``<s>``; a span's score is its start+end logits, so
    ``span_score - null`` is the reader's margin for "the answer is here".
    """

    text: str
    offsets: NDArray[np.int64]  # [tokens, 2] char spans in ``text``
    start: NDArray[np.floating[Any]]  # [tokens]
    end: NDArray[np.floating[Any]]  # [tokens]
    null: float
    null_start: float | None = None  # the start and end logits at ``<s>`` (``null`` is their sum)
    null_end: float | None = None

    @property
    def answer_probability(self) -> float:
        """1 - P(no answer here): the start and end distributions' mass off the ``<s>`` token.

        The reader was trained with one softmax over ``<s>`` and the text tokens for the start and
        one for the end.

        >>> round(Reading("ab", np.array([[0, 2]]), np.array([0.0]), np.array([0.0]), 0.0).answer_probability, 3)
        0.75
        """
        if self.start.size == 0:
            return 0.0
        s0 = self.null / 2 if self.null_start is None else self.null_start
        e0 = self.null / 2 if self.null_end is None else self.null_end

        def p_null(null: float, logits: NDArray[np.floating[Any]]) -> float:
            top = max(null, float(logits.max()))
            return float(np.exp(null - top) / (np.exp(null - top) + np.exp(logits - top).sum()))

        return 1.0 - p_null(s0, self.start) * p_null(e0, self.end)

    def best_span(self, lo: int = 0, hi: int | None = None, max_tokens: int = 30) -> tuple[float, int, int] | None:
        """(score, char start, char end) of the best span inside text[lo:hi], or None.

        >>> r = Reading("ab cd", np.array([[0, 2], [2, 5]]), np.array([0.0, 3.0]), np.array([1.0, 2.0]), 0.0)
        >>> r.best_span()
        (5.0, 3, 5)
        """
        spans = self.top_spans(lo, hi, max_tokens, 1)
        return spans[0] if spans else None

    def top_spans(self, lo: int = 0, hi: int | None = None, max_tokens: int = 30, k: int = 5) -> list[tuple[float, int, int]]:
        """The ``k`` best (score, char start, char end) spans inside text[lo:hi], best first.

        >>> r = Reading("ab cd", np.array([[0, 2], [2, 5]]), np.array([0.0, 3.0]), np.array([1.0, 2.0]), 0.0)
        >>> r.top_spans(k=2)
        [(5.0, 3, 5), (2.0, 0, 5)]
        """
        hi = len(self.text) if hi is None else hi
        inside = np.flatnonzero((self.offsets[:, 1] > lo) & (self.offsets[:, 0] < hi))
        if inside.size == 0:
            return []
        s = self.start[inside]
        e = self.end[inside]
        n = inside.size
        scores = s[:, None] + e[None, :]
        band = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=max_tokens)
        scores = np.where(band, scores, -np.inf)
        flat = np.argsort(-scores, axis=None)[: min(k, int(band.sum()))]
        out = []
        for i, j in zip(*np.unravel_index(flat, scores.shape), strict=True):
            a = max(int(self.offsets[inside[i], 0]), lo)
            b = min(int(self.offsets[inside[j], 1]), hi)
            while a < b and self.text[a].isspace():
                a += 1
            while b > a and self.text[b - 1].isspace():
                b -= 1
            out.append((float(scores[i, j]), a, b))
        return out
