"""The chat page checked for accessibility in a real browser: axe-core on every view, keyboard-only use, and the
layout at phone and desktop sizes.

axe-core (axe.min.js, MPL-2.0) comes inside the ``axe-playwright-python`` wheel of the ``test`` extra, so nothing is
downloaded at run time. It is injected with ``page.evaluate`` (the page's Content-Security-Policy allows no inline
script) and must find no "critical", "serious" or "moderate" violation on: the empty chat, an answered question with
a citation open, an abstention and the Documents tab, in English, French and Russian, at 1280x800 and 375x740.

Uses the server, browser and helpers of tests/test_web.py (same Chromium, same temporary corpus).
"""

# ruff: noqa: F811  (the fixtures imported from tests/test_web.py are test arguments here)
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.test_web import (  # noqa: F401  (server, web_corpus and browser are fixtures used here)
    ABSTAIN_QUESTION,
    ANSWER_TIMEOUT_MS,
    FINANCE_QUESTION,
    _open_page,
    ask,
    browser,
    expect,
    server,
    turns,
    web_corpus,
)

pytestmark = pytest.mark.slow


def _axe_source() -> str:
    spec = importlib.util.find_spec("axe_playwright_python")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("axe-core is missing: pip install -e '.[test]' (axe-playwright-python ships axe.min.js)")
    return (Path(next(iter(spec.submodule_search_locations))) / "axe.min.js").read_text(encoding="utf-8")


AXE = _axe_source()
SIZES = [(1280, 800), (375, 740)]
LOCALES = ["en-US", "fr-FR", "ru-RU"]


def _context_args(width: int, height: int, locale: str) -> dict:
    args: dict = {"viewport": {"width": width, "height": height}, "locale": locale}
    if width < 600:
        args.update(device_scale_factor=2, is_mobile=True, has_touch=True)
    return args


def axe_violations(page, *, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core on the page as it is now; the violations of the given impacts, each with its nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)
    result = page.evaluate(
        """async () => {
            // Colours are checked as they settle, not half-way through a transition (the Send button's fade).
            const running = document.getAnimations().filter(a => a.effect?.getComputedTiming().endTime !== Infinity);
            await Promise.all(running.map(a => a.finished.catch(() => null)));
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary}))}));
        }"""
    )
    return [v for v in result if v["impact"] in impacts]


def assert_accessible(page, view: str):
    # serious and critical, as asked; moderate too, since the page has none left (heading order was the last one)
    found = axe_violations(page, impacts=("moderate", "serious", "critical"))
    report = "\n".join(
        f"{v['impact']} {v['id']} ({v['help']}): " + "; ".join(f"{n['target']} -> {n['summary']}" for n in v["nodes"][:6]) for v in found
    )
    assert not found, f"axe-core found violations on {view}:\n{report}"


# ---------------------------------------------------------------------------- axe-core on every view


def test_axe_finds_what_it_should(browser, server):
    """The check itself works: a control with no name and grey-on-white text are reported."""
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 800})
    try:
        assert_accessible(page, "the empty chat (before breaking it)")
        page.evaluate(
            """() => {
                document.querySelector('#send').removeAttribute('aria-label');
                document.querySelector('#send .send-label').textContent = '';
                const p = document.createElement('p');
                p.textContent = 'faint text'; p.style.color = '#ddd'; p.style.background = '#fff';
                document.querySelector('#empty-state').append(p);
            }"""
        )
        ids = {v["id"] for v in axe_violations(page)}
        assert {"button-name", "color-contrast"} <= ids, ids
    finally:
        context.close()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_view_has_no_serious_accessibility_violation(browser, server, locale, width, height):
    context, page, errors = _open_page(browser, server, **_context_args(width, height, locale))
    where = f"{locale} {width}x{height}"
    try:
        assert_accessible(page, f"the empty chat, {where}")

        turn = ask(page, FINANCE_QUESTION)
        cite = turn.locator("article.msg-assistant .answer-text button.cite").first
        cite.click()
        expect(page.locator("#panel")).to_be_visible()
        expect(page.locator("#panel .passage mark")).not_to_have_count(0)
        page.wait_for_timeout(250)  # the panel's opening transition
        assert_accessible(page, f"an answer with a citation open, {where}")
        page.keyboard.press("Escape")
        expect(page.locator("#panel")).to_be_hidden()

        turn = ask(page, ABSTAIN_QUESTION)
        expect(turn.locator(".abstain-note")).to_be_visible()
        assert_accessible(page, f"an abstention, {where}")

        page.locator("#tab-docs").click()
        expect(page.locator("#docs-list .doc-card")).not_to_have_count(0)
        assert_accessible(page, f"the Documents tab, {where}")
        assert not errors, errors
    finally:
        context.close()


# ---------------------------------------------------------------------------- keyboard only


def _focused(page) -> dict:
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            // The ring is on the control itself, or (a text box drawn without a border of its own) on the
            // box around it that shows :focus-within, at most two levels up.
            let ringed = el, s = getComputedStyle(el);
            for (let up = el.parentElement, i = 0; s.outlineStyle === 'none' && up && i < 2; up = up.parentElement, i++) {
                const us = getComputedStyle(up);
                if (up.matches(':focus-within') && us.outlineStyle !== 'none') { ringed = up; s = us; }
            }
            return {id: el.id, cls: el.className && String(el.className), tag: el.tagName.toLowerCase(),
                    text: (el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 80),
                    ring: ringed === el ? 'self' : (ringed.className || ringed.tagName),
                    outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
                    visible: el.matches(':focus-visible')};
        }"""
    )


def _assert_focus_visible(page):
    f = _focused(page)
    assert f["visible"], f"{f} is focused but not :focus-visible"
    # an outline, not a box-shadow: a selected tab or a card has a shadow whether it is focused or not
    assert f["outline"] != "none" and f["outlineWidth"] >= 2, f"no visible focus ring: {f}"
    return f


def _tab_to(page, matches, *, limit: int = 40, back: bool = False) -> dict:
    """Press Tab (or Shift+Tab) until the focused element satisfies ``matches``; each stop shows a focus ring."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        f = _focused(page)
        seen.append(f["id"] or f["text"] or f["tag"])
        if f["tag"] != "body":
            _assert_focus_visible(page)
        if matches(f):
            return f
    raise AssertionError(f"never reached the control with the keyboard; focus went through {seen}")


