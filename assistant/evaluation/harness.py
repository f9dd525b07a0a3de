"""Evaluation over the hand-labelled questions: retrieval, answers, citations, abstention, latency."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.evaluation import report
from assistant.evaluation.metrics import contains_answer, exact_match, token_f1
from assistant.evaluation.questions import Evidence as Evidence  # also importable from here
from assistant.evaluation.questions import Question as Question
from assistant.evaluation.questions import load_questions as load_questions
from assistant.evaluation.questions import retrieval_metrics as retrieval_metrics
from assistant.evaluation.questions import supports as supports
from assistant.ingest.sentences import split_sentences

if TYPE_CHECKING:
    from assistant.answer.followup import Turn
    from assistant.answer.pipeline import Pipeline
    from assistant.answer.types import Answer
    from assistant.config import Settings
    from assistant.search.embedders import Embedder

Row = dict[str, Any]  # one question's scores (JSON)
Summary = dict[str, Any]  # metrics aggregated over rows, by section (JSON)
Progress = Callable[[int, int], None]  # (done, total)

# ---------------------------------------------------------------- running the set


HEADLINE = {
    # metric: direction (+1 higher is better, -1 lower is better)
    "retrieval.recall@5": 1,
    "retrieval.mrr": 1,
    "answer.contains": 1,
    "citations.evidence_cited": 1,
    "abstention.recall": 1,
    "abstention.false_rate": -1,
    "answer.f1": 1,
    "answer.exact_match": 1,
    "answer.short_f1": 1,  # the marked span (else the answer) against the gold answers
    "abstention.removed": 1,  # the answer-removed variants
}


def evaluate_question(pipeline: Pipeline, q: Question, history: list[Turn] | None = None) -> Row:
    """Run one question (after ``history``, when given) through the pipeline; return its scores."""
    started = time.perf_counter()
    answer = pipeline.ask(q.question, history=history) if history else pipeline.ask(q.question)
    latency = (time.perf_counter() - started) * 1000
    searched = getattr(answer, "search_question", None) or q.question
    search = pipeline.retriever.search(searched, top_k=10)
    row: Row = {
        "id": q.id,
        "type": q.type,
        "language": q.language,
        "answerable": q.answerable,
        "abstained": answer.abstained,
        "latency_ms": latency,
        "answer": answer.answer,
        "mode": answer.mode,
        "search_question": searched,
        "probability": (answer.check or {}).get("probability"),  # the decision's P(answerable), when it decided
    }
    if q.answerable:
        row.update(retrieval_metrics(search.passages, q.evidence))
        text = "" if answer.abstained else answer.answer
        cited = answer.citations
        row["contains"] = float(contains_answer(text, q.answers))
        quote = answer.citations[0].quote if answer.citations and not answer.abstained else ""
        row["quote_contains"] = float(contains_answer(quote, q.answers))
        row["short"] = float(bool(answer.citations) and answer.citations[0].answer_start is not None and not answer.abstained)
        row["exact"] = float(exact_match(re.sub(r"\s*\[\d+\]", "", text), q.answers))
        row["f1"] = token_f1(re.sub(r"\s*\[\d+\]", "", text), q.answers)
        row["short_f1"] = token_f1(short_answer_text(answer), q.answers) if text else 0.0
        row["citation_precision"] = (sum(any(supports(c, ev) for ev in q.evidence) for c in cited) / len(cited)) if cited else None
        row["citation_recall"] = sum(any(supports(c, ev) for c in cited) for ev in q.evidence) / len(q.evidence)
        row["evidence_cited"] = float(any(supports(c, ev) for c in cited for ev in q.evidence))
    return row


def short_answer_text(answer: Answer) -> str:
    """The words a reader takes as the answer: those marked inside the first citation's quote when
    the reader found a span, else the answer without its citation marks."""
    cite = answer.citations[0] if answer.citations and not answer.abstained else None
    if cite is not None and cite.answer_start is not None and cite.answer_end is not None:
        return cite.quote[cite.answer_start - cite.quote_start : cite.answer_end - cite.quote_start]
    return "" if answer.abstained else re.sub(r"\s*\[\d+\]", "", answer.answer)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))], 1)


def summarise(rows: list[Row]) -> Summary:
    """Aggregate metrics over question rows (answer metrics over answerable questions)."""
    ans = [r for r in rows if r["answerable"]]
    unans = [r for r in rows if not r["answerable"]]
    abstained = [r for r in rows if r["abstained"]]
    answered = [r for r in ans if not r["abstained"]]
    return {
        "questions": len(rows),
        "retrieval": {k: _mean([r[k] for r in ans]) for k in ("recall@1", "recall@5", "mrr", "ndcg@10")},
        "answer": {
            "contains": _mean([r["contains"] for r in ans]),
            "contains_when_answered": _mean([r["contains"] for r in answered]),
            "exact_match": _mean([r["exact"] for r in ans]),
            "f1": _mean([r["f1"] for r in ans]),
            "quote_contains": _mean([r.get("quote_contains") for r in ans]),
            "short_answers": _mean([r.get("short") for r in answered]),
            "short_f1": _mean([r.get("short_f1") for r in ans]),
        },
        "citations": {
            "precision": _mean([r["citation_precision"] for r in ans]),
            "recall": _mean([r["citation_recall"] for r in answered]),
            "evidence_cited": _mean([r["evidence_cited"] for r in answered]),
        },
        "abstention": {
            "precision": round(sum(not r["answerable"] for r in abstained) / len(abstained), 4) if abstained else None,
            "recall": round(sum(r["abstained"] for r in unans) / len(unans), 4) if unans else None,
            "false_rate": round(sum(r["abstained"] for r in ans) / len(ans), 4) if ans else None,
        },
        "latency_ms": {"p50": _pct([r["latency_ms"] for r in rows], 50), "p95": _pct([r["latency_ms"] for r in rows], 95)},
        "risk_coverage": risk_coverage(rows),
    }


def risk_coverage(rows: list[Row], points: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)) -> list[dict[str, float]]:
    """Accuracy of the answers given when only the ``coverage`` share the decision is surest of is
    answered (right: answerable and the answer holds a gold answer; a hard check counts as least sure).

    >>> risk_coverage([{"probability": 0.9, "answerable": True, "contains": 1.0}, {"probability": 0.2, "answerable": False}], (0.5, 1.0))
    [{'coverage': 0.5, 'accuracy': 1.0}, {'coverage': 1.0, 'accuracy': 0.5}]
    """
    if not rows:
        return []
    scored = sorted(rows, key=_least_sure_first)
    right = [bool(r["answerable"] and r.get("contains")) for r in scored]
    out = []
    for c in points:
        n = max(1, round(c * len(right)))
        out.append({"coverage": c, "accuracy": round(sum(right[:n]) / n, 4)})
    return out


def _least_sure_first(row: Row) -> float:
    """Sort key: the decision's probability, highest first (a row without one last)."""
    probability = row.get("probability")
    return -(float(probability) if probability is not None else -1.0)


