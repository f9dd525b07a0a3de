"""The server's HTTP edges: only the page's own files are served, every page response carries the
security headers, malformed multipart uploads are refused naming the real problem, and every length
error quotes its own field's limit.

The file-serving checks run against a real uvicorn server with raw request paths (as
``curl --path-as-is`` sends them: no dot-segment clean-up by the client)."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from assistant.server.static import PAGE_FILES
from tests.fakes import FakeEmbedder
from tests.servers import uvicorn_server

ROOT = Path(__file__).resolve().parent.parent
DOC = "Water committees in Khatlon\n\nIn 2021 village water committees in the Khatlon region of Tajikistan repaired canals.\n"


def fake_app():
    """uvicorn factory: the real app over ``$ASSISTANT_CORPUS_DIR`` with FakeEmbedder (no model)."""
    return create_app(Settings(), embedder=FakeEmbedder())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("edges")
    corpus = work / "corpus"
    corpus.mkdir()
    (corpus / "khatlon.txt").write_text(DOC, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "ASSISTANT_INDEX_DIR": str(work / "index"),
        "ASSISTANT_READER": "false",
        "ASSISTANT_EMBEDDER": "use",
        "ASSISTANT_STORE": "local",
    }
    env.pop("ASSISTANT_API_KEY", None)
    with uvicorn_server(env, cwd=work, log_path=work / "server.log", timeout_s=120, app="tests.test_http_edges:fake_app") as running:
        yield running.base_url


def raw_get(base_url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the path sent exactly as given."""
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


PACKAGE_FILE_PATHS = [
    "/__init__.py",
    "/__init__.py/",
    "/__init__.py%2f",
    "/%5f%5finit%5f%5f.py",
    "/./__init__.py",
    "/%2e/__init__.py",
    "/i18n/../__init__.py",
    "/i18n/%2e%2e/__init__.py",
    "/i18n%2f..%2f__init__.py",
    "/__pycache__/",
    "/i18n/",
    "/i18n",
    "/.",
    "/./",
    "/index.html/",
    "/app.js/.",
    "/../pyproject.toml",
    "/%2e%2e/pyproject.toml",
]


@pytest.mark.slow
@pytest.mark.parametrize("path", PACKAGE_FILE_PATHS)
def test_nothing_but_the_page_files_is_served(server, path):
    status, headers, body = raw_get(server, path)
    if status == 200:  # only ever the page itself, never a package file
        assert path in ("/.", "/./"), (path, body[:200])
        assert body.lstrip().startswith(b"<!doctype html>"), body[:200]
    else:
        assert status in (400, 404), (path, status)
    assert b"import " not in body and b"from __future__" not in body and b"[project]" not in body, body[:200]


@pytest.mark.slow
def test_every_page_file_is_served_with_the_security_headers(server):
    for path in ["/", *(f"/{name}" for name in sorted(PAGE_FILES)), "/missing.js", "/__init__.py"]:
        status, headers, _ = raw_get(server, path)
        assert status == (404 if path in ("/missing.js", "/__init__.py") else 200), (path, status)
        csp = headers.get("content-security-policy", "")
        directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
        assert directives.get("default-src") == "default-src 'self'", (path, csp)
        assert directives.get("script-src") == "script-src 'self'", (path, csp)
        assert directives.get("style-src") == "style-src 'self'", (path, csp)
        assert directives.get("frame-ancestors") == "frame-ancestors 'none'", (path, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers.get("x-frame-options") == "DENY", path
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("referrer-policy") == "no-referrer", path


def test_the_page_has_no_inline_scripts_or_styles():
    """The policy allows only the page's own files, so the page must not need inline code."""
    html = (ROOT / "web" / "index.html").read_text(encoding="utf-8")
    assert "<style" not in html and " style=" not in html
    for tag in html.split("<script")[1:]:
        assert tag.split(">", 1)[0].strip().startswith("src="), tag[:80]
        assert tag.split(">", 1)[1].startswith("</script>")
    assert " onclick=" not in html and " onload=" not in html
    for name in PAGE_FILES:
        assert (ROOT / "web" / name).is_file(), name


# ---------------------------------------------------------------------------- in-process app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("edges-app")
    corpus = work / "corpus"
    corpus.mkdir()
    (corpus / "khatlon.txt").write_text(DOC, encoding="utf-8")
    settings = Settings(_env_file=None, corpus_dir=corpus, index_dir=work / "index", reader=False, embedder="use", ocr=False)
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as c:
        c.app.state.live.wait(60)
        yield c


def test_too_many_files_is_named(client):
    files = [("files", (f"f{i}.txt", b"x", "text/plain")) for i in range(1001)]
    response = client.post("/documents", files=files)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_parts"
    assert "1000" in error["message"] and "JSON" not in error["message"]


def test_a_multipart_body_without_a_boundary_is_named(client):
    response = client.post("/documents", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_multipart" and "boundary" in error["message"]
    assert "JSON" not in error["message"]


def test_a_large_non_file_field_is_named(client):
    response = client.post("/documents", data={"note": "x" * 2_000_000}, files=[("files", ("a.txt", DOC.encode(), "text/plain"))])
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "part_too_large" and "not a file" in error["message"]
    assert "JSON" not in error["message"]


def test_invalid_json_is_still_called_invalid_json(client):
    response = client.post("/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("turn", "field", "limit"),
    [
        ({"question": "x" * 4001}, "history.0.question", "longer than 4000 characters"),
        ({"question": "q", "answer": "x" * 8001}, "history.0.answer", "longer than 8000 characters"),
        ({"question": "q", "search_question": "x" * 8001}, "history.0.search_question", "longer than 8000 characters"),
        ({"question": "q", "doc_ids": ["d"] * 21}, "history.0.doc_ids", "more than 20 items"),
        ({"question": "q", "doc_ids": ["d" * 501]}, "history.0.doc_ids.0", "longer than 500 characters"),
    ],
)
def test_every_length_error_quotes_its_own_limit(client, turn, field, limit):
    response = client.post("/ask", json={"question": "Who repaired the canals?", "history": [turn]})
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    mine = [d for d in details if d["field"] == field]
    assert mine and limit in mine[0]["message"], details


def test_the_question_error_quotes_the_question_limit(client):
    limit = client.app.state.settings.max_question_chars if hasattr(client.app.state, "settings") else Settings().max_question_chars
    response = client.post("/ask", json={"question": "x" * (limit + 1)})
    assert response.status_code == 422
    assert f"longer than {limit} characters" in response.json()["error"]["message"]
