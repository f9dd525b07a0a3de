"""Fact-sheet fields (``assistant.ingest.fields``) on the seed fact sheet and on the other readers' output."""

from __future__ import annotations

import pytest

from assistant.ingest.fields import find_fields
from tests.conftest import ROOT

FACT_SHEET = ROOT / "corpus" / "sdc-tajikistan-digital-foundations-project.txt"


@pytest.fixture(scope="module")
def sheet() -> tuple[str, dict[str, list]]:
    from assistant.ingest.documents import load_document

    doc = load_document(FACT_SHEET, FACT_SHEET.parent)  # read only: the text the index holds
    by_unit: dict[str, list] = {}
    for field in find_fields(doc.text):
        by_unit.setdefault(field.unit, []).append(field)
    return doc.text, by_unit


@pytest.mark.parametrize(
    ("unit", "kind"),
    [
        ("Budget de la Suisse — CHF 9’200’000", "amount"),
        ("Budget suisse déjà attribué — CHF 3’179’291", "amount"),
        ("Budget de l'Organisation — CHF 7’000’000", "amount"),
        ("Budget y compris partenaires de projet — CHF 37’000’000", "amount"),
        ("Phase 1 — 01.09.2022 - 31.08.2028", "date_range"),
        ("Période — 01.09.2022 - 31.08.2028", "date_range"),
        ("Numéro de projet — 7F09822", "code"),
        ("Pays/région — Tadjikistan", "text"),
        ("Direction/office fédéral responsable — DDC", "text"),
    ],
)
def test_the_seed_fact_sheet_gives_its_fields(sheet, unit, kind):
    text, by_unit = sheet
    assert unit in by_unit, sorted(by_unit)
    field = by_unit[unit][0]
    assert field.kind == kind
    # Exact offsets: the label and the value as written, and the unit's span covers both.
    assert " ".join(text[field.label_start : field.label_end].split()) == field.label
    assert " ".join(text[field.value_start : field.value_end].split()) == field.value
    assert text[field.start : field.end].startswith(text[field.label_start : field.label_end])
    assert "|" not in field.label and "|" not in field.value


def test_a_packed_budget_row_is_split_into_one_field_per_pair_with_its_context(sheet):
    text, by_unit = sheet
    budget = [f for fields in by_unit.values() for f in fields if f.row == "Budget"]
    assert [(f.context, f.label, f.value) for f in budget] == [
        ("Phase en cours", "Budget de la Suisse", "CHF 9’200’000"),
        (None, "Budget suisse déjà attribué", "CHF 3’179’291"),
        (None, "Budget de l'Organisation", "CHF 7’000’000"),
        ("Projet total depuis la première phase", "Budget de la Suisse", "CHF 200’000"),
        (None, "Budget y compris partenaires de projet", "CHF 37’000’000"),
    ]
    assert [f.start for f in budget] == sorted(f.start for f in budget)


def test_prose_rows_and_sentences_are_not_fields(sheet):
    _, by_unit = sheet
    labels = {f.label for fields in by_unit.values() for f in fields}
    assert not labels & {"Contexte", "Objectifs", "Groupes cibles", "Coordination avec d'autres projets et acteurs"}
    assert not any(len(f.value) > 80 and f.kind in {"text", "list"} for fields in by_unit.values() for f in fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Project number P170385\n", [("Project number", "P170385", "code")]),
        ("Total cost | USD 12.5 million |\n", [("Total cost", "USD 12.5 million", "amount")]),
        ("Duration | January 2021 – December 2024 |\n", [("Duration", "January 2021 – December 2024", "date_range")]),
        ("Partners | World Bank, UNDP, SDC |\n", [("Partners", "World Bank, UNDP, SDC", "list")]),
        ("Дата начала 01.03.2021\n", [("Дата начала", "01.03.2021", "date")]),
        ("The project was approved in 2019 and closed on 31.12.2023 after four years of work in the regions.\n", []),
        ("Summary | " + "A long sentence about the project. " * 5 + "|\n", []),
    ],
)
def test_rows_and_lines_of_other_shapes(text, expected):
    assert [(f.label, f.value, f.kind) for f in find_fields(text)] == expected


def test_a_docx_table_read_by_the_word_reader_gives_fields(tmp_path):
    from assistant.ingest.documents import load_document
    from tests.test_ingest_formats import make_docx

    doc = load_document(make_docx(tmp_path / "k.docx"), tmp_path)
    assert [f.unit for f in find_fields(doc.text)] == [
        "Budget — USD 12,500,000",
        "Duration — 01.03.2021 - 28.02.2026",
        "Project number — TJ-KRW-0417",
    ]
