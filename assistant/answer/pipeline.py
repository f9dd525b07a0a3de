"""The ask pipeline: retrieve passages once, then ask the chosen answerer.

When the LLM answerer fails (down, slow, malformed), the extractive answerer answers instead,
with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from assistant.answer.types import Answer, Answerer
from assistant.config import AnswerMode, Settings
from assistant.errors import AnswerError
from assistant.search.retriever import Retriever, SearchResult

log = logging.getLogger(__name__)


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
