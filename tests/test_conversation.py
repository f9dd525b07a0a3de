"""Two-turn conversations through the HTTP API (``/ask`` and ``/ask/stream`` with ``history``),
over the real seed index: a follow-up is searched as a standalone question that carries the
first question's topic, and a complete question is searched as asked."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from assistant.service import open_service
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

FIRST = "Who funds the Digital Foundations Project?"
PROJECT = "Digital Foundations Project"
SDC_DOC = "sdc-tajikistan-digital-foundations-project"


@pytest.fixture(scope="module")
def client(real_index_dir):
    settings = Settings(_env_file=None, corpus_dir=ROOT / "corpus", index_dir=real_index_dir)
    with TestClient(create_app(settings, open_service(settings, build=False))) as c:
        yield c


@pytest.fixture(scope="module")
def first_turn(client) -> dict:
    """The first question, asked alone, as the chat page keeps it for the next question."""
    body = client.post("/ask", json={"question": FIRST}).json()
    assert body["search_question"] == FIRST and body["rewrite"] == "none"
    return {
        "question": FIRST,
        "answer": body["answer"],
        "doc_ids": [c["doc_id"] for c in body["citations"]],
        "search_question": body["search_question"],
    }


def stream(client: TestClient, payload: dict) -> tuple[str, dict]:
    """POST /ask/stream: the deltas put together, and the ``done`` event's answer."""
    with client.stream("POST", "/ask/stream", json=payload) as r:
        assert r.status_code == 200, r.read()
        raw = "".join(r.iter_text())
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines.get("event"), json.loads(lines["data"])))
    assert events[-1][0] == "done", events[-1]
    return "".join(d["text"] for name, d in events if name == "delta"), events[-1][1]


def test_the_first_answer_cites_the_project(first_turn):
    assert SDC_DOC in first_turn["doc_ids"]


def _sources(body: dict) -> list[str]:
    """Cited documents, or the related passages' documents when it abstained."""
    return [c["doc_id"] for c in body["citations"] or body["related"]]


@pytest.mark.parametrize(
    "follow_up",
    ["And when does it end?", "Et quand se termine-t-il ?", "А когда он закончится?"],
    ids=["en", "fr", "ru"],
)
def test_a_follow_up_is_searched_with_the_first_questions_topic(client, first_turn, follow_up):
    body = client.post("/ask", json={"question": follow_up, "history": [first_turn]}).json()
    assert body["rewrite"] == "rules"
    assert body["search_question"].startswith(follow_up.rstrip(" ?")) and PROJECT in body["search_question"]
    assert _sources(body)[0] == SDC_DOC


@pytest.mark.parametrize("follow_up", ["And what is its budget?", "Et son budget ?", "А каков его бюджет?"], ids=["en", "fr", "ru"])
def test_a_follow_up_is_answered_from_the_projects_document(client, first_turn, follow_up):
    body = client.post("/ask", json={"question": follow_up, "history": [first_turn]}).json()
    assert not body["abstained"] and body["citations"][0]["doc_id"] == SDC_DOC
    assert "9’200’000" in body["citations"][0]["quote"], body["answer"]


def test_a_follow_up_about_a_date_in_a_table_is_answered(client, first_turn):
    body = client.post("/ask", json={"question": "And when does it end?", "history": [first_turn]}).json()
    assert "2028" in body["answer"], body["answer"]
    cite = body["citations"][0]
    marked = cite["quote"][cite["answer_start"] - cite["quote_start"] : cite["answer_end"] - cite["quote_start"]]
    assert cite["doc_id"] == SDC_DOC and marked == "31.08.2028"


def test_without_the_history_the_follow_up_is_searched_as_asked(client):
    body = client.post("/ask", json={"question": "And when does it end?"}).json()
    assert body["rewrite"] == "none" and body["search_question"] == "And when does it end?"


def test_a_complete_follow_up_is_left_unchanged(client, first_turn):
    question = "How many active projects does IOM have in Tajikistan?"
    body = client.post("/ask", json={"question": question, "history": [first_turn]}).json()
    assert body["rewrite"] == "none" and body["search_question"] == question
    assert "12 active projects" in body["citations"][0]["quote"]


def test_a_follow_up_through_the_stream(client, first_turn):
    deltas, done = stream(client, {"question": "And what is its budget?", "history": [first_turn]})
    assert done["rewrite"] == "rules" and PROJECT in done["search_question"]
    assert deltas == done["answer"] and done["citations"][0]["doc_id"] == SDC_DOC
    assert "9’200’000" in done["citations"][0]["quote"]


def test_a_complete_question_through_the_stream_is_left_unchanged(client, first_turn):
    question = "When did Tajikistan become an IOM Member State?"
    deltas, done = stream(client, {"question": question, "history": [first_turn]})
    assert done["rewrite"] == "none" and done["search_question"] == question
    assert deltas == done["answer"] and "November 1994" in done["citations"][0]["quote"]


def test_a_three_turn_conversation_keeps_the_topic(client, first_turn):
    """The second turn's search question (what the page sends back) carries the topic on."""
    second = client.post("/ask", json={"question": "And when does it end?", "history": [first_turn]}).json()
    turn2 = {
        "question": "And when does it end?",
        "answer": second["answer"],
        "doc_ids": [c["doc_id"] for c in second["citations"]],
        "search_question": second["search_question"],
    }
    third = client.post("/ask", json={"question": "And the budget?", "history": [first_turn, turn2]}).json()
    assert third["rewrite"] == "rules" and PROJECT in third["search_question"]
