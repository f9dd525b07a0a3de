"""The PostgreSQL schema of ``PostgresStore``: versioned migrations, applied in order, each in a transaction.

``schema_version`` holds one row per applied migration; ``migrate`` applies the missing ones under an
advisory lock, so several workers starting at once apply each step exactly once, and a second run is a
no-op. Steps may name ``{dim}``, the embedding dimension, fixed when the schema is first created.

Tables: ``documents`` (text, metadata, this document's share of the term statistics), ``chunks``
(offsets, text, embedding, ``tsv``/``tf`` for keyword search), ``sentences`` (offsets, embedding),
``terms`` (chunk and sentence document frequencies, for BM25, coverage and sentence idf) and the
one-row ``state`` (generation, embedder and chunking config, corpus counts).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from assistant.errors import IndexNotReady

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

LOCK_MIGRATE = 7_265_001  # pg_advisory_xact_lock key: one migration at a time
LOCK_SYNC = 7_265_002  # pg_try_advisory_lock key: one sync at a time
CHUNK_COLUMNS = 'c.id, d.doc_id, c.ordinal, c.start, c."end", c.text'  # a chunk as the store reads it (chunks c, documents d)

MIGRATIONS: list[list[str]] = [
    # 1: the first schema
    [
        "CREATE EXTENSION IF NOT EXISTS vector",
        """CREATE TABLE state (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            generation bigint NOT NULL DEFAULT 0,
            embedder text,
            dim integer NOT NULL,
            config jsonb,
            documents integer NOT NULL DEFAULT 0,
            chunks bigint NOT NULL DEFAULT 0,
            tokens bigint NOT NULL DEFAULT 0,
            sentences bigint NOT NULL DEFAULT 0,
            skipped jsonb NOT NULL DEFAULT '[]',
            synced_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        "INSERT INTO state (dim) VALUES ({dim})",
        """CREATE TABLE documents (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            doc_id text NOT NULL UNIQUE,
            source text NOT NULL,
            title text NOT NULL,
            text text NOT NULL,
            sha256 text NOT NULL,
            publisher text,
            date text,
            period text,
            language text[] NOT NULL DEFAULT '{{}}',
            description text,
            warnings text[] NOT NULL DEFAULT '{{}}',
            origin text NOT NULL DEFAULT 'corpus' CHECK (origin IN ('corpus', 'upload')),
            fingerprint text NOT NULL,
            chunk_count integer NOT NULL,
            token_count bigint NOT NULL,
            sentence_count integer NOT NULL,
            terms text[] NOT NULL,
            term_chunks integer[] NOT NULL,
            term_sentences integer[] NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE chunks (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            document bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            start integer NOT NULL,
            "end" integer NOT NULL,
            text text NOT NULL,
            content_hash text NOT NULL,
            n_tokens integer NOT NULL,
            tsv tsvector NOT NULL,
            tf jsonb NOT NULL,
            embedding vector({dim}) NOT NULL
        ) WITH (toast_tuple_target = 8160)""",  # keep tsv and tf inline: keyword scoring reads them for every candidate
        "CREATE INDEX chunks_document ON chunks (document, ordinal)",
        "CREATE INDEX chunks_content_hash ON chunks (content_hash)",
        "CREATE INDEX chunks_tsv ON chunks USING gin (tsv)",
        "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64)",
        """CREATE TABLE sentences (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            document bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            start integer NOT NULL,
            "end" integer NOT NULL,
            content_hash text NOT NULL,
            embedding vector({dim}) NOT NULL
        )""",
        "CREATE INDEX sentences_document ON sentences (document, ordinal)",
        "CREATE INDEX sentences_content_hash ON sentences (content_hash)",
        """CREATE TABLE terms (
            term text PRIMARY KEY,
            chunk_df integer NOT NULL DEFAULT 0,
            sentence_df integer NOT NULL DEFAULT 0
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def one(row: TupleRow | None) -> TupleRow:
    """The row of a statement that always returns one (a ``SELECT`` of expressions, an ``INSERT ... RETURNING``)."""
    assert row is not None, "the statement returned no row"
    return row


def schema_version(conn: psycopg.Connection[TupleRow]) -> int:
    """The highest applied migration (0: no schema)."""
    exists = one(conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone())[0]
    if not exists:
        return 0
    version: int = one(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone())[0]
    return version


def migrate(conn: psycopg.Connection[TupleRow], dim: int) -> int:
    """Apply the missing migrations in order, each in its own transaction; the version reached.

    ``dim`` is used only when the schema is created; an existing schema keeps its dimension.
    """
    if not conn.autocommit:
        conn.commit()
    for version in range(1, SCHEMA_VERSION + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())")
            if conn.execute("SELECT 1 FROM schema_version WHERE version = %s", (version,)).fetchone():
                continue
            if version > 1:
                (dim,) = one(conn.execute("SELECT dim FROM state").fetchone())
            for step in MIGRATIONS[version - 1]:
                conn.execute(step.format(dim=int(dim)))
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            log.info("PostgreSQL schema migrated to version %d", version)
    return SCHEMA_VERSION


def check_schema(conn: psycopg.Connection[TupleRow]) -> None:
    """Raise ``IndexNotReady`` unless the schema is there and current."""
    version = schema_version(conn)
    if version == 0:
        raise IndexNotReady("the PostgreSQL database has no index yet: run a sync")
    if version > SCHEMA_VERSION:
        raise IndexNotReady(f"the PostgreSQL schema (version {version}) is newer than this assistant (version {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        raise IndexNotReady(f"the PostgreSQL schema is at version {version}, this assistant needs {SCHEMA_VERSION}: run a sync")


def drop_schema(conn: psycopg.Connection[TupleRow]) -> None:
    """Remove every table of the store (for a rebuild with another embedding dimension)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
        conn.execute("DROP TABLE IF EXISTS sentences, chunks, documents, terms, state, schema_version CASCADE")
