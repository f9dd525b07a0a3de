"""Hybrid retrieval: dense FAISS search fused with BM25 (convex score fusion or reciprocal ranks)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from assistant.config import RetrievalMode, Settings
from assistant.search.embedders import Embedder
from assistant.search.store import Store

QUERY_CACHE_SIZE = 1024
PREFER_LIFT = 0.1  # share of the best fused score added to the chunks of a conversation's cited documents


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its provenance and every score that ranked it."""

    chunk_id: str
    doc_id: str
    title: str
    source: str
    text: str
    start: int
    end: int
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None
    dense_rank: int | None = None
    keyword_rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    passages: list[Passage]
    timings_ms: dict[str, float] = field(default_factory=dict)
    query_vector: NDArray[np.float32] | None = None  # the embedded query, when dense search ran


def rrf(rankings: list[tuple[list[int], float]], k: int) -> dict[int, float]:
    """Reciprocal-rank fusion of ranked id lists, each with a weight.

    >>> sorted(rrf([([1, 2], 1.0), ([2, 3], 1.0)], k=60).items())[:2]
    [(1, 0.01639344262295082), (2, 0.03252247488101534)]
    """
    fused: dict[int, float] = {}
    for ranking, weight in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank + 1)
    return fused


def convex(dense: dict[int, float], keyword: dict[int, float], keyword_share: float) -> dict[int, float]:
    """Weighted sum of min-max normalised dense scores and max-normalised BM25 scores.

    >>> convex({1: 0.9, 2: 0.5}, {2: 4.0}, keyword_share=0.5)
    {1: 0.5, 2: 0.5}
    """
    keyword_share = min(max(keyword_share, 0.0), 1.0)
    fused: dict[int, float] = {}
    if dense:
        lo, hi = min(dense.values()), max(dense.values())
        for i, s in dense.items():
            fused[i] = (1 - keyword_share) * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    if keyword:
        top = max(keyword.values())
        for i, s in keyword.items():
            fused[i] = fused.get(i, 0.0) + keyword_share * (s / top if top > 0 else 0.0)
    return fused


class Retriever:
    """Search over a loaded index. Build once; ``search`` is safe to call from many threads."""

    def __init__(self, index: Store, embedder: Embedder, settings: Settings):
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self._cache: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def embed_query(self, query: str, timings: dict[str, float]) -> NDArray[np.float32]:
        """The query's vector; repeated questions come from a small LRU cache."""
        t = time.perf_counter()
        with self._cache_lock:
            vector = self._cache.get(query)
            if vector is not None:
                self._cache.move_to_end(query)
        if vector is None:
            vector = self.embedder.embed_queries([query])
            vector.setflags(write=False)
            with self._cache_lock:
                self._cache[query] = vector
                if len(self._cache) > QUERY_CACHE_SIZE:
                    self._cache.popitem(last=False)
        timings["embed_query"] = _ms(t)
        return vector

    def dense(self, vector: NDArray[np.float32], n: int, timings: dict[str, float]) -> tuple[list[int], dict[int, float]]:
        t = time.perf_counter()
        found = self.index.dense_search(vector, n)
        timings["dense_search"] = _ms(t)
        return found

    def keyword_search(self, query: str, n: int, timings: dict[str, float]) -> tuple[list[int], dict[int, float]]:
        t = time.perf_counter()
        found = self.index.keyword_search(query, n)
        timings["keyword_search"] = _ms(t)
        return found

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        prefer_docs: Collection[str] = (),
        exclude_docs: Collection[str] = (),
    ) -> SearchResult:
        """Ranked passages for ``query``; chunks of ``prefer_docs`` (what a conversation cited) get a small
        lift; ``exclude_docs`` are left out (as if they were not in the corpus: the benchmarks use it).

        Example: ``retriever.search("Who finances the project?", top_k=3).passages[0].title``
        """
        top_k = top_k or self.settings.top_k
        mode = mode or self.settings.retrieval_mode
        n = max(self.settings.candidates, top_k)
        timings: dict[str, float] = {}
        if not self.index.chunk_count:
            return SearchResult([], timings)
        vector = self.embed_query(query, timings)
        dense_ids, dense_scores = self.dense(vector, n, timings) if mode in ("hybrid", "dense") else ([], {})
        kw_ids, kw_scores = self.keyword_search(query, n, timings) if mode in ("hybrid", "keyword") else ([], {})
        t = time.perf_counter()
        if mode == "dense":
            fused = {i: dense_scores[i] for i in dense_ids}
        elif mode == "keyword":
            fused = {i: kw_scores[i] for i in kw_ids}
        else:
            # Keyword evidence counts as much as the query's words are known to the corpus, so a
            # Russian question over English text leans on the multilingual dense ranking.
            coverage = self.index.keyword_coverage(query)
            if self.settings.fusion == "convex":
                fused = convex(dense_scores, kw_scores, self.settings.keyword_weight * coverage)
            else:
                fused = rrf([(dense_ids, 1.0), (kw_ids, self.settings.keyword_weight * coverage)], self.settings.rrf_k)
        if exclude_docs:
            fused = {i: s for i, s in fused.items() if self.index.chunk(i).doc_id not in exclude_docs}
        if prefer_docs:
            lift = PREFER_LIFT * (max(fused.values(), default=0.0) or 1.0)
            for i in fused:
                if self.index.chunk(i).doc_id in prefer_docs:
                    fused[i] += lift
        order = sorted(fused, key=lambda i: (-fused[i], i))[:top_k]
        dense_rank = {i: r + 1 for r, i in enumerate(dense_ids)}
        kw_rank = {i: r + 1 for r, i in enumerate(kw_ids)}
        passages = [self._passage(i, fused[i], dense_scores, kw_scores, dense_rank, kw_rank) for i in order]
        timings["fusion"] = _ms(t)
        return SearchResult(passages, timings, vector)

    def _passage(
        self,
        i: int,
        score: float,
        dense_scores: dict[int, float],
        kw_scores: dict[int, float],
        dense_rank: dict[int, int],
        kw_rank: dict[int, int],
    ) -> Passage:
        chunk = self.index.chunk(i)
        doc = self.index.documents[chunk.doc_id]
        return Passage(
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            title=doc.title,
            source=doc.source,
            text=chunk.text,
            start=chunk.start,
            end=chunk.end,
            score=round(float(score), 6),
            dense_score=_round(dense_scores.get(i)),
            keyword_score=_round(kw_scores.get(i)),
            dense_rank=dense_rank.get(i),
            keyword_rank=kw_rank.get(i),
        )


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
