"""The chat page in a real browser against a real server.

Starts ``assistant.server.app:create_app`` with uvicorn over a small temporary corpus (the seed
corpus plus one document full of HTML/JS that must stay inert) and drives Debian's
chromium with Playwright.

Needs: ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright
install``: the system chromium is used). Skipped when either is missing.

Environment:
- ``ASSISTANT_TEST_CHROMIUM``: the browser executable (default ``/usr/bin/chromium``).
- ``ASSISTANT_WEB_TEST_APP``: the app factory to serve (default ``assistant.server.app:create_app``);
  for developing the page against another implementation of the same HTTP contract.
- ``ASSISTANT_WEB_SCREENSHOT``: when set, a path where the answered-question test saves a
  screenshot of the page with an open citation (docs/screenshot.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.servers import uvicorn_server

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
expect = sync_api.expect

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
CHROMIUM = os.environ.get("ASSISTANT_TEST_CHROMIUM", "/usr/bin/chromium")
APP = os.environ.get("ASSISTANT_WEB_TEST_APP", "assistant.server.app:create_app")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER_TIMEOUT_MS = 90_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

XSS_FILE = "xss.txt"
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_TEXT = f"""Village water committees in Khatlon

In 2021 village water committees in the Khatlon region of Tajikistan repaired forty kilometres of irrigation canals with
support from their jamoat councils. The notice board in the committee office read {XSS_SCRIPT} and the scanned
registration form showed {XSS_IMG} next to the list of member households. Each household contributed labour to clean
the canals before the spring planting season, and the committees collected a small fee to pay for pumps.
"""
XSS_TITLE = 'Khatlon water committees <img src=x onerror="window.__xss=2">'
XSS_PUBLISHER = "Test <script>window.__xss=3</script> Publisher"

FINANCE_QUESTION = "Who finances the Digital Foundations Project in Tajikistan?"
ABSTAIN_QUESTION = "What is the population of Dushanbe in 2030?"
XSS_QUESTION = "What did the village water committees in the Khatlon region repair?"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def web_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = tmp_path_factory.mktemp("web-corpus")
    for path in SEED_CORPUS.glob("*.txt"):
        shutil.copy(path, corpus / path.name)
    metadata = json.loads((SEED_CORPUS / "metadata.json").read_text(encoding="utf-8"))
    metadata[XSS_FILE] = {
        "title": XSS_TITLE,
        "publisher": XSS_PUBLISHER,
        "date": "2021-05-01",
        "period": None,
        "language": ["en"],
        "description": "Test document whose text contains <b>markup</b> that must be shown literally.",
    }
    (corpus / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (corpus / XSS_FILE).write_text(XSS_TEXT, encoding="utf-8")
    return corpus


@pytest.fixture(scope="module")
def server(web_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real uvicorn server over the test corpus; yields its base URL."""
    workdir = tmp_path_factory.mktemp("web-server")
    env = {**os.environ, "ASSISTANT_CORPUS_DIR": str(web_corpus), "ASSISTANT_INDEX_DIR": str(workdir / "index")}
    with uvicorn_server(env, cwd=ROOT, log_path=workdir / "server.log", timeout_s=300, app=APP) as running:
        yield running.base_url + "/"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open_page(browser, server: str, **context_args):
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: (errors.append(f"unexpected dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(server)
    expect(page.locator("#question")).to_be_visible()
    return context, page, errors


@pytest.fixture
def page(browser, server):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 820})
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def phone(browser, server):
    context, page, errors = _open_page(
        browser, server, viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


# ---------------------------------------------------------------------------- helpers


def turns(page):
    return page.locator("#conversation > li")


def ask(page, question: str, *, key: str = "Enter"):
    """Type a question, send it with the keyboard and wait until the answer is complete."""
    before = turns(page).count()
    page.locator("#question").fill(question)
    page.locator("#question").press(key)
    turn = turns(page).nth(before)
    expect(turn.locator(".bubble")).to_have_text(question)
    expect(turn.locator("article.msg-assistant")).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
    return turn


def assert_no_xss(page):
    assert page.evaluate("typeof window.__xss") == "undefined", "injected markup was executed"
    assert page.locator("#conversation script, #panel script, #docs-list script").count() == 0
    assert page.locator("#conversation img, #panel img, #docs-list img").count() == 0


def sse(*events: tuple[str, object]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


# ---------------------------------------------------------------------------- tests


def test_answer_with_citations_opens_passage_and_document(page):
    turn = ask(page, FINANCE_QUESTION)
    article = turn.locator("article.msg-assistant")
    expect(article.locator(".error-box")).to_have_count(0)
    expect(article.locator(".abstain-note")).to_have_count(0)
    cites = article.locator(".answer-text button.cite")
    assert cites.count() >= 1, f"no citation markers in: {article.locator('.answer-text').inner_text()!r}"
    expect(article.locator(".sources .source-btn")).not_to_have_count(0)
    expect(article.locator(".answer-meta")).to_contain_text("Mode:")
    assert any("Digital Foundations" in (cites.nth(i).get_attribute("aria-label") or "") for i in range(cites.count())), (
        "the answer does not cite the Digital Foundations project page"
    )

    first = cites.first
    title = (first.get_attribute("aria-label") or "").split(": ", 1)[1]
    first.click()
    panel = page.locator("#panel")
    expect(panel).to_be_visible()
    expect(page.locator("#panel-title")).to_have_text(title)
    expect(page.locator("#panel-kicker")).to_have_text("Source 1")
    mark = panel.locator(".passage mark")
    expect(mark).to_have_count(1)
    assert mark.inner_text().strip(), "the highlighted span is empty"
    assert mark.inner_text().strip() in panel.locator(".passage").inner_text()
    # The conversation is not covered by the side panel on a desktop screen.
    answer_box = article.bounding_box()
    panel_box = panel.bounding_box()
    assert answer_box["x"] + answer_box["width"] <= panel_box["x"] + 1

    if os.environ.get("ASSISTANT_WEB_SCREENSHOT"):
        page.wait_for_timeout(300)
        page.screenshot(path=os.environ["ASSISTANT_WEB_SCREENSHOT"])

    quote = mark.inner_text()
    panel.get_by_role("button", name="Read whole document").click()
    doc_mark = panel.locator(".doc-text mark.quote-mark")
    expect(doc_mark).to_have_text(quote)
    expect(doc_mark).to_be_in_viewport()
    expect(panel.locator(".doc-meta")).to_contain_text("Publisher")

    panel.get_by_role("button", name="Back to passage").click()
    expect(panel.locator(".passage mark")).to_have_text(quote)

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(first).to_be_focused()


def test_abstention_is_calm_and_offers_related_passages(page):
    turn = ask(page, ABSTAIN_QUESTION)
    article = turn.locator("article.msg-assistant")
    note = article.locator(".abstain-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("The documents don't answer this")
    expect(article.locator(".error-box, [role=alert]")).to_have_count(0)
    expect(article).not_to_have_class("errored")
    expect(article.locator(".answer-text button.cite")).to_have_count(0)
    related = article.locator(".sources-block.related .source-btn")
    expect(related).not_to_have_count(0)
    related.first.click()
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#panel-kicker")).to_have_text("Closest passage 1")
    assert page.locator("#panel-title").inner_text().strip()


def test_server_error_keeps_question_and_retries(page):
    error = {"error": {"code": "index_not_ready", "message": "The index is still being built; try again shortly.", "details": None}}
    page.route(
        "**/ask/stream",
        lambda route: route.fulfill(status=503, content_type="application/json", body=json.dumps(error)),
    )
    page.locator("#question").fill(FINANCE_QUESTION)
    page.locator("#send").click()
    box = page.locator("#conversation .error-box")
    expect(box).to_be_visible()
    expect(box).to_contain_text("The index is still being built; try again shortly.")
    expect(box).to_contain_text("index_not_ready")
    expect(page.locator("#question")).to_have_value(FINANCE_QUESTION)

    page.unroute("**/ask/stream")
    box.get_by_role("button", name="Retry").click()
    expect(page.locator("#conversation .error-box")).to_have_count(0)
    expect(turns(page)).to_have_count(1)
    article = turns(page).first.locator("article.msg-assistant")
    expect(article).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
    expect(article.locator(".answer-text button.cite")).not_to_have_count(0)
    expect(page.locator("#question")).to_have_value("")


def test_unreachable_server_keeps_question(page):
    page.route("**/ask/stream", lambda route: route.abort("connectionrefused"))
    question = "How does IOM engage the Tajik diaspora?"
    page.locator("#question").fill(question)
    page.locator("#question").press("Enter")
    box = page.locator("#conversation .error-box")
    expect(box).to_contain_text("Can't reach the server")
    expect(box.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator("#question")).to_have_value(question)


def test_error_event_in_stream_is_shown(page):
    body = sse(
        ("delta", {"text": "Partial answer "}),
        # Not "llm_failed" (the page answers that one extractively: tests/test_hardening_round2.py).
        ("error", {"error": {"code": "internal_error", "message": "The language model stopped <b>responding</b>."}}),
    )
    page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    page.locator("#question").fill(FINANCE_QUESTION)
    page.locator("#question").press("Enter")
    box = page.locator("#conversation .error-box")
    expect(box).to_contain_text("The language model stopped <b>responding</b>.")
    expect(page.locator("#question")).to_have_value(FINANCE_QUESTION)


def test_validation_error_from_real_server_is_shown(page):
    # The page never sends an empty question, so post one directly: the contract's error shape.
    status, body = page.evaluate(
        """async () => {
            const res = await fetch('ask', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                            body: JSON.stringify({question: ''})});
            return [res.status, await res.text()];
        }"""
    )
    assert status == 422, body
    assert json.loads(body)["error"]["message"]


def test_streamed_markers_and_server_data_render_as_text(page):
    """The page's own handling of the stream contract, with hostile strings in every field."""
    text = "Before <b>bold</b> the quoted <script>window.__xss=7</script> words after."
    quote = "the quoted <script>window.__xss=7</script> words"
    start = 100
    citation = {
        "n": 1,
        "doc_id": "reports/evil",
        "title": '<img src=x onerror="window.__xss=5">Evil title',
        "publisher": "<script>window.__xss=6</script>",
        "source": "reports/evil.txt",
        "text": text,
        "start": start,
        "end": start + len(text),
        "quote": quote,
        "quote_start": start + text.index(quote),
        "quote_end": start + text.index(quote) + len(quote),
        "score": 0.9,
    }
    done = {
        "answer": "It says <i>this</i> [1].",
        "abstained": False,
        "mode": "llm",
        "citations": [citation],
        "related": [],
        "timings_ms": {"retrieve": 10, "generate": 1200},
        "warnings": ["<u>careful</u>"],
    }
    body = sse(("delta", {"text": "It says <i>this</i> ["}), ("delta", {"text": "1]."}), ("done", done))
    page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    turn = ask(page, "Anything?")
    article = turn.locator("article.msg-assistant")
    expect(article.locator(".answer-text")).to_contain_text("It says <i>this</i>")
    expect(article.locator(".answer-text button.cite")).to_have_count(1)
    expect(article.locator(".answer-meta")).to_contain_text("Mode: llm")
    expect(article.locator(".answer-meta")).to_contain_text("<u>careful</u>")
    expect(article.locator(".source-title")).to_have_text(citation["title"])
    article.locator("button.cite").click()
    expect(page.locator("#panel-title")).to_have_text(citation["title"])
    expect(page.locator("#panel .panel-meta")).to_contain_text(citation["publisher"])
    expect(page.locator("#panel .passage mark")).to_have_text(citation["quote"])
    assert_no_xss(page)


def test_xss_document_is_inert_in_documents_view(page):
    page.get_by_role("tab", name="Documents").click()
    cards = page.locator("#docs-list .doc-card")
    expect(cards).to_have_count(6)
    card = cards.filter(has_text="Khatlon water committees")
    expect(card.locator(".doc-open")).to_have_text(XSS_TITLE)
    expect(card.locator(".doc-pub")).to_have_text(XSS_PUBLISHER)
    expect(card).to_contain_text("<b>markup</b>")
    card.locator(".doc-open").click()
    text = page.locator("#panel .doc-text")
    expect(text).to_contain_text(XSS_SCRIPT)
    expect(text).to_contain_text(XSS_IMG)
    expect(page.locator("#panel-title")).to_have_text(XSS_TITLE)
    page.wait_for_timeout(300)
    assert_no_xss(page)


def test_xss_document_is_inert_when_cited(page):
    turn = ask(page, XSS_QUESTION)
    article = turn.locator("article.msg-assistant")
    expect(article.locator(".error-box")).to_have_count(0)
    cited = article.locator(".answer-text button.cite")
    labels = [cited.nth(i).get_attribute("aria-label") or "" for i in range(cited.count())]
    hits = [i for i, label in enumerate(labels) if "Khatlon" in label]
    assert hits, f"the answer does not cite the Khatlon document; citation labels: {labels}"
    cited.nth(hits[0]).click()
    expect(page.locator("#panel-title")).to_have_text(XSS_TITLE)
    page.locator("#panel").get_by_role("button", name="Read whole document").click()
    expect(page.locator("#panel .doc-text")).to_contain_text(XSS_SCRIPT)
    page.wait_for_timeout(300)
    assert_no_xss(page)


def test_keyboard_enter_sends_and_shift_enter_adds_a_line(page):
    box = page.locator("#question")
    box.focus()
    page.keyboard.type("Who finances the Digital")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Foundations Project in Tajikistan?")
    expect(box).to_have_value("Who finances the Digital\nFoundations Project in Tajikistan?")
    expect(turns(page)).to_have_count(0)
    page.keyboard.press("Enter")
    expect(turns(page)).to_have_count(1)
    expect(box).to_have_value("")
    article = turns(page).first.locator("article.msg-assistant")
    expect(article).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)

    # Reach a citation marker with Tab alone, open it with Enter, close with Escape.
    cite = article.locator(".answer-text button.cite").first
    expect(cite).to_be_visible()
    page.locator("#new-chat").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('cite')"):
            break
    else:
        pytest.fail("a citation marker cannot be reached with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "no visible focus ring on the citation marker"
    page.keyboard.press("Enter")
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#panel mark")).not_to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()
    assert page.evaluate("document.activeElement.classList.contains('cite')")


def test_new_chat_clears_the_conversation(page):
    ask(page, FINANCE_QUESTION)
    expect(turns(page)).to_have_count(1)
    page.get_by_role("button", name="New chat").click()
    expect(turns(page)).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    expect(page.locator("#question")).to_be_focused()


def test_copy_answer_with_sources(browser, server):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 820})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.rstrip("/"))
        turn = ask(page, FINANCE_QUESTION)
        article = turn.locator("article.msg-assistant")
        first_title = article.locator(".source-title").first.inner_text()
        turn.get_by_role("button", name="Copy answer with sources").click()
        expect(turn.locator(".copy-btn")).to_contain_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        answer = article.locator(".answer-text").inner_text().strip()
        assert copied.startswith(answer[:20]), copied
        assert "\nSources:\n[1] " + first_title in copied
        head = next(line for line in copied.splitlines() if line.startswith("[1] "))
        publisher = article.locator(".source-publisher").first
        if publisher.count():
            assert publisher.inner_text().strip(" ·—") in head, head
        quote = copied.split(head + "\n", 1)[1].splitlines()[0]
        assert quote.startswith("    “") and quote.endswith("”"), quote  # the quoted sentence
        assert not errors, errors
    finally:
        context.close()


