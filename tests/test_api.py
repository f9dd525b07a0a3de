"""The HTTP API in-process (TestClient runs the lifespan), over the real seed index."""

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from assistant.answer.extractive import ExtractiveAnswerer
from assistant.answer.pipeline import Pipeline, StreamFailed
from assistant.answer.types import Answer
from assistant.config import Settings
from assistant.errors import AnswerError
from assistant.server.app import create_app
from assistant.service import open_service
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(real_index_dir):
    return open_service(Settings(_env_file=None, corpus_dir=ROOT / "corpus", index_dir=real_index_dir), build=False)


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service.settings, service)) as c:
        yield c


def check_citations(answer: dict, client: TestClient) -> None:
    for c in answer["citations"] + answer["related"]:
        doc = client.get(f"/documents/{c['doc_id']}").json()
        assert doc["text"][c["start"] : c["end"]] == c["text"]
        assert doc["text"][c["quote_start"] : c["quote_end"]] == c["quote"]
        assert c["start"] <= c["quote_start"] <= c["quote_end"] <= c["end"]
        assert c["title"] == doc["title"] and c["publisher"] == doc["publisher"]
        if c.get("answer_start") is not None:
            assert c["quote_start"] <= c["answer_start"] < c["answer_end"] <= c["quote_end"]


@pytest.mark.parametrize(
    "question,doc_id,expected",
    [
        (
            "What is Switzerland's budget for the Tajikistan Digital Foundations Project?",
            "sdc-tajikistan-digital-foundations-project",
            "CHF 9’200’000",
        ),
        ("When did Tajikistan become an IOM Member State?", "iom-tajikistan-diaspora-engagement-2014", "November 1994"),
        ("How many active projects does IOM have in Tajikistan?", "iom-tajikistan-diaspora-engagement-2014", "12 active projects"),
        ("Quand la délégation tadjike a-t-elle visité la Géorgie ?", "undp-tajik-delegation-georgia-public-services-2019", "December"),
        ("В каком году было создано MSDSP?", "akdn-civil-society-activities-tajikistan", "2004"),
    ],
)
def test_ask_quotes_the_supporting_span(client, question, doc_id, expected):
    r = client.post("/ask", json={"question": question})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["abstained"] is False and body["mode"] == "extractive"
    assert body["answer"].endswith("[1]")
    cite = body["citations"][0]
    assert cite["n"] == 1 and cite["doc_id"] == doc_id
    assert expected in cite["quote"]
    # The answer is the quoted sentence, or the reader's short span inside the expected words ("12 [1]").
    shown = body["answer"].removesuffix("[1]").strip()
    assert shown and (expected in shown or shown in expected), shown
    check_citations(body, client)
    assert {"embed_query", "dense_search", "keyword_search", "fusion", "answer", "total"} <= set(body["timings_ms"])


def test_a_sentence_at_a_table_row_is_quoted_without_the_cell_marks(client):
    # The README's first example question: its sentence ends a "... |" row of the project page.
    body = client.post("/ask", json={"question": "Who finances the Digital Foundations Project in Tajikistan?"}).json()
    cite = body["citations"][0]
    assert not body["abstained"] and "World Bank" in cite["quote"]
    assert "|" not in body["answer"] and not cite["quote"].endswith((" ", "|")), cite["quote"]
    check_citations(body, client)


def test_the_readers_words_are_marked_inside_the_quoted_sentence(client):
    body = client.post("/ask", json={"question": "When did Tajikistan become an IOM Member State?"}).json()
    cite = body["citations"][0]
    assert body["answer"] == f"{cite['quote']} [1]"  # the answer is the whole sentence ...
    assert cite["answer_start"] is not None  # ... with the reader's span marked in it
    doc = client.get(f"/documents/{cite['doc_id']}").json()
    assert "1994" in doc["text"][cite["answer_start"] : cite["answer_end"]]
    check_citations(body, client)


