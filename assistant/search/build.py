"""Building the index: documents in, chunk and sentence vectors out, written as a new build.

A build is written into a fresh folder and only then made live by replacing ``CURRENT``, so a
crash part-way leaves the previous build loadable. Unchanged chunks reuse their stored vectors;
a different embedder or chunking forces a full re-embedding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from assistant.config import Settings
from assistant.errors import IndexNotReady
from assistant.fsutil import fsync_dir
from assistant.ingest.chunking import Chunk, chunk_document
from assistant.ingest.documents import Document, Limits, Skipped, load_corpus
from assistant.ingest.fields import text_units
from assistant.ingest.sentences import split_sentences
from assistant.search.embedders import Embedder, PooledEmbedder, pools
from assistant.search.index import (
    DATA_FILES,
    FORMAT_VERSION,
    _atomic_write_text,
    _prune_builds,
    _sha256,
    _write_json,
    _write_jsonl,
    build_lock,
    corpus_fingerprint,
    current_build,
    embedding_config,
    load_index,
    make_faiss_index,
    read_manifest,
    resolve_index_type,
)

log = logging.getLogger(__name__)


@dataclass
class BuildProgress:
    """How far a build is: characters and documents embedded of those that need it."""

    chars_done: int
    chars_total: int
    documents_done: int
    documents_total: int


Progress = Callable[[BuildProgress], None]
Sentences = list[tuple[int, int, int]]  # (document number, start, end) per sentence row
StoredVectors = Mapping[tuple[str, str], NDArray[np.float32]]  # by (content hash, title); sentences: (sentence_key, "")


@dataclass
class BuildReport:
    documents: int
    chunks: int
    embedded_chunks: int
    reused_chunks: int
    sentences: int
    embedded_sentences: int
    skipped: list[Skipped]
    seconds: float
    build: str
    index_type: str
    characters: int = 0


def passage_text(title: str, chunk: Chunk, with_title: bool) -> str:
    return f"{title}\n{chunk.text}" if with_title else chunk.text


def build_index(settings: Settings, embedder: Embedder, progress: Progress | None = None) -> BuildReport:
    """Build or update the index for ``settings.corpus_dir``; only changed documents are embedded."""
    started = time.perf_counter()
    index_dir = settings.index_dir
    with build_lock(index_dir):
        # Fingerprinted before reading: a file added or changed while the build runs leaves the index stale.
        files = corpus_fingerprint(settings.corpus_dir)
        corpus = load_corpus(settings.corpus_dir, Limits.from_settings(settings))
        if not corpus.documents:
            skipped = "".join(f"; skipped {s.source}: {s.reason}" for s in corpus.skipped[:5])
            raise IndexNotReady(f"no documents to index in {settings.corpus_dir} (add .txt, .md, .html, .pdf or .docx files){skipped}")
        config = embedding_config(settings, embedder.name, embedder.dim)
        previous = _reusable_vectors(index_dir, config)
        chunks = [c for doc in corpus.documents for c in chunk_document(doc, settings.chunk_size, settings.chunk_overlap)]
        sentences = [(number, start, end) for number, doc in enumerate(corpus.documents)
                     for start, end in text_units(doc.text, split_sentences(doc.text))]  # fmt: skip
        vectors, sentence_vectors, counts = embed_chunks(
            settings.embed_titles, embedder, corpus.documents, chunks, sentences, previous, progress
        )
        index_type = resolve_index_type(settings.index_type, len(chunks))
        sentence_rows = np.asarray(sentences, dtype=np.int64).reshape(-1, 3)
        name = _write_build(
            index_dir, files, config, corpus.documents, corpus.skipped, chunks, vectors, index_type, sentence_rows, sentence_vectors
        )
    report = BuildReport(
        documents=len(corpus.documents),
        chunks=len(chunks),
        embedded_chunks=counts["embedded_chunks"],
        reused_chunks=len(chunks) - counts["embedded_chunks"],
        sentences=len(sentences),
        embedded_sentences=counts["embedded_sentences"],
        skipped=corpus.skipped,
        seconds=round(time.perf_counter() - started, 2),
        build=name,
        index_type=index_type,
        characters=counts["characters"],
    )
    log.info("index built: %s", report)
    return report


def sentence_key(text: str) -> tuple[str, str]:
    return (hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], "")


def embed_chunks(
    embed_titles: bool,
    embedder: Embedder,
    documents: Sequence[Document],
    chunks: list[Chunk],
    sentences: Sentences,
    previous: StoredVectors,
    progress: Progress | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], dict[str, int]]:
    """Chunk and sentence vectors: reused where the text is unchanged, else embedded.

    Sentences are pooled from their chunk's pass when the embedder can (``embed_passages_pooled``),
    each from the chunk that holds most of it; otherwise they are embedded on their own.
    """
    by_id = {d.doc_id: d for d in documents}
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    sentence_vectors = np.zeros((len(sentences), embedder.dim), dtype=np.float32)
    todo = _reuse_chunk_vectors(chunks, by_id, previous, vectors)
    pooled = embedder if pools(embedder) else None
    home = _home_chunks(chunks, sentences, {d.doc_id: n for n, d in enumerate(documents)}) if pooled is not None else {}
    embedded_rows = set(todo)
    missing_sentences = _reuse_sentence_vectors(documents, sentences, previous, sentence_vectors, home, embedded_rows)

    total = sum(len(chunks[r].text) for r in todo) + sum(sentences[r][2] - sentences[r][1] for r in missing_sentences)
    _announce_long_build(total)
    last_rows = {chunks[r].doc_id: r for r in todo}  # each document's last chunk to embed
    state = BuildProgress(0, total, 0, len(last_rows))
    _report(progress, state)
    spans_of = _pooled_sentences(home, embedded_rows)
    # Documents in order, in groups of about ``GROUP_CHARS`` characters, so progress counts documents.
    for group in _groups(todo, chunks):
        texts = [passage_text(by_id[chunks[r].doc_id].title, chunks[r], embed_titles) for r in group]
        if pooled is not None:
            vectors[group] = _embed_pooled(pooled, texts, group, chunks, sentences, spans_of, sentence_vectors)
        else:
            vectors[group] = embedder.embed_passages(texts)
        state.chars_done += sum(len(chunks[r].text) for r in group)
        state.documents_done = sum(last <= group[-1] for last in last_rows.values())
        _report(progress, state)
    _embed_sentences_alone(embedder, documents, sentences, missing_sentences, sentence_vectors, state, progress)
    state.documents_done = state.documents_total
    _report(progress, state)
    counts = {
        "embedded_chunks": len(todo),
        "embedded_sentences": len(missing_sentences) + sum(len(v) for v in spans_of.values()),
        "characters": total,
    }
    return vectors, sentence_vectors, counts


def _reuse_chunk_vectors(
    chunks: list[Chunk], by_id: dict[str, Document], previous: StoredVectors, vectors: NDArray[np.float32]
) -> list[int]:
    """Fill ``vectors`` with the stored vectors of unchanged chunks; the rows left to embed."""
    todo = []
    for row, chunk in enumerate(chunks):
        key = (chunk.content_hash, by_id[chunk.doc_id].title)
        if key in previous:
            vectors[row] = previous[key]
        else:
            todo.append(row)
    return todo


def _reuse_sentence_vectors(
    documents: Sequence[Document],
    sentences: Sentences,
    previous: StoredVectors,
    sentence_vectors: NDArray[np.float32],
    home: dict[int, int],
    embedded_rows: set[int],
) -> list[int]:
    """Fill ``sentence_vectors`` with stored vectors; the rows to embed on their own.

    A sentence whose home chunk is embedded now (``home`` is empty unless the embedder pools) is left
    to that chunk's pass.
    """
    missing = []
    for row, (number, start, end) in enumerate(sentences):
        key = sentence_key(documents[number].text[start:end])
        if home.get(row) in embedded_rows:
            continue  # pooled from its chunk's pass
        if key in previous:
            sentence_vectors[row] = previous[key]
        else:
            missing.append(row)
    return missing


def _announce_long_build(total: int) -> None:
    if total > LONG_BUILD_CHARS:
        minutes = total / TYPICAL_CHARS_PER_S / 60
        log.warning("%s characters to embed: about %.0f minutes on a 2-core laptop (a measured ETA follows)", f"{total:,}", minutes)


def _report(progress: Progress | None, state: BuildProgress) -> None:
    if progress:
        progress(state)


def _pooled_sentences(home: dict[int, int], embedded_rows: set[int]) -> dict[int, list[int]]:
    """For each chunk row embedded now, the sentence rows pooled from its pass."""
    spans_of: dict[int, list[int]] = {}
    for row, chunk_row in home.items():
        if chunk_row in embedded_rows:
            spans_of.setdefault(chunk_row, []).append(row)
    return spans_of


def _embed_pooled(
    embedder: PooledEmbedder,
    texts: list[str],
    group: list[int],
    chunks: list[Chunk],
    sentences: Sentences,
    spans_of: dict[int, list[int]],
    sentence_vectors: NDArray[np.float32],
) -> NDArray[np.float32]:
    """A group's chunk vectors, with their sentences' vectors pooled from the same pass into ``sentence_vectors``."""
    spans: list[list[tuple[int, int]]] = []
    owners: list[list[int]] = []
    for r in group:
        chunk, offset = chunks[r], len(texts[len(spans)]) - len(chunks[r].text)
        rows = spans_of.get(r, [])
        spans.append(
            [
                (offset + max(a, chunk.start) - chunk.start, offset + min(b, chunk.end) - chunk.start)
                for _, a, b in (sentences[i] for i in rows)
            ]
        )
        owners.append(rows)
    embedded, pooled_vectors = embedder.embed_passages_pooled(texts, spans)
    for rows, vs in zip(owners, pooled_vectors, strict=True):
        sentence_vectors[rows] = vs
    return embedded


def _embed_sentences_alone(
    embedder: Embedder,
    documents: Sequence[Document],
    sentences: Sentences,
    missing: list[int],
    sentence_vectors: NDArray[np.float32],
    state: BuildProgress,
    progress: Progress | None,
) -> None:
    """The sentences not pooled from a chunk's pass, embedded on their own in batches of 256."""
    for i in range(0, len(missing), 256):
        rows = missing[i : i + 256]
        sentence_vectors[rows] = embedder.embed_passages([documents[sentences[r][0]].text[sentences[r][1] : sentences[r][2]] for r in rows])
        state.chars_done += sum(sentences[r][2] - sentences[r][1] for r in rows)
        _report(progress, state)