def test_documents_view_lists_metadata(page):
    page.get_by_role("tab", name="Documents").click()
    cards = page.locator("#docs-list .doc-card")
    expect(cards).to_have_count(6)
    sdc = cards.filter(has_text="Tajikistan Digital Foundations Project")
    expect(sdc).to_contain_text("Swiss Agency for Development and Cooperation (SDC)")
    expect(sdc).to_contain_text("2022-09-01 to 2028-08-31")
    expect(sdc).to_contain_text("English, French")
    expect(sdc).to_contain_text("budget CHF 9.2 million")
    undp = cards.filter(has_text="Tajik Delegation Learns Georgia")
    expect(undp).to_contain_text("2019-12-26")
    page.locator("#docs-filter").fill("diaspora")
    expect(cards).to_have_count(1)
    cards.first.locator(".doc-open").click()
    expect(page.locator("#panel-title")).to_have_text("Engaging Tajik Diaspora in the Development of Tajikistan")
    expect(page.locator("#panel .doc-text")).to_contain_text("diaspora")


def test_phone_width_dialog(phone):
    turn = ask(phone, FINANCE_QUESTION)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways at 375px"
    turn.locator(".answer-text button.cite").first.click()
    panel = phone.locator("#panel")
    expect(panel).to_be_visible()
    assert phone.evaluate("document.querySelector('#panel').matches(':modal')"), "the panel is not a dialog on a phone"
    box = panel.bounding_box()
    assert box["x"] <= 1 and box["width"] >= 374
    expect(panel.locator(".passage mark")).not_to_have_count(0)
    phone.keyboard.press("Escape")
    expect(panel).to_be_hidden()


