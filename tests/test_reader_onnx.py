"""The reader's ONNX Runtime engines against torch: same logits, same answers, cached graphs, a clean fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SDC = (ROOT / "corpus" / "sdc-tajikistan-digital-foundations-project.txt").read_text(encoding="utf-8")
AKDN = (ROOT / "corpus" / "akdn-civil-society-activities-tajikistan.txt").read_text(encoding="utf-8")
QUESTIONS = [
    "How many CSOs were formally registered in Tajikistan in 1997?",
    "Who finances the Digital Foundations Project?",
    "Quel est le budget de la Suisse ?",
    "Когда заканчивается проект?",
]
# Several passages of different lengths (one longer than a window), as the answer step passes them.
PASSAGES = [AKDN[:700], SDC[:1500], SDC[1500:1900], AKDN[2000:4200]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def readers(cache):
    from assistant.e5.reader import Reader, packaged_weights_dir

    weights = packaged_weights_dir()
    return {
        "torch-fp32": Reader(weights, threads=2, bf16=False),
        "torch": Reader(weights, threads=2),
        "onnx": Reader(weights, threads=2, engine="onnx", cache_dir=cache),
        "onnx-int8": Reader(weights, threads=2, engine="onnx-int8", cache_dir=cache),
    }


def _readings(reader):
    return [reading for q in QUESTIONS for reading in reader.read(q, PASSAGES)]


def test_onnx_float32_gives_torch_float32_logits_and_answers(readers):
    assert readers["onnx"].engine == "onnx"
    for ours, ref in zip(_readings(readers["onnx"]), _readings(readers["torch-fp32"]), strict=True):
        np.testing.assert_allclose(ours.start, ref.start, atol=1e-3)
        np.testing.assert_allclose(ours.end, ref.end, atol=1e-3)
        assert ours.null == pytest.approx(ref.null, abs=1e-3)
        assert ours.best_span()[1:] == ref.best_span()[1:]


def test_onnx_int8_stays_close_to_torch(readers):
    """int8 is less exact: logits within 1.5, and the best span the same for most texts (10 of 16 when measured)."""
    assert readers["onnx-int8"].engine == "onnx-int8"
    pairs = list(zip(_readings(readers["onnx-int8"]), _readings(readers["torch-fp32"]), strict=True))
    worst = max(float(np.abs(ours.start - ref.start).max()) for ours, ref in pairs)
    same = sum(ours.best_span()[1:] == ref.best_span()[1:] for ours, ref in pairs)
    assert worst < 1.5
    assert same >= 0.5 * len(pairs)


def test_the_graph_is_exported_once_per_weights_and_reused(readers, cache):
    from assistant.e5.reader import Reader, packaged_weights_dir

    graphs = sorted((cache / "reader").glob("*.onnx"))
    assert [g.name.rsplit("-", 1)[-1] for g in graphs] == ["int8.onnx", "onnx.onnx"]
    sha = readers["onnx"].info.weights_sha256
    assert all(g.name.startswith(sha[:16]) for g in graphs)
    before = {g: g.stat().st_mtime_ns for g in graphs}
    again = Reader(packaged_weights_dir(), threads=2, engine="onnx", cache_dir=cache)
    assert {g: g.stat().st_mtime_ns for g in graphs} == before
    assert not list((cache / "reader").glob("tmp*")), "no half-written export is left behind"
    ours = again.read(QUESTIONS[0], PASSAGES[:1])[0]
    ref = readers["onnx"].read(QUESTIONS[0], PASSAGES[:1])[0]
    np.testing.assert_array_equal(ours.start, ref.start)


def test_an_unwritable_cache_falls_back_to_torch_and_says_so(tmp_path, caplog, readers):
    from assistant.e5.reader import Reader, packaged_weights_dir

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="assistant.e5.reader"):
        reader = Reader(packaged_weights_dir(), threads=2, engine="onnx", cache_dir=blocked)
    assert reader.engine == "torch"
    assert "reader engine onnx unavailable" in caplog.text
    ours = reader.read(QUESTIONS[1], PASSAGES[1:2])[0]
    ref = readers["torch"].read(QUESTIONS[1], PASSAGES[1:2])[0]
    np.testing.assert_array_equal(ours.start, ref.start)


def test_an_unknown_engine_is_refused_with_the_choices():
    from assistant.e5.reader import Reader, packaged_weights_dir

    with pytest.raises(ValueError, match="unknown reader engine 'tensorrt'.*torch, onnx, onnx-int8"):
        Reader(packaged_weights_dir(), engine="tensorrt")


def test_the_setting_chooses_the_engine(monkeypatch):
    from assistant.config import Settings

    monkeypatch.setenv("ASSISTANT_READER_ENGINE", "torch")
    assert Settings().reader_engine == "torch"
    assert Settings(reader_engine="onnx-int8").reader_engine == "onnx-int8"
    with pytest.raises(ValueError):
        Settings(reader_engine="tensorrt")
