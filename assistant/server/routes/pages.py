"""``GET /documents/{doc_id}/pages/{n}.png``: page ``n`` (from 1) of a PDF document rendered as PNG, and with
``?start=&end=`` (offsets into the document's text, as a citation's ``quote_start``/``quote_end``) the quoted
words highlighted on it.

The file read is the document's own stored ``source`` under the corpus folder, never a path from the request.
The quote is found on the page by its letters and digits alone (the document's text re-joins lines, undoes
hyphenation and normalises ligatures, so spaces and punctuation may differ from the page's); a quote running
onto another page is highlighted by its longest part found on this one. ``X-Highlight-Rects`` says how many
boxes were drawn (0: the quote is not on this page). Rendering runs in a worker thread, one page at a time per
app, with a short queue (beyond it ``503 overloaded``); pdfium itself is called by one thread at a time.
"""

from __future__ import annotations

import ctypes
import io
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response

from assistant.errors import NotFound
from assistant.ingest.documents import Document
from assistant.ingest.pdf_lines import PdfPage
from assistant.ingest.text import PDFIUM_LOCK
from assistant.server.errors import ERRORS, ApiError
from assistant.server.routes.state import AppState, app_state
from assistant.server.schemas import ErrorResponse

router = APIRouter(tags=["documents"])
State = Annotated[AppState, Depends(app_state)]

MAX_WIDTH_PX = 1000  # a page is rendered this wide ...
MAX_HEIGHT_PX = 2000  # ... unless that would make it taller than this
MAX_QUOTE_CHARS = 20_000
MIN_PART = 12  # letters and digits: the shortest part of a quote highlighted on its own
RENDERS_WAITING = 8
HIGHLIGHT = (255, 200, 0, 96)  # translucent yellow
PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"image/png": {}}, "description": "The page as PNG, the quote highlighted"},
    404: {"model": ErrorResponse, "description": "Unknown document, its file gone, or no such page (details: pages)"},
}


class PageOutOfRange(ApiError):
    def __init__(self, number: int, pages: int):
        message = f"The document has {pages} page{'s' if pages != 1 else ''}; there is no page {number}."
        super().__init__(404, "page_out_of_range", message, {"pages": pages})


@router.get("/documents/{doc_id:path}/pages/{n:int}.png", response_class=Response, responses=PAGE_RESPONSES)
async def page_image(doc_id: str, n: int, request: Request, state: State, start: str | None = None, end: str | None = None) -> Response:
    """Page ``n`` (from 1) of a PDF document as PNG, about 1000 px wide; with ``start`` and ``end`` (text offsets
    of a quote) the quoted words are highlighted."""
    doc = state.live.ready().index.documents.get(doc_id)
    if doc is None:
        raise NotFound(f"No document with id {doc_id!r}.")
    if Path(doc.source).suffix.lower() != ".pdf":
        raise ApiError(400, "not_a_pdf", f"The document {doc_id!r} is not a PDF ({doc.source}): it has no pages to show.")
    quote = _quote(doc, start, end)
    path = _source_file(state.settings.corpus_dir, doc)
    limiter = _limiter(request)
    if limiter.borrowed_tokens >= limiter.total_tokens and limiter.statistics().tasks_waiting >= RENDERS_WAITING:
        message = "Too many pages are being rendered; ask again in 1 s."
        raise ApiError(503, "overloaded", message, {"retry_after_s": 1}, {"Retry-After": "1"})
    png, rects = await anyio.to_thread.run_sync(render_page, path, n, quote, limiter=limiter)
    headers = {"Cache-Control": "private, max-age=3600", "X-Highlight-Rects": str(rects)}
    return Response(png, media_type="image/png", headers=headers)


def _limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's own render slot (made on first use, inside its event loop)."""
    limiter = getattr(request.app.state, "page_renders", None)
    if limiter is None:
        limiter = request.app.state.page_renders = anyio.CapacityLimiter(1)
    return limiter


def _quote(doc: Document, start: str | None, end: str | None) -> str | None:
    """The quoted text ``doc.text[start:end]``; ``None`` without offsets; 400 ``invalid_range`` for bad ones."""
    if start is None and end is None:
        return None

    def refuse(why: str) -> ApiError:
        return ApiError(400, "invalid_range", f"start and end must be text offsets with 0 <= start < end <= {len(doc.text)}: {why}.")

    if start is None or end is None:
        raise refuse("give both or neither")
    try:
        a, b = int(start), int(end)
    except ValueError:
        raise refuse(f"got start={start[:20]!r}, end={end[:20]!r}") from None
    if not 0 <= a < b <= len(doc.text):
        raise refuse(f"got {a} and {b}")
    if b - a > MAX_QUOTE_CHARS:
        raise refuse(f"a quote of at most {MAX_QUOTE_CHARS} characters is highlighted, got {b - a}")
    return doc.text[a:b]


def _source_file(corpus_dir: Path, doc: Document) -> Path:
    """The document's own file, which must still be a file inside the corpus folder."""
    root = corpus_dir.resolve()
    path = (root / doc.source).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiError(404, "source_missing", f"The file of document {doc.doc_id!r} is no longer in the documents folder.")
    return path