# ---------------------------------------------------------------------------- conversations and short answers

FUNDS_QUESTION = "Who funds the Digital Foundations Project?"
SDC_DOC = "sdc-tajikistan-digital-foundations-project"


def test_follow_up_sends_the_conversation_and_new_chat_forgets_it(page):
    bodies: list[dict] = []
    page.on(
        "request",
        lambda request: (
            bodies.append(json.loads(request.post_data or "{}"))
            if request.method == "POST" and request.url.endswith("/ask/stream")
            else None
        ),
    )
    first = ask(page, FUNDS_QUESTION)
    expect(first.locator(".answer-text button.cite")).not_to_have_count(0)
    expect(first.locator(".searched")).to_have_count(0)  # searched as asked: nothing to show
    second = ask(page, "And what is its budget?")

    assert len(bodies) == 2 and "history" not in bodies[0]
    history = bodies[1]["history"]
    assert len(history) == 1, history
    turn = history[0]
    assert turn["question"] == FUNDS_QUESTION and turn["search_question"] == FUNDS_QUESTION
    assert SDC_DOC in turn["doc_ids"]
    assert turn["answer"] and "[1]" not in turn["answer"]  # plain text, without the markers
    searched = second.locator(".searched")
    expect(searched).to_be_visible()
    expect(searched).to_contain_text("Understood as: And what is its budget? — in the context of: ")
    expect(searched).to_contain_text("Digital Foundations Project")
    expect(searched).not_to_contain_text("searched:")
    # A Swiss budget field of the project's page (which of its two is a known weakness: tests/test_conversation.py).
    expect(second).to_contain_text("Budget de la Suisse CHF")

    page.get_by_role("button", name="New chat").click()
    expect(turns(page)).to_have_count(0)
    third = ask(page, "Et quand se termine-t-il ?")
    assert len(bodies) == 3 and "history" not in bodies[2], bodies[2]
    expect(third.locator(".searched")).to_have_count(0)


