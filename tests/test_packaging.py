"""A normal (non-editable) install carries the chat page, the prompts and the reader weights."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("assistant-*.whl"))


def test_every_python_package_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("assistant", "benchmarks", "training")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "packages missing from [tool.setuptools] packages in pyproject.toml"


@pytest.mark.slow
def test_the_wheel_holds_the_page_the_prompts_and_the_reader(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "assistant/web/index.html",
        "assistant/web/app.js",
        "assistant/web/i18n/en.js",
        "assistant/web/i18n/fr.js",
        "assistant/web/i18n/ru.js",
        "assistant/web/style.css",
        "assistant/prompts/answer.md",
        "assistant/answer/calibration.json",
    ):
        assert name in names, name
    assert any(n.startswith("assistant/e5/trained/") and n.endswith(".safetensors") for n in names)
    assert not any(n.startswith(("tests/", "corpus/", "index/")) for n in names)


@pytest.mark.slow
def test_an_installed_copy_serves_the_page_and_uses_its_prompt(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "note.txt").write_text("The Rasht Valley programme trained twelve teachers in 2021.\n", encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import assistant, json
        from pathlib import Path
        from fastapi.testclient import TestClient
        from assistant.answer.llm.prompt import Prompt
        from assistant.config import Settings
        from assistant.server.app import create_app
        from assistant.server.static import web_dir

        assert assistant.__file__.startswith({str(site)!r}), assistant.__file__
        assert str(web_dir()).startswith({str(site)!r}), web_dir()
        prompt = Prompt.load()
        settings = Settings(_env_file=None, corpus_dir=Path({str(corpus)!r}), index_dir=Path({str(tmp_path / "index")!r}), embedder="use")
        with TestClient(create_app(settings)) as client:
            page = client.get("/")
            script = client.get("/app.js")
            source = client.get("/__init__.py")
        print(json.dumps({{"page": page.status_code, "title": "Programmes Assistant</title>" in page.text, "js": script.status_code,
                          "source": source.status_code, "system": prompt.system[:60]}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["page"] == 200 and report["title"] and report["js"] == 200
    assert report["source"] == 404  # the package's own Python files are not served
    packaged = (ROOT / "prompts" / "answer.md").read_text(encoding="utf-8")
    assert report["system"] and report["system"] in packaged
