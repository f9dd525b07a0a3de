from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A writable copy of the seed corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, target)
    return target


@pytest.fixture
def settings(tmp_path: Path, corpus_dir: Path) -> Settings:
    return Settings(_env_file=None, corpus_dir=corpus_dir, index_dir=tmp_path / "index", embed_batch_size=8)


@pytest.fixture(scope="session")
def real_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed corpus indexed once per test session with the default (real) embedder."""
    from assistant.search.build import build_index
    from assistant.search.embedders import create_embedder

    index_dir = tmp_path_factory.mktemp("real-index")
    settings = Settings(_env_file=None, corpus_dir=SEED_CORPUS, index_dir=index_dir)
    build_index(settings, create_embedder(settings))
    return index_dir
