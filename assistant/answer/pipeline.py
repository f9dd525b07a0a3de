"""Answers with citations: the result types, the ``Answerer`` seam and the ask pipeline.

The pipeline retrieves passages once, then asks the chosen answerer. When the LLM answerer
fails (down, slow, malformed), the extractive answerer answers instead, with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from assistant.config import AnswerMode, Settings
from assistant.search.index import LoadedIndex
from assistant.search.retriever import Passage, Retriever, SearchResult

log = logging.getLogger(__name__)

NO_ANSWER = "The documents do not answer this question."


@dataclass
class Citation:
    """A numbered source: the passage, and the exact span ``quote`` inside it that supports the answer."""

    n: int
    doc_id: str
    title: str
    publisher: str | None
    source: str
    text: str
    start: int
    end: int
    quote: str
    quote_start: int
    quote_end: int
    score: float


@dataclass
class Answer:
    answer: str
    abstained: bool
    mode: Literal["extractive", "llm"]
    citations: list[Citation] = field(default_factory=list)
    related: list[Citation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    check: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class AnswerError(Exception):
    """The answerer could not produce an answer (e.g. the LLM endpoint failed)."""


class Answerer(Protocol):
    """Turns a question and retrieved passages into an Answer (``stream`` yields text, then the Answer)."""

    mode: str

    def answer(self, question: str, search: SearchResult) -> Answer: ...

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]: ...


def citation(n: int, passage: Passage, index: LoadedIndex, quote_start: int | None = None, quote_end: int | None = None) -> Citation:
    """Citation ``n`` for ``passage``; the quote defaults to empty at the passage start."""
    doc = index.documents[passage.doc_id]
    qs = passage.start if quote_start is None else quote_start
    qe = qs if quote_end is None else quote_end
    if not (passage.start <= qs <= qe <= passage.end):
        raise ValueError("quote must lie inside the passage")
    return Citation(
        n=n,
        doc_id=passage.doc_id,
        title=passage.title,
        publisher=doc.publisher,
        source=passage.source,
        text=passage.text,
        start=passage.start,
        end=passage.end,
        quote=doc.text[qs:qe],
        quote_start=qs,
        quote_end=qe,
        score=passage.score,
    )


def related(passages: list[Passage], index: LoadedIndex, limit: int = 3) -> list[Citation]:
    return [citation(i, p, index) for i, p in enumerate(passages[:limit], 1)]


class Pipeline:
    """Retrieve, then answer in the requested mode; never raises for an answerer failure."""

    def __init__(self, settings: Settings, retriever: Retriever, extractive: Answerer, llm: Answerer | None = None):
        self.settings = settings
        self.retriever = retriever
        self.extractive = extractive
        self.llm = llm

    def _choose(self, mode: AnswerMode | None) -> tuple[Answerer, list[str]]:
        mode = mode or self.settings.answer_mode
        if mode == "extractive" or (mode == "auto" and self.llm is None):
            return self.extractive, []
        if self.llm is None:
            return self.extractive, ["No LLM endpoint is configured; answered extractively."]
        return self.llm, []

    def ask(self, question: str, top_k: int | None = None, mode: AnswerMode | None = None) -> Answer:
        started = time.perf_counter()
        search = self.retriever.search(question, top_k=top_k)
        answerer, warnings = self._choose(mode)
        t = time.perf_counter()
        try:
            answer = answerer.answer(question, search)
        except AnswerError as exc:
            log.warning("LLM answer failed, falling back to extractive: %s", exc)
            warnings.append(f"The LLM endpoint failed ({exc}); answered extractively.")
            t = time.perf_counter()
            answer = self.extractive.answer(question, search)
        return self._finish(answer, search, warnings, started, t)

    def ask_stream(self, question: str, top_k: int | None = None, mode: AnswerMode | None = None) -> Iterator[str | Answer]:
        """Yield text deltas as they are produced, then the final Answer."""
        started = time.perf_counter()
        search = self.retriever.search(question, top_k=top_k)
        answerer, warnings = self._choose(mode)
        t = time.perf_counter()
        try:
            for item in answerer.stream(question, search):
                if isinstance(item, Answer):
                    yield self._finish(item, search, warnings, started, t)
                    return
                yield item
        except AnswerError as exc:
            log.warning("LLM stream failed, falling back to extractive: %s", exc)
            warnings.append(f"The LLM endpoint failed ({exc}); answered extractively.")
            t = time.perf_counter()
            yield self._finish(self.extractive.answer(question, search), search, warnings, started, t)

    @staticmethod
    def _finish(answer: Answer, search: SearchResult, warnings: list[str], started: float, answer_started: float) -> Answer:
        answer.warnings = warnings + answer.warnings
        answer.timings_ms = {**search.timings_ms, **answer.timings_ms}
        answer.timings_ms.setdefault("answer", round((time.perf_counter() - answer_started) * 1000, 3))
        answer.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
        return answer
