"""The LLM client and answerer against a real OpenAI-compatible server (xllamacpp + SmolLM2-135M).

The 135M model is often wrong; these tests check the contract (errors, streaming, citations
that point at real text, the check report), never that its answer is right.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistant.answer.llm.answerer import LLMAnswerer
from assistant.answer.llm.client import Completion, LLMClient
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import AnswerError
from assistant.search.index import LoadedIndex
from assistant.search.retriever import Retriever
from tests.fakes import FakeEmbedder
from tests.llm_server import LLMServer, check_answer_contract, llm_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "Say hello in three words."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with llm_server(log_dir=tmp_path_factory.mktemp("llm-server")) as running:
        yield running


@pytest.fixture(scope="module")
def index(fake_index: LoadedIndex) -> LoadedIndex:
    """The seed corpus indexed with the deterministic fake embedder (``fake_index``, tests/conftest.py)."""
    return fake_index


def settings_for(server: LLMServer, **overrides) -> Settings:
    values = {
        "llm_base_url": server.base_url,
        "llm_model": "smollm2",
        "llm_api_key": None,
        "llm_temperature": 0.0,
        "llm_max_tokens": 64,
        "llm_timeout_s": 120.0,  # generous: the CPU may be shared with other work
        "llm_retries": 0,
        "top_k": 2,
        "retrieval_mode": "hybrid",
    }
    return Settings(_env_file=None, **(values | overrides))


def test_plain_completion(server):
    with LLMClient(settings_for(server, llm_max_tokens=16)) as client:
        completion = client.chat(HELLO)
    assert completion.text.strip() and completion.finish_reason in {"stop", "length"}


def test_streaming_completion(server):
    with LLMClient(settings_for(server, llm_max_tokens=16, llm_base_url=server.base_url + "/v1")) as client:
        items = list(client.stream_chat(HELLO))
    *deltas, completion = items
    assert isinstance(completion, Completion) and completion.finish_reason in {"stop", "length"}
    assert deltas and all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == completion.text


def test_health(server):
    with LLMClient(settings_for(server)) as client:
        assert client.health() == {"configured": True, "reachable": True, "model": "smollm2"}


def test_server_error_is_an_answer_error(server):
    too_long = [{"role": "user", "content": "word " * 5000}]  # more than the 2048-token context
    with LLMClient(settings_for(server, llm_max_tokens=8)) as client:
        with pytest.raises(AnswerError, match=r"HTTP 400: .*context"):
            client.complete(too_long)


@pytest.mark.parametrize(
    "question",
    [
        "How many civil society organisations were registered in Tajikistan in 1997?",
        "Quel est le budget de la Suisse pour le projet Tajikistan Digital Foundations ?",
    ],
)
def test_answerer_over_real_passages(server, index, question):
    settings = settings_for(server)
    retriever = Retriever(index, FakeEmbedder(), settings)
    with LLMClient(settings) as client:
        answerer = LLMAnswerer(settings, index, client)
        search = retriever.search(question)
        answer = answerer.answer(question, search)
    check_answer_contract(answer, index)
    passages = {(p.doc_id, p.start, p.end) for p in search.passages}
    assert all((c.doc_id, c.start, c.end) in passages for c in answer.citations)
    assert answer.check["sentences"] >= answer.check["supported"]


def test_answerer_streams_checked_text(server, index):
    question = "What is the main objective of MSDSP's Local Governance Programme?"
    settings = settings_for(server)
    with LLMClient(settings) as client:
        answerer = LLMAnswerer(settings, index, client)
        items = list(answerer.stream(question, Retriever(index, FakeEmbedder(), settings).search(question)))
    *deltas, answer = items
    assert isinstance(answer, Answer) and all(isinstance(d, str) for d in deltas)
    check_answer_contract(answer, index)
    if not answer.abstained:
        assert "".join(deltas) == answer.answer


def test_stopped_server_fails_fast(tmp_path):
    with llm_server(log_dir=tmp_path) as server:
        settings = settings_for(server, llm_max_tokens=4, llm_timeout_s=10.0, llm_retries=1)
        with LLMClient(settings) as client:
            assert client.complete(HELLO)
            server.stop()
            started = time.monotonic()
            with pytest.raises(AnswerError, match="cannot reach the LLM endpoint"):
                client.complete(HELLO)
            with pytest.raises(AnswerError, match="cannot reach the LLM endpoint"):
                list(client.stream(HELLO))
            assert time.monotonic() - started < settings.llm_timeout_s
            assert client.health()["reachable"] is False
