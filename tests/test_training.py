"""The reader's training and export path, end to end on a tiny SQuAD-format set.

It trains real steps on the packaged e5 model, stops early with --stop-at-step, resumes from the
checkpoint, exports, and loads the result with the product's ``Reader``.
"""

import json

import pytest

from assistant.e5.reader import MANIFEST_FILE, WEIGHTS_FILE, Reader
from training import reader as training

CITIES = "Dushanbe Khujand Khorog Kulob Bokhtar Istaravshan Panjakent Vahdat Tursunzoda Hisor Rasht Murghob".split()


def _qa(qid: str, question: str, answer: str, context: str) -> dict:
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}


def _squad(path):
    data = []
    for i, city in enumerate(CITIES):
        year = 1990 + i
        context = (
            f"The district office in {city} opened a new clinic in {year}. "
            f"The clinic in {city} serves {100 + i} families from nearby villages. "
            "Its staff were trained by the regional health department."
        )
        qas = [
            _qa(f"q{i}a", f"When did {city} open a new clinic?", str(year), context),
            _qa(f"q{i}b", f"How many families does the clinic in {city} serve?", f"{100 + i} families", context),
        ]
        data.append({"title": city, "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"data": data}), encoding="utf-8")


def _train(argv: list[str]) -> dict:
    args = training.build_parser().parse_args(argv)
    args.command_line = " ".join(argv)
    return training.train(args)


@pytest.mark.slow
def test_training_stops_resumes_and_exports_weights_the_reader_loads(tmp_path):
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    _squad(train_dir / "tiny.json")
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--train-dir", str(train_dir), "--work-dir", str(work), "--out", str(out), "--epochs", "2", "--batch-size", "4"]

    first = _train([*common, "--stop-at-step", "3"])
    assert first["steps"] == {"trained": 3, "planned": first["steps"]["planned"]}
    assert first["steps"]["planned"] > 3
    assert (work / "checkpoint.pt").is_file()

    # Resuming with the same arguments continues from step 3 to the end of the schedule.
    final = _train(common)
    assert final["steps"]["trained"] == final["steps"]["planned"]
    assert final["counts"]["train_windows"] > 0 and final["counts"]["dev_windows"] > 0
    assert set(final["metrics"]["dev"]) >= {"em", "f1", "auc"}
    assert final["wall_time_s"] >= first["wall_time_s"] > 0

    reader = Reader(out, threads=2)
    assert reader.info.weights_sha256 == final["weights_sha256"]
    reading = reader.read("When did Khorog open a new clinic?", ["The district office in Khorog opened a new clinic in 1992."])[0]
    assert reading.best_span() is not None  # a span is scored (tiny training: its content is not checked)

    # Other arguments must not resume this run's checkpoint.
    with pytest.raises(SystemExit, match="other arguments"):
        _train([*common, "--lr", "1e-3"])
    assert (out / WEIGHTS_FILE).is_file() and (out / MANIFEST_FILE).is_file()


@pytest.mark.slow
def test_top_layers_trained_on_cached_inputs_export_a_reader_that_loads(tmp_path):
    """--train-top: the lower layers' outputs are cached once, the top layers trained, and the
    exported reader has the init reader's lower layers and the trained top ones."""
    import torch
    from safetensors.torch import load_file

    from assistant.e5.reader import packaged_weights_dir

    train_dir = tmp_path / "train"
    train_dir.mkdir()
    _squad(train_dir / "tiny.json")
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--train-dir", str(train_dir), "--work-dir", str(work), "--out", str(out), "--epochs", "2", "--batch-size", "4",
              "--init-from", str(packaged_weights_dir()), "--train-top", "4", "--window-tokens", "128", "--lr", "1e-4"]  # fmt: skip

    first = _train([*common, "--stop-at-step", "3"])
    assert first["steps"]["trained"] == 3
    caches = list(work.glob("hidden-*/train.bin"))
    assert len(caches) == 1 and caches[0].with_suffix(".done").is_file()
    final = _train(common)  # resumes, reusing the cache
    assert final["steps"]["trained"] == final["steps"]["planned"]
    assert [e["epoch"] for e in final["epochs"]] == [1, 2] and final["best_epoch"]["epoch"] in (1, 2)
    assert final["spec"]["top_layers"] == 4 and final["initialised_from"]["weights_sha256"]

    stored = load_file(str(out / WEIGHTS_FILE))
    assert any(k.startswith("encoder.encoder.layer.11.") and k.endswith("query.weight") for k in stored)
    assert not any(k.startswith("encoder.encoder.layer.11.") and "lora" in k for k in stored)
    init = load_file(str(packaged_weights_dir() / WEIGHTS_FILE))
    lower = [k for k in init if k.startswith("encoder.encoder.layer.0.")]
    assert lower and all(torch.equal(stored[k], init[k]) for k in lower)

    reader = Reader(out, threads=2)
    assert reader.spec.top_layers == 4
    reading = reader.read("When did Khorog open a new clinic?", ["The district office in Khorog opened a new clinic in 1992."])[0]
    assert reading.best_span() is not None
