"""Reading the corpus: files in, clean text with metadata out.

Supported: .txt, .md (UTF-8/16 or a legacy code page), .html/.htm (main content, lxml), .pdf
(pypdfium2) and .docx (python-docx); the per-format extraction lives in ``readers.py``. A file that cannot be read, is too
large or is a symlink leading out of the corpus folder is skipped with a reason; a file with no
extractable text is reported as empty; what a user should know about a document it did read
(no text layer, very little text, garbled text) is in ``Document.warnings``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.errors import CorpusError
from assistant.ingest.metadata import detect_language, document_date, is_junk_title
from assistant.ingest.readers import MAX_FILE_BYTES, PREFERRED_ENCODINGS, Limits, UnreadableFile, extract_text, read_file, text_warnings

__all__ = [
    "MAX_FILE_BYTES", "METADATA_FILE", "PREFERRED_ENCODINGS", "SUPPORTED_SUFFIXES", "CorpusLoad", "Document", "Limits", "Skipped",
    "UnreadableFile", "clean_text", "corpus_files", "doc_id_for", "extract_text", "file_hash", "load_corpus", "load_document",
]  # fmt: skip

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
SUPPORTED_SUFFIXES = {".txt", ".md", ".html", ".htm", ".pdf", ".docx"}


@dataclass(frozen=True)
class Document:
    """One cleaned document; citation offsets always refer to ``text``."""

    doc_id: str
    source: str
    title: str
    text: str
    sha256: str
    publisher: str | None = None
    date: str | None = None
    period: str | None = None
    language: list[str] = field(default_factory=list)
    description: str | None = None
    warnings: list[str] = field(default_factory=list)
    # A PDF's pages: [start, end, first page, last page] for each paragraph, offsets into ``text``, pages from 1.
    page_spans: list[list[int]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """Metadata and warnings, without the text (and a PDF's page count instead of its page spans)."""
        data = asdict(self)
        del data["text"], data["page_spans"]
        data["chars"] = len(self.text)
        data["pages"] = self.page_spans[-1][3] if self.page_spans else None
        return data

    def pages(self, start: int, end: int) -> tuple[int, int] | None:
        """The first and last page of the text between ``start`` and ``end``; ``None`` when not a PDF.

        >>> Document("d", "d.pdf", "T", "One.\\n\\nTwo.\\n", "0", page_spans=[[0, 4, 1, 1], [6, 10, 2, 3]]).pages(2, 8)
        (1, 3)
        """
        hit = [span for span in self.page_spans if span[0] < max(end, start + 1) and start < span[1]]
        if not hit and self.page_spans:  # between two paragraphs: the page of the next one
            hit = [next((span for span in self.page_spans if span[0] >= start), self.page_spans[-1])]
        return (min(s[2] for s in hit), max(s[3] for s in hit)) if hit else None


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class CorpusLoad:
    documents: list[Document]
    skipped: list[Skipped]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")


def clean_text(text: str) -> str:
    """Normalise whitespace and drop paragraphs repeated word for word.

    >>> clean_text("Intro.\\r\\n\\r\\n\\r\\nA repeated paragraph.\\n\\nA repeated paragraph.\\n")
    'Intro.\\n\\nA repeated paragraph.\\n'
    """
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    text = _CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", "\n".join(lines))]
    seen: set[str] = set()
    kept = []
    for para in paragraphs:
        key = " ".join(para.split())
        if not key:
            continue
        if key in seen and len(key) >= 20:
            continue
        seen.add(key)
        kept.append(para)
    return "\n\n".join(kept) + "\n" if kept else ""


def _first_line_title(text: str, fallback: str) -> str:
    for line in text.split("\n"):
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 120 else line[:117] + "..."
    return fallback


def _load_metadata(corpus_dir: Path) -> dict[str, dict[str, Any]]:
    path = corpus_dir / METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _outside(path: Path, corpus_dir: Path) -> bool:
    """Does ``path`` (a symlink, or below one) lead out of ``corpus_dir`` once resolved?"""
    try:
        return not path.resolve().is_relative_to(corpus_dir.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return True


def _candidates(corpus_dir: Path) -> Iterator[tuple[Path, Path]]:
    """Paths below ``corpus_dir`` with their corpus-relative form, hidden files and the metadata file left out."""
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() == METADATA_FILE:
            continue
        yield path, rel


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Candidate files below ``corpus_dir``, sorted; hidden files, the metadata file and symlinks leading out left out."""
    return [p for p, _ in _candidates(corpus_dir) if p.is_file() and not (p.is_symlink() and _outside(p, corpus_dir))]


def _refused_links(corpus_dir: Path) -> list[Skipped]:
    """Symlinks that are not read: those leading out of the corpus folder and those whose target is missing."""
    refused = []
    for path, rel in _candidates(corpus_dir):
        if not path.is_symlink():
            continue
        if not path.exists():
            refused.append(Skipped(rel.as_posix(), "broken symlink (its target does not exist)"))
        elif _outside(path, corpus_dir):
            kind = "folder" if path.is_dir() else "file"
            refused.append(Skipped(rel.as_posix(), f"symlink to a {kind} outside the corpus folder (not followed)"))
    return refused


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def doc_id_for(rel: Path) -> str:
    """Stable id from the path inside the corpus: ``reports/a b.pdf`` -> ``reports/a-b``."""
    stem = rel.with_suffix("").as_posix()
    return re.sub(r"[^\w./-]+", "-", stem).strip("-")


def load_document(path: Path, corpus_dir: Path, metadata: dict[str, Any] | None = None, limits: Limits | int = MAX_FILE_BYTES) -> Document:
    """Read one file into a Document within ``limits`` (a bare number: the size limit); raises UnreadableFile with a reason."""
    rel = path.relative_to(corpus_dir)
    if _outside(path, corpus_dir):
        raise UnreadableFile("symlink to a file outside the corpus folder (not followed)")
    found = read_file(path, limits)
    text = clean_text(found.text)
    if not text.strip():
        raise UnreadableFile("no extractable text")
    warnings = list(dict.fromkeys(found.warnings + [w for w in text_warnings(text) if not _repeats(w, found.warnings)]))
    # One character count per document, the one indexed (``Document.info()["chars"]``).
    warnings = [_LITTLE_TEXT.sub(f"very little text ({len(text):,} characters", w) for w in warnings]
    for warning in warnings:
        log.info("%s: %s", rel.as_posix(), warning)
    meta = metadata or {}
    own = found.meta
    others = (own.get("author"), own.get("creator"), own.get("producer"))
    found_title = found.title if found.title and not is_junk_title(found.title, *others) else None
    heading = own.get("heading") if own.get("heading") and not is_junk_title(own["heading"]) else None
    language = meta.get("language") or detect_language(text) or own.get("language") or []
    return Document(
        doc_id=doc_id_for(rel),
        source=rel.as_posix(),
        title=meta.get("title") or found_title or heading or _first_line_title(text, rel.stem),
        text=text,
        sha256=file_hash(path),
        publisher=meta.get("publisher"),
        date=meta.get("date") or document_date(own.get("created")) or document_date(own.get("modified")),
        period=meta.get("period"),
        language=[language] if isinstance(language, str) else list(language),
        description=meta.get("description"),
        warnings=warnings,
        page_spans=_align_spans(found.text, own.get("page_spans") or [], text),
    )


def _align_spans(raw: str, spans: list[tuple[int, int, int, int]], text: str) -> list[list[int]]:
    """The reader's paragraph spans (offsets into its raw text) moved onto the cleaned ``text``: each paragraph,
    cleaned alone, is found in order where a paragraph starts; one that cleaning dropped (a repeat) is left out.

    >>> _align_spans("A\\xa0one.\\n\\nA two.\\n", [(0, 6, 1, 1), (8, 14, 2, 2)], clean_text("A\\xa0one.\\n\\nA two.\\n"))
    [[0, 6, 1, 1], [8, 14, 2, 2]]
    """
    out, pos = [], 0
    for start, end, first, last in spans:
        piece = clean_text(raw[start:end]).strip("\n")
        if not piece:
            continue
        at = text.find(piece, pos)
        while at > 0 and text[at - 2 : at] != "\n\n":
            at = text.find(piece, at + 1)
        if at < 0:
            continue
        out.append([at, at + len(piece), first, last])
        pos = at + len(piece)
    return out


_LITTLE_TEXT = re.compile(r"^very little text \([\d,]+ characters")


def _repeats(warning: str, earlier: list[str]) -> bool:
    """A generic warning the reader already gave in its own words (e.g. "very little text")."""
    head = warning.split(" (")[0]
    return any(w.startswith(head) for w in earlier)


def load_corpus(corpus_dir: Path, limits: Limits | int = MAX_FILE_BYTES) -> CorpusLoad:
    """Read every supported file below ``corpus_dir``; unreadable ones are listed, not fatal."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus directory not found: {corpus_dir}")
    metadata = _load_metadata(corpus_dir)
    documents, skipped = [], _refused_links(corpus_dir)
    for path in corpus_files(corpus_dir):
        rel = path.relative_to(corpus_dir).as_posix()
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(Skipped(rel, f"unsupported file type '{path.suffix or '(none)'}'"))
            continue
        try:
            documents.append(load_document(path, corpus_dir, metadata.get(rel), limits))
        except UnreadableFile as exc:
            skipped.append(Skipped(rel, str(exc)))
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read file: {exc.strerror or exc}"))
    skipped.sort(key=lambda item: item.source)
    for item in skipped:
        log.warning("skipped %s: %s", item.source, item.reason)
    return CorpusLoad(unique_ids(documents), skipped)


def unique_ids(documents: list[Document]) -> list[Document]:
    """Documents whose ids collide (``report.txt`` and ``report.md``, ``a b.txt`` and ``a-b.txt``)
    get distinct ids, deterministically: the first in path order keeps it, the others add their
    file type (``report-md``), then a number; each says so in its warnings.

    >>> docs = [Document("a-b", "a b.txt", "T", "x", "1"), Document("a-b", "a-b.txt", "T", "y", "2")]
    >>> [(d.doc_id, d.warnings) for d in unique_ids(docs)]
    [('a-b', []), ('a-b-txt', ["id 'a-b' is also used by a b.txt, so this document's id is 'a-b-txt'"])]
    """
    taken: dict[str, str] = {}
    out = []
    for doc in sorted(documents, key=lambda d: d.source):
        doc_id = doc.doc_id
        if doc_id in taken:
            base = f"{doc_id}-{Path(doc.source).suffix.lstrip('.').lower() or 'file'}"
            doc_id, n = base, 2
            while doc_id in taken:
                doc_id, n = f"{base}-{n}", n + 1
            note = f"id {doc.doc_id!r} is also used by {taken[doc.doc_id]}, so this document's id is {doc_id!r}"
            log.warning("%s: %s", doc.source, note)
            doc = replace(doc, doc_id=doc_id, warnings=[*doc.warnings, note])
        taken[doc_id] = doc.source
        out.append(doc)
    return out
