"""Splitting documents into overlapping chunks that keep their character offsets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.ingest.documents import Document

if TYPE_CHECKING:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

# Paragraphs first, then lines, then sentence ends, then clauses, then words.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    """A span of a document: ``text == document.text[start:end]``."""

    chunk_id: str
    doc_id: str
    start: int
    end: int
    text: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


def make_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    from langchain_text_splitters import RecursiveCharacterTextSplitter  # only needed to build

    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
        add_start_index=True,
    )


def chunk_document(doc: Document, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    """Split one document; every chunk's offsets are checked against the text.

    >>> from assistant.ingest.documents import Document
    >>> doc = Document("d", "d.txt", "T", "First paragraph here.\\n\\nSecond one.", "0")
    >>> [(c.start, c.end, c.text) for c in chunk_document(doc, 100, 0)]
    [(0, 34, 'First paragraph here.\\n\\nSecond one.')]
    """
    splitter = make_splitter(chunk_size, chunk_overlap)
    chunks: list[Chunk] = []
    cursor = 0
    for piece in splitter.create_documents([doc.text]):
        text = piece.page_content
        start = piece.metadata.get("start_index", -1)
        if start < 0 or doc.text[start : start + len(text)] != text:
            # The splitter's search can fail on repeated text; find it from the last chunk on.
            start = doc.text.find(text, cursor)
            if start < 0:
                start = doc.text.find(text)
        if start < 0:  # pragma: no cover - the splitter only returns substrings
            raise ValueError(f"chunk not found in document {doc.doc_id}")
        cursor = start + 1
        chunks.append(Chunk(f"{doc.doc_id}#{len(chunks)}", doc.doc_id, start, start + len(text), text))
    return chunks