def test_history_keeps_the_last_six_answered_turns(page):
    """Failed turns are not part of the conversation; at most six earlier turns are sent."""
    done = {
        "answer": "An answer [1].",
        "abstained": False,
        "mode": "extractive",
        "citations": [
            {
                "n": 1,
                "doc_id": "d1",
                "title": "T",
                "publisher": None,
                "source": "d1.txt",
                "text": "An answer.",
                "start": 0,
                "end": 10,
                "quote": "An answer.",
                "quote_start": 0,
                "quote_end": 10,
                "score": 0.5,
            }
        ],
        "related": [],
        "timings_ms": {},
        "warnings": [],
    }
    bodies: list[dict] = []

    def fulfil(route):
        body = json.loads(route.request.post_data)
        bodies.append(body)
        if body["question"] == "fails":
            error = {"error": {"code": "not_ready", "message": "Not ready.", "details": None}}
            route.fulfill(status=503, content_type="application/json", body=json.dumps(error))
            return
        answer = {**done, "search_question": body["question"] + " (searched)", "rewrite": "rules"}
        route.fulfill(status=200, content_type="text/event-stream", body=sse(("done", answer)))

    page.route("**/ask/stream", fulfil)
    for i in range(7):
        ask(page, f"question {i}")
    page.locator("#question").fill("fails")
    page.locator("#question").press("Enter")
    expect(page.locator("#conversation .error-box")).to_be_visible()
    page.locator("#question").fill("")
    ask(page, "last question")
    history = bodies[-1]["history"]
    assert [t["question"] for t in history] == [f"question {i}" for i in range(1, 7)]
    assert history[-1] == {"question": "question 6", "answer": "An answer.", "doc_ids": ["d1"], "search_question": "question 6 (searched)"}
    expect(turns(page).last.locator(".searched")).to_have_text("Understood as: last question — in the context of: searched")


