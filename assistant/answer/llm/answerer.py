"""The LLM answerer: asks an OpenAI-compatible model to answer from numbered passages with
``[n]`` citations, then keeps only the sentences the cited passages support (``grounding``).
When no sentence survives, or the model says the passages do not answer, the answer is an
abstention.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from assistant.answer.llm.client import Completion, LLMClient
from assistant.answer.llm.grounding import Checker
from assistant.answer.llm.prompt import Message, Prompt
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import AnswerError
from assistant.search.retriever import SearchResult
from assistant.search.store import Store

log = logging.getLogger(__name__)


class LLMAnswerer:
    """Answers from the retrieved passages with an LLM, keeping only what the passages support.

    When the model replies with the sentinel, or no sentence of its answer survives the check,
    the result is an abstention (``abstained=True``, ``related`` passages), not an error.
    Errors of the endpoint, and an empty reply, raise ``AnswerError`` (the pipeline then answers
    extractively).
    """

    mode = "llm"

    def __init__(self, settings: Settings, index: Store, client: LLMClient, prompt_path: Path | None = None):
        self.settings = settings
        self.index = index
        self.client = client
        self.prompt = Prompt.load(prompt_path)

    def messages(self, question: str, search: SearchResult) -> list[Message]:
        return self.prompt.messages(question, search.passages)

    def answer(self, question: str, search: SearchResult) -> Answer:
        result = None
        for item in self._run(question, search, stream=False):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]:
        """Text of the checked sentences as the model writes them, then the final Answer."""
        yield from self._run(question, search, stream=True)

    def _run(self, question: str, search: SearchResult, stream: bool) -> Iterator[str | Answer]:
        checker = Checker(question, search.passages, self.index)
        if not search.passages:
            yield checker.answer("", [], {})
            return
        messages = self.messages(question, search)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        checking = 0.0
        finish: str | None = None
        text: list[str] = []
        if stream:
            for item in self.client.stream_chat(messages):
                if isinstance(item, Completion):
                    finish = item.finish_reason
                    continue
                timings.setdefault("llm_first_token", _ms(started))
                t = time.perf_counter()
                out = checker.feed(item)
                checking += time.perf_counter() - t
                if out:
                    text.append(out)
                    yield out
        else:
            completion = self.client.chat(messages)
            finish = completion.finish_reason
            t = time.perf_counter()
            text.append(checker.feed(completion.text))
            checking += time.perf_counter() - t
        if not "".join(checker.raw).strip():
            raise AnswerError("the LLM returned an empty answer")
        t = time.perf_counter()
        tail = checker.finish(finish)
        if tail:
            text.append(tail)
            if stream:
                yield tail
        warnings = ["The model's answer was cut off at max_tokens."] if finish == "length" else []
        answer = checker.answer("".join(text), warnings, timings)
        checking += time.perf_counter() - t
        timings["llm"] = round(_ms(started) - checking * 1000, 3)
        timings["check"] = round(checking * 1000, 3)
        log.info("LLM answer check: %s", {k: v for k, v in (answer.check or {}).items() if k != "removed"})
        yield answer


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
