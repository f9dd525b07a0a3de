"""The hand-labelled questions and their evidence, and the retrieval metrics scored against it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Evidence:
    doc_id: str
    quote: str
    start: int
    end: int


@dataclass
class Question:
    id: str
    question: str
    language: str
    type: str
    answerable: bool
    answers: list[str]
    evidence: list[Evidence] = field(default_factory=list)


def load_questions(path: Path, documents: dict[str, str], ids: set[str] | None = None) -> list[Question]:
    """Read the question set (only ``ids`` when given); every evidence quote must occur in its document's text."""
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if ids is not None and row["id"] not in ids:
            continue
        evidence = []
        for ev in row.get("evidence", []):
            text = documents.get(ev["doc_id"])
            if text is None:
                raise ValueError(f"{path}:{lineno}: unknown document {ev['doc_id']!r}")
            start = text.find(ev["quote"])
            if start < 0:
                raise ValueError(f"{path}:{lineno}: quote not found in {ev['doc_id']}: {ev['quote'][:60]!r}")
            evidence.append(Evidence(ev["doc_id"], ev["quote"], start, start + len(ev["quote"])))
        near = row.get("near")  # near-miss questions: the look-alike passage that does not answer them
        if near is not None:
            text = documents.get(near["doc_id"])
            if text is None:
                raise ValueError(f"{path}:{lineno}: unknown document {near['doc_id']!r} in 'near'")
            if near["quote"] not in text:
                raise ValueError(f"{path}:{lineno}: 'near' quote not found in {near['doc_id']}: {near['quote'][:60]!r}")
        questions.append(
            Question(row["id"], row["question"], row["language"], row["type"], row["answerable"], row.get("answers", []), evidence)
        )
    return questions


class Span(Protocol):
    """A passage or a citation: a document and a range of its characters."""

    @property
    def doc_id(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


def supports(passage: Span | dict[str, Any], ev: Evidence) -> bool:
    """A passage supports evidence when it holds at least half of the quoted span."""
    doc_id: str
    start: int
    end: int
    if isinstance(passage, dict):
        doc_id, start, end = passage["doc_id"], passage["start"], passage["end"]
    else:
        doc_id, start, end = passage.doc_id, passage.start, passage.end
    if doc_id != ev.doc_id:
        return False
    overlap = min(end, ev.end) - max(start, ev.start)
    return overlap >= max(1, (ev.end - ev.start) // 2)


def retrieval_metrics(passages: Sequence[Span], evidence: list[Evidence]) -> dict[str, float]:
    """recall@1, recall@5, reciprocal rank and nDCG@10 for one question (binary relevance)."""
    relevant = [any(supports(p, ev) for ev in evidence) for p in passages]
    first = next((i for i, r in enumerate(relevant) if r), None)
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(relevant[:10]) if r)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, max(1, sum(relevant)))))
    return {
        "recall@1": float(first is not None and first < 1),
        "recall@5": float(first is not None and first < 5),
        "mrr": 0.0 if first is None else 1 / (first + 1),
        "ndcg@10": dcg / ideal if ideal else 0.0,
    }
