"""Writing documents into the PostgreSQL store: chunking, embedding (as ``build.py`` does) and one transaction per document.

A document's rows (the document, its chunks, its sentences, its share of the term statistics) are
written in one transaction, so readers see a document whole or not at all; every write first locks
the one ``state`` row, so writers run one at a time and the counters and term frequencies stay exact.
Embedding happens before the transaction, in batches of documents, reusing the stored vectors of
chunks and sentences whose text is unchanged (keyed as in ``build.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from assistant.ingest.chunking import Chunk, chunk_document
from assistant.ingest.documents import CorpusLoad, Document, Skipped
from assistant.ingest.fields import text_units
from assistant.ingest.sentences import split_sentences
from assistant.search.build import BuildProgress, BuildReport, Progress, embed_chunks, sentence_key
from assistant.search.embedders import Embedder
from assistant.search.keyword import tokenize
from assistant.search.postgres.bm25 import MAX_LEXEME_BYTES, Lexemes, copy_types, keyword_text
from assistant.search.postgres.schema import one

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

BATCH_CHARS = 256_000  # documents are embedded in batches of about this many characters
STATE_COLUMNS = (
    "generation",
    "embedder",
    "dim",
    "config",
    "documents",
    "chunks",
    "tokens",
    "sentences",
    "skipped",
    "synced_at",
    "updated_at",
)
# (ordinal, start, end, text, content hash, token count, lexemes, term frequencies, vector): a chunk as COPY writes it
ChunkRow = tuple[int, int, int, str, str, int, Lexemes, dict[str, int], NDArray[np.float32]]


def fingerprint(doc: Document) -> str:
    """What decides that a stored document is unchanged: the file's sha256, the metadata and the extracted text."""
    data = asdict(doc)
    data["text"] = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass
class Prepared:
    """One document ready to write: its chunks and sentences with vectors, and its keyword statistics."""

    document: Document
    chunks: list[Chunk]
    vectors: NDArray[np.float32]
    sentences: list[tuple[int, int]]
    sentence_vectors: NDArray[np.float32]

    def __post_init__(self) -> None:
        self.chunk_tokens = [tokenize(keyword_text(self.document.title, c)) for c in self.chunks]

    def chunk_rows(self) -> Iterator[ChunkRow]:
        """(ordinal, start, end, text, content hash, token count, lexemes, term frequencies, vector) per chunk."""
        for ordinal, (chunk, tokens, vector) in enumerate(zip(self.chunks, self.chunk_tokens, self.vectors, strict=True)):
            tf = Counter(tokens)
            lexemes = Lexemes(sorted(t for t in tf if len(t.encode("utf-8")) <= MAX_LEXEME_BYTES))
            yield (ordinal, chunk.start, chunk.end, chunk.text, chunk.content_hash, max(1, len(tokens)), lexemes, dict(tf), vector)

    def term_counts(self) -> tuple[list[str], list[int], list[int], int]:
        """This document's terms (sorted) with the number of its chunks and of its sentences holding each; its token total."""
        chunk_df: Counter[str] = Counter()
        for tokens in self.chunk_tokens:
            chunk_df.update(set(tokens))
        sentence_df: Counter[str] = Counter()
        for start, end in self.sentences:
            sentence_df.update(set(tokenize(self.document.text[start:end])))
        terms = sorted(chunk_df.keys() | sentence_df.keys())
        token_total = sum(max(1, len(t)) for t in self.chunk_tokens)
        return terms, [chunk_df[t] for t in terms], [sentence_df[t] for t in terms], token_total


def batches(documents: Sequence[Document], chars: int | None = None) -> Iterator[list[Document]]:
    """Documents in order, in groups of about ``chars`` (default ``BATCH_CHARS``) characters, so the embedder gets full batches."""
    chars = chars or BATCH_CHARS
    group: list[Document] = []
    size = 0
    for doc in documents:
        group.append(doc)
        size += len(doc.text)
        if size >= chars:
            yield group
            group, size = [], 0
    if group:
        yield group


