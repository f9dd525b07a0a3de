"""The offline answerer: quote the sentence of the retrieved passages that answers the question.

Each sentence of the top passages is scored by its embedding similarity to the question, the
share of the question's (IDF-weighted) words it contains, whether it holds the kind of thing the
question asks for (a number for "how many", a date for "when", a name for "who"), the rank of its
passage and, with the trained reader, the reader's best answer span inside it. The best sentence
is quoted with its exact document offsets; when the reader is confident, the answer is its short
span ("CHF 9’200’000 [1]") and the citation marks those words. Whether to answer at all is the
calibrated decision of ``decision.py``; when the evidence is weak, the answerer abstains and offers
the closest passages instead. Without the reader, hand-tuned rules decide (``Weights``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from assistant.answer.decision import Calibration, decision_features, scaled_margin
from assistant.answer.fact_sheet import asked_fact, asked_value, fact_answer
from assistant.answer.kinds import counted_words, counts_noun, has_kind, joined_digits, question_kind, question_names, wants_explanation
from assistant.answer.language import languages, no_answer_text, question_language
from assistant.answer.safety import has_content, is_instruction
from assistant.answer.types import Answer, Citation, citation, related
from assistant.config import Settings
from assistant.ingest.fields import Field, find_fields
from assistant.search.keyword import tokenize
from assistant.search.retriever import Passage, SearchResult
from assistant.search.store import Store

if TYPE_CHECKING:
    from assistant.e5.reader import Reader


@dataclass(frozen=True)
class Weights:
    """Sentence scoring and abstention parameters (the reader's weight and the decision are fitted by ``assistant calibrate``)."""

    dense: float = 1.0
    lexical: float = 0.2
    kind: float = 0.15
    passage_rank: float = 0.02
    novelty: float = 0.05
    previous: float = 0.2
    # Abstain when the best sentence's evidence score is below this, when none of the best
    # ``kind_window`` sentences holds what the question asks for (a number, date, name...), or
    # when the first that does scores more than ``kind_margin`` below the best sentence.
    abstain_below: float = 0.80
    # Questions in another language than the documents share no words with them and score lower.
    abstain_below_translated: float = 0.80
    kind_window: int = 5
    # Quote the adjacent sentence too when it scores within this of the best one.
    neighbour_within: float = 0.1
    kind_margin: float = 0.03


# The evidence-score threshold depends on each embedder's similarity scale. Calibrated on the
# labelled questions for the highest abstention recall at <= 5% false abstentions (e5), or where
# no threshold stays under that, none: then only the question-type checks abstain.
EMBEDDER_THRESHOLDS = {"e5": (0.80, 0.80), "use": (0.0, 0.0), "minilm": (0.0, 0.0), "sentence-transformers": (0.0, 0.0)}


def weights_for(embedder: str) -> Weights:
    below, translated = EMBEDDER_THRESHOLDS.get(embedder, (0.0, 0.0))
    return Weights(abstain_below=below, abstain_below_translated=translated)


@dataclass
class Candidate:
    row: int
    passage_rank: int
    passage: Passage
    start: int
    end: int
    dense: float
    lexical: float
    kind: bool
    score: float = 0.0  # base_score plus the reader's weighted margin: the ranking
    base_score: float = 0.0  # similarity, overlap, kind, rank: the score without the reader
    margin: float | None = None  # the reader's best span in this sentence minus its "no answer" score
    span: tuple[int, int] | None = None  # that span's document offsets
    answer_p: float = 0.0  # the reader's probability that this sentence's passage holds an answer


@dataclass
class Choice:
    """The sentence to quote (or None and why not), and the decision's numbers."""

    best: Candidate | None
    reason: str = ""
    probability: float | None = None


class ExtractiveAnswerer:
    """Quotes the best supporting sentence; needs no LLM. Build once per loaded index.

    ``reader`` (``assistant.e5.reader.Reader``) and ``calibration`` are optional: without them the
    hand-tuned rules of ``Weights`` choose and abstain.
    """

    mode = "extractive"

    def __init__(
        self,
        settings: Settings,
        index: Store,
        weights: Weights | None = None,
        reader: Reader | None = None,
        calibration: Calibration | None = None,
    ):
        self.settings = settings
        self.index = index
        self.weights = weights or weights_for(settings.embedder)
        self.reader = reader
        self.calibration = calibration if reader is not None else None
        self._fields: dict[str, list[Field]] = {}  # each document's fact-sheet fields, found on first use

    # ------------------------------------------------------------------ scoring

    def candidates(self, question: str, search: SearchResult) -> list[Candidate]:
        """Every sentence overlapping the retrieved passages, scored (best first)."""
        if search.query_vector is None or not search.passages:
            return []
        q = search.query_vector[0]
        q_tokens = set(tokenize(question))
        idf, unknown_idf = self.index.sentence_idf(q_tokens)
        q_weight = sum(idf.get(t, unknown_idf) for t in q_tokens)
        kind = question_kind(question)
        w = self.weights
        seen: set[int] = set()
        out: list[Candidate] = []
        for rank, passage in enumerate(search.passages):
            text_of_doc = self.index.documents[passage.doc_id].text
            for sentence in self.index.sentences_in(passage.doc_id, passage.start, passage.end):
                row, start, end = sentence.row, sentence.start, sentence.end
                if row in seen:
                    continue
                seen.add(row)
                text = text_of_doc[start:end]
                if is_instruction(text):
                    continue  # documents are data: orders to the reader are never quoted
                dense = float(sentence.vector @ q)
                tokens = set(tokenize(text))
                shared = q_tokens & tokens
                lexical = sum(idf.get(t, 0.0) for t in shared) / q_weight if q_weight else 0.0
                novelty = len(tokens - q_tokens) / len(tokens) if tokens else 0.0
                # The answer often follows the sentence that matches the question's topic.
                prev_dense = float(sentence.previous_vector @ q) if sentence.previous_vector is not None else dense
                is_kind = has_kind(text, kind, question)
                score = (
                    w.dense * dense
                    + w.lexical * lexical
                    + w.kind * is_kind
                    - w.passage_rank * rank
                    + w.novelty * novelty
                    + w.previous * (prev_dense - dense)
                )
                out.append(Candidate(row, rank, passage, start, end, dense, lexical, is_kind, score, score))
        if self.reader is not None:
            self._read(self.reader, question, search.passages, out)
        return ranked(out, self.calibration.reader_weight if self.calibration else 0.0)

    def _read(self, reader: Reader, question: str, passages: list[Passage], cands: list[Candidate]) -> None:
        """Add the reader's span and margin to the sentences of the passages it reads.

        A span made only of the question's own words is never the answer: the next best span of
        the sentence stands in for it.
        """
        read = passages[: self.settings.reader_passages]
        readings = reader.read(question, [p.text for p in read])
        q_words = set(tokenize(question, drop_stopwords=False))
        for cand in cands:
            for reading, p in zip(readings, read, strict=True):
                lo, hi = max(cand.start, p.start) - p.start, min(cand.end, p.end) - p.start
                if p.doc_id != cand.passage.doc_id or hi <= lo:
                    continue
                spans = reading.top_spans(lo, hi, reader.spec.max_answer_tokens, k=8)
                found = next((sp for sp in spans if not _only_question_words(p.text[sp[1] : sp[2]], q_words)), None)
                if found is None:
                    continue
                margin = found[0] - reading.null
                if cand.margin is None or margin > cand.margin:
                    cand.margin, cand.span = margin, (p.start + found[1], p.start + found[2])
                    cand.answer_p = reading.answer_probability

    def _about(self, doc_id: str) -> str:
        doc = self.index.documents[doc_id]
        return f"{doc.title} {doc.publisher or ''} {doc.text}"

    def _sentence_text(self, cand: Candidate) -> str:
        return self.index.documents[cand.passage.doc_id].text[cand.start : cand.end]

    def evidence_score(self, best: Candidate) -> float:
        """How strongly the best sentence supports an answer (similarity and word overlap)."""
        return best.dense + self.weights.lexical * best.lexical

    def decision_inputs(self, question: str, best: Candidate, cands: list[Candidate] | None = None) -> dict[str, float]:
        """The calibrated decision's features for quoting ``best`` (the first of ``cands``, ranked)."""
        kind = question_kind(question)
        kind_ok = kind is None or best.kind or bool(best.span and has_kind(self._text(best.span, best), kind, question))
        written_in = languages(self._sentence_text(best))
        language = question_language(question)
        crosslingual = bool(written_in) and language not in written_in
        q_tokens = set(tokenize(question))
        idf, unknown = self.index.sentence_idf(q_tokens)
        about = self._about(best.passage.doc_id)
        passage_tokens = set(tokenize(f"{best.passage.text} {self.index.documents[best.passage.doc_id].title}"))
        total = sum(idf.get(t, unknown) for t in q_tokens)
        overlap = sum(idf.get(t, unknown) for t in q_tokens & passage_tokens) / total if total else 1.0
        names = question_names(question)
        folded = about.casefold()
        missing = sum(1 for n in names if n.casefold() not in folded) / len(names) if names else 0.0
        span_words = tokenize(self._text(best.span, best), drop_stopwords=False) if best.span else []
        in_question = set(tokenize(question, drop_stopwords=False))
        span_in_question = sum(w in in_question for w in span_words) / len(span_words) if span_words else 0.0
        others = [c.margin for c in (cands or []) if c is not best and c.margin is not None]
        gap = scaled_margin(best.margin) - scaled_margin(max(others)) if others else 0.0
        return decision_features(
            best.margin,
            self.evidence_score(best),
            kind_ok,
            best.answer_p,
            crosslingual,
            passage_rank=best.passage_rank,
            passage_overlap=overlap,
            names_missing=missing,
            span_in_question=span_in_question,
            margin_gap=gap,
            question_language=language,
        )

    # ------------------------------------------------------------------ answering

    def choose(self, question: str, cands: list[Candidate]) -> Choice:
        """The sentence to quote, or None and the reason to abstain."""
        if not has_content(question, self.index):
            return Choice(None, "the question has no words to look up")
        if not cands:
            return Choice(None, "nothing retrieved")
        reason = self.hard_check(question, cands)
        if reason:
            return Choice(None, reason)
        if self.calibration is None:
            return self._choose_by_rules(question, cands)
        best = cands[0]
        p = self.calibration.probability(self.decision_inputs(question, best, cands))
        if p < self.calibration.threshold:
            return Choice(None, f"weak evidence (p={p:.2f})", p)
        return Choice(best, "", p)

    def hard_check(self, question: str, cands: list[Candidate]) -> str:
        """Acronyms and numbers the question names must be in the evidence ("... of MSDSP in 2010?")."""
        if question_language(question) == "en":
            seen = " ".join(self._about(p.doc_id) for p in {p.doc_id: p for p in (c.passage for c in cands)}.values()).casefold()
            absent = [a for a in re.findall(r"\b[A-Z]{2,}\b", question) if a.casefold() not in seen]
            if absent:
                return f"{', '.join(absent)} not in the evidence"
        passages = " ".join(joined_digits(c.passage.text) for c in cands[:1])
        missing = [n for n in re.findall(r"\d+", joined_digits(question)) if n not in passages]
        return f"{', '.join(missing)} not found in the evidence" if missing else ""

    def _choose_by_rules(self, question: str, cands: list[Candidate]) -> Choice:
        """Without the reader: the typed sentence among the closest, above a similarity threshold."""
        w = self.weights
        best = cands[0]
        kind = question_kind(question)
        english = question_language(question) == "en"
        if kind:
            typed = [c for c in cands[: w.kind_window] if c.kind]
            counted = counted_words(question) if kind == "number" and english else []
            if counted:
                typed = [c for c in typed if counts_noun(self._sentence_text(c), counted)]
            if not typed:
                return Choice(None, f"no {kind} of what is asked in the closest sentences")
            if not counted and typed[0].dense < best.dense - w.kind_margin:
                return Choice(None, f"the closest sentence with a {kind} is a weak match")
            best = typed[0]
        # The typed sentence's own passage must hold the question's numbers too.
        missing = [n for n in re.findall(r"\d+", joined_digits(question)) if n not in joined_digits(best.passage.text)]
        if missing:
            return Choice(None, f"{', '.join(missing)} not found in the evidence")
        threshold = w.abstain_below if english else w.abstain_below_translated
        if self.evidence_score(best) < threshold:
            return Choice(None, "weak evidence")
        return Choice(best)

    def neighbour(self, best: Candidate, cands: list[Candidate]) -> Candidate | None:
        """The sentence just before or after ``best`` when it scores nearly as well (it often completes it)."""
        for cand in cands[:4]:
            if cand is best or cand.passage.doc_id != best.passage.doc_id or abs(cand.row - best.row) != 1:
                continue
            if cand.score >= best.score - self.weights.neighbour_within:
                return cand
        return None

    def reader_span(self, question: str, best: Candidate, highlight: bool = False) -> tuple[int, int] | None:
        """The reader's span, when the question wants a fact, not an explanation, and the reader's
        margin reaches the calibration's ``short_answer_margin`` (the span alone is the answer) or,
        with ``highlight``, its ``highlight_margin`` (the span is marked inside the quoted sentence)."""
        if self.calibration is None or best.span is None or best.margin is None or wants_explanation(question):
            return None
        if best.margin < (self.calibration.highlight_margin if highlight else self.calibration.short_answer_margin):
            return None
        return best.span

    def fact_sheet(self, question: str, cands: list[Candidate]) -> Answer | None:
        """The field that states the start, end, number or budget asked for, in the document ranked first
        when its title and publisher name all that the question names (``fact_sheet``); else None."""
        asked = asked_fact(question)
        if asked is None or not cands or not question_names(question) or self.hard_check(question, cands):
            return None
        top, doc = cands[0].passage, self.index.documents[cands[0].passage.doc_id]
        if any(n.casefold() not in f"{doc.title} {doc.publisher or ''}".casefold() for n in question_names(question)):
            return None  # a fact sheet is about the project its title names
        if top.doc_id not in self._fields:
            self._fields[top.doc_id] = find_fields(doc.text)
        return fact_answer(question, asked, top, doc.text, self._fields[top.doc_id], self.index)

    def answer(self, question: str, search: SearchResult) -> Answer:
        cands = self.candidates(question, search)
        if (fact := self.fact_sheet(question, cands)) is not None:
            return fact
        choice = self.choose(question, cands)
        best = choice.best
        if best is None:
            return self.abstain(question, search, choice)
        span = self.reader_span(question, best)
        if span is None and self.calibration is None:
            extra = self.neighbour(best, cands)
            if extra is not None:
                best = replace(best, start=min(best.start, extra.start), end=max(best.end, extra.end))
        mark = span or self.reader_span(question, best, True) or asked_value(self._sentence_text(best), best.start, question)
        cite = self._cite(1, best, mark)
        text = self._text(span, best) if span else cite.quote
        return Answer(answer=f"{text} [1]", abstained=False, mode="extractive", citations=[cite], check=_check(choice))

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]:
        answer = self.answer(question, search)
        yield answer.answer
        yield answer

    def abstain(self, question: str, search: SearchResult, choice: Choice | None = None) -> Answer:
        return Answer(
            answer=no_answer_text(question_language(question)),
            abstained=True,
            mode="extractive",
            related=related(search.passages, self.index),
            check=_check(choice) if choice else None,
        )

    def _text(self, span: tuple[int, int], cand: Candidate) -> str:
        return self.index.documents[cand.passage.doc_id].text[span[0] : span[1]]

    def _cite(self, n: int, cand: Candidate, span: tuple[int, int] | None = None) -> Citation:
        # A sentence cut by a chunk boundary widens the cited span to hold all of it.
        p, text = cand.passage, self.index.documents[cand.passage.doc_id].text
        start, end = min(p.start, cand.start), max(p.end, cand.end)
        if (start, end) != (p.start, p.end):
            p = replace(p, start=start, end=end, text=text[start:end])
        inner = text[cand.start : cand.end]  # a table row's cell marks are not part of the quote
        qe = cand.start + len(inner.rstrip(" \t\r\n|"))
        qs = min(qe, cand.start + len(inner) - len(inner.lstrip(" \t\r\n|")))
        span = span if span is None or qs <= span[0] <= span[1] <= qe else None
        return citation(n, p, self.index, qs, qe, span)


def ranked(cands: list[Candidate], reader_weight: float) -> list[Candidate]:
    """Candidates scored with the reader's weighted margin, best first: the one ranking that serving
    and fitting (``training/calibrate.py``) both use."""
    for c in cands:
        c.score = c.base_score + reader_weight * scaled_margin(c.margin)
    return sorted(cands, key=lambda c: -c.score)


def _only_question_words(span: str, q_words: set[str]) -> bool:
    """Is ``span`` made only of words the question already says?

    >>> _only_question_words("Tajikistan Digital Foundations Project", {"tajikistan", "digital", "foundations", "project", "the"})
    True
    """
    words = tokenize(span, drop_stopwords=False)
    return bool(words) and all(w in q_words for w in words)


def _check(choice: Choice) -> dict[str, Any]:
    """What the answer step decided, for the response's ``check`` field."""
    out: dict[str, Any] = {"decision": "answer" if choice.best is not None else "abstain"}
    if choice.reason:
        out["reason"] = choice.reason
    if choice.probability is not None:
        out["probability"] = round(choice.probability, 4)
    if choice.best is not None and choice.best.margin is not None:
        out["reader_margin"] = round(choice.best.margin, 3)
    return out
