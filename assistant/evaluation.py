"""Evaluation over the hand-labelled questions: retrieval, answers, citations, abstention, latency."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .keyword import fold
from .retriever import Passage


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


def load_questions(path: Path, documents: dict[str, str]) -> list[Question]:
    """Read the question set; every evidence quote must occur in its document's text."""
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        evidence = []
        for ev in row.get("evidence", []):
            text = documents.get(ev["doc_id"])
            if text is None:
                raise ValueError(f"{path}:{lineno}: unknown document {ev['doc_id']!r}")
            start = text.find(ev["quote"])
            if start < 0:
                raise ValueError(f"{path}:{lineno}: quote not found in {ev['doc_id']}: {ev['quote'][:60]!r}")
            evidence.append(Evidence(ev["doc_id"], ev["quote"], start, start + len(ev["quote"])))
        questions.append(
            Question(row["id"], row["question"], row["language"], row["type"], row["answerable"], row.get("answers", []), evidence)
        )
    return questions


def supports(passage: Passage | dict, ev: Evidence) -> bool:
    """A passage supports evidence when it holds at least half of the quoted span."""
    p = passage if isinstance(passage, dict) else passage.__dict__
    if p["doc_id"] != ev.doc_id:
        return False
    overlap = min(p["end"], ev.end) - max(p["start"], ev.start)
    return overlap >= max(1, (ev.end - ev.start) // 2)


def retrieval_metrics(passages: list[Passage], evidence: list[Evidence]) -> dict[str, float]:
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
