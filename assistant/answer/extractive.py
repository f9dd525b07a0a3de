"""The offline answerer: quote the sentence of the retrieved passages that answers the question.

Each sentence of the top passages is scored by its embedding similarity to the question, the
share of the question's (IDF-weighted) words it contains, whether it holds the kind of thing the
question asks for (a number for "how many", a date for "when", a name for "who"), and the rank
of its passage. The best sentence is quoted with its exact document offsets. When even the best
evidence is weak, the answerer abstains and offers the closest passages instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

from assistant.answer.kinds import counted_words, counts_noun, has_kind, question_kind
from assistant.answer.language import no_answer_text, question_language
from assistant.answer.types import Answer, Citation, citation, related
from assistant.config import Settings
from assistant.search.index import LoadedIndex
from assistant.search.keyword import tokenize
from assistant.search.retriever import Passage, SearchResult


@dataclass(frozen=True)
class Weights:
    """Sentence scoring and abstention parameters (calibrated with ``assistant eval --calibrate``)."""

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
    score: float = 0.0


class ExtractiveAnswerer:
    """Quotes the best supporting sentence; needs no LLM. Build once per loaded index."""

    mode = "extractive"

    def __init__(self, settings: Settings, index: LoadedIndex, weights: Weights | None = None):
        self.settings = settings
        self.index = index
        self.weights = weights or weights_for(settings.embedder)
        self._texts = [doc.text for doc in index.documents.values()]
        sentence_tokens = [set(tokenize(self._texts[d][s:e])) for d, s, e in index.sentences]
        df = Counter(t for tokens in sentence_tokens for t in tokens)
        n = max(1, len(sentence_tokens))
        self._idf = {t: math.log(1 + n / c) for t, c in df.items()}
        self._unknown_idf = math.log(1 + n)
        self._sentence_tokens = sentence_tokens

    # ------------------------------------------------------------------ scoring

    def candidates(self, question: str, search: SearchResult) -> list[Candidate]:
        """Every sentence overlapping the retrieved passages, scored."""
        if search.query_vector is None or not search.passages:
            return []
        q = search.query_vector[0]
        q_tokens = set(tokenize(question))
        q_weight = sum(self._idf.get(t, self._unknown_idf) for t in q_tokens)
        kind = question_kind(question)
        w = self.weights
        seen: set[int] = set()
        out: list[Candidate] = []
        rows = self.index.sentences
        for rank, passage in enumerate(search.passages):
            for row in self.index.sentences_overlapping(passage.doc_id, passage.start, passage.end):
                row = int(row)
                if row in seen:
                    continue
                seen.add(row)
                number, start, end = (int(x) for x in rows[row])
                text = self._texts[number][start:end]
                dense = float(self.index.sentence_vectors[row] @ q)
                tokens = self._sentence_tokens[row]
                shared = q_tokens & tokens
                lexical = sum(self._idf.get(t, 0.0) for t in shared) / q_weight if q_weight else 0.0
                novelty = len(tokens - q_tokens) / len(tokens) if tokens else 0.0
                # The answer often follows the sentence that matches the question's topic.
                prev = row - 1
                prev_dense = float(self.index.sentence_vectors[prev] @ q) if prev >= 0 and rows[prev, 0] == number else dense
                is_kind = has_kind(text, kind, question)
                score = (
                    w.dense * dense
                    + w.lexical * lexical
                    + w.kind * is_kind
                    - w.passage_rank * rank
                    + w.novelty * novelty
                    + w.previous * (prev_dense - dense)
                )
                out.append(Candidate(row, rank, passage, start, end, dense, lexical, is_kind, score))
        out.sort(key=lambda c: -c.score)
        return out

    def _about(self, doc_id: str) -> str:
        doc = self.index.documents[doc_id]
        return f"{doc.title} {doc.publisher or ''} {doc.text}"

    def _sentence_text(self, cand: Candidate) -> str:
        return self.index.documents[cand.passage.doc_id].text[cand.start : cand.end]

    def evidence_score(self, best: Candidate) -> float:
        """How strongly the best sentence supports an answer; compared with ``abstain_below``."""
        return best.dense + self.weights.lexical * best.lexical

    # ------------------------------------------------------------------ answering

    def choose(self, question: str, cands: list[Candidate]) -> tuple[Candidate | None, str]:
        """The sentence to quote, or None and the reason to abstain."""
        if not cands:
            return None, "nothing retrieved"
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
                return None, f"no {kind} of what is asked in the closest sentences"
            if not counted and typed[0].dense < best.dense - w.kind_margin:
                return None, f"the closest sentence with a {kind} is a weak match"
            best = typed[0]
        if english:
            # Acronyms the question names must be in the retrieved documents ("... of MSDSP?").
            seen = " ".join(self._about(p.doc_id) for p in {p.doc_id: p for p in (c.passage for c in cands)}.values()).casefold()
            absent = [a for a in re.findall(r"\b[A-Z]{2,}\b", question) if a.casefold() not in seen]
            if absent:
                return None, f"{', '.join(absent)} not in the evidence"
        # Numbers and years the question states must be in the evidence ("... in 2010?").
        passage = _digits(best.passage.text)
        missing = [n for n in re.findall(r"\d+", _digits(question)) if n not in passage]
        if missing:
            return None, f"{', '.join(missing)} not found in the evidence"
        threshold = w.abstain_below if english else w.abstain_below_translated
        if self.evidence_score(best) < threshold:
            return None, "weak evidence"
        return best, ""

    def neighbour(self, best: Candidate, cands: list[Candidate]) -> Candidate | None:
        """The sentence just before or after ``best`` when it scores nearly as well (it often completes it)."""
        for cand in cands[:4]:
            if cand is best or cand.passage.doc_id != best.passage.doc_id or abs(cand.row - best.row) != 1:
                continue
            if cand.score >= best.score - self.weights.neighbour_within:
                return cand
        return None

    def answer(self, question: str, search: SearchResult) -> Answer:
        cands = self.candidates(question, search)
        best, _reason = self.choose(question, cands)
        if best is None:
            return self.abstain(question, search)
        extra = self.neighbour(best, cands)
        if extra is not None:
            best = replace(best, start=min(best.start, extra.start), end=max(best.end, extra.end))
        cite = self._cite(1, best)
        return Answer(answer=f"{cite.quote} [1]", abstained=False, mode="extractive", citations=[cite])

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]:
        answer = self.answer(question, search)
        yield answer.answer
        yield answer

    def abstain(self, question: str, search: SearchResult) -> Answer:
        return Answer(
            answer=no_answer_text(question_language(question)),
            abstained=True,
            mode="extractive",
            related=related(search.passages, self.index),
        )

    def _cite(self, n: int, cand: Candidate) -> Citation:
        # A sentence cut by a chunk boundary widens the cited span to hold all of it.
        p = cand.passage
        start, end = min(p.start, cand.start), max(p.end, cand.end)
        if (start, end) != (p.start, p.end):
            p = replace(p, start=start, end=end, text=self.index.documents[p.doc_id].text[start:end])
        return citation(n, p, self.index, cand.start, cand.end)


def _digits(text: str) -> str:
    """Digit groups joined: '9’200’000' -> '9200000'."""
    return re.sub(r"(?<=\d)[\s’',.\u202f](?=\d{3}\b)", "", text)