def reusable_vectors(
    conn: psycopg.Connection[TupleRow], chunks: list[Chunk], texts: list[str]
) -> dict[tuple[str, str], NDArray[np.float32]]:
    """Stored vectors for these chunk hashes (keyed by hash and title) and sentence texts, as ``build.embed_chunks`` takes them."""
    found: dict[tuple[str, str], NDArray[np.float32]] = {}
    hashes = sorted({c.content_hash for c in chunks})
    if hashes:
        rows = conn.execute(
            "SELECT c.content_hash, d.title, c.embedding FROM chunks c JOIN documents d ON d.id = c.document"
            " WHERE c.content_hash = ANY(%s)",
            (hashes,),
        )
        for content_hash, title, vector in rows:
            found[(content_hash, title)] = as_array(vector)
    keys = sorted({sentence_key(t)[0] for t in texts})
    if keys:
        rows = conn.execute(
            "SELECT DISTINCT ON (content_hash) content_hash, embedding FROM sentences WHERE content_hash = ANY(%s)", (keys,)
        )
        for content_hash, vector in rows:
            found[(content_hash, "")] = as_array(vector)
    return found


def as_array(vector: Any) -> NDArray[np.float32]:
    """A pgvector value as a float32 array."""
    if hasattr(vector, "to_numpy"):
        vector = vector.to_numpy()
    return np.asarray(vector, dtype=np.float32)


def prepare(
    conn: psycopg.Connection[TupleRow],
    documents: list[Document],
    config: dict[str, Any],
    embedder: Embedder,
    progress: Progress | None = None,
) -> tuple[list[Prepared], dict[str, int]]:
    """Chunk, split and embed ``documents`` exactly as ``build_index`` does (vectors of unchanged text are reused);
    the prepared documents and the embedding counts."""
    chunks = [c for doc in documents for c in chunk_document(doc, config["chunk_size"], config["chunk_overlap"])]
    sentences = [(number, start, end) for number, doc in enumerate(documents)
                 for start, end in text_units(doc.text, split_sentences(doc.text))]  # fmt: skip
    previous = reusable_vectors(conn, chunks, [documents[n].text[s:e] for n, s, e in sentences])
    vectors, sentence_vectors, counts = embed_chunks(config["embed_titles"], embedder, documents, chunks, sentences, previous, progress)
    out = []
    for number, doc in enumerate(documents):
        rows = [i for i, c in enumerate(chunks) if c.doc_id == doc.doc_id]
        srows = [i for i, (n, _, _) in enumerate(sentences) if n == number]
        spans = [(sentences[i][1], sentences[i][2]) for i in srows]
        out.append(Prepared(doc, [chunks[i] for i in rows], vectors[rows], spans, sentence_vectors[srows]))
    return out, counts