def run_evaluation(pipeline: Pipeline, questions: list[Question], progress: Progress | None = None) -> Summary:
    rows = []
    for i, q in enumerate(questions, 1):
        rows.append(evaluate_question(pipeline, q))
        if progress:
            progress(i, len(questions))
    report: Summary = {"overall": summarise(rows), "by_language": {}, "by_type": {}, "rows": rows}
    for key, field_name in (("by_language", "language"), ("by_type", "type")):
        for value in sorted({r[field_name] for r in rows}):
            report[key][value] = summarise([r for r in rows if r[field_name] == value])
    return report


def headline(summary: Summary) -> dict[str, float | None]:
    """The metrics the regression gate watches (those a set's summary has)."""
    out: dict[str, float | None] = {}
    for name in HEADLINE:
        section, metric = name.split(".", 1)
        value = summary.get(section, {}).get(metric)
        if value is not None:
            out[name] = value
    return out


def regressions(summary: Summary, baseline: Mapping[str, float | None], tolerance: float) -> list[str]:
    """Headline metrics worse than the baseline by more than ``tolerance`` (absolute)."""
    return regressions_of(headline(summary), baseline, tolerance)


def regressions_of(current: Mapping[str, float | None], baseline: Mapping[str, float | None], tolerance: float) -> list[str]:
    problems = []
    for name, direction in HEADLINE.items():
        base, now = baseline.get(name), current.get(name)
        if base is None or now is None:
            continue
        if direction * (now - base) < -tolerance:
            problems.append(f"{name}: {now:.3f} vs baseline {base:.3f} (tolerance {tolerance})")
    return problems