def _home_chunks(chunks: list[Chunk], sentences: Sentences, numbers: dict[str, int]) -> dict[int, int]:
    """For each sentence row, the chunk row that holds most of it."""
    by_doc: dict[int, list[int]] = {}
    for row, chunk in enumerate(chunks):
        by_doc.setdefault(numbers[chunk.doc_id], []).append(row)
    home: dict[int, int] = {}
    for row, (number, start, end) in enumerate(sentences):
        best, overlap = None, 0
        for c in by_doc.get(number, []):
            o = min(end, chunks[c].end) - max(start, chunks[c].start)
            if o > overlap:
                best, overlap = c, o
        if best is not None:
            home[row] = best
    return home


GROUP_CHARS = 64_000
LONG_BUILD_CHARS = 2_000_000  # a build this large is announced up front with an estimate
TYPICAL_CHARS_PER_S = 15_000  # the e5 torch engine on 2 cores (benchmarks/speed.py --only indexing)


def _groups(rows: list[int], chunks: list[Chunk]) -> Iterator[list[int]]:
    group: list[int] = []
    size = 0
    for r in rows:
        group.append(r)
        size += len(chunks[r].text)
        if size >= GROUP_CHARS:
            yield group
            group, size = [], 0
    if group:
        yield group


def _reusable_vectors(index_dir: Path, config: dict[str, Any]) -> dict[tuple[str, str], NDArray[np.float32]]:
    """Vectors of the live build keyed by (chunk content hash, document title), if compatible.

    A build that cannot be read or does not fit is not reused (everything is embedded again).
    """
    manifest = read_manifest(index_dir)
    if not manifest or manifest.get("format") != FORMAT_VERSION or manifest.get("config") != config:
        return {}
    try:
        loaded = load_index(index_dir)
        reusable = {
            (c.content_hash, loaded.documents[c.doc_id].title): loaded.vectors[i]
            for i, c in enumerate(loaded.chunks)
            if c.doc_id in loaded.documents
        }
        texts = [doc.text for doc in loaded.documents.values()]
        for row, (number, start, end) in enumerate(loaded.sentences):
            reusable[sentence_key(texts[number][start:end])] = loaded.sentence_vectors[row]
    except (IndexNotReady, IndexError, KeyError, ValueError) as exc:
        log.warning("previous index not reusable, embedding everything again: %s", exc)
        return {}
    return reusable


