from pathlib import Path

import pytest

from assistant.ingest.chunking import chunk_document
from assistant.ingest.documents import Document, load_corpus

SEEDS = load_corpus(Path(__file__).parent.parent / "corpus").documents


@pytest.mark.parametrize("size,overlap", [(100, 0), (300, 50), (800, 120), (2000, 300)])
def test_every_chunk_is_the_exact_document_span(size, overlap):
    for doc in SEEDS:
        chunks = chunk_document(doc, size, overlap)
        assert chunks, doc.doc_id
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text
            assert len(chunk.text) <= size
        starts = [c.start for c in chunks]
        assert starts == sorted(starts)
        # Every non-blank character of the document is inside some chunk.
        covered = set()
        for c in chunks:
            covered.update(range(c.start, c.end))
        assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_repeated_text_gets_distinct_offsets():
    text = "Same sentence here. " * 30
    doc = Document("rep", "rep.txt", "Rep", text, "0")
    chunks = chunk_document(doc, 100, 0)
    assert len({c.start for c in chunks}) == len(chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_chunk_ids_are_stable_and_unique():
    doc = SEEDS[0]
    a = chunk_document(doc, 300, 50)
    b = chunk_document(doc, 300, 50)
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len({c.chunk_id for c in a}) == len(a)
