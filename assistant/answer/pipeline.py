"""The ask pipeline: retrieve passages once, then ask the chosen answerer.

When the LLM answerer fails (down, slow, malformed), the extractive answerer answers instead,
with a warning; in a stream only while none of the LLM's text has been sent (afterwards the
stream ends with ``StreamFailed``: one stream is one answer). Every answer leaves as plain text:
markup copied from the documents is removed here, at the one place every answer passes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.answer.followup import Completer, Rewrite, Turn, rewrite
from assistant.answer.types import Answer, Answerer
from assistant.cancellation import check_cancelled
from assistant.config import AnswerMode, Settings
from assistant.errors import AnswerError, StreamFailed
from assistant.search.retriever import Retriever, SearchResult

if TYPE_CHECKING:
    from assistant.answer.llm.prompt import Prompt

log = logging.getLogger(__name__)

# A markup tag (or comment, doctype, processing instruction): "<" and a letter, "/", "!" or "?",
# up to the next ">", with no "<" or ">" inside.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]{0,1000}>")
_TAG_MAX = 1003  # the longest text _TAG matches
_MARKER = re.compile(r"\[\d+\]")


def plain_text(text: str) -> str:
    """``text`` without markup tags; a citation marker written inside a tag is kept.

    >>> plain_text('Funds <iframe src="javascript:alert(1)"></iframe>went to <b>SDC</b> [1].')
    'Funds went to SDC [1].'
    >>> plain_text("5 < 7 and 9 > 8 [2]")
    '5 < 7 and 9 > 8 [2]'
    """
    return _TAG.sub(lambda m: "".join(_MARKER.findall(m.group())), text)


class PlainTextStream:
    """``plain_text`` for text that arrives in pieces: a piece that may still turn into a tag is held
    back until it does (or cannot), so the pieces put together equal ``plain_text`` of the whole."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        cut = _open_tag(text)
        self._held = text[cut:] if cut is not None else ""
        return plain_text(text[:cut] if cut is not None else text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return plain_text(text)


def _open_tag(text: str) -> int | None:
    """Where an unfinished tag may start at the end of ``text`` (a "<" that a later ">" could close)."""
    i = text.rfind("<")
    if i < 0 or ">" in text[i:] or len(text) - i >= _TAG_MAX:
        return None
    rest = text[i + 1 : i + 2]
    return i if rest == "" or rest.isascii() and (rest.isalpha() or rest in "/!?") else None


@dataclass(frozen=True)
class Condenser:
    """What the LLM rewrite of follow-ups needs: the client and ``prompts/condense.md``."""

    client: Completer
    prompt: Prompt


class Pipeline:
    """Retrieve, then answer in the requested mode; never raises for an answerer failure."""

    def __init__(
        self, settings: Settings, retriever: Retriever, extractive: Answerer, llm: Answerer | None = None, condense: Condenser | None = None
    ):
        self.settings = settings
        self.retriever = retriever
        self.extractive = extractive
        self.llm = llm
        self.condense = condense  # the LLM rewrite of follow-ups, when an LLM is configured

    def standalone(self, question: str, history: list[Turn] | None, mode: AnswerMode | None) -> Rewrite:
        """The question to search for (a follow-up made standalone) and the documents to prefer."""
        if self.condense is not None and (mode or self.settings.answer_mode) != "extractive":
            return rewrite(question, history, self.condense.client, self.condense.prompt)
        return rewrite(question, history)

    def _search(
        self, question: str, top_k: int | None, history: list[Turn] | None, mode: AnswerMode | None
    ) -> tuple[Rewrite, SearchResult]:
        found = self.standalone(question, history, mode)
        search = self.retriever.search(found.question, top_k=top_k, prefer_docs=found.prefer_docs)
        return found, search

    def _choose(self, mode: AnswerMode | None) -> tuple[Answerer, list[str]]:
        mode = mode or self.settings.answer_mode
        if mode == "extractive" or (mode == "auto" and self.llm is None):
            return self.extractive, []
        if self.llm is None:
            return self.extractive, ["No LLM endpoint is configured; answered extractively."]
        return self.llm, []

    def ask(self, question: str, top_k: int | None = None, mode: AnswerMode | None = None, history: list[Turn] | None = None) -> Answer:
        """Answer ``question`` (a follow-up of ``history``, when given), with citations or an abstention."""
        started = time.perf_counter()
        found, search = self._search(question, top_k, history, mode)
        question = found.question
        check_cancelled()
        answerer, warnings = self._choose(mode)
        t = time.perf_counter()
        try:
            answer = answerer.answer(question, search)
        except AnswerError as exc:
            log.warning("LLM answer failed, falling back to extractive: %s", exc)
            warnings.append(f"The LLM endpoint failed ({exc}); answered extractively.")
            t = time.perf_counter()
            answer = self.extractive.answer(question, search)
        return self._finish(answer, search, warnings, started, t, found)

    def ask_stream(
        self, question: str, top_k: int | None = None, mode: AnswerMode | None = None, history: list[Turn] | None = None
    ) -> Generator[str | Answer, None, None]:
        """Yield text deltas as they are produced, then the final Answer (whose text the deltas add up to).

        An answerer failure before any text was sent falls back to the extractive answer; after
        some text was sent it raises ``StreamFailed`` instead of yielding a different answer.
        """
        started = time.perf_counter()
        found, search = self._search(question, top_k, history, mode)
        question = found.question
        check_cancelled()
        answerer, warnings = self._choose(mode)
        t = time.perf_counter()
        plain = PlainTextStream()
        sent = False
        try:
            for item in answerer.stream(question, search):
                if isinstance(item, Answer):
                    tail = plain.flush()
                    if tail:
                        yield tail
                    yield self._finish(item, search, warnings, started, t, found)
                    return
                text = plain.feed(item)
                if text:
                    sent = True
                    yield text
        except AnswerError as exc:
            if sent:
                log.warning("LLM stream failed after part of its answer was sent: %s", exc)
                raise StreamFailed(f"The LLM endpoint failed part-way through its answer ({exc}).") from None
            log.warning("LLM stream failed, falling back to extractive: %s", exc)
            warnings.append(f"The LLM endpoint failed ({exc}); answered extractively.")
            t = time.perf_counter()
            yield self._finish(self.extractive.answer(question, search), search, warnings, started, t, found)

    @staticmethod
    def _finish(
        answer: Answer, search: SearchResult, warnings: list[str], started: float, answer_started: float, found: Rewrite | None = None
    ) -> Answer:
        # Plain text out, whatever the answerer copied from the documents or the model wrote;
        # citations keep the exact document text (their offsets point into it).
        answer.answer = plain_text(answer.answer)
        answer.warnings = [plain_text(w) for w in warnings + answer.warnings]
        answer.timings_ms = {**search.timings_ms, **answer.timings_ms}
        answer.timings_ms.setdefault("answer", round((time.perf_counter() - answer_started) * 1000, 3))
        answer.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
        if found is not None:
            answer.search_question = found.question
            answer.rewrite = found.method
        return answer
