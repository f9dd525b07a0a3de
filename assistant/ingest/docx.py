"""Word documents (.docx, python-docx): paragraphs in reading order, headings as their own paragraphs,
list items one line each ("- " or "1. "), tables as rows of " | "-joined cells (a two-column fact
table reads ``Label | value``), the document's own title, author and dates from its properties."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.ingest.text import Extracted, Limits, ReaderMeta, UnreadableFile, _Lazy

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

log = logging.getLogger(__name__)

_SPACES = _Lazy(r"[ \t\u00a0]+")
MAX_XML_RATIO = 100  # word/document.xml may unpack to at most this many times the size limit (a zip bomb is refused)


def docx_text(path: Path, limits: Limits | None = None) -> Extracted:
    """Text of a .docx: headings, paragraphs, lists and tables in the order they are written."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    limits = limits or Limits()
    deadline = limits.deadline()
    _check_unpacked_size(path, limits)
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UnreadableFile(f"broken Word document ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - malformed XML inside the package surfaces as lxml's own errors
        raise UnreadableFile(f"broken Word document ({exc.__class__.__name__}: {exc})") from exc
    deadline.check("opening the Word document")
    blocks: list[str] = []
    heading: str | None = None
    numbers: dict[str, int] = {}
    for item in document.iter_inner_content():
        deadline.check("reading the Word document")
        if isinstance(item, Table):
            numbers.clear()
            blocks.extend(_table_blocks(item))
        else:
            line = _paragraph_line(item, numbers)
            if line:
                blocks.append(line)
                if heading is None and _style_name(item).startswith(("Title", "Heading")):
                    heading = line.replace("\n", " ")
    text = _join(blocks)
    props = document.core_properties
    meta: ReaderMeta = {"author": props.author, "created": props.created, "modified": props.modified, "heading": heading}
    meta["language"] = (props.language or "").split("-")[0].lower() or None
    return Extracted(text, _clean(props.title or "") or None, [], meta)


def _check_unpacked_size(path: Path, limits: Limits) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFile(f"broken Word document ({exc})") from exc
    if size > MAX_XML_RATIO * limits.max_file_bytes:
        raise UnreadableFile(f"the Word document unpacks to {size:,} bytes, more than this server reads", kind="limit")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _style_name(paragraph: Paragraph) -> str:
    try:
        return (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, ValueError):
        return ""


def _paragraph_line(paragraph: Paragraph, numbers: dict[str, int]) -> str:
    """One paragraph's text; a list item gets its marker, a heading stands alone (as every paragraph does)."""
    text = "\n".join(_clean(line) for line in paragraph.text.split("\n"))
    text = "\n".join(line for line in text.split("\n") if line)
    style = _style_name(paragraph)
    if not text:
        return ""
    p_pr = paragraph._p.pPr
    listed = (p_pr is not None and p_pr.numPr is not None) or style.startswith("List")
    if not listed:
        if not style.startswith("List"):
            numbers.clear()
        return text
    if "Number" in style:
        numbers[style] = numbers.get(style, 0) + 1
        return f"{numbers[style]}. {text}"
    return f"- {text}"


def _join(blocks: list[str]) -> str:
    """Paragraphs apart by blank lines; consecutive list items kept together, one per line."""
    out: list[str] = []
    for block in blocks:
        item = block.startswith("- ") or block[:1].isdigit() and ". " in block[:5]
        previous = out[-1].split("\n")[-1] if out else ""
        if item and out and (previous.startswith("- ") or previous[:1].isdigit() and ". " in previous[:5]):
            out[-1] += "\n" + block
        else:
            out.append(block)
    return "\n\n".join(out) + "\n" if out else ""


def _table_blocks(table: Table) -> list[str]:
    """A table as one paragraph, a row per line with its cells joined by " | " (merged cells once)."""
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            parts = [_clean(p.text) for p in cell.paragraphs] + [
                _clean(" ".join(b.split("\n"))) for t in cell.tables for b in _table_blocks(t)
            ]
            cells.append("; ".join(p for p in parts if p))
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            lines.append(" | ".join(cells))
    return ["\n".join(lines)] if lines else []
