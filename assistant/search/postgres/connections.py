"""The connections of a ``PostgresStore``: new autocommit ones for writing, and a pool of serving ones.

Every failure to reach the database becomes ``StoreUnavailable``, whose message leaves the URL out
(it may hold a password).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from assistant.errors import StoreUnavailable
from assistant.search.postgres.schema import check_schema

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow
    from psycopg_pool import ConnectionPool

CONNECT_TIMEOUT_S = 2  # a database that does not answer a connection in this long is down (libpq's minimum is 2 s)
STATEMENT_TIMEOUT_MS = 5_000  # a serving query (search, a document, the state row) that runs longer is cancelled


class Connections:
    """Connections to the database at ``url``; the serving pool (at most ``pool_size``) opens on first use."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()

    def connect(self) -> psycopg.Connection[TupleRow]:
        """A new autocommit connection with the vector type registered (the schema must exist)."""
        from pgvector.psycopg import register_vector

        conn = self.plain()
        register_vector(conn)
        return conn

    def plain(self) -> psycopg.Connection[TupleRow]:
        """A new autocommit connection without the vector type (it may not exist yet)."""
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(unreachable(exc)) from exc

    @contextmanager
    def serving(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled serving connection (checked before it is handed out, statements limited to
        ``STATEMENT_TIMEOUT_MS``); ``StoreUnavailable`` when the database cannot be reached or does not answer."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool_now().connection(timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"the PostgreSQL store cannot be reached (no connection within {CONNECT_TIMEOUT_S} s)") from exc
        except psycopg.errors.QueryCanceled as exc:
            raise StoreUnavailable(f"the PostgreSQL store did not answer within {STATEMENT_TIMEOUT_MS / 1000:.0f} s") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(unreachable(exc)) from exc

    def _pool_now(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is None:
                from pgvector.psycopg import register_vector
                from psycopg_pool import ConnectionPool

                with self.plain() as conn:
                    check_schema(conn)
                kwargs: dict[str, Any] = {
                    "autocommit": True,
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                }
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs=kwargs,
                    configure=register_vector,
                    check=ConnectionPool.check_connection,  # a connection broken by a database restart is replaced, not handed out
                    open=True,
                )
            return self._pool

    def close(self) -> None:
        """Close the pool (it reopens on the next use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def unreachable(exc: Exception) -> str:
    """What a failed connection says, without the URL (which may hold a password)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the PostgreSQL store cannot be reached: {reason}"
