"""In CI (CI=true) a skipped test fails; elsewhere it skips. A test marked may_skip skips in both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SAMPLE = """
import pytest


def test_needs_a_server():
    pytest.skip("the PostgreSQL binaries are not installed")


@pytest.mark.xfail(reason="a known weakness", strict=True)
def test_known_weakness():
    assert False


def test_passes():
    assert True
"""

MARKED = """
import pytest


@pytest.mark.may_skip
def test_needs_outside_data():
    pytest.skip("benchmark data not found")
"""

MODULE_LEVEL = """
import pytest

pytest.skip("chromium not found", allow_module_level=True)


def test_in_a_browser():
    assert True
"""


def run_pytest(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    may_skip: a skip expected even in CI\n", encoding="utf-8")
    (tmp_path / "test_sample.py").write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rs", "-c", "pytest.ini"]
        + ["test_sample.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_fails_in_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, SAMPLE, "true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed, 1 xfailed" in result.stdout
    assert "skipped in CI" in result.stdout and "PostgreSQL binaries are not installed" in result.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_skip_skips_outside_ci(tmp_path: Path, ci: str | None) -> None:
    result = run_pytest(tmp_path, SAMPLE, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout


def test_a_skip_marked_may_skip_skips_in_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MARKED, "true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout


def test_a_module_level_skip_fails_in_ci(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MODULE_LEVEL, "true")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "skipped in CI" in result.stdout and "chromium not found" in result.stdout
    outside = run_pytest(tmp_path, MODULE_LEVEL, None)
    assert outside.returncode == 5, outside.stdout + outside.stderr  # nothing collected, nothing failed
    assert "1 skipped" in outside.stdout
