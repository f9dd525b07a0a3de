"""Checking an LLM answer against the passages it cites, sentence by sentence, as it streams.

A sentence is kept when it cites an existing passage, every number in it occurs in a passage it
cites, and it shares enough content words with them (unless written in another language than
the passages). "The documents do not say ..." sentences are kept without citations.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistant.answer.language import language, languages, no_answer_text
from assistant.answer.llm.prompt import SENTINEL
from assistant.answer.numbers import numbers
from assistant.answer.types import Answer, Citation, citation, related
from assistant.ingest.sentences import split_sentences
from assistant.search.keyword import fold, tokenize
from assistant.search.retriever import Passage
from assistant.search.store import Store

# [1], [1, 2], [1][2], [passage 1]; one or two digits, so "[2019]" stays text.
_MARKER = re.compile(r"\[\s*(?:passages?\s*)?\d{1,2}(?:\s*[,;]\s*(?:passages?\s*)?\d{1,2})*\s*\]", re.I)
_MARKER_RUN = rf"{_MARKER.pattern}(?:[ \t]*{_MARKER.pattern})*"
_MARKER_RUN_RE = re.compile(rf"[ \t]*({_MARKER_RUN})[ \t]*", re.I)
# "... million. [1]" -> "... million [1]." so a marker stays with the sentence it closes.
_MARKER_AFTER_STOP = re.compile(rf"[ \t]*([.!?…]+)[ \t]*({_MARKER_RUN})", re.I)
_NOT_COVERED = re.compile(
    r"\b(?:documents?|passages?|sources?|texts?|context|information)\b[^.!?]{0,80}?"
    r"\b(?:(?:do|does|did|can|could)\s*(?:not|n[’']t)|not\s+(?:mention|state|specif|say|contain|cover|provid|includ|give|answer|address)\w*)"
    r"|\bnot\s+(?:mentioned|stated|specified|given|provided|covered|found|included|addressed)\s+(?:in|by)\s+(?:the\s+)?"
    r"(?:documents?|passages?|sources?|texts?|context)\b"
    r"|\bno\s+(?:information|mention|data|details)\b|\bnot\s+enough\s+information\b|\b(?:i|we)\s+(?:do\s+not|don[’']t)\s+know\b"
    r"|\b(?:documents?|passages?|sources?|textes?|extraits?)\b[^.!?]{0,80}?\bne\s+\w+|\baucune\s+(?:information|mention|donnée)"
    r"|\bje\s+ne\s+sais\s+pas\b|\bpas\s+(?:mentionnée?s?|précisée?s?|indiquée?s?)\s+dans\b"
    r"|(?:документ|источник|текст|отрывк|фрагмент)\w*[^.!?]{0,80}?\bне\s|нет\s+(?:информации|данных|сведений)"
    r"|не\s+(?:упоминается|указан\w*|сказано|говорится)|не\s+знаю",
    re.I,
)
# Lines like "Sources: [1], [2]" or "Answer:" carry no claim; they are left out silently.
_BOILERPLATE = frozenset(
    "source sources reference references citation citations passage passages document documents answer "
    "reponse sources extrait extraits источник источники ответ".split()
)
MAX_MARKERS = 3  # a sentence with more markers than this and than content words is citation spam
LEXICAL_SHARE = 1 / 3  # a sentence must share at least this share of its content words (and at least one)
# Words about the sources rather than claims; left out of the lexical check.
_META_WORDS = frozenset("according document documents passage passages source sources mention mentions mentioned".split())


def _words(text: str) -> set[str]:
    """Content words of ``text`` (folded, no stopwords, no numbers, at least two letters)."""
    return {w for w in tokenize(text) if len(w) >= 2 and not any(ch.isdigit() for ch in w)}


def _shares(word: str, vocabulary: set[str]) -> bool:
    """Same word, or the same stem: one is a prefix of the other (4+ letters), or 5+ letters in common."""
    if word in vocabulary:
        return True
    for other in vocabulary:
        common = os.path.commonprefix([word, other])
        if len(common) >= 5 or (len(common) >= 4 and common in (word, other)):
            return True
    return False


@dataclass
class _Source:
    """What the check needs to know about one retrieved passage."""

    passage: Passage
    words: set[str]
    numbers: set[str]
    languages: set[str]
    folded: str


@dataclass
class _Sentence:
    text: str  # with markers rewritten
    claim: str  # without markers
    sources: list[int]  # 0-based passage numbers it cites, in order


class Checker:
    """Checks the model's answer sentence by sentence, as the text arrives.

    ``feed`` takes text deltas and returns the text of the sentences that passed (markers
    renumbered in order of first use); ``finish`` does the rest; ``answer`` builds the Answer.
    """

    def __init__(self, question: str, passages: list[Passage], index: Store):
        self.question = question
        self.passages = passages
        self.index = index
        self._sources: dict[int, _Source] = {}
        self._buffer = ""
        self._emitted = False
        self.kept: list[_Sentence] = []
        self.order: list[int] = []  # 0-based passage numbers, in order of first citation
        self.removed: list[dict[str, str]] = []  # the sentences left out and why
        self.dropped: list[int] = []
        self.sentences = 0
        self.not_covered = 0
        self.sentinel = False
        self.cross_language = 0
        self.raw: list[str] = []

    # -------------------------------------------------------- streaming

    def feed(self, delta: str) -> str:
        self.raw.append(delta)
        self._buffer = _MARKER_AFTER_STOP.sub(_move_markers, self._buffer + delta)
        spans = split_sentences(self._buffer, max_chars=1_000_000)
        if len(spans) < 2:
            return ""
        # Every span but the last is complete: the next sentence has begun.
        out = self._consume(spans[:-1])
        self._buffer = self._buffer[spans[-2][1] :]
        return out

    def finish(self, finish_reason: str | None) -> str:
        self._buffer = _MARKER_AFTER_STOP.sub(_move_markers, self._buffer)
        spans = split_sentences(self._buffer, max_chars=1_000_000)
        cut_off = None
        if finish_reason == "length" and spans:
            last = self._buffer[spans[-1][0] : spans[-1][1]]
            if not re.search(rf"[.!?…:;]\s*(?:{_MARKER_RUN})?$", last.strip()):
                cut_off, spans = last, spans[:-1]
        out = self._consume(spans)
        if cut_off is not None:
            self.sentences += 1
            self.removed.append({"sentence": cut_off, "reason": "cut off at max_tokens"})
        self._buffer = ""
        return out

    def _consume(self, spans: list[tuple[int, int]]) -> str:
        out = []
        previous = 0
        for start, end in spans:
            gap = self._buffer[previous:start]
            previous = end
            text = self._check(self._buffer[start:end])
            if text is None:
                continue
            if self._emitted:
                out.append("\n" * min(gap.count("\n"), 2) if "\n" in gap else " ")
            out.append(text)
            self._emitted = True
        return "".join(out)

    # -------------------------------------------------------- one sentence

    def _source(self, i: int) -> _Source:
        if i not in self._sources:
            p = self.passages[i]
            text = f"{p.title}\n{p.text}"
            self._sources[i] = _Source(p, _words(text), numbers(text, loose=True).values(), languages(p.text), fold(text))
        return self._sources[i]

    def _check(self, sentence: str) -> str | None:
        """The sentence as it goes into the answer (markers renumbered), or None when it is left out."""
        cited: list[int] = []
        invalid: list[int] = []
        for m in _MARKER.finditer(sentence):
            for n in map(int, re.findall(r"\d+", m.group())):
                (cited if 1 <= n <= len(self.passages) else invalid).append(n)
        self.dropped.extend(invalid)
        cited = list(dict.fromkeys(n - 1 for n in cited))
        claim = _strip_markers(sentence)
        if SENTINEL.casefold() in sentence.casefold().replace(" ", "_"):
            self.sentinel = True
            return None
        if not any(ch.isalnum() for ch in claim) or (_words(claim) <= _BOILERPLATE and not numbers(claim).mentions):
            return None  # a stray "[1]" line, "Sources: [1], [2]"
        self.sentences += 1
        markers = len(_MARKER.findall(sentence))
        reason: str | None
        if markers > max(MAX_MARKERS, len(_words(claim))):
            reason = f"{markers} citation markers for {len(_words(claim))} content words"  # "[1] and [2] and [3] and [4]"
        elif cited:
            reason = self._unsupported(claim, cited)
        else:
            reason = "cites no existing passage" if invalid else "no citation"
        if reason and _NOT_COVERED.search(claim) and self._numbers_known(claim):
            # "The documents do not say ...": kept, without citations (nothing can support an absence).
            self.not_covered += 1
            return claim
        if reason:
            self.removed.append({"sentence": sentence, "reason": reason})
            return None
        for i in cited:
            if i not in self.order:
                self.order.append(i)
        text = _rewrite_markers(sentence, self._renumber)
        self.kept.append(_Sentence(text, claim, cited))
        return text

    def _renumber(self, numbers: list[int]) -> str:
        return "".join(f"[{self.order.index(n - 1) + 1}]" for n in dict.fromkeys(numbers) if n - 1 in self.order)

    def _numbers_known(self, claim: str) -> bool:
        """A "not in the documents" sentence may repeat numbers from the question or the passages only."""
        known = numbers(self.question, loose=True).values()
        for i in range(len(self.passages)):
            known |= self._source(i).numbers
        return all(values & known for _, values in numbers(claim).mentions)

    def _unsupported(self, claim: str, cited: list[int]) -> str | None:
        sources = [self._source(i) for i in cited]
        cited_numbers = set().union(*(s.numbers for s in sources))
        folded = " ".join(s.folded for s in sources)
        for written, values in numbers(claim).mentions:
            codes = {v[len("code:") :] for v in values if v.startswith("code:")}
            if values & cited_numbers or any(code in folded for code in codes):
                continue
            return f"'{written}' is not in the cited passages"
        words = _words(claim) - _META_WORDS
        if not words:
            return None
        claim_languages = languages(claim)
        passage_languages = set().union(*(s.languages for s in sources))
        if claim_languages and passage_languages and not claim_languages & passage_languages:
            # Written in another language than the passages: words cannot be compared, numbers were.
            self.cross_language += 1
            return None
        vocabulary = set().union(*(s.words for s in sources))
        shared = sum(_shares(w, vocabulary) for w in words)
        if shared < max(1, math.ceil(LEXICAL_SHARE * len(words))):
            return f"shares {shared} of {len(words)} content words with the cited passages"
        return None

    # -------------------------------------------------------- the result

    def check(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "supported": len(self.kept),
            "not_covered": self.not_covered,
            "removed": self.removed,
            "dropped_markers": sorted(set(self.dropped)),
            "cross_language": self.cross_language,
            "sentinel": self.sentinel,
        }

    def answer(self, text: str, warnings: list[str], timings: dict[str, float]) -> Answer:
        warnings = list(warnings)
        if self.dropped:
            markers = ", ".join(f"[{n}]" for n in sorted(set(self.dropped)))
            warnings.append(f"The model cited passages that do not exist ({markers}); those citations were removed.")
        if self.removed:
            n = len(self.removed)
            warnings.append(
                f"{n} sentence{'s' if n != 1 else ''} of the model's answer {'were' if n != 1 else 'was'} removed:"
                " not supported by the cited passages."
            )
        if not self.kept:
            if self.removed and not self.sentinel and not self.not_covered:
                warnings.append("No sentence of the model's answer was supported by the passages, so it was withheld.")
            return Answer(
                answer=no_answer_text(language(self.question)),
                abstained=True,
                mode="llm",
                related=related(self.passages, self.index),
                warnings=warnings,
                timings_ms=timings,
                check=self.check(),
            )
        return Answer(
            answer=text.strip(),
            abstained=False,
            mode="llm",
            citations=self.citations(),
            warnings=warnings,
            timings_ms=timings,
            check=self.check(),
        )

    def citations(self) -> list[Citation]:
        out = []
        for n, i in enumerate(self.order, 1):
            claims = [s.claim for s in self.kept if i in s.sources]
            start, end = best_quote(self.passages[i], self.index, claims, self.question)
            out.append(citation(n, self.passages[i], self.index, start, end))
        return out


def _move_markers(m: re.Match[str]) -> str:
    return " " + m.group(2).strip() + m.group(1) + " "


def _rewrite_markers(sentence: str, replace: Callable[[list[int]], str]) -> str:
    """``sentence`` with each run of markers ("[1][2]", "[1, 3]") replaced by ``replace(numbers)``."""

    def sub(m: re.Match[str]) -> str:
        new = replace([int(n) for n in re.findall(r"\d+", m.group(1))])
        after = m.string[m.end() : m.end() + 1]
        glue = "" if not after or after in ".!?…,;:)\n" else " "
        before = "" if m.start() == 0 else " "
        if new:
            return f"{before}{new}{glue}"
        return " " if before and glue else ""

    return _MARKER_RUN_RE.sub(sub, sentence).strip()


def _strip_markers(sentence: str) -> str:
    return _rewrite_markers(sentence, lambda numbers: "")


def best_quote(passage: Passage, index: Store, claims: list[str], question: str) -> tuple[int, int]:
    """The sentence of the passage that best supports the claims citing it (document offsets)."""
    text = index.documents[passage.doc_id].text
    spans = split_sentences(text[passage.start : passage.end], offset=passage.start)
    if not spans:
        return passage.start, passage.end
    claim_words = _words(" ".join(claims))
    claim_numbers = {v for _, vs in numbers(" ".join(claims)).mentions for v in vs}
    question_words = _words(question)

    def score(span: tuple[int, int]) -> float:
        sentence = text[span[0] : span[1]]
        words = _words(sentence)
        found = numbers(sentence, loose=True).values()
        return (
            3 * len(claim_numbers & found)
            + sum(_shares(w, words) for w in claim_words)
            + 0.5 * sum(_shares(w, words) for w in question_words)
        )

    return max(spans, key=score)  # the first of equals
