"""What an answer is: the ``Answer`` with its numbered ``Citation``s, and the ``Answerer`` seam."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from assistant.ingest.documents import Document
from assistant.search.retriever import Passage, SearchResult
from assistant.search.store import Store


@dataclass
class Citation:
    """A numbered source: the passage, and the exact span ``quote`` inside it that supports the answer.

    ``answer_start``/``answer_end``, when set, are the document offsets of the short answer the
    reader found inside the quote (the words to highlight).
    """

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
    answer_start: int | None = None
    answer_end: int | None = None
    page: int | None = None  # a PDF's page of the quote (of the passage when there is no quote), from 1
    page_end: int | None = None  # its last page: the same as page unless the quote runs over a page break


@dataclass
class Answer:
    answer: str
    abstained: bool
    mode: Literal["extractive", "llm"]
    citations: list[Citation] = field(default_factory=list)
    related: list[Citation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    check: dict[str, Any] | None = None  # what the answer step decided (JSON; its keys depend on the answerer)
    search_question: str | None = None  # what was searched: the question, or a follow-up made standalone
    rewrite: str | None = None  # how it was made standalone: "none", "rules" or "llm"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Answerer(Protocol):
    """Turns a question and retrieved passages into an Answer (``stream`` yields text, then the Answer)."""

    mode: str

    def answer(self, question: str, search: SearchResult) -> Answer: ...

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]: ...


def citation(
    n: int,
    passage: Passage,
    index: Store,
    quote_start: int | None = None,
    quote_end: int | None = None,
    answer_span: tuple[int, int] | None = None,
) -> Citation:
    """Citation ``n`` for ``passage``; the quote defaults to empty at the passage start."""
    doc = index.documents[passage.doc_id]
    qs = passage.start if quote_start is None else quote_start
    qe = qs if quote_end is None else quote_end
    if not (passage.start <= qs <= qe <= passage.end):
        raise ValueError("quote must lie inside the passage")
    if answer_span is not None and not (qs <= answer_span[0] <= answer_span[1] <= qe):
        raise ValueError("the answer must lie inside the quote")
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
        answer_start=answer_span[0] if answer_span else None,
        answer_end=answer_span[1] if answer_span else None,
        **_pages(doc, (qs, qe) if qe > qs else (passage.start, passage.end)),
    )


class _Pages(TypedDict, total=False):
    page: int
    page_end: int


def _pages(doc: Document, span: tuple[int, int]) -> _Pages:
    pages = doc.pages(*span) if hasattr(doc, "pages") else None
    return {"page": pages[0], "page_end": pages[1]} if pages else {}


def related(passages: list[Passage], index: Store, limit: int = 3) -> list[Citation]:
    return [citation(i, p, index) for i, p in enumerate(passages[:limit], 1)]
