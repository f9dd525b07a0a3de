"""PDF (pypdfium2): lines re-joined into paragraphs, hyphenation undone, ligatures and other
compatibility characters normalised (NFKC), running headers, footers, page numbers and tables of
contents removed; pages without a text layer reported."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path

from assistant.ingest.ocr import HOW_TO_ENABLE, tesseract_languages
from assistant.ingest.pdf_lines import Line, PdfDocument, median, read_pages
from assistant.ingest.text import LOW_TEXT_CHARS, PDFIUM_LOCK, Extracted, Limits, ReaderMeta, UnreadableFile, _Lazy

_SPACES = _Lazy(r"\s+")

# ---------------------------------------------------------------- PDF


def pdf_text(path: Path, limits: Limits | None = None) -> Extracted:
    """Text of a PDF rebuilt into paragraphs: headers, footers, page numbers and the contents list removed.

    A PDF with more pages than ``limits.max_pdf_pages``, or whose reading outlasts ``limits.max_read_s``,
    is refused (``UnreadableFile`` of kind "limit"): the page count is read before any page is.
    """
    import pypdfium2 as pdfium

    limits = limits or Limits()
    deadline = limits.deadline()
    try:
        with PDFIUM_LOCK:
            pdf: PdfDocument = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise UnreadableFile("the PDF is password-protected (save a copy without the password and add that)", kind="encrypted") from exc
        raise UnreadableFile(f"broken PDF ({exc})") from exc
    try:
        with PDFIUM_LOCK:
            count, info = len(pdf), pdf.get_metadata_dict()
        if count > limits.max_pdf_pages:
            raise UnreadableFile(
                f"too many pages ({count:,} > {limits.max_pdf_pages:,} limit); ASSISTANT_MAX_PDF_PAGES sets the limit", kind="limit"
            )
        title = _pdf_title(info.get("Title") or "")
        ocr = limits.ocr and tesseract_languages() is not None
        pages, sizes, failed, ocred = read_pages(pdf, deadline, ocr)
    finally:
        with PDFIUM_LOCK:
            pdf.close()
    found = _assemble_pdf(pages, sizes, failed, title, _ocr_hint(limits))
    deadline.check(f"after {len(pages):,} pages")
    if ocred:
        shown = ", ".join(map(str, ocred[:20])) + (", ..." if len(ocred) > 20 else "")
        found.warnings.append(f"read by OCR (Tesseract, {tesseract_languages()}): page{'s' if len(ocred) > 1 else ''} {shown}")
    found.meta.update(
        {
            "author": info.get("Author") or None,
            "creator": info.get("Creator") or None,
            "producer": info.get("Producer") or None,
            "created": info.get("CreationDate") or None,
            "modified": info.get("ModDate") or None,
            "pages": len(pages),
            "ocr_pages": ocred,
        }
    )
    return found


_PLACEHOLDER_TITLE = _Lazy(
    r"^(?:microsoft (?:word|powerpoint|excel) - .*|untitled.*|document\d*|.*\.(?:docx?|odt|rtf|pptx?|indd|tex|dvi))$", re.I
)


def _pdf_title(title: str) -> str | None:
    """The PDF's own title, unless it is a word processor's placeholder.

    >>> _pdf_title("Microsoft Word - draft_v3.docx"), _pdf_title(" Annual Report 2023 ")
    (None, 'Annual Report 2023')
    """
    title = _SPACES.sub(" ", title).strip()
    return title if title and not _PLACEHOLDER_TITLE.match(title) else None


def _ocr_hint(limits: Limits) -> str | None:
    """What to say about a page without text: how to have it read by OCR; ``None`` when OCR already tried."""
    if not limits.ocr:
        return "OCR is off: ASSISTANT_OCR=false"
    return None if tesseract_languages() else HOW_TO_ENABLE


# Page furniture and contents lists.
_ROMAN = r"(?=[ivxlcdm]+\b)m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})"
_PAGE_NO = rf"(?:\d{{1,4}}|{_ROMAN})"
_PAGE_NUMBER = _Lazy(
    rf"^(?:page|p\.|pg\.?|seite|стр\.?|страница)?\s*[-–—(\[]?\s*{_PAGE_NO}\s*[-–—)\]]?(?:\s*(?:of|/|из|sur|von)\s*\d{{1,4}})?$", re.I
)
_EDGE_NUMBER = _Lazy(r"^(\d{1,4})\s+\S|\S\s+(\d{1,4})$")
_LEADER = _Lazy(rf"(?:\.\s?){{4,}}\s*{_PAGE_NO}$|(?:…\s?){{2,}}\s*\d{{1,4}}$|(?:_\s?){{6,}}\s*\d{{1,4}}$", re.I)
_ENDS_WITH_PAGE = _Lazy(rf"\S\s+{_PAGE_NO}$", re.I)
_CONTENTS = _Lazy(r"^(?:table of )?contents$|^table des matières$|^sommaire$|^содержание$|^оглавление$", re.I)
_BULLET = _Lazy(r"^(?:[•●▪◦‣∙·*]|[-–—]\s|\(?\d{1,2}[.)]\s|\(?[a-z][.)]\s)")
_SENTENCE_END = _Lazy(r"[.!?…:;]['\"”’»)\]]*$")
_HYPHENS = "-\u00ad\ufffe\x02\u2010"  # pdfium marks a hyphen it found at a line end as U+0002 (U+FFFE in its text API)
_ZONE = 0.12


def _furniture_key(text: str) -> str:
    """Header/footer identity: case-folded, digits and roman page numbers blurred.

    >>> _furniture_key("Annual Report 2023   Page 14") == _furniture_key("annual report 2023 page 15")
    True
    """
    text = re.sub(r"\d+", "#", text.casefold())
    return _SPACES.sub(" ", re.sub(r"\b[ivxlc]{1,6}\b$", "#", text)).strip()


def _in_zone(line: Line, height: float) -> bool:
    return height > 0 and (line.baseline > height * (1 - _ZONE) or line.baseline < height * _ZONE)


def _edge_lines(pages: list[list[Line]], sizes: list[tuple[float, float]]) -> list[list[Line]]:
    """The first two and last two lines of each page, where they sit in its top or bottom margin zone."""
    edges = []
    for lines, (_, height) in zip(pages, sizes, strict=True):
        edge = lines[:2] + lines[-2:] if len(lines) > 4 else lines
        edges.append([line for line in edge if _in_zone(line, height)])
    return edges


def _page_number_offset(edges: list[list[Line]]) -> int | None:
    """How printed page numbers in running heads relate to page indexes ("Chapter 2: Scope 14" on index 15: -1)."""
    offsets: Counter[int] = Counter()
    for index, edge in enumerate(edges):
        found = {int(m.group(1) or m.group(2)) - index for line in edge if (m := _EDGE_NUMBER.search(line.text))}
        offsets.update(found)
    if not offsets:
        return None
    offset, count = offsets.most_common(1)[0]
    return offset if count >= max(2, 0.3 * len(edges)) else None


def _strip_furniture(pages: list[list[Line]], sizes: list[tuple[float, float]]) -> list[list[Line]]:
    """Drop page numbers, running heads numbered like the pages, and header/footer lines repeated on several pages."""
    edges = _edge_lines(pages, sizes)
    counts = Counter(key for edge in edges for key in {_furniture_key(line.text) for line in edge})
    repeated = {key for key, count in counts.items() if count >= (2 if len(pages) <= 3 else 3)}
    offset = _page_number_offset(edges)
    kept = []
    for index, (lines, edge) in enumerate(zip(pages, edges, strict=True)):
        drop = set()
        for line in edge:
            number = _EDGE_NUMBER.search(line.text)
            numbered = offset is not None and number is not None and int(number.group(1) or number.group(2)) == index + offset
            if numbered or _PAGE_NUMBER.match(line.text) or _furniture_key(line.text) in repeated:
                drop.add(id(line))
        kept.append([line for line in lines if id(line) not in drop])
    return kept


def _mark_contents(lines: list[Line]) -> None:
    """Mark a contents list: dot-leader lines, entries without leaders next to them, entries wrapped over two lines, its heading."""
    for line in lines:
        line.toc = bool(_LEADER.search(line.text))
    changed = any(line.toc for line in lines)
    while changed:
        changed = False
        for i, line in enumerate(lines):
            before = lines[i - 1] if i > 0 and lines[i - 1].toc else None
            after = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].toc else None
            neighbour = before or after
            if line.toc or neighbour is None:
                continue
            entry = _ENDS_WITH_PAGE.search(line.text) and abs(line.size - neighbour.size) < 0.5
            if entry or (before and after) or (after and _CONTENTS.match(line.text)):  # (before and after): a wrapped entry
                line.toc = changed = True


def _layout_stats(lines: list[Line]) -> tuple[float, float, float]:
    """Left margin, right edge and usual line pitch of a page's body lines."""
    if not lines:
        return 0.0, 0.0, 0.0
    left = Counter(round(line.x0) for line in lines).most_common(1)[0][0]
    right = sorted(line.x1 for line in lines)[int(0.9 * (len(lines) - 1))]
    pairs = zip(lines, lines[1:], strict=False)
    pitches = [a.baseline - b.baseline for a, b in pairs if abs(a.size - b.size) < 0.5 and 0 < a.baseline - b.baseline < 3 * a.size]
    return left, right, median(pitches) if pitches else 0.0