def test_short_answer_is_large_with_its_span_highlighted(page, server):
    """A canned answer (the reader decides when an answer is short) over a real document's offsets."""
    doc = page.request.get(f"{server}documents/{SDC_DOC}").json()
    text = doc["text"]
    span = "CHF 9’200’000"
    answer_start = text.index(f"Budget de la Suisse {span}") + len("Budget de la Suisse ")
    start = text.rfind("\n", 0, answer_start) + 1
    end = text.find("\n", answer_start) if "\n" in text[answer_start:] else len(text)
    quote_start = text.index("Budget de la Suisse", start)
    quote_end = answer_start + len(span)
    quote = text[quote_start:quote_end]
    citation = {
        "n": 1,
        "doc_id": SDC_DOC,
        "title": doc["title"],
        "publisher": doc["publisher"],
        "source": doc["source"],
        "text": text[start:end],
        "start": start,
        "end": end,
        "quote": quote,
        "quote_start": quote_start,
        "quote_end": quote_end,
        "score": 0.9,
        "answer_start": answer_start,
        "answer_end": answer_start + len(span),
    }
    done = {
        "answer": f"{span} [1]",
        "abstained": False,
        "mode": "extractive",
        "citations": [citation],
        "related": [],
        "timings_ms": {"total": 12},
        "warnings": [],
        "search_question": "What is Switzerland's budget?",
        "rewrite": "none",
    }
    body = sse(("delta", {"text": f"{span} [1]"}), ("done", done))
    page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=body))
    turn = ask(page, "What is Switzerland's budget?")
    article = turn.locator("article.msg-assistant")

    answer = article.locator(".answer-text")
    expect(answer).to_have_class("answer-text short-answer")
    expect(answer).to_contain_text(span)
    expect(answer.locator("button.cite")).to_have_count(1)
    size = float(answer.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px"))
    assert size >= 22, f"the short answer is not shown large ({size}px)"
    quoted = article.locator("blockquote.short-quote")
    expect(quoted).to_have_text(quote)
    expect(quoted.locator("mark.answer-mark")).to_have_text(span)
    expect(article.locator(".source-quote .answer-mark")).to_have_text(span)
    expect(article.locator(".searched")).to_have_count(0)

    answer.locator("button.cite").click()
    panel = page.locator("#panel")
    expect(panel.locator(".passage mark.quote-mark")).to_have_text(quote)
    expect(panel.locator(".passage .answer-mark")).to_have_text(span)
    panel.get_by_role("button", name="Read whole document").click()
    expect(panel.locator(".doc-text mark.quote-mark")).to_have_text(quote)
    expect(panel.locator(".doc-text .answer-mark")).to_have_text(span)
    expect(panel.locator(".doc-text .answer-mark")).to_be_in_viewport()
    assert_no_xss(page)


# ---------------------------------------------------------------------------- adding documents

UPLOAD_TEXT = """Pamir solar schools

In 2023 the Pamir Solar Schools initiative installed solar panels on 27 mountain schools in the Gorno-Badakhshan region
of Tajikistan, so that classrooms stay lit and heated during the long winter power cuts. Each school also received
a battery bank and two days of maintenance training for its caretaker.
"""
UPLOAD_QUESTION = "How many mountain schools did the Pamir Solar Schools initiative equip with solar panels?"
COUNT_UPLOAD_PROGRESS = """() => {
    window.__uploadProgress = 0;
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function (body) {
        this.upload.addEventListener("progress", () => { window.__uploadProgress += 1; });
        return send.call(this, body);
    };
}"""


def test_documents_tab_shows_skipped_files_warnings_and_drop_refusals(page):
    """The page's handling of GET /documents' skipped files and warnings (canned, hostile strings), and a dropped file
    the real server refuses."""
    listing = {
        "documents": [
            {
                "doc_id": "scan",
                "title": "Scanned <b>report</b>",
                "publisher": None,
                "date": None,
                "period": None,
                "language": ["en"],
                "description": None,
                "source": "scan.pdf",
                "chars": 120,
                "warnings": ["no text layer on 2 of 9 pages (scanned pages?): pages 4, 5", "<img src=x onerror=window.__xss=9>"],
                "uploaded": False,
            }
        ],
        "skipped": [
            {"source": "old/annual.pdf", "reason": "no text layer: scanned PDF? (run OCR on it first)"},
            {"source": "<script>window.__xss=8</script>.exe", "reason": "unsupported file type '.exe'"},
        ],
    }

    def documents(route):
        if route.request.method == "GET":
            route.fulfill(status=200, content_type="application/json", body=json.dumps(listing))
        else:
            route.continue_()

    page.route("**/documents", documents)
    page.get_by_role("tab", name="Documents").click()
    card = page.locator("#docs-list .doc-card")
    expect(card).to_have_count(1)
    expect(card.locator(".doc-warnings li")).to_have_count(2)
    expect(card.locator(".doc-warnings")).to_contain_text("no text layer on 2 of 9 pages")
    expect(card.locator(".doc-warnings")).to_contain_text("<img src=x onerror=window.__xss=9>")
    expect(card.locator(".doc-delete")).to_have_count(0)  # not an upload
    skipped = page.locator("#docs-skipped")
    expect(skipped).to_be_visible()
    expect(skipped.locator("li")).to_have_count(2)
    expect(skipped.locator("li").first).to_contain_text("old/annual.pdf")
    expect(skipped.locator("li").first).to_contain_text("scanned PDF?")
    expect(skipped).to_contain_text("<script>window.__xss=8</script>.exe")

    # Drag and drop: the real server refuses the type and the row says why.
    page.evaluate(
        """() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["MZ"], "setup.exe", {type: "application/octet-stream"}));
            const zone = document.querySelector("#upload-zone");
            zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }"""
    )
    row = page.locator("#upload-list .upload-item")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-state", "skipped")
    expect(row).to_contain_text("setup.exe")
    expect(row).to_contain_text("unsupported file type '.exe'")
    expect(page.locator("#upload-zone")).not_to_have_class(re.compile("dragging"))
    assert_no_xss(page)
    assert page.locator("#docs-skipped script, #docs-list img").count() == 0


def test_upload_from_the_documents_tab_then_ask_about_it_and_delete_it(page):
    page.get_by_role("tab", name="Documents").click()
    cards = page.locator("#docs-list .doc-card")
    expect(cards).to_have_count(6)
    expect(cards.locator(".doc-delete")).to_have_count(0)  # the corpus folder's documents cannot be deleted here
    page.evaluate(COUNT_UPLOAD_PROGRESS)

    page.locator("#upload-input").set_input_files(
        [
            {"name": "pamir-solar.txt", "mimeType": "text/plain", "buffer": UPLOAD_TEXT.encode()},
            {"name": "minutes.odt", "mimeType": "application/octet-stream", "buffer": b"PK\x03\x04 not supported"},
        ]
    )
    rows = page.locator("#upload-list .upload-item")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_have_attribute("data-state", "skipped")
    expect(rows.nth(1)).to_contain_text("unsupported file type '.odt'")
    expect(rows.nth(0)).to_have_attribute("data-state", "added", timeout=ANSWER_TIMEOUT_MS)
    assert page.evaluate("window.__uploadProgress") >= 2, "no upload progress events"
    expect(cards).to_have_count(7)
    card = cards.filter(has_text="Pamir solar schools")
    expect(card).to_have_class(re.compile(r"\bdoc-new\b"))
    expect(card.locator(".doc-source")).to_have_text("uploads/pamir-solar.txt")

    page.get_by_role("tab", name="Chat").click()
    turn = ask(page, UPLOAD_QUESTION)
    cited = turn.locator("article.msg-assistant .answer-text button.cite")
    labels = [cited.nth(i).get_attribute("aria-label") or "" for i in range(cited.count())]
    assert any("Pamir solar schools" in label for label in labels), f"the answer does not cite the upload: {labels}"
    expect(turn.locator(".answer-text")).to_contain_text("27")

    page.get_by_role("tab", name="Documents").click()
    card.get_by_role("button", name="Delete Pamir solar schools").click()
    card.get_by_role("button", name="Cancel").click()
    expect(cards).to_have_count(7)
    card.get_by_role("button", name="Delete Pamir solar schools").click()
    card.get_by_role("button", name="Yes, delete").click()
    expect(cards).to_have_count(6, timeout=ANSWER_TIMEOUT_MS)
    expect(cards.filter(has_text="Pamir solar schools")).to_have_count(0)
    assert page.request.get(page.url.split("#")[0] + "documents/uploads/pamir-solar").status == 404


# ---------------------------------------------------------------------------- languages


def _labels(page):
    return {
        "chat": page.locator("#tab-chat").inner_text(),
        "docs": page.locator("#tab-docs").inner_text(),
        "new": page.locator("#new-chat").inner_text().strip(),
        "placeholder": page.locator("#question").get_attribute("placeholder"),
        "send": page.locator("#send").get_attribute("aria-label"),
        "example": page.locator(".example").first.inner_text(),
        "lang": page.evaluate("document.documentElement.lang"),
    }


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "fr-FR",
            {
                "chat": "Discussion",
                "new": "Nouvelle discussion",
                "placeholder": "Posez une question sur les documents…",
                "send": "Envoyer la question",
                "lang": "fr",
            },
        ),
        ("ru-RU", {"chat": "Чат", "docs": "Документы", "new": "Новый чат", "placeholder": "Задайте вопрос о документах…", "lang": "ru"}),
        ("de-DE", {"chat": "Chat", "new": "New chat", "lang": "en"}),
    ],
)
def test_the_page_speaks_the_browsers_language(browser, server, locale, expected):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 820}, locale=locale)
    try:
        labels = _labels(page)
        assert {k: labels[k] for k in expected} == expected, labels
        pressed = page.locator(".lang-btn[aria-pressed=true]")
        expect(pressed).to_have_count(1)
        expect(pressed).to_have_text(expected["lang"].upper())
        assert not errors, errors
    finally:
        context.close()