def test_keyboard_only_question_citation_tabs_and_upload(browser, server):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 800}, locale="en-US")
    try:
        live = page.locator("[aria-live]")
        assert live.count() >= 1

        # From the top of the page: the skip link leads to the question box.
        f = _tab_to(page, lambda f: "skip-link" in (f["cls"] or ""))
        page.keyboard.press("Enter")
        expect(page.locator("#question")).to_be_focused()
        page.keyboard.type(FINANCE_QUESTION)
        page.keyboard.press("Enter")
        turn = turns(page).first
        article = turn.locator("article.msg-assistant")
        expect(article).to_have_attribute("aria-busy", "false", timeout=ANSWER_TIMEOUT_MS)
        answer = " ".join(article.locator(".answer-text").evaluate("el => el.textContent").split())
        assert len(answer) > 40, answer
        # The answer is announced: a polite live region holds its text (not only "Answer ready").
        page.wait_for_function(
            """(answer) => [...document.querySelectorAll('[aria-live]')]
                .filter(r => r.getAttribute('aria-live') !== 'off' && !r.closest('[aria-hidden=true]'))
                .some(r => r.textContent.replace(/\\s+/g, ' ').includes(answer))""",
            arg=answer[:200],
            timeout=3000,
        )

        # Back from the question box (Shift+Tab) to the first citation in the answer, open it with Enter.
        f = _tab_to(page, lambda f: "cite" in (f["cls"] or "").split(), back=True)
        cite_label = f["text"]
        page.keyboard.press("Enter")
        panel = page.locator("#panel")
        expect(panel).to_be_visible()
        expect(panel.locator(".passage mark")).not_to_have_count(0)
        assert page.evaluate("document.querySelector('#panel').contains(document.activeElement)"), _focused(page)
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        assert _focused(page)["text"] == cite_label, "focus did not return to the citation"

        # To the Documents tab and into it.
        _tab_to(page, lambda f: f["id"] in ("tab-chat", "tab-docs"), back=True)
        if _focused(page)["id"] == "tab-chat":
            page.keyboard.press("ArrowRight")
        expect(page.locator("#tab-docs")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#tab-docs")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#view-docs")).to_be_visible()
        _tab_to(page, lambda f: f["id"] == "upload-btn")
        # Enter on "Add documents" opens the file picker: the hidden file input receives the click. (Chromium's
        # file-chooser event is not used: headless Chromium now and then drops it after the click.)
        page.evaluate("window.__picker = 0; document.querySelector('#upload-input').addEventListener('click', () => window.__picker++)")
        page.keyboard.press("Enter")
        page.wait_for_function("window.__picker === 1", timeout=3000)
        assert page.locator("#upload-input").get_attribute("multiple") is not None
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("selector", ["#question", "#tab-chat", ".example", "#send", ".lang-btn", "#new-chat"])
def test_focused_controls_show_a_focus_ring(browser, server, selector):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 800})
    try:
        page.locator("body").click(position={"x": 5, "y": 300})
        page.locator(selector).first.focus()
        page.keyboard.press("Shift")  # focus() then a key: the browser treats it as keyboard focus
        f = _focused(page)
        assert f["visible"] and f["outline"] != "none" and f["outlineWidth"] >= 2, f
    finally:
        context.close()


# ---------------------------------------------------------------------------- layout


def _box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def _intersect(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


@pytest.mark.parametrize("locale", LOCALES)
def test_on_a_phone_the_question_box_leaves_the_examples_free(browser, server, locale):
    context, page, errors = _open_page(browser, server, **_context_args(375, 740, locale))
    try:
        composer = _box(page, "#ask-form")
        examples = page.locator(".example")
        assert examples.count() == 3
        for i in range(examples.count()):
            example = examples.nth(i)
            example.scroll_into_view_if_needed()
            box, composer = example.bounding_box(), _box(page, "#ask-form")
            assert not _intersect(box, composer), (i, box, composer)
            # and it is the example, not the question box, that receives a tap on its middle
            hit = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y)?.closest('.example') !== null",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
            )
            assert hit, (i, box)
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("locale", LOCALES)
def test_opening_a_citation_does_not_move_the_header_on_a_desktop(browser, server, locale):
    context, page, errors = _open_page(browser, server, viewport={"width": 1280, "height": 800}, locale=locale)
    try:
        turn = ask(page, FINANCE_QUESTION)
        selectors = (".topbar", ".brand", ".tabs", "#new-chat", ".lang-switch")
        before = {s: _box(page, s) for s in selectors}
        turn.locator("article.msg-assistant .answer-text button.cite").first.click()
        expect(page.locator("#panel")).to_be_visible()
        page.wait_for_timeout(400)  # past any transition
        after = {s: _box(page, s) for s in selectors}
        assert after == before, {s: (before[s], after[s]) for s in selectors if before[s] != after[s]}
        page.keyboard.press("Escape")
        expect(page.locator("#panel")).to_be_hidden()
        assert {s: _box(page, s) for s in selectors} == before
        assert not errors, errors
    finally:
        context.close()
