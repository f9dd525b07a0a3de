"""Reading the corpus: files in, clean text with metadata out.

Supported: .txt, .md, .html/.htm (BeautifulSoup) and .pdf (pypdf). A file that cannot be
read is skipped with a reason; a file with no extractable text is reported as empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.errors import CorpusError

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
SUPPORTED_SUFFIXES = {".txt", ".md", ".html", ".htm", ".pdf"}
MAX_FILE_BYTES = 50 * 1024 * 1024
PREFERRED_ENCODINGS = ["cp1252", "latin_1", "iso8859_15", "cp1251", "koi8_r", "mac_cyrillic"]


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

    def info(self) -> dict:
        """Metadata without the text."""
        data = asdict(self)
        del data["text"]
        data["chars"] = len(self.text)
        return data


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class CorpusLoad:
    documents: list[Document]
    skipped: list[Skipped]


class UnreadableFile(Exception):
    """A corpus file that cannot be turned into text."""


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


def _decode(raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise UnreadableFile("binary content (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(raw))
        if not matches:
            raise UnreadableFile("not valid UTF-8 and no other text encoding fits") from None
        # Equally plausible code pages are common for short texts: prefer the corpus languages'.
        top = (matches[0].chaos, matches[0].coherence)
        tied = [m for m in matches if (m.chaos, m.coherence) == top]
        best = min(tied, key=lambda m: PREFERRED_ENCODINGS.index(m.encoding) if m.encoding in PREFERRED_ENCODINGS else 99)
        log.info("decoded as %s (not UTF-8)", best.encoding)
        return str(best)


def _html_text(raw: bytes) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(raw), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "template"]):
        tag.decompose()
    body = soup.body or soup
    blocks = [
        b.get_text(" ", strip=True) for b in body.find_all(["p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "pre", "blockquote"])
    ]
    text = "\n\n".join(b for b in blocks if b) or body.get_text("\n", strip=True)
    return text, title or None


def _pdf_text(path: Path) -> tuple[str, str | None]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise UnreadableFile("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except UnreadableFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise UnreadableFile(f"broken PDF ({exc.__class__.__name__}: {exc})") from exc
    return "\n\n".join(pages), (str(title).strip() or None) if title else None


def extract_text(path: Path) -> tuple[str, str | None]:
    """Return (raw text, title found in the file, if any) for one supported file."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UnreadableFile(f"file too large ({size / 1e6:.0f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB)")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _pdf_text(path)
    raw = path.read_bytes()
    if suffix in {".html", ".htm"}:
        return _html_text(raw)
    return _decode(raw), None


def _first_line_title(text: str, fallback: str) -> str:
    for line in text.split("\n"):
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 120 else line[:117] + "..."
    return fallback


def _load_metadata(corpus_dir: Path) -> dict[str, dict]:
    path = corpus_dir / METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def corpus_files(corpus_dir: Path) -> list[Path]:
    """Candidate files below ``corpus_dir``, sorted, hidden files and the metadata file left out."""
    files = []
    for path in sorted(corpus_dir.rglob("*")):
        rel = path.relative_to(corpus_dir)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() == METADATA_FILE:
            continue
        files.append(path)
    return files


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


def load_document(path: Path, corpus_dir: Path, metadata: dict | None = None) -> Document:
    """Read one file into a Document; raises UnreadableFile with a reason."""
    rel = path.relative_to(corpus_dir)
    raw_text, found_title = extract_text(path)
    text = clean_text(raw_text)
    if not text.strip():
        raise UnreadableFile("no extractable text")
    meta = metadata or {}
    language = meta.get("language") or []
    return Document(
        doc_id=doc_id_for(rel),
        source=rel.as_posix(),
        title=meta.get("title") or found_title or _first_line_title(text, rel.stem),
        text=text,
        sha256=file_hash(path),
        publisher=meta.get("publisher"),
        date=meta.get("date"),
        period=meta.get("period"),
        language=[language] if isinstance(language, str) else list(language),
        description=meta.get("description"),
    )


def load_corpus(corpus_dir: Path) -> CorpusLoad:
    """Read every supported file below ``corpus_dir``; unreadable ones are listed, not fatal."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus directory not found: {corpus_dir}")
    metadata = _load_metadata(corpus_dir)
    documents, skipped = [], []
    for path in corpus_files(corpus_dir):
        rel = path.relative_to(corpus_dir).as_posix()
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            skipped.append(Skipped(rel, f"unsupported file type '{path.suffix or '(none)'}'"))
            continue
        try:
            documents.append(load_document(path, corpus_dir, metadata.get(rel)))
        except UnreadableFile as exc:
            skipped.append(Skipped(rel, str(exc)))
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot read file: {exc.strerror or exc}"))
    for item in skipped:
        log.warning("skipped %s: %s", item.source, item.reason)
    return CorpusLoad(documents, skipped)
