"""What the tests of the LLM budget, cancellation, the API key, streams, slow clients and plain-text answers share.

The seed corpus plus a document whose text holds markup (``corpus``), indexed once per test module with the
deterministic ``FakeEmbedder`` (``index_dir``; servers copy it: no rebuild), a fake LLM (``fake_llm``, a real
HTTP server on 127.0.0.1, ``tests/fake_llm.py``), and helpers to build services, clients and server
environments over them.

Use the fixtures in a test module by binding them there (an assignment, so that a test's argument of the
same name is not a redefinition of an import)::

    from tests import markup_service as shared

    corpus, index_dir, fake_llm = shared.corpus, shared.index_dir, shared.fake_llm
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.answer.llm.client import LLMClient
from assistant.answer.pipeline import Pipeline
from assistant.answer.types import Answer, Citation
from assistant.config import Settings
from assistant.server.app import create_app
from assistant.service import Service, open_service
from tests.conftest import SEED_CORPUS
from tests.fake_llm import FakeLLM
from tests.fakes import FakeEmbedder, Scripted

QUESTION = "Who finances the Digital Foundations Project in Tajikistan?"
HELLO = [{"role": "user", "content": "Hello"}]
KEY = "round2-Key_0123456789"
TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
MISBEHAVING = ["hang", "trickle", "trickle_headers", "endless_sse", "endless_line"]

MARKUP_FILE = "khatlon-markup.txt"
MARKUP_SENTENCE = (
    'In 2021 village water committees in the Khatlon region repaired forty kilometres of irrigation canals <iframe src="javascript:'
    'alert(1)"></iframe> with support from their <b>jamoat councils</b>.'
)
MARKUP_TEXT = f"""Khatlon water committees

{MARKUP_SENTENCE} Each household contributed labour to clean the canals before the spring planting season.
"""
MARKUP_QUESTION = "What did the village water committees in the Khatlon region repair in 2021?"


# ---------------------------------------------------------------------------- helpers


def within(seconds: float, fn: Callable[[], object]) -> object:
    """``fn()`` in a thread; fails the test when it has not returned within ``seconds``."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


def markup_corpus(root: Path) -> Path:
    """The seed corpus plus a document whose text holds markup."""
    corpus = root / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    (corpus / MARKUP_FILE).write_text(MARKUP_TEXT, encoding="utf-8")
    metadata = json.loads((corpus / "metadata.json").read_text(encoding="utf-8"))
    metadata[MARKUP_FILE] = {
        "title": "Khatlon water committees",
        "publisher": "Test",
        "date": None,
        "period": None,
        "language": ["en"],
        "description": "A document with markup in its text.",
    }
    (corpus / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return corpus


def server_env(corpus: Path, index_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a server subprocess: only our ASSISTANT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_CORPUS_DIR=str(corpus), ASSISTANT_INDEX_DIR=str(index_dir), ASSISTANT_READER="false")
    env.update({f"ASSISTANT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return markup_corpus(tmp_path_factory.mktemp("round2"))


@pytest.fixture(scope="module")
def index_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The markup corpus indexed once with the fake embedder (servers copy it: no rebuild)."""
    index_dir = tmp_path_factory.mktemp("round2-index")
    open_service(Settings(_env_file=None, corpus_dir=corpus, index_dir=index_dir, reader=False), embedder=FakeEmbedder())
    return index_dir


def make_settings(corpus: Path, index_dir: Path, **overrides) -> Settings:
    return Settings(_env_file=None, corpus_dir=corpus, index_dir=index_dir, reader=False, **overrides)


def make_service(corpus: Path, index_dir: Path, **overrides) -> Service:
    return open_service(make_settings(corpus, index_dir, **overrides), embedder=FakeEmbedder(), build=False)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def llm_client(fake: FakeLLM, **overrides) -> LLMClient:
    values = {"llm_base_url": fake.base_url, "llm_timeout_s": 1.5, "llm_retries": 1} | overrides
    return LLMClient(Settings(_env_file=None, **values))


def scripted_client(service: Service, answerer: Scripted, **settings) -> TestClient:
    pipeline = Pipeline(service.settings, service.retriever, service.pipeline.extractive, answerer)
    app_settings = service.settings.model_copy(update=settings)
    return TestClient(create_app(app_settings, dataclasses.replace(service, pipeline=pipeline)), raise_server_exceptions=False)


def markup_answer() -> Answer:
    quote = 'canals <iframe src="javascript:alert(1)"></iframe> with'
    cite = Citation(
        n=1,
        doc_id="khatlon-markup",
        title="Khatlon water committees",
        publisher="Test",
        source=MARKUP_FILE,
        text=MARKUP_SENTENCE,
        start=26,
        end=26 + len(MARKUP_SENTENCE),
        quote=quote,
        quote_start=26 + MARKUP_SENTENCE.index(quote),
        quote_end=26 + MARKUP_SENTENCE.index(quote) + len(quote),
        score=1.0,
    )
    text = 'They repaired canals <iframe src="javascript:alert(1)"></iframe>with <b>jamoat</b> help [1]. <a href="[1]">More</a> [1]'
    return Answer(answer=text, abstained=False, mode="llm", citations=[cite])
