from pathlib import Path

import pytest

from assistant.errors import CorpusError
from assistant.ingest.documents import clean_text, load_corpus
from tests.pdfs import pdf_bytes


def make_pdf(text: str) -> bytes:
    """A minimal valid one-page PDF (with its cross-reference table) that draws ``text``."""
    stream = f"BT /F1 12 Tf 10 50 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_bytes(objects)


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def test_seed_corpus_loads_with_metadata():
    load = load_corpus(Path(__file__).parent.parent / "corpus")
    assert load.skipped == []
    docs = {d.doc_id: d for d in load.documents}
    assert len(docs) == 5
    sdc = docs["sdc-tajikistan-digital-foundations-project"]
    assert sdc.publisher.startswith("Swiss Agency for Development and Cooperation")
    assert sdc.language == ["en", "fr"]
    assert docs["undp-tajik-delegation-georgia-public-services-2019"].date == "2019-12-26"
    for doc in docs.values():
        assert doc.title and doc.text.strip() and len(doc.sha256) == 64
        assert clean_text(doc.text) == doc.text, f"{doc.doc_id} is not already clean"


def test_each_format_is_read_and_bad_files_are_skipped_with_reasons(tmp_path: Path):
    corpus = tmp_path / "c"
    write(corpus / "plain.txt", "Plain text about Khatlon.\n")
    write(corpus / "notes.md", "# Notes on Rasht\n\nMarkdown body.\n")
    write(
        corpus / "page.html",
        "<html><head><title>Page title</title><script>var x = 'no';</script></head>"
        "<body><nav>Home | About</nav><p>Paragraph about GBAO &amp; Pamir.</p><li>Item one</li></body></html>",
    )
    write(corpus / "sub" / "doc.pdf", make_pdf("Hello Dushanbe PDF"))
    latin1 = "Le projet de développement à Douchanbé améliore l'accès aux services publics. " * 3
    write(corpus / "latin1.txt", (latin1 + "\nLes élèves, les enseignants et les familles en bénéficient.\n").encode("latin-1"))
    write(corpus / "broken.pdf", b"%PDF-1.4 this is not really a pdf")
    write(corpus / "binary.txt", b"\x00\x01\x02\x03" * 100)
    write(corpus / "empty.txt", "   \n\n")
    write(corpus / "image.png", b"\x89PNG")
    write(corpus / ".hidden.txt", "ignored")

    load = load_corpus(corpus)
    docs = {d.doc_id: d for d in load.documents}
    assert set(docs) == {"plain", "notes", "page", "sub/doc", "latin1"}
    assert docs["page"].title == "Page title"
    assert "Paragraph about GBAO & Pamir." in docs["page"].text
    assert "var x" not in docs["page"].text and "Home | About" not in docs["page"].text
    assert "Hello Dushanbe PDF" in docs["sub/doc"].text
    assert docs["sub/doc"].warnings == ["very little text (19 characters on 1 page): scanned PDF?"]
    assert docs["latin1"].warnings[0].startswith("not UTF-8: decoded as")
    assert docs["notes"].title == "Notes on Rasht"
    assert "développement à Douchanbé" in docs["latin1"].text

    reasons = {s.source: s.reason for s in load.skipped}
    assert set(reasons) == {"broken.pdf", "binary.txt", "empty.txt", "image.png"}
    assert "broken PDF" in reasons["broken.pdf"]
    assert "binary" in reasons["binary.txt"]
    assert reasons["empty.txt"] == "no extractable text"
    assert "unsupported file type" in reasons["image.png"]


def test_clean_text_drops_repeated_paragraphs_and_crumbs_of_whitespace():
    text = "Title\r\n\r\n\r\nA paragraph that repeats.\u00a0\n\nMiddle.\n\nA paragraph that repeats.\n"
    assert clean_text(text) == "Title\n\nA paragraph that repeats.\n\nMiddle.\n"


def test_missing_corpus_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CorpusError, match="corpus directory not found"):
        load_corpus(tmp_path / "nope")


def test_the_document_list_reports_skipped_files_and_warnings(settings):
    from fastapi.testclient import TestClient

    from assistant.server.app import create_app
    from assistant.service import open_service
    from tests.fakes import FakeEmbedder

    (settings.corpus_dir / "notes.odp").write_bytes(b"PK\x03\x04 not supported")
    (settings.corpus_dir / "short.txt").write_text("Just a line.\n", encoding="utf-8")
    service = open_service(settings, FakeEmbedder())
    with TestClient(create_app(settings, service)) as client:
        body = client.get("/documents").json()
    assert {"source": "notes.odp", "reason": "unsupported file type '.odp'"} in body["skipped"]
    short = next(d for d in body["documents"] if d["source"] == "short.txt")
    assert any("very little text" in w for w in short["warnings"])
