"""HTML: the main content of a page (menus, footers and link lists left out), its title and declared
date, author and language; ``html_render`` lays the content out as paragraphs."""

from __future__ import annotations

import codecs
import logging
import re
import sys
import threading

from assistant.ingest.html_render import HtmlNode, render, text_len
from assistant.ingest.text import Deadline, Extracted, Limits, ReaderMeta, UnreadableFile, _bom_encoding, _Lazy, decode_text

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- HTML

_DECLARED = _Lazy(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.I)


def decode_html(raw: bytes) -> tuple[str, list[str]]:
    """HTML bytes to text: a BOM wins, then the charset the page declares, then :func:`decode_text`.

    >>> decode_html(b'<meta charset="windows-1251"><p>\\xcf\\xf0\\xe8\\xe2\\xe5\\xf2')[0][-6:]
    'Привет'
    """
    if _bom_encoding(raw):
        return decode_text(raw)
    match = _DECLARED.search(raw[:4096])
    if match:
        name = (match.group(1) or match.group(2)).decode("ascii").lower()
        name = "cp1252" if name in {"iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"} else name  # as browsers do
        try:
            return raw.decode(codecs.lookup(name).name), []
        except (LookupError, UnicodeDecodeError):
            log.info("declared charset %s does not fit; guessing", name)
    return decode_text(raw)


_DROP_TAGS = {
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed", "canvas", "video", "audio",
    "button", "input", "select", "option", "textarea", "nav", "aside", "footer", "head", "link", "meta", "map", "dialog",
}  # fmt: skip
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary", "menu", "menubar", "toolbar", "dialog"}
_BOILERPLATE_CLASS = _Lazy(
    r"^(nav|navbar|navigation|nav-?panel|navheader|navfooter|menu|main-?menu|sub-?menu|menubar|breadcrumbs?|sidebar|"
    r"sphinxsidebar|side-?nav|related|footer|site-?footer|page-?footer|header|site-?header|masthead|skip-?link|cookies?|"
    r"cookie-?banner|share|social|social-?links|pagination|pager|tagline|slogan|logo|skip-?to-?content)$",
    re.I,
)
_PERMALINK = {"¶", "#", "§", "🔗"}
_LINK_DENSE_TAGS = {"ul", "ol", "menu", "table", "div", "p", "section", "dl", "td", "tr", "center"}
_SPACES = _Lazy(r"\s+")


def html_text(raw: bytes, deadline: Deadline | None = None) -> Extracted:
    """Main content of an HTML page as paragraphs; the page title kept apart. Past ``deadline``, refused."""

    deadline = deadline or Limits().deadline()
    text, warnings = decode_html(raw)
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    if not text.strip():
        return Extracted("", None, warnings)
    root = _parse(text)
    deadline.check("parsing the HTML")
    _allow_depth(root)
    title = _html_title(root)
    meta = _html_meta(root)
    visible = _visible_chars(root)
    _prune(root)
    deadline.check("finding the main content")
    blocks = render(_main_content(root), deadline)
    kept = sum(len(_SPACES.sub("", b)) for b in blocks)
    if visible >= MIN_GUARDED_CHARS and kept < 0.5 * visible:
        # The main-content rules dropped most of what a reader sees: keep the whole page rather than lose it.
        whole = _parse(text)
        for elem in [e for e in whole.iter() if isinstance(e.tag, str) and _invisible(e)]:
            if elem.getparent() is not None:
                elem.drop_tree()
        body = whole.find("body")
        blocks = render(body if body is not None else whole, deadline)
        warning = (
            f"the main-content extraction kept only {kept:,} of the page's {visible:,} visible characters, so the whole page"
            " was indexed (menus and footers included)"
        )
        log.warning(warning)
        warnings.append(warning)
    return Extracted("\n\n".join(blocks) + "\n", title, warnings, meta)


_DATE_META = (
    "citation_publication_date", "dc.date", "dc.date.issued", "dcterms.date", "dcterms.created", "dcterms.issued",
    "article:published_time", "og:published_time", "date", "pubdate", "publication_date", "created", "article:modified_time",
)  # fmt: skip


