"""The real app over the seed corpus with the ``FakeEmbedder``, no reader, and a slow stand-in for the LLM
answerer (``SlowAnswerer``: one text delta per step, ``TEST_STEP_S`` seconds each), for the admission tests:
answers that take long enough for clients to pile up and drop their streams.

``uvicorn tests.admission_app:create_app --factory`` with ``ASSISTANT_*`` settings as usual.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from assistant.answer.types import Answer
from tests.fakes import FakeEmbedder

APP = "tests.admission_app:create_app"


class SlowAnswerer:
    """The extractive answer, streamed in ``steps`` pieces with ``step_s`` seconds of work before each."""

    mode = "llm"

    def __init__(self, inner, step_s: float, steps: int = 8):
        self.inner, self.step_s, self.steps = inner, step_s, steps

    def answer(self, question, search) -> Answer:
        *_, last = self.stream(question, search)
        return last

    def stream(self, question, search) -> Iterator[str | Answer]:
        answer = self.inner.answer(question, search)
        text = answer.answer
        size = max(1, -(-len(text) // self.steps))
        for i in range(0, len(text), size):
            time.sleep(self.step_s)
            yield text[i : i + size]
        answer.mode = "llm"
        yield answer


def create_app():
    from assistant.config import Settings
    from assistant.server.app import create_app as real_create_app
    from assistant.service import open_service

    settings = Settings()
    service = open_service(settings, FakeEmbedder())
    service.pipeline.llm = SlowAnswerer(service.pipeline.extractive, float(os.environ.get("TEST_STEP_S", "0.25")))
    return real_create_app(settings, service=service)