def _breaks_paragraph(prev: Line, line: Line, stats: tuple[float, float, float], first: Line) -> bool:
    """Does ``line`` start a new paragraph after ``prev``? Gaps, size changes, bullets, indents and short lines say so."""
    left, right, pitch = stats
    size = max(prev.size, line.size)
    gap = prev.baseline - line.baseline
    if gap <= 0:  # back up the page: the next column
        return not _runs_on(prev, line)
    if gap > max(pitch, size) * 1.3 or abs(prev.size - line.size) > 0.15 * size or _BULLET.match(line.text):
        return True
    indented = line.x0 > left + 0.8 * size and prev.x0 < left + 0.5 * size and not _BULLET.match(first.text)
    width = max(right - left, 1.0)
    ends_short = prev.x1 < right - 0.12 * width and _SENTENCE_END.search(prev.text) is not None
    return indented or ends_short or (prev.x1 < left + 0.6 * width and line.text[:1].isupper())


def _runs_on(last: Line, line: Line) -> bool:
    """Does a sentence run on from the last line of a page or column into ``line``?"""
    unfinished = not _SENTENCE_END.search(last.text) and (line.text[:1].islower() or last.text[-1] in _HYPHENS)
    return unfinished and abs(last.size - line.size) < 0.5


def _paragraphs(pages: list[list[Line]]) -> list[list[Line]]:
    """Group lines into paragraphs, continuing a paragraph across a page or column break when a sentence runs on."""
    paragraphs: list[list[Line]] = []
    for lines in pages:
        stats = _layout_stats(lines)
        for i, line in enumerate(lines):
            if i == 0:
                starts = not (paragraphs and _runs_on(paragraphs[-1][-1], line))
            else:
                starts = _breaks_paragraph(lines[i - 1], line, stats, paragraphs[-1][0])
            if starts:
                paragraphs.append([line])
            else:
                paragraphs[-1].append(line)
    return paragraphs


