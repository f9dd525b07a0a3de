"""The API key: an empty or blank one is refused at start-up; with a key, every data route needs it,
/health without it says only its status, and the chat page stays open and has a key field.

In-process tests use the deterministic ``FakeEmbedder`` and the fake LLM of ``tests/fake_llm.py``
(a real HTTP server on 127.0.0.1).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from tests import markup_service as shared
from tests.conftest import ROOT
from tests.markup_service import KEY, QUESTION, make_service, server_env
from tests.servers import free_port

corpus, index_dir = shared.corpus, shared.index_dir  # shared fixtures (tests/markup_service.py)


@pytest.mark.parametrize("key", ["", " ", "\t \n"], ids=["empty", "space", "blank"])
def test_an_empty_or_blank_api_key_is_refused(key, monkeypatch):
    with pytest.raises(ValueError, match="api_key is empty or blank"):
        Settings(_env_file=None, api_key=key)
    monkeypatch.setenv("ASSISTANT_API_KEY", key)
    with pytest.raises(ValueError, match="api_key is empty or blank"):
        Settings(_env_file=None)


def test_serve_refuses_to_start_with_an_empty_key(tmp_path):
    env = server_env(tmp_path / "corpus", tmp_path / "index", api_key="")
    done = subprocess.run(
        [sys.executable, "-m", "tests.hardening_app", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "api_key is empty or blank" in done.stderr


# ============================================================================ 4. the key on every data route


@pytest.fixture(scope="module")
def keyed(corpus, index_dir) -> Iterator[TestClient]:
    service = make_service(corpus, index_dir, api_key=KEY)
    with TestClient(create_app(service.settings, service), raise_server_exceptions=False) as client:
        yield client


PROTECTED = [
    ("POST", "/ask"),
    ("POST", "/ask/stream"),
    ("GET", "/documents"),
    ("GET", "/documents/khatlon-markup"),
    ("GET", "/documents/nope"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("HEAD", "/documents"),
    ("GET", "/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer wrong-key", f"Basic {KEY}"], ids=["none", "empty", "wrong", "basic"])
def test_every_data_route_needs_the_key(keyed, method, path, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    kwargs = {"json": {"question": QUESTION}} if method == "POST" else {}
    response = keyed.request(method, path, headers=headers, **kwargs)
    assert response.status_code == 401, (method, path, response.status_code)
    if method != "HEAD":
        assert response.json()["error"]["code"] == "unauthorised"
        assert "khatlon" not in response.text.lower()


@pytest.mark.parametrize(("method", "path"), [p for p in PROTECTED if p[0] != "HEAD" and "nope" not in p[1] and "no-such" not in p[1]])
def test_the_key_opens_every_data_route(keyed, method, path):
    kwargs = {"json": {"question": QUESTION}} if method == "POST" else {}
    response = keyed.request(method, path, headers={"authorization": f"Bearer {KEY}"}, **kwargs)
    assert response.status_code == 200, (method, path, response.text[:300])


def test_health_without_the_key_says_only_its_status(keyed):
    for headers in ({}, {"authorization": "Bearer wrong"}):
        assert keyed.get("/health", headers=headers).json() == {"status": "ok"}
    assert keyed.head("/health").status_code == 200
    detailed = keyed.get("/health", headers={"authorization": f"Bearer {KEY}"}).json()
    assert detailed["status"] == "ok" and detailed["index"]["documents"] == 6 and "llm" in detailed


@pytest.mark.parametrize("path", ["/", "/index.html", "/app.js", "/style.css", "/favicon.svg"])
def test_the_chat_page_itself_stays_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_the_chat_page_has_a_key_field(keyed):
    page = keyed.get("/").text
    assert 'id="api-key"' in page and 'type="password"' in page
    entry = keyed.get("/app.js").text
    assert "./js/keyfield.js" in entry  # the key field, which keeps and sends the key through js/api.js
    script = keyed.get("/js/api.js").text
    assert "sessionStorage" in script and "Authorization: `Bearer ${key}`" in script