def _write_build(
    index_dir: Path,
    files: dict[str, str],
    config: dict[str, Any],
    documents: list[Document],
    skipped: list[Skipped],
    chunks: list[Chunk],
    vectors: NDArray[np.float32],
    index_type: str,
    sentences: NDArray[np.int64],
    sentence_vectors: NDArray[np.float32],
) -> str:
    import faiss

    builds = index_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    name = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    tmp = builds / f".tmp-{name}"
    tmp.mkdir()
    try:
        _write_jsonl(tmp / "documents.jsonl", [asdict(d) for d in documents])
        _write_jsonl(tmp / "chunks.jsonl", [asdict(c) for c in chunks])
        np.save(tmp / "vectors.npy", vectors)
        np.save(tmp / "sentences.npy", sentences)
        np.save(tmp / "sentence_vectors.npy", sentence_vectors)
        faiss.write_index(make_faiss_index(vectors, index_type), str(tmp / "index.faiss"))
        manifest = {
            "format": FORMAT_VERSION,
            "build": name,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config,
            "index_type": index_type,
            "counts": {"documents": len(documents), "chunks": len(chunks), "sentences": len(sentences)},
            "documents": {d.doc_id: {"source": d.source, "sha256": d.sha256, "title": d.title} for d in documents},
            "skipped": [asdict(s) for s in skipped],
            "files": files,
            "checksums": {f: _sha256(tmp / f) for f in DATA_FILES},
        }
        _write_json(tmp / "manifest.json", manifest)
        for f in (*DATA_FILES, "manifest.json"):
            with (tmp / f).open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, builds / name)
        fsync_dir(builds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = current_build(index_dir)
    _atomic_write_text(index_dir / "CURRENT", name + "\n")
    _prune_builds(index_dir, keep={name} | ({previous.name} if previous else set()))
    return name
