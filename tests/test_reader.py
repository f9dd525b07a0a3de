"""The trained reader shipped in the package: loads from the repository's weights and finds answers."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

SDC = (ROOT / "corpus" / "sdc-tajikistan-digital-foundations-project.txt").read_text(encoding="utf-8")
AKDN = (ROOT / "corpus" / "akdn-civil-society-activities-tajikistan.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reader():
    from assistant.e5.reader import Reader, packaged_weights_dir

    return Reader(packaged_weights_dir(), threads=2)


def _passage(text: str, needle: str, size: int = 700) -> str:
    at = text.index(needle)
    return text[max(0, at - size // 2) : at + size // 2]


CASES = [
    ("How many CSOs were formally registered in Tajikistan in 1997?", AKDN, "300 CSOs formally registered", "300"),
    pytest.param(
        "By 2006, how many CSOs were registered?",
        AKDN,
        "by 2006 the number had grown",
        "2,700",
        marks=pytest.mark.xfail(strict=True, reason="known error of the shipped reader: it picks the 1997 figure, 300"),
    ),
    pytest.param(
        "What is the Swiss budget of the Digital Foundations Project?",
        SDC,
        "Budget de la Suisse CHF 9’200’000",
        "9’200’000",
        marks=pytest.mark.xfail(
            strict=True, reason="known weakness of the shipped reader: it finds the span but scores it just under 'no answer' (-0.2)"
        ),
    ),
    ("Combien d'organisations de la société civile étaient enregistrées en 1997 ?", AKDN, "300 CSOs formally registered", "300"),
    ("Сколько организаций гражданского общества было зарегистрировано в 1997 году?", AKDN, "300 CSOs formally registered", "300"),
]


@pytest.mark.slow
def test_the_weights_are_small_and_described(reader):
    from assistant.e5.reader import MANIFEST_FILE, WEIGHTS_FILE, packaged_weights_dir

    folder = packaged_weights_dir()
    assert (folder / WEIGHTS_FILE).stat().st_size < 25 * 1024 * 1024
    import json

    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["base_model_sha256"] == reader.base.file.sha256()
    assert set(manifest["training_data"]) and manifest["metrics"]["dev"]["f1"] > 50


@pytest.mark.slow
@pytest.mark.parametrize(("question", "document", "needle", "answer"), CASES)
def test_the_reader_finds_the_span(reader, question, document, needle, answer):
    text = _passage(document, needle)
    [reading] = reader.read(question, [text])
    score, start, end = reading.best_span()
    assert answer in text[start:end], text[start:end]
    assert end - start <= 60
    assert score > reading.null, "the reader should think the answer is here"


@pytest.mark.slow
def test_no_answer_wins_on_an_unrelated_passage(reader):
    [reading] = reader.read("Who is the President of Tajikistan?", [_passage(AKDN, "300 CSOs formally registered")])
    score, _, _ = reading.best_span()
    assert score < reading.null
