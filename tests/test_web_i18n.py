"""The chat page's message catalogues (web/i18n/*.js): the same keys in every language, none
empty, and every key the page uses present."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "web"
LANGUAGES = ("en", "fr", "ru")


def page_scripts() -> dict[str, str]:
    """The page's own code: the entry module app.js and every module in js/ (not the catalogues)."""
    paths = [WEB / "app.js", *sorted((WEB / "js").glob("*.js"))]
    assert len(paths) > 5, paths  # the modules are there to be scanned
    return {path.relative_to(WEB).as_posix(): path.read_text(encoding="utf-8") for path in paths}


def catalogue(lang: str) -> dict[str, str]:
    text = (WEB / "i18n" / f"{lang}.js").read_text(encoding="utf-8")
    assert f"window.ASSISTANT_I18N.{lang} = {{" in text
    return json.loads(text[text.index("= {") + 2 : text.rindex("}") + 1])


def test_every_key_is_in_all_three_catalogues_and_none_is_empty():
    catalogues = {lang: catalogue(lang) for lang in LANGUAGES}
    keys = set(catalogues["en"])
    assert len(keys) > 100
    for lang, messages in catalogues.items():
        assert set(messages) == keys, (lang, sorted(set(messages) ^ keys))
        empty = [k for k, v in messages.items() if not isinstance(v, str) or not v.strip()]
        assert not empty, (lang, empty)
        for key, value in messages.items():  # the same {placeholders} as the English message
            assert set(re.findall(r"\{(\w+)\}", value)) == set(re.findall(r"\{(\w+)\}", catalogues["en"][key])), (lang, key)


@pytest.mark.parametrize("lang", ["fr", "ru"])
def test_translations_are_translated(lang: str):
    en, other = catalogue("en"), catalogue(lang)
    same = [k for k in en if en[k] == other[k] and re.search(r"[a-z]{4}", en[k])]
    # Words that are the same in French (Documents, Sources, Options, …) are allowed; not more.
    assert len(same) <= 12, same
    if lang == "ru":
        assert all(re.search(r"[\u0400-\u04ff]", v) or not re.search(r"[a-z]{3}", v) for v in other.values() if "{" not in v[:1]), [
            v for v in other.values() if not re.search(r"[\u0400-\u04ff]", v) and re.search(r"[a-z]{3}", v)
        ]


def test_every_key_the_page_uses_is_in_the_catalogue():
    en = catalogue("en")
    page = "".join(page_scripts().values()) + (WEB / "index.html").read_text(encoding="utf-8")
    used = set(re.findall(r'\bt\("([\w.]+)"', page)) | set(re.findall(r'data-i18n(?:-[\w-]+)?="([\w.]+)"', page))
    assert used and not used - set(en), sorted(used - set(en))


def test_the_page_has_no_english_sentences_outside_the_catalogues():
    """User-facing text lives in the catalogues: no module of the page has English sentence literals."""
    found = {}
    for name, source in page_scripts().items():
        # Comments out; a full-line // comment ends at its line ([^\n], not "." under re.S).
        code = re.sub(r"/\*.*?\*/|^\s*//[^\n]*$", "", source, flags=re.S | re.M)
        sentences = re.findall(r"""["`]([A-Z][a-z]+(?: [a-z’']+){2,}[^"`]*)["`]""", code)
        if sentences:
            found[name] = sentences
    assert not found, found
