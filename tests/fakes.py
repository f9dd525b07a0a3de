"""Deterministic stand-ins that implement the real seams."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from assistant.answer.types import Answer
from assistant.search.keyword import tokenize


class FakeEmbedder:
    """Hashed bag of words: texts sharing words get similar unit vectors. Counts its calls."""

    def __init__(self, name: str = "fake-hash-256", dim: int = 256, fail_after: int | None = None):
        self.name = name
        self.dim = dim
        self.passages_embedded = 0
        self.fail_after = fail_after

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for token in tokenize(text, drop_stopwords=True) or ["\u2400"]:
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after is not None and self.passages_embedded + len(texts) > self.fail_after:
            raise RuntimeError("simulated crash while embedding")
        self.passages_embedded += len(texts)
        return self.embed_queries(texts)


class Scripted:
    """An LLM answerer that streams a script: strings are deltas, an exception is raised, an Answer ends it."""

    mode = "llm"

    def __init__(self, *script: str | Exception | Answer):
        self.script = script

    def answer(self, question, search) -> Answer:
        *_, last = self.stream(question, search)
        return last

    def stream(self, question, search) -> Iterator[str | Answer]:
        for step in self.script:
            if isinstance(step, Exception):
                raise step
            yield step