def test_the_language_switch_changes_and_remembers_the_language(browser, server):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 820}, locale="en-US")
    try:
        assert _labels(page)["chat"] == "Chat"
        page.get_by_role("button", name="RU", exact=True).click()
        expect(page.locator("#tab-chat")).to_have_text("Чат")
        expect(page.locator("#question")).to_have_attribute("placeholder", "Задайте вопрос о документах…")
        page.get_by_role("button", name="FR", exact=True).click()
        expect(page.locator("#tab-chat")).to_have_text("Discussion")
        expect(page.locator(".empty-state h2")).to_contain_text("Tadjikistan")
        page.reload()
        expect(page.locator("#question")).to_be_visible()
        expect(page.locator("#tab-chat")).to_have_text("Discussion")  # remembered
        assert page.evaluate("localStorage.getItem('assistant.language')") == "fr"
        page.get_by_role("tab", name="Documents").click()
        expect(page.locator("#docs-status")).to_contain_text("documents dans la collection")
        page.get_by_role("button", name="EN", exact=True).click()
        expect(page.locator("#docs-status")).to_contain_text("documents in the collection")
        assert not errors, errors
    finally:
        context.close()


def test_the_answer_area_follows_the_questions_language(browser, server):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 820}, locale="en-US")
    try:
        done = {
            "answer": "The documents do not answer this.",
            "abstained": True,
            "mode": "extractive",
            "citations": [],
            "related": [],
            "timings_ms": {},
            "warnings": [],
            "search_question": None,
            "rewrite": "none",
        }
        page.route("**/ask/stream", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=sse(("done", done))))
        turn = ask(page, "Quelle est la population de Douchanbé en 2030 ?")
        expect(turn.locator(".abstain-title")).to_have_text("Les documents ne le disent pas.")
        expect(turn.locator(".copy-btn")).to_have_text("Copier")
        turn = ask(page, "Каково население Душанбе в 2030 году?")
        expect(turn.locator(".abstain-title")).to_have_text("В документах об этом не сказано.")
        turn = ask(page, "What is the population of Dushanbe in 2030?")
        expect(turn.locator(".abstain-title")).to_have_text("The documents don't answer this.")
        expect(page.locator("#tab-chat")).to_have_text("Chat")  # the page itself keeps its language
        assert not errors, errors
    finally:
        context.close()


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


