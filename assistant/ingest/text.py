"""Plain text: decoding (byte-order marks, UTF-16 without one, legacy code pages) and the pieces
every reader shares (``Extracted``, ``UnreadableFile``, the quality warnings)."""

from __future__ import annotations

import codecs
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, AnyStr, Generic, TypedDict

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024
PREFERRED_ENCODINGS = ["cp1252", "latin_1", "iso8859_15", "cp1251", "koi8_r", "mac_cyrillic"]
LOW_TEXT_CHARS = 200


class UnreadableFile(Exception):
    """A corpus file that cannot be turned into text; ``kind`` says why, for the upload's status.

    Kinds: "type" (not the format its name says), "empty", "encrypted" (needs a password), "size" (too many
    bytes), "limit" (too much work: pages, parse time), "unreadable" (anything else: broken, no text).
    """

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


PDFIUM_LOCK = threading.RLock()  # pdfium is not thread-safe: reading, OCR's render and the page viewer each hold this


class _Lazy(Generic[AnyStr]):
    """A regular expression compiled on first use, so importing this module stays cheap."""

    def __init__(self, pattern: AnyStr, flags: int = 0) -> None:
        self.pattern: AnyStr = pattern
        self.flags = flags
        self.compiled: re.Pattern[AnyStr] | None = None

    def _regex(self) -> re.Pattern[AnyStr]:
        if self.compiled is None:
            self.compiled = re.compile(self.pattern, self.flags)
        return self.compiled

    def search(self, string: AnyStr) -> re.Match[AnyStr] | None:
        return self._regex().search(string)

    def match(self, string: AnyStr) -> re.Match[AnyStr] | None:
        return self._regex().match(string)

    def sub(self, repl: AnyStr | Callable[[re.Match[AnyStr]], AnyStr], string: AnyStr) -> AnyStr:
        return self._regex().sub(repl, string)

    def findall(self, string: AnyStr) -> list[Any]:
        """As ``re.Pattern.findall``: strings, or tuples of them when the pattern has several groups."""
        return self._regex().findall(string)

    def finditer(self, string: AnyStr) -> Iterator[re.Match[AnyStr]]:
        return self._regex().finditer(string)


@dataclass(frozen=True)
class Limits:
    """The work one document may take: its size, a PDF's pages, the seconds its reading may run, and whether OCR may.

    >>> Limits(max_pdf_pages=10).max_pdf_pages, Limits().max_file_bytes == MAX_FILE_BYTES
    (10, True)
    """

    max_file_bytes: int = MAX_FILE_BYTES
    max_pdf_pages: int = 2000
    max_read_s: float = 60.0
    ocr: bool = True  # read PDF pages without a text layer by OCR when Tesseract is installed

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits ``Settings`` configures (``max_file_mb``, ``max_pdf_pages``, ``max_read_s``, ``ocr``)."""
        return cls(int(settings.max_file_mb * 1024 * 1024), settings.max_pdf_pages, settings.max_read_s, settings.ocr)

    def deadline(self) -> Deadline:
        return Deadline(self.max_read_s)


class Deadline:
    """The time budget of one document's reading; ``check`` refuses the document once it is spent."""

    def __init__(self, seconds: float) -> None:
        import time

        self.seconds, self._clock = seconds, time.monotonic
        self._end = self._clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def check(self, doing: str) -> None:
        if self._clock() > self._end:
            raise UnreadableFile(
                f"reading it took longer than the {self.seconds:g} s limit ({doing}); ASSISTANT_MAX_READ_S sets the limit",
                kind="limit",
            )


class ReaderMeta(TypedDict, total=False):
    """What the file's own properties say, for the metadata; a reader sets the keys its format has (``None``: left empty)."""

    author: str | None
    creator: str | None
    producer: str | None
    created: str | datetime | None  # a PDF date string, an HTML page's declared date or a Word document's datetime
    modified: str | datetime | None
    language: str | None
    heading: str | None
    # The PDF reader's: its page count, the pages it read by OCR (from 1), and each paragraph's
    # (start, end, first page, last page): offsets into the text, pages from 1.
    pages: int
    ocr_pages: list[int]
    page_spans: list[tuple[int, int, int, int]]


@dataclass
class Extracted:
    """What a reader found in one file: raw text, a title if the file names one, and warnings for the user."""

    text: str
    title: str | None = None
    warnings: list[str] = field(default_factory=list)
    meta: ReaderMeta = field(default_factory=lambda: ReaderMeta())