# Second halves and first halves of compounds that keep their hyphen across a line break.
_COMPOUND_TAILS = frozenset(
    "based level term scale wide time free like friendly specific related oriented driven led owned run up out off in on "
    "making building sensitive responsive focused funded sponsored wise year old long line side house border country".split()
)
_COMPOUND_HEADS = frozenset("self non cross co ex e x multi".split())
_WORD = _Lazy(r"\w+")
_LAST_WORD = _Lazy(r"\w+$")
_TOKEN = _Lazy(r"\w+(?:-\w+)*")


def _vocabulary(lines: list[str]) -> tuple[set[str], set[str]]:
    """Words written whole (not split at a line end) and hyphenated compounds written on one line.

    >>> words, compounds = _vocabulary(["A develop-", "ment plan for 2022-2026,", "development and e-mail"])
    >>> sorted(words), sorted(compounds)
    (['a', 'and', 'development', 'e', 'for', 'mail', 'plan'], ['2022-2026', 'e-mail'])
    """
    words: set[str] = set()
    compounds: set[str] = set()
    split_before = False
    for text in lines:
        tokens = _TOKEN.findall(text)
        split_after = text[-1] in _HYPHENS
        tokens = tokens[int(split_before) : len(tokens) - int(split_after)]
        for token in (t.casefold() for t in tokens):
            if "-" in token:
                compounds.add(token)
            words.update(part for part in token.split("-") if not part.isdigit())
        split_before = split_after
    return words, compounds


