"""The cleaned HTML tree laid out as paragraphs: blocks one paragraph each, lists one line per item,
definition lists as "term — definition", data tables as rows of " | "-joined cells."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

from assistant.ingest.text import Deadline, _Lazy

_SPACES = _Lazy(r"\s+")


class HtmlNode(Protocol):
    """The part of an lxml ``HtmlElement`` the HTML reader uses (lxml ships no type information)."""

    @property
    def tag(self) -> object: ...  # the tag name; a function for comments and processing instructions

    text: str | None
    tail: str | None

    def get(self, key: str) -> str | None: ...

    def __iter__(self) -> Iterator[HtmlNode]: ...

    def iter(self, *tags: str) -> Iterator[HtmlNode]: ...

    def iterancestors(self) -> Iterator[HtmlNode]: ...

    def find(self, path: str) -> HtmlNode | None: ...

    def xpath(self, path: str) -> list[HtmlNode]: ...

    def text_content(self) -> str: ...

    def getparent(self) -> HtmlNode | None: ...

    def drop_tree(self) -> None: ...


_BLOCK_TAGS = {
    "address", "article", "blockquote", "body", "center", "dd", "details", "div", "dl", "dt", "fieldset", "figcaption",
    "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "ol", "p", "pre",
    "section", "summary", "table", "ul", "caption", "legend", "menu", "tr", "td", "th", "tbody", "thead", "tfoot", "html",
}  # fmt: skip


def render(elem: HtmlNode, deadline: Deadline) -> list[str]:
    renderer = _HtmlRenderer(deadline)
    renderer.block(elem)
    return renderer.blocks


def text_len(elem: HtmlNode) -> int:
    return len(_SPACES.sub("", elem.text_content()))


class _HtmlRenderer:
    """Walks the cleaned tree into paragraphs: one line each, lists and tables one line per item or row."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        """Turn the pending inline text into a paragraph (``<br>`` kept as a line break)."""
        lines = [_SPACES.sub(" ", line).strip() for line in "".join(self.inline).split("\n")]
        self.inline = []
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)

    def text(self, value: str | None) -> None:
        if value:
            self.inline.append(value.replace("\n", " "))

    def block(self, elem: HtmlNode) -> None:
        """Render a block element's children."""
        self.deadline.check("laying out the text")
        self.text(elem.text)
        for child in elem:
            self.node(child)
            self.text(child.tail)
        self.flush()

    def node(self, elem: HtmlNode) -> None:
        tag = elem.tag if isinstance(elem.tag, str) else ""
        if not tag:
            return
        if tag == "br":
            self.inline.append("\n")
        elif tag in {"ul", "ol", "menu"}:
            self.flush()
            self.blocks.extend(self.list_blocks(elem))
        elif tag == "dl":
            self.flush()
            self.blocks.extend(self.definition_blocks(elem))
        elif tag == "table":
            self.flush()
            self.blocks.extend(self.table_blocks(elem))
        elif tag == "pre":
            self.flush()
            self.blocks.extend(_pre_blocks(elem))
        elif tag == "hr":
            self.flush()
        elif tag in _BLOCK_TAGS:
            self.flush()
            self.block(elem)
        else:  # inline element
            if tag == "sup" and "".join(self.inline)[-1:].isdigit():
                self.inline.append("^")  # 2<sup>48</sup> is 2^48, not 248
            self.text(elem.text)
            for child in elem:
                self.node(child)
                self.text(child.tail)

    def sub_blocks(self, elem: HtmlNode) -> list[str]:
        """Render an element on its own and return its paragraphs."""
        sub = _HtmlRenderer(self.deadline)
        sub.block(elem)
        return sub.blocks

    def list_blocks(self, elem: HtmlNode) -> list[str]:
        """A list: one line per item ("- " or "1. "); an item with several paragraphs breaks the list into paragraphs."""
        items = [child for child in elem if isinstance(child.tag, str) and child.tag == "li"]
        if not items:
            return self.sub_blocks(elem)
        ordered = elem.tag == "ol"
        rendered = []
        for number, item in enumerate(items, 1):
            blocks = self.sub_blocks(item)
            if blocks:
                marker = f"{number}. " if ordered else "- "
                rendered.append([marker + blocks[0].replace("\n", " ")] + blocks[1:])
        if all(len(blocks) == 1 for blocks in rendered):
            return ["\n".join(blocks[0] for blocks in rendered)] if rendered else []
        return [block for blocks in rendered for block in blocks]

    def definition_blocks(self, elem: HtmlNode) -> list[str]:
        """A definition list: one paragraph per definition, "term — definition"."""
        out: list[str] = []
        terms: list[str] = []
        pending_term = False
        for child in _dl_children(elem):
            if child.tag == "dt":
                if not pending_term:
                    terms = []
                terms.extend(" ".join(self.sub_blocks(child)).split("\n"))
                pending_term = True
            else:
                blocks = self.sub_blocks(child)
                term = ", ".join(t for t in terms if t)
                if blocks and term:
                    out.append(f"{term} — {blocks[0]}")
                    out.extend(blocks[1:])
                elif blocks:
                    out.extend(blocks)
                elif term:
                    out.append(term)
                pending_term = False
        if pending_term and terms:
            out.append(", ".join(t for t in terms if t))
        return out

    def table_blocks(self, elem: HtmlNode) -> list[str]:
        """A data table as one paragraph, a row per line with cells joined by " | "; a layout table as its cells' blocks."""
        rows = _table_rows(elem)
        if _is_layout_table(elem, rows):
            return [block for row in rows for cell in row for block in self.sub_blocks(cell)]
        out = []
        caption = elem.find("caption")
        if caption is not None:
            out.extend(self.sub_blocks(caption))
        lines = []
        for row in rows:
            cells = [_cell_text(self.sub_blocks(cell)) for cell in row]
            while cells and not cells[-1]:
                cells.pop()
            if any(cells):
                lines.append(" | ".join(cells))
        if lines:
            out.append("\n".join(lines))
        return out


