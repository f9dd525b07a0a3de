"""Keyword search in PostgreSQL: the lexemes a chunk is matched by (written by ``sync``) and the BM25 query over them.

A chunk's distinct words (``keyword.tokenize`` of its title and text) go into a ``tsvector`` without
positions, which the GIN index matches; its term frequencies go into ``tf`` (jsonb), which the BM25
query scores with the local index's formula (``KeywordIndex``, bm25s' Lucene variant).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from assistant.ingest.chunking import Chunk
from assistant.search.postgres.schema import CHUNK_COLUMNS

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

K1, B = 1.5, 0.75  # bm25s' defaults, as KeywordIndex uses them (Lucene variant)
MAX_LEXEME_BYTES = 2046  # PostgreSQL's limit for one tsvector lexeme (longer words are left out of the match index)
EMPTY = "\u2400"  # what KeywordIndex indexes for a text with no words (its length counts as 1)


def keyword_text(title: str, chunk: Chunk) -> str:
    """The text BM25 sees for a chunk, as ``LoadedIndex.keyword`` builds it."""
    return f"{title}\n{chunk.text}"


def tsvector_literal(terms: Sequence[str]) -> str:
    """A tsvector in its text form, one quoted lexeme per term (no parser, no stemming, no positions).

    >>> tsvector_literal(["projet", "l'eau"])
    "'projet' 'l''eau'"
    """
    return " ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms if len(t.encode("utf-8")) <= MAX_LEXEME_BYTES)


class Lexemes(list[str]):
    """Distinct words sent as a tsvector without positions (``copy_types`` makes binary COPY take it)."""


def copy_types(conn: psycopg.Connection[TupleRow]) -> None:
    """Teach ``conn`` to send ``Lexemes`` as tsvector in binary COPY (psycopg has no binary tsvector dumper)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class LexemesBinaryDumper(Dumper):
        format = Format.BINARY
        oid = 3614  # tsvector

        def dump(self, obj: Lexemes) -> bytes:
            # tsvector's binary form: entry count, then each lexeme NUL-terminated with its position count (0)
            return len(obj).to_bytes(4, "big") + b"".join(w.encode("utf-8") + b"\x00\x00\x00" for w in obj)

    conn.adapters.register_dumper(Lexemes, LexemesBinaryDumper)


def query(match: list[str], weights: Counter[str], idf: dict[str, float], avg: float, n: int) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters that find the ``n`` best chunks holding any of ``match``, scored over all query
    words (``weights``: each word's count in the query; one term per column: no per-row subquery)."""
    terms = sorted(weights)
    params: dict[str, Any] = {"k1": K1, "b": B, "avg": avg, "n": n}
    params["match"] = " | ".join(filter(None, (tsvector_literal([t]) for t in match))) or "''"
    lookups, parts = [], []
    for i, t in enumerate(terms):
        params[f"t{i}"], params[f"w{i}"] = t, weights[t] * idf[t]
        lookups.append(f"(c.tf ->> %(t{i})s)::float8 AS f{i}")
        parts.append(f"coalesce(%(w{i})s * f{i} / (f{i} + norm), 0)")
    sql = f"""
        WITH top AS (
            SELECT c.id, {" + ".join(parts)} AS score
            FROM chunks c,  -- OFFSET 0: each term looked up once per chunk, not once per use
                 LATERAL (SELECT %(k1)s * (1 - %(b)s + %(b)s * c.n_tokens / %(avg)s) AS norm, {", ".join(lookups)} OFFSET 0) AS f
            WHERE c.tsv @@ %(match)s::tsquery
            ORDER BY score DESC, c.id LIMIT %(n)s)
        SELECT {CHUNK_COLUMNS}, top.score FROM top JOIN chunks c ON c.id = top.id JOIN documents d ON d.id = c.document
        ORDER BY top.score DESC, top.id"""
    return sql, params