# ---------------------------------------------------------------- report formatting


COLUMNS: list[tuple[str, Callable[[Summary], object]]] = [
    ("n", lambda s: s["questions"]),
    ("R@1", lambda s: s["retrieval"]["recall@1"]),
    ("R@5", lambda s: s["retrieval"]["recall@5"]),
    ("MRR", lambda s: s["retrieval"]["mrr"]),
    ("nDCG@10", lambda s: s["retrieval"]["ndcg@10"]),
    ("contains", lambda s: s["answer"]["contains"]),
    ("EM", lambda s: s["answer"]["exact_match"]),
    ("F1", lambda s: s["answer"]["f1"]),
    ("quote", lambda s: s["answer"]["quote_contains"]),
    ("short", lambda s: s["answer"]["short_answers"]),
    ("short F1", lambda s: s["answer"].get("short_f1")),
    ("cite P", lambda s: s["citations"]["precision"]),
    ("cite R", lambda s: s["citations"]["recall"]),
    ("evid.", lambda s: s["citations"]["evidence_cited"]),
    ("abst P", lambda s: s["abstention"]["precision"]),
    ("abst R", lambda s: s["abstention"]["recall"]),
    ("false abst", lambda s: s["abstention"]["false_rate"]),
    ("p50 ms", lambda s: s["latency_ms"]["p50"]),
    ("p95 ms", lambda s: s["latency_ms"]["p95"]),
]


def table(rows: list[tuple[str, Summary]], markdown: bool = False) -> str:
    """One row per configuration (or language, or type) with the COLUMNS metrics."""
    return report.table(["", *[c for c, _ in COLUMNS]], [[name, *[f(summary) for _, f in COLUMNS]] for name, summary in rows], markdown)


# ---------------------------------------------------------------- answer-removed variants


def answer_removed(corpus: Path, work: Path, q: Question) -> Path | None:
    """A copy of the corpus whose document lacks the sentences holding ``q``'s evidence, or None
    when a gold answer still occurs in that document afterwards."""
    target = work / "corpus"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(corpus, target)
    by_doc: dict[str, list[Evidence]] = {}
    for ev in q.evidence:
        by_doc.setdefault(ev.doc_id, []).append(ev)
    for doc_id, evs in by_doc.items():
        path = next(p for p in target.glob(f"{doc_id}.*") if p.suffix != ".json")
        text = path.read_text(encoding="utf-8")
        cut: list[tuple[int, int]] = []
        for ev in evs:
            start = text.find(ev.quote)
            if start < 0:
                return None
            cut += [(s, e) for s, e in split_sentences(text) if s < start + len(ev.quote) and start < e]
        for s, e in sorted(set(cut), reverse=True):
            text = text[:s] + text[e:]
        if any(contains_answer(text, [a]) for a in q.answers):
            return None
        path.write_text(text, encoding="utf-8")
    return target