# ---------------------------------------------------------------- plain text

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]


def _bom_encoding(raw: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark announces, and the mark's length.

    >>> _bom_encoding("é".encode("utf-16"))[0], _bom_encoding(b"plain")
    ('utf-16-le', None)
    """
    for bom, encoding in _BOMS:  # UTF-32 LE first: its BOM starts with UTF-16 LE's
        if raw.startswith(bom):
            return encoding, len(bom)
    return None


def _utf16_without_bom(raw: bytes) -> str | None:
    """UTF-16 with no BOM, recognised by mostly-ASCII text having a NUL in every other byte."""
    sample = raw[:4096]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    for nuls, other, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if nuls.count(0) > 0.6 * len(nuls) and other.count(0) == 0:
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


def decode_text(raw: bytes) -> tuple[str, list[str]]:
    """Bytes to text: BOM (UTF-8/16/32), UTF-16 without BOM, UTF-8, then the likeliest legacy code page.

    >>> decode_text("\\ufeffTadjik".encode("utf-16-le"))
    ('Tadjik', [])
    """
    bom = _bom_encoding(raw)
    if bom:
        encoding, length = bom
        try:
            return raw[length:].decode(encoding), []
        except UnicodeDecodeError:
            raise UnreadableFile(f"starts with a {encoding.upper()} byte-order mark but is not valid {encoding.upper()}") from None
    if b"\x00" in raw[:8192]:
        text = _utf16_without_bom(raw)
        if text is None:
            raise UnreadableFile("binary content (NUL bytes), not text")
        return text, []
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        return _legacy_decode(raw)


def _legacy_decode(raw: bytes) -> tuple[str, list[str]]:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches:
        raise UnreadableFile("not valid UTF-8 and no other text encoding fits")
    # Equally plausible code pages are common for short texts: prefer the corpus languages'.
    top = (matches[0].chaos, matches[0].coherence)
    tied = [m for m in matches if (m.chaos, m.coherence) == top]
    best = min(tied, key=lambda m: PREFERRED_ENCODINGS.index(m.encoding) if m.encoding in PREFERRED_ENCODINGS else 99)
    log.info("decoded as %s (not UTF-8)", best.encoding)
    return str(best), [f"not UTF-8: decoded as {best.encoding} (a guess; check accented letters)"]


# ---------------------------------------------------------------- quality


# UTF-8 lead bytes of Latin and Cyrillic letters followed by a continuation byte, both read as cp1252 or Latin-1.
_CONTINUATION = "".join(
    sorted(set(bytes(range(0x80, 0xC0)).decode("cp1252", errors="ignore") + bytes(range(0x80, 0xC0)).decode("latin-1")))
)
_MOJIBAKE = _Lazy(f"[ÂÃÄÅÐÑâð][{re.escape(_CONTINUATION)}]")


def text_warnings(text: str) -> list[str]:
    """Warnings about text that will answer badly: very short, unreadable characters, mis-decoded UTF-8.

    >>> text_warnings("Short.")
    ['very little text (6 characters)']
    """
    warnings = []
    visible = [ch for ch in text if not ch.isspace()]
    if len(visible) < LOW_TEXT_CHARS:
        warnings.append(f"very little text ({len(visible)} characters)")
    if not visible:
        return warnings
    bad = sum(1 for ch in visible if ch == "\ufffd" or "\ue000" <= ch <= "\uf8ff" or unicodedata.category(ch) == "Cc")
    bad += 6 * text.count("(cid:")
    if bad / len(visible) > 0.01:
        warnings.append(f"text looks garbled: {bad / len(visible):.0%} of characters are unreadable (fonts without a Unicode map?)")
    mojibake = len(_MOJIBAKE.findall(text))
    if mojibake >= 3 and mojibake / len(visible) > 0.0003:
        warnings.append("text looks mis-decoded (UTF-8 read as another encoding, e.g. 'Ã©' for 'é')")
    letters = sum(1 for ch in visible if ch.isalpha())
    if len(visible) >= LOW_TEXT_CHARS and letters / len(visible) < 0.4:
        warnings.append(f"only {letters / len(visible):.0%} of the text is letters: tables of figures or garbled extraction?")
    return warnings
