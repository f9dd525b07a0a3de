"""The chat page in Chromium against a real server with an API key: it asks for the key and sends it,
names a wrong one, and answers extractively when the LLM breaks off part-way through a stream.

The server uses the fake embedder (``tests/hardening_app.py``); skipped without playwright or Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests import markup_service as shared
from tests.conftest import ROOT
from tests.hardening_app import APP
from tests.markup_service import KEY, QUESTION, server_env
from tests.servers import uvicorn_server

corpus, index_dir = shared.corpus, shared.index_dir  # shared fixtures (tests/markup_service.py)


CHROMIUM = os.environ.get("ASSISTANT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


@pytest.fixture(scope="module")
def keyed_server(corpus: Path, index_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real server with an API key (fake embedder)."""
    work = tmp_path_factory.mktemp("keyed-server")
    shutil.copytree(index_dir, work / "index")
    env = server_env(corpus, work / "index", api_key=KEY)
    with uvicorn_server(env, cwd=ROOT, log_path=work / "server.log", timeout_s=120, app=APP) as server:
        yield server.base_url + "/"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, keyed_server):
    """Opens the chat page in a fresh context (``init_script`` runs first); checks for page errors at the end."""
    contexts, errors = [], []

    def open_(init_script: str | None = None):
        context = browser.new_context(viewport={"width": 1280, "height": 820})
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(keyed_server)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _ask(page, question: str):
    from playwright.sync_api import expect

    before = page.locator("#conversation > li").count()
    page.locator("#question").fill(question)
    page.locator("#question").press("Enter")
    turn = page.locator("#conversation > li").nth(before)
    expect(turn.locator("article.msg-assistant")).to_have_attribute("aria-busy", "false", timeout=60_000)
    return turn


@pytest.mark.slow
def test_the_page_asks_for_the_key_and_sends_it(open_page):
    from playwright.sync_api import expect

    page = open_page()
    turn = _ask(page, QUESTION)
    box = turn.locator(".error-box")
    expect(box).to_contain_text("This server needs an API key")
    expect(box).to_contain_text("unauthorised · HTTP 401")
    expect(page.locator("#api-key")).to_be_visible()
    expect(page.locator("#api-key")).to_be_focused()

    page.locator("#api-key").fill(KEY)
    assert page.evaluate("sessionStorage.getItem('assistant.apiKey')") == KEY
    with page.expect_request("**/ask/stream") as sent:
        box.get_by_role("button", name="Retry").click()
    assert sent.value.headers.get("authorization") == f"Bearer {KEY}"
    answer = page.locator("#conversation > li").last.locator("article.msg-assistant")
    expect(answer).to_have_attribute("aria-busy", "false", timeout=60_000)
    expect(answer.locator(".error-box")).to_have_count(0)
    expect(answer.locator(".answer-meta")).to_contain_text("Mode:")

    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#docs-list .doc-card")).to_have_count(6)
    page.locator("#docs-list .doc-card .doc-open").first.click()
    expect(page.locator("#panel .doc-text")).not_to_be_empty()

    page.reload()  # the key stays for the tab's session
    expect(page.locator("#api-key")).to_have_value(KEY)


@pytest.mark.slow
def test_a_wrong_key_is_named(open_page):
    from playwright.sync_api import expect

    page = open_page("sessionStorage.setItem('assistant.apiKey', 'not-the-key')")
    turn = _ask(page, QUESTION)
    expect(turn.locator(".error-box")).to_contain_text("did not accept the API key")
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#docs-status")).to_contain_text("did not accept the API key")


@pytest.mark.slow
def test_the_page_answers_extractively_when_the_llm_breaks_off(open_page):
    from playwright.sync_api import expect

    page = open_page(f"sessionStorage.setItem('assistant.apiKey', {json.dumps(KEY)})")
    failed = {"error": {"code": "llm_failed", "message": "The LLM endpoint failed part-way.", "details": {"retry_mode": "extractive"}}}
    body = f"event: delta\ndata: {json.dumps({'text': 'Partial LLM words '})}\n\nevent: error\ndata: {json.dumps(failed)}\n\n"
    page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    with page.expect_request(lambda r: r.url.endswith("/ask") and r.method == "POST") as again:
        turn = _ask(page, QUESTION)
    assert json.loads(again.value.post_data)["mode"] == "extractive"
    assert again.value.headers.get("authorization") == f"Bearer {KEY}"
    article = turn.locator("article.msg-assistant")
    expect(article.locator(".fallback-note")).to_contain_text("quoted from the documents instead")
    expect(article.locator(".error-box")).to_have_count(0)
    expect(article.locator(".answer-meta")).to_contain_text("Mode: extractive")
    expect(article).not_to_contain_text("Partial LLM words")
