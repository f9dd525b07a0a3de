"""Fact-sheet fields as the units the answer step quotes: the seed project page's budget, dates and
number, indexed as "label value" units (never the raw ``|`` row) and answered through ``/ask``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.search.build import build_index
from assistant.search.index import load_index
from tests.fakes import FakeEmbedder

SDC = "sdc-tajikistan-digital-foundations-project"


def test_the_fact_sheet_rows_are_indexed_as_fields(settings):
    build_index(settings, FakeEmbedder())
    index = load_index(settings.index_dir)
    text = index.documents[SDC].text
    units = [text[r.start : r.end] for r in index.sentences_in(SDC, 0, len(text))]
    for field in ("Budget de la Suisse CHF 9’200’000", "Budget y compris partenaires de projet CHF 37’000’000",
                  "Phase 1 01.09.2022 - 31.08.2028", "Numéro de projet 7F09822"):  # fmt: skip
        assert field in units
    assert not any(u.startswith("Budget |") for u in units), "the packed budget row is split into its fields"


@pytest.fixture(scope="module")
def client(real_index_dir):
    from assistant.server.app import create_app
    from assistant.service import open_service

    from .conftest import SEED_CORPUS

    service = open_service(Settings(_env_file=None, corpus_dir=SEED_CORPUS, index_dir=real_index_dir), build=False)
    with TestClient(create_app(service.settings, service)) as c:
        yield c


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("What is the Swiss budget of the Digital Foundations Project?", "9’200’000"),
        ("What is the total budget of the Digital Foundations Project including partners?", "37’000’000"),
        ("When does the Digital Foundations Project end?", "31.08.2028"),
        ("When did the Digital Foundations Project start?", "01.09.2022"),
        ("What is the project number of the Digital Foundations Project?", "7F09822"),
        ("Quel est le numéro du projet Digital Foundations ?", "7F09822"),
        ("Когда заканчивается проект Digital Foundations?", "31.08.2028"),
        ("Quel est le budget du projet Digital Foundations ?", "9’200’000"),
        ("Каков общий бюджет проекта Digital Foundations, включая партнёров?", "37’000’000"),
        ("How much of the Swiss budget of the Digital Foundations Project is already allocated?", "3’179’291"),
    ],
)
def test_fact_sheet_questions_are_answered_with_the_field(client, question, value):
    body = client.post("/ask", json={"question": question}).json()
    assert not body["abstained"], body.get("check")
    assert value in body["answer"]
    quote = body["citations"][0]["quote"]
    assert value in quote and "|" not in quote and len(quote) < 80, quote


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("When does the Digital Foundations Project end?", "31.08.2028"),
        ("When did the Digital Foundations Project start?", "01.09.2022"),
        ("What is the project number of the Digital Foundations Project?", "7F09822"),
        ("What is the Swiss budget of the Digital Foundations Project?", "CHF 9’200’000"),
        ("What is the total budget of the Digital Foundations Project including partners?", "CHF 37’000’000"),
    ],
)
def test_a_fields_answer_marks_its_value(client, question, value):
    body = client.post("/ask", json={"question": question}).json()
    cite = body["citations"][0]
    assert cite["doc_id"] == SDC and body["answer"] == f"{cite['quote']} [1]"
    assert cite["quote"][cite["answer_start"] - cite["quote_start"] : cite["answer_end"] - cite["quote_start"]] == value


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("When does the MSDSP Local Governance Programme end?", "31.08.2028"),  # another document's project
        ("When does the Digital Foundations Project in Kyrgyzstan end?", "31.08.2028"),  # a name the sheet lacks
        ("What is the budget of the Digital Foundations Project in Kyrgyzstan?", "9’200’000"),
        ("Who manages the budget of the Digital Foundations Project?", "9’200’000"),  # asks who, not how much
    ],
)
def test_a_fact_sheet_answers_only_for_its_own_project(client, question, value):
    body = client.post("/ask", json={"question": question}).json()
    assert value not in body["answer"], body["answer"]