@pytest.mark.parametrize("locale", ["en-US", "fr-FR", "ru-RU"])
@pytest.mark.parametrize(("width", "height"), [(375, 740), (1280, 800)])
def test_the_header_keeps_its_controls_on_one_row_in_every_language(browser, server, locale, width, height):
    context, page, errors = _open_page(browser, server, viewport={"width": width, "height": height}, locale=locale)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing sticks out sideways
        tabs, new, key, lang = (_box(page, s) for s in (".tabs", "#new-chat", "#key-menu > summary", ".lang-switch"))
        header = _box(page, ".topbar")
        middles = [b["y"] + b["height"] / 2 for b in (tabs, new, key)]
        assert max(middles) - min(middles) < 6, (tabs, new, key)  # the views, New chat and Key share a row
        for b in (tabs, new, key, lang):
            assert b["x"] >= 0 and b["x"] + b["width"] <= width and b["y"] + b["height"] <= header["y"] + header["height"]
        if width >= 1280:
            assert abs((lang["y"] + lang["height"] / 2) - middles[0]) < 6  # one header row on a desktop
            assert header["height"] < 80, header
        else:
            assert header["height"] < 150, header
        composer = _box(page, "#ask-form")
        assert composer["y"] >= header["y"] + header["height"]  # the question box covers none of the header
        assert not errors, errors
    finally:
        context.close()


