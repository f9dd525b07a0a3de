"""The real app (or the real ``assistant serve``) with the deterministic ``FakeEmbedder``, for tests
that need a real server on 127.0.0.1 but not the embedding model.

- ``create_app`` is a uvicorn factory: ``tests.servers.uvicorn_server(env, cwd=ROOT, ..., app=APP)``.
- ``python -m tests.hardening_app serve [--port P ...]`` runs ``assistant serve`` itself (its
  uvicorn options included) with the fake embedder in place of the model.

Settings come from ``ASSISTANT_*`` variables as usual; set ``ASSISTANT_READER=false`` to skip the
reader model.
"""

from __future__ import annotations

import sys

from tests.fakes import FakeEmbedder

APP = "tests.hardening_app:create_app"


def create_app():
    from assistant.config import Settings
    from assistant.server.app import create_app as real_create_app

    return real_create_app(Settings(), embedder=FakeEmbedder())


def main(argv: list[str]) -> int:
    import assistant.service
    from assistant.cli import main as cli_main

    assistant.service.create_embedder = lambda settings: FakeEmbedder()
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