def _cell_text(blocks: list[str]) -> str:
    """A table cell on one line: short values split by ``<br>`` joined by commas, longer text by spaces.

    >>> _cell_text(["INT\\nINTEGER", "BIGINT"]), _cell_text(["A sentence broken by a line break\\nin the middle of it."])
    ('INT, INTEGER, BIGINT', 'A sentence broken by a line break in the middle of it.')
    >>> _cell_text(["Training:", "- 12 teachers\\n- 3 schools"])
    'Training: 12 teachers; 3 schools'

    """
    lines = [line for block in blocks for line in block.split("\n")]
    items = [re.sub(r"^(?:- |\d+\. )", "", line) for line in lines]
    if items != lines:  # a list in a cell
        return "; ".join(items).replace(":; ", ": ")
    out = lines[0] if lines else ""
    for prev, line in zip(lines, lines[1:], strict=False):
        values = len(prev.split()) <= 3 and len(line.split()) <= 3 and not line[:1].islower()
        out += (", " if values else " ") + line
    return out


def _dl_children(elem: HtmlNode) -> Iterator[HtmlNode]:
    """The dt/dd elements of a definition list, looking through HTML5's ``<div>`` wrappers."""
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        if child.tag in {"dt", "dd"}:
            yield child
        elif child.tag == "div":
            yield from _dl_children(child)


def _table_rows(table: HtmlNode) -> list[list[HtmlNode]]:
    rows = []
    for section in [table] + [c for c in table if c.tag in {"thead", "tbody", "tfoot"}]:
        for row in section:
            if row.tag == "tr":
                rows.append([cell for cell in row if cell.tag in {"td", "th"}])
    return rows


_LAYOUT_INSIDE = ".//table|.//h1|.//h2|.//h3|.//h4|.//h5|.//h6"


def _is_layout_table(table: HtmlNode, rows: list[list[HtmlNode]]) -> bool:
    """Tables used for page layout: a presentation role, one column, nested tables or headings, or whole text columns.

    Cells wrapped in ``<p>`` (as word processors export them) or holding a short list still make a data table.
    """
    if (table.get("role") or "").lower() in {"presentation", "none"}:
        return True
    if not rows or max(len(row) for row in rows) <= 1:
        return True
    return any(cell.xpath(_LAYOUT_INSIDE) or text_len(cell) > 800 for row in rows for cell in row)


def _pre_blocks(elem: HtmlNode) -> list[str]:
    """Preformatted text keeps its lines; tabs become spaces and blank-line runs split it into paragraphs."""
    for br in elem.iter("br"):
        br.tail = "\n" + (br.tail or "")
    text = elem.text_content().expandtabs(4)
    paragraphs = re.split(r"\n\s*\n", text)
    return [p for p in ("\n".join(line.rstrip() for line in para.strip("\n").split("\n")) for para in paragraphs) if p.strip()]