def test_an_upload_whose_indexing_failed_says_so_instead_of_waiting(page):
    """The server saved the file but its indexing failed (health "degraded", the file in "failed"):
    the row says why and that the server retries, at once, not after the page's wait runs out."""
    queued = {"files": [{"status": "queued", "doc_id": "uploads/late-report", "file": "late-report.txt"}]}
    degraded = {"status": "degraded", "building": None, "error": None, "llm": None,
                "failed": [{"file": "late-report.txt", "doc_id": "uploads/late-report", "error": "No space left on device",
                            "attempts": 1, "retry_in_s": 4}]}  # fmt: skip

    def documents(route):
        if route.request.method == "POST":
            route.fulfill(status=202, content_type="application/json", body=json.dumps(queued))
        else:
            route.continue_()

    page.route("**/documents", documents)
    page.route("**/health", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(degraded)))
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload-input").set_input_files([{"name": "late-report.txt", "mimeType": "text/plain", "buffer": b"A late report."}])
    row = page.locator("#upload-list .upload-item")
    expect(row).to_have_attribute("data-state", "failed", timeout=10_000)
    expect(row).to_contain_text("No space left on device")
    expect(row).to_contain_text("retries")


PDF_QUESTION = "What does SQLite compete with, according to the page on appropriate uses for SQLite?"


def test_a_pdf_citation_shows_its_page_with_the_quote_highlighted(page):
    """A real PDF (tests/data/ingest/sqlite-whentouse.pdf) uploaded from the page, asked about, and its
    citation's "Show page" button: the server's rendering of that page is shown with its description."""
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload-input").set_input_files(str(ROOT / "tests" / "data" / "ingest" / "sqlite-whentouse.pdf"))
    expect(page.locator("#upload-list .upload-item").first).to_have_attribute("data-state", "added", timeout=ANSWER_TIMEOUT_MS)
    try:
        page.get_by_role("tab", name="Chat").click()
        turn = ask(page, PDF_QUESTION)
        cited = turn.locator("article.msg-assistant .answer-text button.cite")
        labels = [cited.nth(i).get_attribute("aria-label") or "" for i in range(cited.count())]
        index = next((i for i, label in enumerate(labels) if "SQLite" in label), None)
        assert index is not None, f"the answer does not cite the PDF: {labels}"
        cited.nth(index).click()
        panel = page.locator("#panel")
        expect(panel).to_be_visible()
        show = panel.locator("button.show-page")
        expect(show).to_have_count(1)
        number = int(re.search(r"\d+", show.inner_text()).group())
        expect(show).to_have_text(f"Show page {number}")
        expect(show).to_have_attribute("aria-expanded", "false")
        show.click()
        image = panel.locator("figure.page-view img.page-image")
        expect(image).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        expect(show).to_have_attribute("aria-expanded", "true")
        expect(image).to_have_attribute("alt", re.compile(rf"^Page {number} of .*SQLite.*the cited words highlighted$"))
        size = image.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
        assert size[0] >= 500 and size[1] > size[0], f"not a rendered portrait page: {size}"
        assert image.get_attribute("src").startswith("data:image/png;base64,")
        show.click()  # hides it again without another fetch
        expect(image).to_be_hidden()
        expect(show).to_have_attribute("aria-expanded", "false")
    finally:
        page.keyboard.press("Escape")
        page.get_by_role("tab", name="Documents").click()
        card = page.locator("#docs-list .doc-card").filter(has_text="SQLite")
        card.get_by_role("button", name=re.compile("^Delete")).click()
        card.get_by_role("button", name="Yes, delete").click()
        expect(page.locator("#docs-list .doc-card")).to_have_count(6, timeout=ANSWER_TIMEOUT_MS)
