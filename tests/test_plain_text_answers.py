"""The ``answer`` field is plain text (markup in an LLM reply or in a quoted document is removed, also
when it is streamed in pieces); citations keep the exact document text.

In-process tests use the deterministic ``FakeEmbedder``; the test marked ``slow`` uses the real embedder.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.answer.pipeline import PlainTextStream, plain_text
from assistant.config import Settings
from assistant.server.app import AskResponse, create_app
from assistant.service import open_service
from tests import markup_service as shared
from tests.fakes import Scripted
from tests.markup_service import MARKUP_QUESTION, TAG, make_service, markup_answer, markup_corpus, scripted_client, sse_events

corpus, index_dir = shared.corpus, shared.index_dir  # shared fixtures (tests/markup_service.py)


@pytest.mark.parametrize("path", ["/ask", "/ask/stream"])
def test_the_answer_field_is_plain_text(corpus, index_dir, path):
    service = make_service(corpus, index_dir)
    answer = markup_answer()
    quote = answer.citations[0].quote
    with scripted_client(service, Scripted(*re.findall(r".{1,7}", answer.answer, flags=re.S), answer)) as client:
        response = client.post(path, json={"question": MARKUP_QUESTION, "mode": "llm"})
    if path == "/ask":
        body = response.json()
        deltas = None
    else:
        events = sse_events(response.text)
        assert events[-1][0] == "done", events
        body = events[-1][1]
        deltas = "".join(data["text"] for name, data in events if name == "delta")
    AskResponse.model_validate(body)
    assert not TAG.search(body["answer"]), body["answer"]
    assert body["answer"] == "They repaired canals with jamoat help [1]. [1]More [1]"  # a marker inside a tag is kept
    assert body["citations"][0]["quote"] == quote  # citations keep the exact document text
    if deltas is not None:
        assert deltas == body["answer"] and not TAG.search(deltas)


def test_plain_text_in_pieces_equals_plain_text_of_the_whole():
    rng = random.Random(7)
    texts = [
        markup_answer().answer,
        "5 < 7 and <b",
        "a<b c <d> e",
        "<!-- note --> text <?xml x?> </p> [3]",
        "<<b>>" + "x" * 50 + "<" + "y" * 1200 + ">",
    ]
    for text in texts:
        for _ in range(300):
            cuts = sorted(rng.sample(range(len(text) + 1), rng.randint(0, min(6, len(text)))))
            pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            stream = PlainTextStream()
            assert "".join(stream.feed(p) for p in pieces) + stream.flush() == plain_text(text), (text, pieces)


@pytest.fixture(scope="module")
def real_markup_client(real_index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real embedder over the seed corpus plus the markup document (only it is embedded anew)."""
    root = tmp_path_factory.mktemp("round2-real")
    corpus = markup_corpus(root)
    shutil.copytree(real_index_dir, root / "index")
    settings = Settings(_env_file=None, corpus_dir=corpus, index_dir=root / "index")
    service = open_service(settings)
    with TestClient(create_app(settings, service)) as client:
        yield client


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/ask", "/ask/stream"])
def test_markup_quoted_by_the_extractive_answer_is_removed_from_the_answer(real_markup_client, path):
    response = real_markup_client.post(path, json={"question": MARKUP_QUESTION, "mode": "extractive"})
    body = response.json() if path == "/ask" else sse_events(response.text)[-1][1]
    assert not TAG.search(body["answer"]), body["answer"]
    assert "javascript:" not in body["answer"]
    for c in body["citations"]:
        text = real_markup_client.get(f"/documents/{c['doc_id']}").json()["text"]
        assert text[c["quote_start"] : c["quote_end"]] == c["quote"]
    if not body["abstained"]:
        assert re.search(r"\[\d+\]", body["answer"]) or body["citations"], body
        assert "forty kilometres" in body["answer"], body["answer"]
        assert any("<iframe" in c["quote"] for c in body["citations"]), "the quote keeps the document's exact text"