def _keeps_hyphen(left: str, right: str, marker: str, vocab: tuple[set[str], set[str]]) -> bool:
    """Is the hyphen at a line end part of the word (2022-2026, e-mail, community-based) rather than hyphenation?

    >>> vocab = ({"development", "community", "based"}, set())
    >>> [_keeps_hyphen(a, b, "-", vocab) for a, b in [("develop", "ment"), ("2022", "2026"), ("e", "mail"), ("community", "based")]]
    [False, True, True, True]
    """
    words, compounds = vocab
    if marker == "\u00ad":
        return False
    if not left or not right or left[-1].isdigit() or right[0].isdigit() or right[0].isupper():
        return True
    if (left + right).casefold() in words:
        return False
    if f"{left}-{right}".casefold() in compounds or right.casefold() in _COMPOUND_TAILS or left.casefold() in _COMPOUND_HEADS:
        return True
    return len(left) <= 1


def _join_lines(lines: list[str], vocab: tuple[set[str], set[str]]) -> str:
    """One paragraph's lines as one line: words split by hyphenation re-joined, real hyphens kept."""
    out = lines[0]
    for line in lines[1:]:
        if out[-1:] in _HYPHENS and out[-2:-1].isalnum():
            left, right = _LAST_WORD.search(out[-80:-1]), _WORD.match(line)
            keep = _keeps_hyphen(left.group() if left else "", right.group() if right else "", out[-1], vocab)
            out = out[:-1] + ("-" if keep else "") + line
        elif out.endswith("/") and line[:1].isalnum():  # client/ server, a URL broken at a slash
            out += line
        else:
            out = f"{out} {line}"
    return out


def _assemble_pdf(
    pages: list[list[Line]], sizes: list[tuple[float, float]], failed: int, title: str | None, hint: str | None = None
) -> Extracted:
    chars = sum(len(line.text) for lines in pages for line in lines)
    if not pages:
        raise UnreadableFile("PDF has no pages")
    if chars == 0:
        raise UnreadableFile(f"no text layer: scanned PDF? ({hint or 'OCR found no text either'})")
    warnings = _pdf_warnings(pages, failed, chars, hint)
    pages = _strip_furniture(pages, sizes)
    for lines in pages:
        _mark_contents(lines)
    pages = [[line for line in lines if not line.toc] for lines in pages]
    paragraphs = _paragraphs(pages)
    vocab = _vocabulary([line.text for lines in pages for line in lines])
    texts = [_join_lines([line.text for line in para], vocab) for para in paragraphs]
    texts = [unicodedata.normalize("NFKC", t).replace("\ufffe", "").replace("\x02", "") for t in texts]
    spans: list[tuple[int, int, int, int]] = []
    offset = 0
    for para, para_text in zip(paragraphs, texts, strict=True):
        spans.append((offset, offset + len(para_text), para[0].page + 1, para[-1].page + 1))
        offset += len(para_text) + 2
    meta: ReaderMeta = {"page_spans": spans, "heading": _first_heading(pages)}
    return Extracted("\n\n".join(texts) + "\n", title, warnings, meta)


def _first_heading(pages: list[list[Line]]) -> str | None:
    """The title printed on the first page with text: its largest type, when larger than the body's (lines in a row joined)."""
    lines = next((lines for lines in pages if lines), [])
    body = Counter(line.size for page in pages for line in page).most_common(1)
    if not lines or not body:
        return None
    top = lines[:15]
    largest = max(line.size for line in top)
    if largest < 1.15 * body[0][0]:
        return None
    first = next(i for i, line in enumerate(top) if line.size == largest)
    heading = [top[first].text]
    for line in top[first + 1 :]:
        if line.size != largest or len(heading) >= 3:
            break
        heading.append(line.text)
    text = unicodedata.normalize("NFKC", " ".join(heading)).strip()
    return text if sum(ch.isalpha() for ch in text) >= 3 else None


def _pdf_warnings(pages: list[list[Line]], failed: int, chars: int, hint: str | None = None) -> list[str]:
    warnings = []
    empty = [n + 1 for n, lines in enumerate(pages) if not lines]
    if failed:
        warnings.append(f"{failed} of {len(pages)} pages could not be read")
    if empty and len(empty) < len(pages):
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        more = f"; {hint}" if hint else ""
        warnings.append(f"no text layer on {len(empty)} of {len(pages)} pages (scanned pages?): page {shown}{more}")
    if chars / len(pages) < LOW_TEXT_CHARS:
        warnings.append(f"very little text ({chars} characters on {len(pages)} page{'s' if len(pages) > 1 else ''}): scanned PDF?")
    return warnings
