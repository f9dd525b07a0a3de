"""Per-format text extraction: plain text, HTML, PDF and Word in, readable paragraphs out.

Every reader returns an :class:`Extracted` whose text has one paragraph per line block and blank
lines between paragraphs; ``documents.clean_text`` then normalises it once more, so the text the
chunks index into is final before it becomes ``Document.text``. Heavy libraries (lxml, pypdfium2,
charset-normalizer) are imported inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path

from assistant.ingest.docx import docx_text
from assistant.ingest.html import html_text
from assistant.ingest.pdf import pdf_text
from assistant.ingest.sniff import check_kind
from assistant.ingest.text import MAX_FILE_BYTES, PREFERRED_ENCODINGS, Extracted, Limits, UnreadableFile, decode_text, text_warnings

__all__ = ["MAX_FILE_BYTES", "PREFERRED_ENCODINGS", "Extracted", "Limits", "UnreadableFile", "extract_text", "read_file", "text_warnings"]


def human_size(size: int) -> str:
    """Bytes for people, in binary units (the default limit is exactly 50 MiB).

    >>> human_size(50 * 1024 * 1024), human_size(1536), human_size(12)
    ('50.0 MiB', '1.5 KiB', '12 bytes')
    """
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


def read_file(path: Path, limits: Limits | int = MAX_FILE_BYTES) -> Extracted:
    """Extract one supported file within ``limits`` (a bare number: the size limit); raises UnreadableFile with a reason."""
    limits = limits if isinstance(limits, Limits) else Limits(max_file_bytes=limits)
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise UnreadableFile(f"file too large ({human_size(size)} > {human_size(limits.max_file_bytes)} limit)", kind="size")
    suffix = path.suffix.lower()
    check_kind(path, suffix)
    if suffix == ".pdf":
        return pdf_text(path, limits)
    if suffix == ".docx":
        return docx_text(path, limits)
    raw = path.read_bytes()
    if suffix in {".html", ".htm"}:
        return html_text(raw, limits.deadline())
    text, warnings = decode_text(raw)
    return Extracted(text, None, warnings)


def extract_text(path: Path, limits: Limits | int = MAX_FILE_BYTES) -> tuple[str, str | None]:
    """Return (raw text, title found in the file, if any) for one supported file."""
    found = read_file(path, limits)
    return found.text, found.title
