"""The chat page's code as ES modules (web/app.js, the entry, and web/js/*.js), served as plain
files: every module is on the server's allow-list and in the wheel, every import resolves to a
listed file, the page loads the entry as a module after the catalogues, and no module writes HTML."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from assistant.server.static import CONTENT_SECURITY_POLICY, PAGE_FILES, WebFiles

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^"'`;]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']""", re.M)


def modules() -> dict[str, str]:
    paths = [WEB / "app.js", *sorted((WEB / "js").glob("*.js"))]
    return {path.relative_to(WEB).as_posix(): path.read_text(encoding="utf-8") for path in paths}


def imports(source: str) -> list[str]:
    return [a or b for a, b in IMPORT.findall(source)]


def test_every_module_is_on_the_allow_list_and_every_listed_module_exists():
    on_disk = {f"js/{path.name}" for path in (WEB / "js").glob("*.js")}
    listed = {name for name in PAGE_FILES if name.startswith("js/")}
    assert len(on_disk) > 5 and on_disk == listed, sorted(on_disk ^ listed)
    assert not [p for p in (WEB / "js").iterdir() if p.suffix != ".js"], "only modules in web/js/"


def test_every_import_is_relative_and_reaches_a_listed_file():
    reached = set()
    for name, source in modules().items():
        specifiers = imports(source)
        assert "import(" not in source, name  # static imports only: the graph below is the whole page
        for spec in specifiers:
            assert spec.startswith("./") and spec.endswith(".js"), (name, spec)
            target = (Path(name).parent / spec).as_posix().removeprefix("./")
            target = str(Path(target))  # "js/./x.js" -> "js/x.js"
            assert target in PAGE_FILES, (name, spec, target)
            reached.add(target)
    assert reached == {name for name in PAGE_FILES if name.startswith("js/")}, "a module nothing imports"


def test_the_page_loads_the_catalogues_then_the_entry_module():
    html = (WEB / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)></script>", html)
    catalogues = [f' src="i18n/{lang}.js" defer' for lang in ("en", "fr", "ru")]
    assert scripts == [*catalogues, ' src="app.js" type="module"'], scripts
    assert "<script>" not in html  # no inline script (the CSP allows none)


def test_no_module_puts_html_into_the_page():
    for name, source in modules().items():
        code = re.sub(r"/\*.*?\*/|^\s*//[^\n]*$", "", source, flags=re.S | re.M)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in code, (name, sink)


def test_the_wheel_takes_every_page_file():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["assistant.web"]

    def packaged(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) and name.count("/") == pattern.count("/") for pattern in data)

    missing = [name for name in PAGE_FILES if not packaged(name)]
    assert not missing, missing


def test_the_modules_are_served_as_javascript_under_the_page_policy():
    app = FastAPI()
    app.mount("/", WebFiles({}, directory=str(WEB), html=True), name="web")
    client = TestClient(app)
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    for name in sorted(n for n in PAGE_FILES if n.endswith(".js")):
        res = client.get(f"/{name}")
        assert res.status_code == 200, name
        kind = res.headers["content-type"].split(";")[0]
        assert kind in ("text/javascript", "application/javascript"), (name, kind)  # a module needs a JavaScript type
        assert res.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert res.headers["x-content-type-options"] == "nosniff"
    for path in ("/js/", "/js", "/js/missing.js", "/js/../__init__.py", "/js/%2e%2e/__init__.py"):
        assert client.get(path).status_code in (400, 404), path