def write(conn: psycopg.Connection[TupleRow], prepared: Prepared, origin: str = "corpus") -> None:
    """Insert or replace one document and all its rows in one transaction; bumps the generation."""
    doc = prepared.document
    terms, term_chunks, term_sentences, tokens = prepared.term_counts()
    copy_types(conn)
    with conn.transaction():
        conn.execute("SELECT generation FROM state FOR UPDATE")
        old = _remove(conn, doc.doc_id)
        (document,) = one(
            conn.execute(
                """INSERT INTO documents (doc_id, source, title, text, sha256, publisher, date, period, language, description,
                   warnings, origin, fingerprint, chunk_count, token_count, sentence_count, terms, term_chunks, term_sentences)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (
                    doc.doc_id,
                    doc.source,
                    doc.title,
                    doc.text,
                    doc.sha256,
                    doc.publisher,
                    doc.date,
                    doc.period,
                    list(doc.language),
                    doc.description,
                    list(doc.warnings),
                    origin,
                    fingerprint(doc),
                    len(prepared.chunks),
                    tokens,
                    len(prepared.sentences),
                    terms,
                    term_chunks,
                    term_sentences,
                ),
            ).fetchone()
        )
        columns = 'document, ordinal, start, "end", text, content_hash, n_tokens, tsv, tf, embedding'
        with conn.cursor().copy(f"COPY chunks ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "text", "text", "int4", "tsvector", "jsonb", "vector"])
            for row in prepared.chunk_rows():
                copy.write_row((document, *row))
        columns = 'document, ordinal, start, "end", content_hash, embedding'
        with conn.cursor().copy(f"COPY sentences ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "text", "vector"])
            for ordinal, ((start, end), vector) in enumerate(zip(prepared.sentences, prepared.sentence_vectors, strict=True)):
                copy.write_row((document, ordinal, start, end, sentence_key(doc.text[start:end])[0], vector))
        conn.execute(
            """INSERT INTO terms (term, chunk_df, sentence_df) SELECT * FROM unnest(%s::text[], %s::int[], %s::int[])
               ON CONFLICT (term) DO UPDATE SET chunk_df = terms.chunk_df + excluded.chunk_df,
                                                sentence_df = terms.sentence_df + excluded.sentence_df""",
            (terms, term_chunks, term_sentences),
        )
        conn.execute(
            """UPDATE state SET generation = generation + 1, documents = documents + %s, chunks = chunks + %s,
                   tokens = tokens + %s, sentences = sentences + %s, updated_at = now()""",
            (0 if old else 1, len(prepared.chunks) - old.get("chunks", 0), tokens - old.get("tokens", 0),
             len(prepared.sentences) - old.get("sentences", 0)),
        )  # fmt: skip


def delete(conn: psycopg.Connection[TupleRow], doc_id: str) -> bool:
    """Remove one document and all its rows in one transaction; False if it was not there."""
    with conn.transaction():
        conn.execute("SELECT generation FROM state FOR UPDATE")
        old = _remove(conn, doc_id)
        if old:
            conn.execute(
                """UPDATE state SET generation = generation + 1, documents = documents - 1, chunks = chunks - %s,
                       tokens = tokens - %s, sentences = sentences - %s, updated_at = now()""",
                (old["chunks"], old["tokens"], old["sentences"]),
            )
    return bool(old)


def _remove(conn: psycopg.Connection[TupleRow], doc_id: str) -> dict[str, int]:
    """Delete a document (its chunks and sentences go with it) and take its share out of ``terms``; what it counted."""
    row = conn.execute(
        "DELETE FROM documents WHERE doc_id = %s RETURNING chunk_count, token_count, sentence_count, terms, term_chunks, term_sentences",
        (doc_id,),
    ).fetchone()
    if row is None:
        return {}
    chunks, tokens, sentences, terms, term_chunks, term_sentences = row
    conn.execute(
        """UPDATE terms t SET chunk_df = t.chunk_df - d.c, sentence_df = t.sentence_df - d.s
           FROM unnest(%s::text[], %s::int[], %s::int[]) AS d(term, c, s) WHERE t.term = d.term""",
        (terms, term_chunks, term_sentences),
    )
    conn.execute(
        "DELETE FROM terms t USING unnest(%s::text[]) AS d(term) WHERE t.term = d.term AND t.chunk_df <= 0 AND t.sentence_df <= 0",
        (terms,),
    )
    return {"chunks": chunks, "tokens": tokens, "sentences": sentences}


@dataclass
class SyncReport(BuildReport):
    """``BuildReport`` (totals in the store after the sync) plus what the sync changed."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    generation: int = 0


def read_state(conn: psycopg.Connection[TupleRow]) -> dict[str, Any]:
    """The one ``state`` row as a dict."""
    row = one(conn.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM state").fetchone())
    return dict(zip(STATE_COLUMNS, row, strict=True))


def config_problem(state: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why vectors made with ``wanted`` (``index.embedding_config``) cannot go into this store, or None."""
    if state["dim"] != wanted["dim"]:
        return f"the PostgreSQL store holds {state['dim']}-dimensional vectors; embedder {wanted['embedder']!r} makes {wanted['dim']}"
    have = state["config"]
    if have is None:
        return None
    changed = [f"{k}: store has {have.get(k)!r}, settings say {v!r}" for k, v in wanted.items() if have.get(k) != v]
    return ("the PostgreSQL store was built with another configuration (" + "; ".join(changed) + ")") if changed else None


def reset(conn: psycopg.Connection[TupleRow], config: dict[str, Any]) -> None:
    """Empty the store and take ``config`` (same dimension) in one transaction."""
    with conn.transaction():
        conn.execute("SELECT generation FROM state FOR UPDATE")
        conn.execute("TRUNCATE sentences, chunks, documents, terms")
        conn.execute(
            """UPDATE state SET generation = generation + 1, embedder = %s, config = %s, documents = 0, chunks = 0, tokens = 0,
                   sentences = 0, updated_at = now()""",
            (config["embedder"], json.dumps(config)),
        )


def sync(
    conn: psycopg.Connection[TupleRow],
    corpus: CorpusLoad,
    config: dict[str, Any],
    embedder: Embedder,
    progress: Progress | None = None,
) -> SyncReport:
    """Make the store hold exactly ``corpus`` (uploads are kept): changed documents written, vanished ones deleted.

    ``conn`` is an autocommit connection; the caller holds the sync lock and has checked ``config``.
    """
    started = time.perf_counter()
    state = read_state(conn)
    if state["config"] is None:
        conn.execute("UPDATE state SET embedder = %s, config = %s", (config["embedder"], json.dumps(config)))
    stored = {doc_id: (fp, origin) for doc_id, fp, origin in conn.execute("SELECT doc_id, fingerprint, origin FROM documents")}
    wanted = {doc.doc_id for doc in corpus.documents}
    changed = [doc for doc in corpus.documents if stored.get(doc.doc_id, ("",))[0] != fingerprint(doc)]
    vanished = sorted(doc_id for doc_id, (_, origin) in stored.items() if origin == "corpus" and doc_id not in wanted)
    counts = _write_changed(conn, changed, config, embedder, progress)
    for doc_id in vanished:
        delete(conn, doc_id)
        log.info("removed %s: its file is gone", doc_id)
    _mark_synced(conn, corpus.skipped, bool(changed or vanished), state["skipped"])
    added = sum(doc.doc_id not in stored for doc in changed)
    report = _sync_report(read_state(conn), counts, corpus, round(time.perf_counter() - started, 2))
    report.added, report.updated, report.removed = added, len(changed) - added, len(vanished)
    report.unchanged = len(corpus.documents) - len(changed)
    log.info("PostgreSQL store synced: %s", report)
    return report


def _write_changed(
    conn: psycopg.Connection[TupleRow], changed: list[Document], config: dict[str, Any], embedder: Embedder, progress: Progress | None
) -> Counter[str]:
    """Embed and write ``changed`` in batches (one transaction per document), with progress over all of them; the embedding counts."""
    counts: Counter[str] = Counter()
    total = sum(len(doc.text) for doc in changed)
    overall = BuildProgress(0, total, 0, len(changed))
    if progress:
        progress(overall)
    done_chars = 0
    for group in batches(changed):
        group_chars = sum(len(doc.text) for doc in group)

        def report(step: BuildProgress, before: int = done_chars, size: int = group_chars) -> None:
            share = step.chars_done / step.chars_total if step.chars_total else 1.0
            overall.chars_done = before + int(share * size)
            if progress:
                progress(overall)

        prepared, embedded = prepare(conn, group, config, embedder, report)
        counts.update(embedded)
        for item in prepared:  # a file under uploads/ stays an upload when a start-up sync writes it
            write(conn, item, "upload" if item.document.source.startswith("uploads/") else "corpus")
            overall.documents_done += 1
        done_chars += group_chars
        overall.chars_done = done_chars
        if progress:
            progress(overall)
    return counts


def _mark_synced(conn: psycopg.Connection[TupleRow], skipped: list[Skipped], changed: bool, skipped_before: object) -> None:
    """Record the sync and the files it skipped; a new generation when documents or the skipped files changed."""
    rows = [asdict(s) for s in skipped]
    with conn.transaction():
        conn.execute("SELECT generation FROM state FOR UPDATE")
        bump = 1 if changed or rows != skipped_before else 0
        conn.execute("UPDATE state SET generation = generation + %s, skipped = %s, synced_at = now()", (bump, json.dumps(rows)))


def _sync_report(after: dict[str, Any], counts: Counter[str], corpus: CorpusLoad, seconds: float) -> SyncReport:
    """The store's totals after a sync (``after``: its state row) and what was embedded; what changed is filled in by ``sync``."""
    return SyncReport(
        documents=after["documents"],
        chunks=after["chunks"],
        embedded_chunks=counts["embedded_chunks"],
        reused_chunks=after["chunks"] - counts["embedded_chunks"],
        sentences=after["sentences"],
        embedded_sentences=counts["embedded_sentences"],
        skipped=corpus.skipped,
        seconds=seconds,
        build=f"pg-{after['generation']}",
        index_type="postgres",
        characters=counts["characters"],
        generation=after["generation"],
    )
