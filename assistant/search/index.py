"""Checking and loading the persisted index (FAISS vectors + chunks + manifest): the local ``Store``.

Layout of ``index_dir``::

    CURRENT                 name of the live build (replaced atomically)
    builds/<build>/         manifest.json, documents.jsonl, chunks.jsonl, vectors.npy, index.faiss

Builds are written by ``build.py``: into a fresh folder, made live by replacing ``CURRENT``,
so a crash part-way leaves the previous build loadable.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from assistant.config import Settings
from assistant.errors import BuildInProgress, IndexNotReady
from assistant.fsutil import fsync_dir as _fsync_dir
from assistant.ingest.chunking import Chunk
from assistant.ingest.documents import METADATA_FILE, Document, corpus_files, file_hash
from assistant.search.store import SentenceRow

if TYPE_CHECKING:
    import faiss

    from assistant.search.keyword import KeywordIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: sentence vectors pooled from the chunk pass, new text extraction
CHUNKER_VERSION = "recursive-v1+fields-v1"  # fields-v1: fact-sheet fields are sentences of their own
DATA_FILES = ("documents.jsonl", "chunks.jsonl", "vectors.npy", "index.faiss", "sentences.npy", "sentence_vectors.npy")
HNSW_FROM = 20_000  # "auto" switches from exact search to HNSW here (exact: 14 ms at 10k, 86 ms at 100k)


@dataclass
class IndexStatus:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None


@dataclass
class LoadedIndex:
    """The local ``Store``: everything retrieval needs, in memory. Row ``i`` of the vectors is ``chunks[i]``.

    ``sentences`` rows are (document number, start, end) with documents numbered in
    ``documents`` order; ``sentence_vectors`` row ``i`` embeds sentence ``i``.
    """

    manifest: dict[str, Any]
    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: NDArray[np.float32]
    faiss_index: faiss.Index
    path: Path
    sentences: NDArray[np.int64]
    sentence_vectors: NDArray[np.float32]

    def __post_init__(self) -> None:
        self._doc_numbers = {doc_id: i for i, doc_id in enumerate(self.documents)}
        self._doc_ids = list(self.documents)
        self._keyword: KeywordIndex | None = None
        self._idf: tuple[dict[str, float], float] | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------- the Store interface

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)

    def chunk(self, i: int) -> Chunk:
        return self.chunks[i]

    @property
    def keyword(self) -> KeywordIndex:
        """BM25 over "title + chunk text", built on first use."""
        with self._lock:
            if self._keyword is None:
                from assistant.search.keyword import KeywordIndex

                titles = {d: doc.title for d, doc in self.documents.items()}
                self._keyword = KeywordIndex([f"{titles.get(c.doc_id, '')}\n{c.text}" for c in self.chunks])
            return self._keyword

    def dense_search(self, vector: NDArray[np.float32], n: int) -> tuple[list[int], dict[int, float]]:
        scores, ids = self.faiss_index.search(vector, min(n, len(self.chunks)))
        ranked = [int(i) for i in ids[0] if i >= 0]
        return ranked, {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0}

    def keyword_search(self, query: str, n: int) -> tuple[list[int], dict[int, float]]:
        scores = self.keyword.scores(query)
        top = np.argsort(-scores, kind="stable")[:n]
        ranked = [int(i) for i in top if scores[i] > 0]
        return ranked, {i: float(scores[i]) for i in ranked}

    def keyword_coverage(self, query: str) -> float:
        return self.keyword.coverage(query)

    def sentences_in(self, doc_id: str, start: int, end: int) -> list[SentenceRow]:
        rows = self.sentences
        number = self._doc_numbers[doc_id]
        out = []
        for hit in np.flatnonzero((rows[:, 0] == number) & (rows[:, 1] < end) & (rows[:, 2] > start)):
            row = int(hit)
            previous = self.sentence_vectors[row - 1] if row > 0 and rows[row - 1, 0] == number else None
            out.append(SentenceRow(row, doc_id, int(rows[row, 1]), int(rows[row, 2]), self.sentence_vectors[row], previous))
        return out

    def sentence_idf(self, tokens: set[str]) -> tuple[dict[str, float], float]:
        with self._lock:
            if self._idf is None:
                from assistant.search.keyword import tokenize

                texts = [doc.text for doc in self.documents.values()]
                df = Counter(t for number, s, e in self.sentences for t in set(tokenize(texts[number][s:e])))
                n = max(1, len(self.sentences))
                self._idf = ({t: math.log(1 + n / c) for t, c in df.items()}, math.log(1 + n))
            idf, unknown = self._idf
        return {t: idf[t] for t in tokens if t in idf}, unknown


def embedding_config(settings: Settings, embedder_name: str, dim: int) -> dict[str, Any]:
    """What the stored vectors depend on; any change forces a full rebuild."""
    return {
        "embedder": embedder_name,
        "dim": dim,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "embed_titles": settings.embed_titles,
        "chunker": CHUNKER_VERSION,
    }


def resolve_index_type(index_type: str, n: int) -> str:
    if index_type == "auto":
        return "hnsw" if n >= HNSW_FROM else "flat"
    return index_type


def make_faiss_index(vectors: NDArray[np.float32], index_type: str) -> faiss.Index:
    """Inner-product index over unit vectors: exact ("flat") or approximate ("hnsw", "ivfpq")."""
    import faiss

    n, dim = vectors.shape
    index: faiss.Index
    if index_type == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 200
        hnsw.hnsw.efSearch = 128
        index = hnsw
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
            refine = faiss.IndexRefineFlat(ivf)
            refine.k_factor = 4
            index = refine
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


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


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
            raise BuildInProgress(f"another build of {index_dir} is running") from None
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


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    build = current_build(index_dir)
    if build is None:
        return None
    try:
        manifest: dict[str, Any] = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        return manifest
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