def _html_meta(root: HtmlNode) -> ReaderMeta:
    """The page's declared date, author and language, and its first ``<h1>``."""
    found: dict[str, str] = {}
    for elem in root.iter("meta"):
        name = (elem.get("name") or elem.get("property") or elem.get("itemprop") or "").strip().lower()
        content = (elem.get("content") or "").strip()
        if name and content:
            found.setdefault(name, content)
    times = [t.get("datetime") for t in root.iter("time") if t.get("datetime")]
    created = next((found[name] for name in _DATE_META if name in found), None) or (times[0] if times else None)
    heading = root.xpath("//h1")
    return {
        "created": created,
        "author": found.get("author") or found.get("dc.creator"),
        "creator": found.get("generator"),
        "language": (root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang") or "").split("-")[0].lower() or None,
        "heading": _SPACES.sub(" ", heading[0].text_content()).strip() or None if heading else None,
    }


MIN_GUARDED_CHARS = 400  # pages with less visible text than this are not second-guessed
_INVISIBLE_TAGS = {"script", "style", "noscript", "template", "head", "link", "meta", "svg", "math", "iframe", "object", "embed", "map"}


def _parse(text: str) -> HtmlNode:
    """The whole tree: ``huge_tree`` lifts libxml2's limits on depth (256) and on text runs (10 MB), which would
    otherwise cut the document silently; what is still beyond them (nesting over 2,048 deep) is refused."""
    import lxml.html

    parser = lxml.html.HTMLParser(huge_tree=True)
    try:
        root: HtmlNode = lxml.html.document_fromstring(text, parser=parser)
    except Exception as exc:  # noqa: BLE001 - lxml raises several types for hopeless markup
        raise UnreadableFile(f"broken HTML ({exc.__class__.__name__}: {exc})") from exc
    for entry in parser.error_log:
        if entry.type_name == "ERR_RESOURCE_LIMIT" or "Excessive depth" in entry.message:
            depth = re.search(r"depth in document: (\d+)", entry.message)
            limit = f"more than {int(depth.group(1)) - 1:,} elements deep" if depth else "beyond the HTML parser's limits"
            raise UnreadableFile(f"HTML nested {limit}: the parser cannot read it whole, so it is refused rather than cut", kind="limit")
    return root


_DEPTH_LOCK = threading.Lock()


def _allow_depth(root: HtmlNode) -> None:
    """Let the renderer's recursion follow the tree's depth (at most the parser's 2,048 levels)."""
    depth = max((sum(1 for _ in e.iterancestors()) for e in root.iter("div", "section", "span", "li", "td", "table")), default=0)
    if depth <= 150:
        return
    need = 4 * depth + 1000
    with _DEPTH_LOCK:  # only ever raised, so a thread never finds it lowered under it
        if sys.getrecursionlimit() < need:
            sys.setrecursionlimit(need)


def _invisible(elem: HtmlNode) -> bool:
    return elem.tag in _INVISIBLE_TAGS or elem.get("hidden") is not None or "display:none" in (elem.get("style") or "").replace(" ", "")


def _visible_chars(root: HtmlNode) -> int:
    """Characters (not spaces) a browser would show in the body: all of it but scripts, styles and hidden elements."""
    body = root.find("body")
    body = body if body is not None else root
    total = text_len(body)
    hidden = [e for e in body.iter() if isinstance(e.tag, str) and _invisible(e)]
    marked = set(hidden)
    outer = [e for e in hidden if not any(a in marked for a in e.iterancestors())]
    return max(0, total - sum(text_len(e) for e in outer))


def _html_title(root: HtmlNode) -> str | None:
    for xpath in ("//title", "//h1"):
        found = root.xpath(xpath)
        if found:
            title = _SPACES.sub(" ", found[0].text_content()).strip()
            if title:
                return title
    return None


def _is_boilerplate(elem: HtmlNode) -> bool:
    if elem.tag in _DROP_TAGS or (elem.get("role") or "").lower() in _BOILERPLATE_ROLES:
        return True
    if elem.tag == "header" and not any(a.tag in {"article", "main", "section"} for a in elem.iterancestors()):
        return True
    if elem.get("hidden") is not None or elem.get("aria-hidden") == "true":
        return True
    tokens = (elem.get("class") or "").split() + (elem.get("id") or "").split()
    if any(_BOILERPLATE_CLASS.match(t) for t in tokens):
        return True
    return elem.tag == "a" and _SPACES.sub("", elem.text_content()) in _PERMALINK


def _prune(root: HtmlNode) -> None:
    """Remove scripts, navigation, menus, footers, permalink anchors and link-dense blocks."""
    doomed = [e for e in root.iter() if isinstance(e.tag, str) and e.tag not in {"html", "body"} and _is_boilerplate(e)]
    for elem in doomed:
        if elem.getparent() is not None:
            elem.drop_tree()  # keeps the tail text
    _prune_link_dense(root)


def _prune_link_dense(elem: HtmlNode) -> None:
    """Drop menus: blocks with at least three links whose text is nearly all link text (top-down)."""
    for child in list(elem):
        if not isinstance(child.tag, str):
            continue
        if child.tag in _LINK_DENSE_TAGS:
            links = child.xpath(".//a[@href]")
            if len(links) >= 3:
                total = text_len(child)
                linked = sum(text_len(a) for a in links)
                if total and linked / total > 0.75:
                    child.drop_tree()
                    continue
        _prune_link_dense(child)


def _main_content(root: HtmlNode) -> HtmlNode:
    """The ``<main>`` (or role=main, or the only ``<article>``) element when there is one, else ``<body>``."""
    for xpath in ("//main", "//*[@role='main']", "//article"):
        found = root.xpath(xpath)
        if len(found) == 1 and text_len(found[0]) >= 200:
            return found[0]
    body = root.find("body")
    return body if body is not None else root
