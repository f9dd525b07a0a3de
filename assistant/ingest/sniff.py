"""What a file really is, from its first bytes: a PDF named ``.pdf`` must start like one, a Word file
must be a zip holding ``word/document.xml``; anything else is refused with what it looks like
("this file is not a PDF (it looks like a Windows program)") before a reader sees it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from assistant.ingest.text import UnreadableFile

__all__ = ["check_kind", "looks_like"]

# (magic bytes at offset 0, what a person calls such a file)
_MAGIC = [
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"\xfe\xed\xfa\xcf", "a macOS program"),
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.doc, .xls or .ppt)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"%!PS", "a PostScript file"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio or video file"),
]
_WEAK = {b"MZ", b"BZh", b"ID3", b"OggS", b"%!PS"}  # short magics that plain text can start with too
_ZIP_KINDS = [
    ("word/document.xml", "a Word document (.docx)"),
    ("xl/workbook.xml", "an Excel workbook (.xlsx)"),
    ("ppt/presentation.xml", "a PowerPoint presentation (.pptx)"),
]
_ODF = {
    b"application/vnd.oasis.opendocument.text": "an OpenDocument text (.odt)",
    b"application/vnd.oasis.opendocument.spreadsheet": "an OpenDocument spreadsheet (.ods)",
    b"application/vnd.oasis.opendocument.presentation": "an OpenDocument presentation (.odp)",
}
_NAMES = {".pdf": "a PDF", ".docx": "a Word document (.docx)", ".odt": "an OpenDocument text (.odt)"}


def looks_like(head: bytes, path: Path | None = None) -> str | None:
    """What the first bytes say the file is, in words; ``None`` when they say nothing (text, HTML without a tag...).

    >>> looks_like(b"MZ\\x90\\x00\\x03"), looks_like(b"%PDF-1.7\\n"), looks_like(b"<!DOCTYPE html><html>"), looks_like(b"Plain")
    ('a Windows program', 'a PDF', 'an HTML page', None)
    """
    for magic, kind in _MAGIC:
        if head.startswith(magic) and not (magic in _WEAK and _is_text(head)):
            if kind == "a zip archive" and path is not None:
                return _zip_kind(path) or kind
            return kind
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start[:300]:
        return "an HTML page"
    if start.startswith(b"<?xml"):
        return "an XML file"
    return None


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "mimetype" in names:
                mimetype = archive.read("mimetype")[:100].strip()
                if mimetype in _ODF:
                    return _ODF[mimetype]
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError):
        return None
    return next((kind for name, kind in _ZIP_KINDS if name in names), None)


def check_kind(path: Path, suffix: str) -> None:
    """Refuse an empty file, or a file whose first bytes say it is something other than its suffix claims.

    Raises ``UnreadableFile`` with ``kind`` "empty" or "type"; text and HTML files are only refused when
    they are clearly a binary format (a program, an archive, an image, a PDF).
    """
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head:
        raise UnreadableFile("the file is empty", kind="empty")
    found = looks_like(head, path)
    expected = _NAMES.get(suffix)
    if expected is not None:
        if suffix == ".pdf" and b"%PDF-" in head[:1024]:  # readers accept a few junk bytes before the header
            return
        if found != expected:
            what = found or ("a text file" if _is_text(head) else "an unknown binary format")
            raise UnreadableFile(f"this file is not {expected.split(' (')[0]} (it looks like {what})", kind="type")
        return
    if found is not None and found not in {"an HTML page", "an XML file"}:
        what = "an HTML page" if suffix in {".html", ".htm"} else "a text file"
        raise UnreadableFile(f"this file is not {what} (it looks like {found})", kind="type")


def _is_text(head: bytes) -> bool:
    return b"\x00" not in head and sum(b < 9 or 13 < b < 32 for b in head) < 0.01 * len(head)
