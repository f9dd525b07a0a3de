from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from assistant.config import Settings

ROOT = Path(__file__).resolve().parent.parent
LIVE_CORPUS = ROOT / "corpus"


def _seed_corpus_copy() -> Path:
    """A read-only-by-convention copy of the repository's corpus, without what a running server leaves there.

    Tests never read or write the live ``corpus/`` (a server started on it may have added ``uploads/`` and its
    ``.lock``); they use this copy, or ``corpus_dir`` for a writable one.
    """
    folder = Path(tempfile.mkdtemp(prefix="seed-corpus-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = folder / "corpus"
    shutil.copytree(LIVE_CORPUS, target, ignore=shutil.ignore_patterns("uploads", ".lock", "*.lock", ".*"))
    return target


SEED_CORPUS = _seed_corpus_copy()

# In CI (CI=true) a skip is a failure: the real paths (PostgreSQL server, LLM server, browser, Tesseract OCR) are installed
# there, so a test that skips has not checked what it exists to check. A test whose skip is expected everywhere carries
# @pytest.mark.may_skip.
IN_CI = os.environ.get("CI", "").lower() == "true"


def _skip_is_failure(report: pytest.TestReport | pytest.CollectReport, marked: bool) -> bool:
    return IN_CI and report.skipped and not hasattr(report, "wasxfail") and not marked


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (CI=true), where every real path is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _skip_is_failure(report, item.get_closest_marker("may_skip") is not None):
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _skip_is_failure(report, False):
        _as_failure(report)


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


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory: pytest.TempPathFactory):
    """The seed corpus indexed once per test module with the deterministic ``FakeEmbedder`` (a ``LoadedIndex``)."""
    from assistant.search.build import build_index
    from assistant.search.index import load_index
    from tests.fakes import FakeEmbedder

    index_dir = tmp_path_factory.mktemp("fake-index")
    build_index(Settings(_env_file=None, corpus_dir=SEED_CORPUS, index_dir=index_dir), FakeEmbedder())
    return load_index(index_dir)