@pytest.mark.parametrize(
    "question",
    [
        "How many CSOs were registered in Tajikistan in 2010?",
        "What is the budget of MSDSP's Local Governance Programme?",
        "Who is the director of the Agency for Innovation and Digital Technologies?",
    ],
)
def test_abstains_when_the_documents_do_not_answer(client, question):
    body = client.post("/ask", json={"question": question}).json()
    assert body["abstained"] is True
    assert body["answer"] == "The documents do not answer this question."
    assert body["citations"] == [] and 1 <= len(body["related"]) <= 3
    check_citations(body, client)


def test_abstention_speaks_the_question_language(client):
    body = client.post("/ask", json={"question": "Какова численность населения Душанбе в 2030 году?"}).json()
    assert body["abstained"] and body["answer"] == "В документах нет ответа на этот вопрос."


def test_stream_sends_deltas_then_the_full_answer(client):
    with client.stream("POST", "/ask/stream", json={"question": "When did Tajikistan become an IOM Member State?"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n", 1)[1].removeprefix("data: ")))
        for block in raw.strip().split("\n\n")
    ]
    assert [name for name, _ in events][-1] == "done"
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert deltas == done["answer"] and "November 1994" in done["answer"]
    assert done["citations"][0]["quote"]


def test_documents_health_and_page(client):
    docs = client.get("/documents").json()["documents"]
    assert len(docs) == 5 and {"title", "publisher", "date", "period", "language", "description", "chars"} <= set(docs[0])
    sdc = client.get("/documents/sdc-tajikistan-digital-foundations-project").json()
    assert sdc["period"] == "2022-09-01 to 2028-08-31" and sdc["chars"] == len(sdc["text"])
    missing = client.get("/documents/no-such-doc")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["index"]["documents"] == 5
    assert health["embedder"]["name"].startswith("multilingual-e5-small") and health["llm"] == {"configured": False}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/openapi.json").json()["paths"]["/ask"]["post"]


@pytest.mark.parametrize(
    "payload,status,fragment",
    [
        ({"question": "   "}, 422, "must not be empty"),
        ({"question": "x" * 5000}, 422, "longer than"),
        ({"question": "ok", "top_k": 0}, 422, "top_k"),
        ({"question": "ok", "top_k": 21}, 422, "top_k"),
        ({"question": "ok", "mode": "magic"}, 422, "mode"),
        ({"question": 42}, 422, "question"),
        ({"question": "ok", "surprise": 1}, 422, "surprise"),
        ({}, 422, "question"),
    ],
)
def test_bad_input_gets_one_error_shape(client, payload, status, fragment):
    r = client.post("/ask", json=payload)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and fragment in err["message"]


def test_invalid_json_and_content_type(client):
    r = client.post("/ask", content=b'{"question": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/ask", content=b"question=hi", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


class FailingLLM:
    mode = "llm"

    def answer(self, question, search) -> Answer:
        raise AnswerError("connection refused")

    def stream(self, question, search) -> Iterator[str | Answer]:
        yield "partial "
        raise AnswerError("stream truncated")


def test_llm_failure_falls_back_to_extractive_with_a_warning(service):
    pipeline = Pipeline(service.settings, service.retriever, ExtractiveAnswerer(service.settings, service.index), FailingLLM())
    answer = pipeline.ask("When did Tajikistan become an IOM Member State?", mode="llm")
    assert answer.mode == "extractive" and "November 1994" in answer.answer
    assert any("connection refused" in w for w in answer.warnings)
    # One stream is one answer: after "partial " was sent, the failure ends the stream (the server
    # sends an error event) instead of a different, extractive answer.
    items = pipeline.ask_stream("When did Tajikistan become an IOM Member State?", mode="llm")
    assert next(items) == "partial "
    with pytest.raises(StreamFailed, match="stream truncated"):
        next(items)


def test_llm_mode_without_endpoint_says_so(client):
    body = client.post("/ask", json={"question": "When did Tajikistan become an IOM Member State?", "mode": "llm"}).json()
    assert body["mode"] == "extractive" and any("No LLM endpoint" in w for w in body["warnings"])
