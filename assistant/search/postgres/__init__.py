"""The PostgreSQL store (pgvector): ``store.PostgresStore`` over ``schema`` (tables, migrations), ``sync``
(writing documents) and ``documents`` (the documents as a mapping). Needs ``pip install -e ".[postgres]"``."""

from assistant.search.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