def render_page(path: Path, number: int, quote: str | None) -> tuple[bytes, int]:
    """Page ``number`` of the PDF at ``path`` as PNG bytes, and how many highlight boxes were drawn on it."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise ApiError(422, "unreadable_pdf", f"The PDF could not be opened ({exc}).") from exc
        try:
            pages = len(pdf)
            if not 1 <= number <= pages:
                raise PageOutOfRange(number, pages)
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
                if width <= 0 or height <= 0:
                    raise ApiError(422, "unreadable_pdf", f"Page {number} has no size.")
                scale = min(MAX_WIDTH_PX / width, MAX_HEIGHT_PX / height)
                image = page.render(scale=scale).to_pil().convert("RGBA")
                boxes = _quote_boxes(page, quote, image.size) if quote else []
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            raise ApiError(422, "unreadable_pdf", f"Page {number} could not be rendered ({exc}).") from exc
        finally:
            pdf.close()
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for box in boxes:
            draw.rectangle(box, fill=HIGHLIGHT)
        image = Image.alpha_composite(image, overlay)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue(), len(boxes)


def _quote_boxes(page: PdfPage, quote: str, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (left, top, right, bottom) over the quote's words on ``page`` rendered at ``size``."""
    import pypdfium2.raw as raw

    textpage = page.get_textpage()
    try:
        chars = [chr(raw.FPDFText_GetUnicode(textpage.raw, i)) for i in range(textpage.count_chars())]
        span = find_span(chars, quote)
        if span is None:
            return []
        first, last = span
        boxes: list[tuple[int, int, int, int]] = []
        for i in range(textpage.count_rects(first, last - first + 1)):
            left, bottom, right, top = textpage.get_rect(i)
            x0, y0 = _to_pixels(page, size, left, top)
            x1, y1 = _to_pixels(page, size, right, bottom)
            boxes.append((min(x0, x1) - 2, min(y0, y1) - 2, max(x0, x1) + 2, max(y0, y1) + 2))
        return boxes
    finally:
        textpage.close()


def _to_pixels(page: PdfPage, size: tuple[int, int], x: float, y: float) -> tuple[int, int]:
    """A point of the page (PDF points, y upwards) as a pixel of its rendering at ``size`` (pdfium's own mapping,
    so a rotated or cropped page maps as it is drawn)."""
    import pypdfium2.raw as raw

    dx, dy = ctypes.c_int(), ctypes.c_int()
    raw.FPDF_PageToDevice(page.raw, 0, 0, size[0], size[1], 0, x, y, dx, dy)
    return dx.value, dy.value


def _letters(text: str | list[str]) -> tuple[str, list[int]]:
    """The letters and digits of ``text`` (NFKC, case-folded), and for each the index of the character it came from.

    >>> _letters("Co-\\x02operation, ﬁne")
    ('cooperationfine', [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 15, 16, 17])
    """
    out, index = [], []
    for i, char in enumerate(text):
        for c in unicodedata.normalize("NFKC", char).casefold():
            if c.isalnum():
                out.append(c)
                index.append(i)
    return "".join(out), index


def find_span(chars: str | list[str], quote: str) -> tuple[int, int] | None:
    """The first and last index in ``chars`` (a page's characters) of the quote, compared by letters and digits;
    when the whole quote is not there, of its longest beginning or end that is (at least ``MIN_PART`` of them).

    >>> page = "The project ends in 2026.\\r\\nIt builds sch-\\x02ools in Khatlon."
    >>> find_span(page, "It builds schools in Khatlon.")
    (27, 56)
    >>> find_span(page, "builds schools in Khatlon. The next page says more.")
    (30, 56)
    >>> find_span(page, "Nothing of this is here at all") is None
    True
    """
    hay, index = _letters(chars)
    needle, _ = _letters(quote)
    if not needle or not hay:
        return None
    at = hay.find(needle)
    if at >= 0:
        return index[at], index[at + len(needle) - 1]
    shortest = min(MIN_PART, len(needle))
    head = _longest(lambda k: hay.find(needle[:k]), shortest, len(needle))
    tail = _longest(lambda k: hay.find(needle[-k:]), shortest, len(needle))
    found = [part for part in (head, tail) if part is not None]
    if not found:
        return None
    k, at = max(found, key=lambda part: part[0])
    return index[at], index[at + k - 1]


def _longest(where: Callable[[int], int], shortest: int, longest: int) -> tuple[int, int] | None:
    """The largest ``k`` in [shortest, longest) with ``where(k) >= 0`` (found), and that position; ``None`` if none.
    Being found is monotone in ``k`` (a shorter beginning or end of a found one is found too), so a bisection."""
    if where(shortest) < 0:
        return None
    low, high = shortest, longest - 1
    while low < high:
        middle = (low + high + 1) // 2
        if where(middle) >= 0:
            low = middle
        else:
            high = middle - 1
    return low, where(low)
