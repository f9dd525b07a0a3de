"""A PDF's pages read by pypdfium2 into text lines with their geometry (position, baseline, font size);
a page without a text layer read by OCR when Tesseract is installed."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from assistant.ingest.ocr import RenderablePage, ocr_lines
from assistant.ingest.text import PDFIUM_LOCK, Deadline

log = logging.getLogger(__name__)


class TextPage(Protocol):
    """A pypdfium2 ``PdfTextPage`` (pypdfium2 ships no type information): its pdfium handle, read by ``pypdfium2.raw``."""

    raw: object

    def count_chars(self) -> int: ...

    def count_rects(self, index: int = 0, count: int = -1) -> int: ...

    def get_rect(self, index: int) -> tuple[float, float, float, float]: ...

    def close(self) -> None: ...


class PdfPage(RenderablePage, Protocol):
    """A pypdfium2 ``PdfPage``."""

    raw: object

    def get_size(self) -> tuple[float, float]: ...

    def get_textpage(self) -> TextPage: ...

    def close(self) -> None: ...


class PdfDocument(Protocol):
    """A pypdfium2 ``PdfDocument``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> PdfPage: ...

    def get_metadata_dict(self) -> dict[str, str]: ...

    def close(self) -> None: ...


@dataclass
class Line:
    """One text line of a PDF page with the geometry that tells paragraphs apart (PDF points, y upwards)."""

    text: str
    x0: float
    x1: float
    baseline: float
    size: float
    page: int
    toc: bool = False


def read_pages(pdf: PdfDocument, deadline: Deadline, ocr: bool) -> tuple[list[list[Line]], list[tuple[float, float]], int, list[int]]:
    """Each page's lines and size, the number of unreadable pages, and the pages read by OCR (from 1)."""
    import pypdfium2 as pdfium

    pages: list[list[Line]] = []
    sizes: list[tuple[float, float]] = []
    failed = 0
    ocred: list[int] = []
    with PDFIUM_LOCK:
        count = len(pdf)
    for number in range(count):
        deadline.check(f"at page {number + 1:,} of {count:,}")
        try:
            with PDFIUM_LOCK:  # one page at a time, so a page rendered for the page viewer can run between two
                lines, size, page = _read_page(pdf, number)
            if not lines and ocr:
                lines = _ocr_page(page, number, deadline)
                if lines:
                    ocred.append(number + 1)
            with PDFIUM_LOCK:
                page.close()
            pages.append(lines)
            sizes.append(size)
        except pdfium.PdfiumError as exc:
            log.info("page %d unreadable: %s", number + 1, exc)
            pages.append([])
            sizes.append((0.0, 0.0))
            failed += 1
    return pages, sizes, failed, ocred


def _read_page(pdf: PdfDocument, number: int) -> tuple[list[Line], tuple[float, float], PdfPage]:
    """Page ``number``'s text lines and size, and the page (still open, for OCR)."""
    page = pdf[number]
    size, textpage = page.get_size(), page.get_textpage()
    lines = _page_lines(textpage, number)
    textpage.close()
    return lines, size, page


def _ocr_page(page: PdfPage, number: int, deadline: Deadline) -> list[Line]:
    """A page without a text layer read by Tesseract; line sizes evened out so OCR's jitter breaks no paragraph."""
    import subprocess

    log.info("page %d: no text layer, reading it by OCR", number + 1)
    try:
        found = ocr_lines(page, deadline.remaining())
    except subprocess.TimeoutExpired:
        deadline.check(f"reading page {number + 1:,} by OCR")
        raise
    if not found:
        return []
    body = median([size for *_, size in found])
    lines: list[Line] = []
    for text, x0, x1, baseline, size in found:
        lines.append(Line(text, x0, x1, baseline, size if size > 1.3 * body else body, number))
    return lines


def _page_lines(textpage: TextPage, number: int) -> list[Line]:
    """Visual lines as pdfium orders them, with position and font size.

    pdfium ends a line at its generated line breaks, but merges a line ending in a hyphen with the
    next one (marking the hyphen as U+0002): such a line is split again after the marker.
    """
    import ctypes

    import pypdfium2.raw as raw

    page = textpage.raw
    lines: list[Line] = []
    current = _LineBuilder(number)
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    x, y = ctypes.c_double(), ctypes.c_double()
    for index in range(raw.FPDFText_CountChars(page)):
        char = chr(raw.FPDFText_GetUnicode(page, index))
        if char in "\r\n":
            current = current.close(lines)
            continue
        if char.isspace():
            current.chars.append(char)
            continue
        raw.FPDFText_GetCharBox(page, index, left, right, bottom, top)
        raw.FPDFText_GetCharOrigin(page, index, x, y)
        current.add(char, left.value, right.value, y.value, raw.FPDFText_GetFontSize(page, index))
        if char in "\x02\ufffe":
            current = current.close(lines)
    current.close(lines)
    return lines


class _LineBuilder:
    """Characters of one line being read, with their boxes."""

    def __init__(self, page: int) -> None:
        self.page = page
        self.chars: list[str] = []
        self.x0: list[float] = []
        self.x1: list[float] = []
        self.baselines: list[float] = []
        self.sizes: list[float] = []

    def add(self, char: str, x0: float, x1: float, baseline: float, size: float) -> None:
        self.chars.append(char)
        self.x0.append(x0)
        self.x1.append(x1)
        self.baselines.append(baseline)
        self.sizes.append(round(size, 1))

    def close(self, lines: list[Line]) -> _LineBuilder:
        """Append the line, if it has any text, and start the next one."""
        # pdfium gives characters beyond the BMP as UTF-16 surrogate pairs.
        text = "".join(self.chars).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").strip()
        if text and self.sizes:
            size = Counter(self.sizes).most_common(1)[0][0]
            lines.append(Line(text, min(self.x0), max(self.x1), median(self.baselines), size, self.page))
        return _LineBuilder(self.page)


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count).

    >>> median([3.0, 1.0, 2.0]), median([4.0, 1.0, 2.0, 3.0])
    (2.0, 2.5)
    """
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