def run_removed(settings: Settings, embedder: Embedder, questions: list[Question], work: Path, progress: Progress | None = None) -> Summary:
    """Each answerable question asked again over a corpus whose document lacks the sentences holding
    its evidence (re-indexed; unchanged documents reuse their vectors): it should abstain."""
    from assistant.service import open_service

    rows: list[Row] = []
    answerable = [q for q in questions if q.answerable]
    for i, q in enumerate(answerable, 1):
        corpus = answer_removed(settings.corpus_dir, work, q)
        if corpus is not None:
            variant = open_service(settings.model_copy(update={"corpus_dir": corpus, "index_dir": work / "index"}), embedder)
            answer = variant.pipeline.ask(q.question)
            rows.append({"id": q.id, "language": q.language, "abstained": answer.abstained, "answer": answer.answer})
        if progress:
            progress(i, len(answerable))
    by_language = {
        lang: round(sum(r["abstained"] for r in rows if r["language"] == lang) / n, 4)
        for lang in ("en", "fr", "ru")
        if (n := sum(r["language"] == lang for r in rows))
    }
    return {
        "questions": len(rows),
        "skipped": len(answerable) - len(rows),
        "abstention": {"removed": round(sum(r["abstained"] for r in rows) / len(rows), 4) if rows else None},
        "by_language": by_language,
        "rows": rows,
    }


# ---------------------------------------------------------------- sets and conversations

EVALUATION_DIR = Path("evaluation")
SETS = ("test", "unseen", "calibration", "all", "conversations", "removed", "near_miss")


def load_set(name: str, documents: dict[str, str], folder: Path = EVALUATION_DIR) -> list[Question]:
    """A named question set: the test or calibration half of questions.jsonl, all of it, the unseen questions,
    or the near-miss unanswerable questions."""
    if name == "unseen":
        return load_questions(folder / "questions_unseen.jsonl", documents)
    if name == "near_miss":
        return load_questions(folder / "questions_near_miss.jsonl", documents)
    ids = None
    if name in ("test", "calibration"):
        ids = set(json.loads((folder / "split.json").read_text(encoding="utf-8"))[name])
    return load_questions(folder / "questions.jsonl", documents, ids)


@dataclass
class Conversation:
    id: str
    language: str
    first: str
    follow_up: str
    standalone: str
    question: Question  # the labels of the follow-up


def load_conversations(path: Path, documents: dict[str, str]) -> list[Conversation]:
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        evidence = []
        for ev in row.get("evidence", []):
            start = documents.get(ev["doc_id"], "").find(ev["quote"])
            if start < 0:
                raise ValueError(f"{path}:{lineno}: quote not found in {ev['doc_id']}: {ev['quote'][:60]!r}")
            evidence.append(Evidence(ev["doc_id"], ev["quote"], start, start + len(ev["quote"])))
        first, follow_up = (t["question"] for t in row["turns"][:2])
        kind = "follow-up" if row["answerable"] else "unanswerable"
        q = Question(row["id"], follow_up, row["language"], kind, row["answerable"], row.get("answers", []), evidence)
        out.append(Conversation(row["id"], row["language"], first, follow_up, row["standalone"], q))
    return out


def run_conversations(pipeline: Pipeline, conversations: list[Conversation], progress: Progress | None = None) -> Summary:
    """The follow-up of each conversation asked three ways: after its first turn (with the history),
    written out in full on its own (the ceiling), and bare without the history (the floor)."""
    from assistant.answer.followup import Turn

    rows: dict[str, list[Row]] = {"with_history": [], "standalone": [], "bare": []}
    rewrites: list[dict[str, str]] = []
    for i, conv in enumerate(conversations, 1):
        first = pipeline.ask(conv.first)
        turn = Turn(conv.first, first.answer, [c.doc_id for c in first.citations], first.search_question)
        follow = _with_text(conv.question, conv.follow_up)
        rows["with_history"].append(evaluate_question(pipeline, follow, history=[turn]))
        rewrites.append({"id": conv.id, "follow_up": conv.follow_up, "searched": rows["with_history"][-1]["search_question"]})
        rows["standalone"].append(evaluate_question(pipeline, _with_text(conv.question, conv.standalone)))
        rows["bare"].append(evaluate_question(pipeline, follow))
        if progress:
            progress(i, len(conversations))
    report: Summary = {name: summarise(r) for name, r in rows.items()}
    report["by_language"] = {lang: summarise([r for r in rows["with_history"] if r["language"] == lang]) for lang in ("en", "fr", "ru")}
    report["rewrites"] = rewrites
    return report


def _with_text(q: Question, text: str) -> Question:
    return Question(q.id, text, q.language, q.type, q.answerable, q.answers, q.evidence)
