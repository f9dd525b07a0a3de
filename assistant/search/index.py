"""Building, checking and loading the persisted index (FAISS vectors + chunks + manifest).

Layout of ``index_dir``::

    CURRENT                 name of the live build (replaced atomically)
    builds/<build>/         manifest.json, documents.jsonl, chunks.jsonl, vectors.npy, index.faiss

A build is written into a fresh folder and only then made live by replacing ``CURRENT``,
so a crash part-way leaves the previous build loadable. Unchanged documents reuse their
stored vectors; a different embedder or chunking forces a full re-embedding.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from assistant.config import Settings
from assistant.errors import IndexNotReady
from assistant.ingest.chunking import Chunk, chunk_document
from assistant.ingest.documents import METADATA_FILE, Document, Skipped, corpus_files, file_hash, load_corpus
from assistant.ingest.sentences import split_sentences
from assistant.search.embedders import Embedder

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: sentence vectors pooled from the chunk pass, new text extraction
CHUNKER_VERSION = "recursive-v1"
DATA_FILES = ("documents.jsonl", "chunks.jsonl", "vectors.npy", "index.faiss", "sentences.npy", "sentence_vectors.npy")
HNSW_FROM = 20_000  # "auto" switches from exact search to HNSW here (exact: 14 ms at 10k, 86 ms at 100k)


@dataclass
class BuildProgress:
    """How far a build is: characters and documents embedded of those that need it."""

    chars_done: int
    chars_total: int
    documents_done: int
    documents_total: int


Progress = Callable[[BuildProgress], None]


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


@dataclass
class IndexStatus:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    manifest: dict | None = None


@dataclass
class LoadedIndex:
    """Everything retrieval needs, in memory. Row ``i`` of the vectors is ``chunks[i]``.

    ``sentences`` rows are (document number, start, end) with documents numbered in
    ``documents`` order; ``sentence_vectors`` row ``i`` embeds sentence ``i``.
    """

    manifest: dict
    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: np.ndarray
    faiss_index: object
    path: Path
    sentences: np.ndarray
    sentence_vectors: np.ndarray

    def sentences_overlapping(self, doc_id: str, start: int, end: int) -> np.ndarray:
        """Row numbers of the sentences of ``doc_id`` that overlap [start, end)."""
        rows = self.sentences
        number = self._doc_numbers[doc_id]
        return np.flatnonzero((rows[:, 0] == number) & (rows[:, 1] < end) & (rows[:, 2] > start))

    def __post_init__(self) -> None:
        self._doc_numbers = {doc_id: i for i, doc_id in enumerate(self.documents)}


def embedding_config(settings: Settings, embedder_name: str, dim: int) -> dict:
    """What the stored vectors depend on; any change forces a full rebuild."""
    return {
        "embedder": embedder_name,
        "dim": dim,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "embed_titles": settings.embed_titles,
        "chunker": CHUNKER_VERSION,
    }


def passage_text(title: str, chunk: Chunk, with_title: bool) -> str:
    return f"{title}\n{chunk.text}" if with_title else chunk.text


def resolve_index_type(index_type: str, n: int) -> str:
    if index_type == "auto":
        return "hnsw" if n >= HNSW_FROM else "flat"
    return index_type


def make_faiss_index(vectors: np.ndarray, index_type: str):
    """Inner-product index over unit vectors: exact ("flat") or approximate ("hnsw", "ivfpq")."""
    import faiss

    n, dim = vectors.shape
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 128
    elif index_type == "ivfpq":
        nlist = max(1, int(4 * np.sqrt(n)))
        m = next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m and dim % m == 0)
        if n < 40 * nlist or n < 256:
            log.warning("too few vectors (%d) to train IVF-PQ; using exact search", n)
            index = faiss.IndexFlatIP(dim)
        else:
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            ivf.train(vectors)
            ivf.nprobe = min(nlist, 32)
            index = faiss.IndexRefineFlat(ivf)
            index.k_factor = 4
    else:
        index = faiss.IndexFlatIP(dim)
    if n:
        index.add(vectors)
    return index


# ---------------------------------------------------------------- files and atomicity


def _sha256(path: Path) -> str:
    return file_hash(path)


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder (released by the OS if the process dies)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexNotReady(f"another build of {index_dir} is running") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current_build(index_dir: Path) -> Path | None:
    pointer = index_dir / "CURRENT"
    if not pointer.exists():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    path = index_dir / "builds" / name
    return path if name and path.is_dir() else None


def read_manifest(index_dir: Path) -> dict | None:
    build = current_build(index_dir)
    if build is None:
        return None
    try:
        return json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _prune_builds(index_dir: Path, keep: set[str]) -> None:
    for path in (index_dir / "builds").iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- status


def corpus_fingerprint(corpus_dir: Path) -> dict[str, str]:
    """sha256 of every candidate file (and the metadata file) below the corpus folder."""
    files = {p.relative_to(corpus_dir).as_posix(): file_hash(p) for p in corpus_files(corpus_dir)}
    meta = corpus_dir / METADATA_FILE
    if meta.exists():
        files[METADATA_FILE] = file_hash(meta)
    return files


def index_status(settings: Settings, embedder_name: str, dim: int) -> IndexStatus:
    """Is the index there, built from the current corpus, with the current settings?"""
    manifest = read_manifest(settings.index_dir)
    if manifest is None:
        return IndexStatus(False, [f"no index in {settings.index_dir}"])
    reasons = []
    if manifest.get("format") != FORMAT_VERSION:
        reasons.append("index was written by another version of the assistant")
    wanted = embedding_config(settings, embedder_name, dim)
    for key, value in wanted.items():
        if manifest.get("config", {}).get(key) != value:
            reasons.append(f"{key} changed: index has {manifest.get('config', {}).get(key)!r}, settings say {value!r}")
    if not settings.corpus_dir.is_dir():
        reasons.append(f"corpus directory not found: {settings.corpus_dir}")
    else:
        old, new = manifest.get("files", {}), corpus_fingerprint(settings.corpus_dir)
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
        for label, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                reasons.append(f"{len(names)} corpus file(s) {label}: {', '.join(names[:5])}")
    return IndexStatus(not reasons, reasons, manifest)


# ---------------------------------------------------------------- build


def build_index(settings: Settings, embedder: Embedder, progress: Progress | None = None) -> BuildReport:
    """Build or update the index for ``settings.corpus_dir``; only changed documents are embedded."""
    started = time.perf_counter()
    index_dir = settings.index_dir
    with build_lock(index_dir):
        corpus = load_corpus(settings.corpus_dir)
        if not corpus.documents:
            skipped = "".join(f"; skipped {s.source}: {s.reason}" for s in corpus.skipped[:5])
            raise IndexNotReady(f"no documents to index in {settings.corpus_dir} (add .txt, .md, .html or .pdf files){skipped}")
        config = embedding_config(settings, embedder.name, embedder.dim)
        previous = _reusable_vectors(index_dir, config)
        chunks = [c for doc in corpus.documents for c in chunk_document(doc, settings.chunk_size, settings.chunk_overlap)]
        sentences = [(number, start, end) for number, doc in enumerate(corpus.documents) for start, end in split_sentences(doc.text)]
        vectors, sentence_vectors, counts = _embed(settings, embedder, corpus.documents, chunks, sentences, previous, progress)
        index_type = resolve_index_type(settings.index_type, len(chunks))
        sentence_rows = np.asarray(sentences, dtype=np.int64).reshape(-1, 3)
        name = _write_build(
            index_dir, settings, config, corpus.documents, corpus.skipped, chunks, vectors, index_type, sentence_rows, sentence_vectors
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


def _sentence_key(text: str) -> tuple[str, str]:
    return (hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], "")


def _embed(settings, embedder, documents, chunks, sentences, previous, progress):
    """Chunk and sentence vectors: reused where the text is unchanged, else embedded.

    Sentences are pooled from their chunk's pass when the embedder can (``embed_passages_pooled``),
    each from the chunk that holds most of it; otherwise they are embedded on their own.
    """
    by_id = {d.doc_id: d for d in documents}
    numbers = {d.doc_id: n for n, d in enumerate(documents)}
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    sentence_vectors = np.zeros((len(sentences), embedder.dim), dtype=np.float32)
    todo = []
    for row, chunk in enumerate(chunks):
        key = (chunk.content_hash, by_id[chunk.doc_id].title)
        if key in previous:
            vectors[row] = previous[key]
        else:
            todo.append(row)
    pooled = hasattr(embedder, "embed_passages_pooled")
    home = _home_chunks(chunks, sentences, numbers) if pooled else {}
    embedded_rows = set(todo)
    missing_sentences = []
    for row, (number, start, end) in enumerate(sentences):
        key = _sentence_key(documents[number].text[start:end])
        if pooled and home.get(row) in embedded_rows:
            continue  # pooled from its chunk's pass below
        if key in previous:
            sentence_vectors[row] = previous[key]
        else:
            missing_sentences.append(row)

    total = sum(len(chunks[r].text) for r in todo) + sum(sentences[r][2] - sentences[r][1] for r in missing_sentences)
    last_rows = {chunks[r].doc_id: r for r in todo}  # each document's last chunk to embed
    state = BuildProgress(0, total, 0, len(last_rows))
    if progress:
        progress(state)
    spans_of: dict[int, list[tuple[int, int, int]]] = {}
    for row, chunk_row in home.items():
        if chunk_row in embedded_rows:
            spans_of.setdefault(chunk_row, []).append(row)
    # Documents in order, in groups of about ``GROUP_CHARS`` characters, so progress counts documents.
    for group in _groups(todo, chunks):
        texts = [passage_text(by_id[chunks[r].doc_id].title, chunks[r], settings.embed_titles) for r in group]
        if pooled:
            spans, owners = [], []
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
        else:
            embedded = embedder.embed_passages(texts)
        vectors[group] = embedded
        state.chars_done += sum(len(chunks[r].text) for r in group)
        state.documents_done = sum(last <= group[-1] for last in last_rows.values())
        if progress:
            progress(state)
    for i in range(0, len(missing_sentences), 256):
        rows = missing_sentences[i : i + 256]
        sentence_vectors[rows] = embedder.embed_passages([documents[sentences[r][0]].text[sentences[r][1] : sentences[r][2]] for r in rows])
        state.chars_done += sum(sentences[r][2] - sentences[r][1] for r in rows)
        if progress:
            progress(state)
    state.documents_done = state.documents_total
    if progress:
        progress(state)
    counts = {
        "embedded_chunks": len(todo),
        "embedded_sentences": len(missing_sentences) + sum(len(v) for v in spans_of.values()),
        "characters": total,
    }
    return vectors, sentence_vectors, counts


def _home_chunks(chunks: list[Chunk], sentences: list[tuple[int, int, int]], numbers: dict[str, int]) -> dict[int, int]:
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


def _groups(rows: list[int], chunks: list[Chunk]):
    group, size = [], 0
    for r in rows:
        group.append(r)
        size += len(chunks[r].text)
        if size >= GROUP_CHARS:
            yield group
            group, size = [], 0
    if group:
        yield group


def _reusable_vectors(index_dir: Path, config: dict) -> dict[tuple[str, str], np.ndarray]:
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
            reusable[_sentence_key(texts[number][start:end])] = loaded.sentence_vectors[row]
    except (IndexNotReady, IndexError, KeyError, ValueError) as exc:
        log.warning("previous index not reusable, embedding everything again: %s", exc)
        return {}
    return reusable


def _write_build(index_dir, settings, config, documents, skipped, chunks, vectors, index_type, sentences, sentence_vectors) -> str:
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
            "files": corpus_fingerprint(settings.corpus_dir),
            "checksums": {f: _sha256(tmp / f) for f in DATA_FILES},
        }
        _write_json(tmp / "manifest.json", manifest)
        for f in (*DATA_FILES, "manifest.json"):
            with (tmp / f).open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, builds / name)
        _fsync_dir(builds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    previous = current_build(index_dir)
    _atomic_write_text(index_dir / "CURRENT", name + "\n")
    _prune_builds(index_dir, keep={name} | ({previous.name} if previous else set()))
    return name


# ---------------------------------------------------------------- load


def load_index(index_dir: Path, verify: bool = True) -> LoadedIndex:
    """Load the live build, checking every data file against the manifest's checksums."""
    import faiss

    build = current_build(index_dir)
    if build is None:
        raise IndexNotReady(f"no index in {index_dir}: run 'assistant index'")
    try:
        manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexNotReady("index was written by another version of the assistant: run 'assistant index'")
        if verify:
            for f, digest in manifest["checksums"].items():
                if _sha256(build / f) != digest:
                    raise IndexNotReady(f"index file {f} is corrupted (checksum mismatch): run 'assistant index'")
        documents = {row["doc_id"]: Document(**row) for row in _read_jsonl(build / "documents.jsonl")}
        chunks = [Chunk(**row) for row in _read_jsonl(build / "chunks.jsonl")]
        vectors = np.load(build / "vectors.npy")
        sentences = np.load(build / "sentences.npy")
        sentence_vectors = np.load(build / "sentence_vectors.npy")
        faiss_index = faiss.read_index(str(build / "index.faiss"))
    except IndexNotReady:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexNotReady(f"index in {build} cannot be read ({exc.__class__.__name__}: {exc}): run 'assistant index'") from exc
    if len(chunks) != vectors.shape[0] or faiss_index.ntotal != len(chunks) or len(sentences) != len(sentence_vectors):
        raise IndexNotReady("index files disagree on the number of chunks: run 'assistant index'")
    if hasattr(faiss_index, "hnsw"):
        faiss_index.hnsw.efSearch = 128
    return LoadedIndex(manifest, documents, chunks, vectors, faiss_index, build, sentences, sentence_vectors)
