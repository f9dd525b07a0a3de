"""Files as people have them: wrong or empty files refused in words, limits on the work a document may take,
nothing lost by HTML extraction, Word files, metadata a person recognises and PDF pages in citations.

Every test reads files copied into a temporary corpus folder (never the live ``corpus/``) through the real
readers (``load_document``/``load_corpus``) or the real upload route (``POST /documents``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.ingest.documents import Limits, UnreadableFile, load_corpus, load_document
from assistant.server.app import create_app
from tests.conftest import ROOT
from tests.fakes import FakeEmbedder

DATA = ROOT / "tests" / "data" / "ingest"
PDF = DATA / "sqlite-whentouse.pdf"
ENCRYPTED = DATA / "sqlite-whentouse-encrypted.pdf"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + b"This program cannot be run in DOS mode."
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56)


def read(tmp_path: Path, name: str, data: bytes, **kwargs):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return load_document(folder / name, folder, **kwargs)


def refusal(tmp_path: Path, name: str, data: bytes, **kwargs) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as caught:
        read(tmp_path, name, data, **kwargs)
    return caught.value


# ---------------------------------------------------------------------------- A. errors a person understands


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("report.pdf", EXE, "this file is not a PDF (it looks like a Windows program)"),
        ("report.pdf", ELF, "this file is not a PDF (it looks like a Linux program)"),
        ("report.pdf", b"<!DOCTYPE html><html><body><p>Saved</p></body></html>", "this file is not a PDF (it looks like an HTML page)"),
        ("report.pdf", b"\x89PNG\r\n\x1a\n" + bytes(40), "this file is not a PDF (it looks like a PNG image)"),
        ("report.pdf", b"Just some notes typed into a file named .pdf\n", "this file is not a PDF (it looks like a text file)"),
        ("notes.txt", EXE, "this file is not a text file (it looks like a Windows program)"),
        ("page.html", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "this file is not an HTML page (it looks like a PDF)"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_refused_saying_what_it_looks_like(tmp_path, name, data, message):
    error = refusal(tmp_path, name, data)
    assert str(error) == message and error.kind == "type"


def test_a_zip_named_pdf_says_what_is_inside(tmp_path):
    import zipfile

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    assert str(refusal(tmp_path, "report.pdf", archive.read_bytes())) == "this file is not a PDF (it looks like a Word document (.docx))"


@pytest.mark.parametrize("name", ["empty.pdf", "empty.txt", "empty.html", "empty.md"])
def test_an_empty_file_is_refused_as_empty(tmp_path, name):
    error = refusal(tmp_path, name, b"")
    assert str(error) == "the file is empty" and error.kind == "empty"


def test_a_password_protected_pdf_says_so(tmp_path):
    error = refusal(tmp_path, "locked.pdf", ENCRYPTED.read_bytes())
    assert str(error).startswith("the PDF is password-protected") and error.kind == "encrypted"


def test_text_that_merely_starts_with_the_letters_mz_is_still_text(tmp_path):
    doc = read(tmp_path, "mz.txt", b"MZ is the code of the Mazar district office. " * 10)
    assert doc.text.startswith("MZ is the code")


def test_the_corpus_folder_lists_such_files_as_skipped_with_the_reason(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "good.txt").write_text("A real note about the Vakhsh irrigation programme in Khatlon. " * 5)
    (folder / "setup.pdf").write_bytes(EXE)
    (folder / "blank.pdf").write_bytes(b"")
    shutil.copy(ENCRYPTED, folder / "locked.pdf")
    loaded = load_corpus(folder)
    assert [d.source for d in loaded.documents] == ["good.txt"]
    reasons = {s.source: s.reason for s in loaded.skipped}
    assert reasons["setup.pdf"] == "this file is not a PDF (it looks like a Windows program)"
    assert reasons["blank.pdf"] == "the file is empty"
    assert reasons["locked.pdf"].startswith("the PDF is password-protected")


@pytest.fixture
def client(settings: Settings):
    local = settings.model_copy(update={"reader": False, "embedder": "use"})
    with TestClient(create_app(local, embedder=FakeEmbedder())) as c:
        c.app.state.live.wait(60)
        yield c


def upload(client, *files: tuple[str, bytes]):
    return client.post("/documents", files=[("files", (name, data, "application/octet-stream")) for name, data in files])


def uploads_left(settings_dir: Path) -> list[str]:
    folder = settings_dir / "uploads"
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


@pytest.mark.parametrize(
    ("name", "data", "status", "code", "reason"),
    [
        ("setup.pdf", EXE, 415, "unsupported_media_type", "this file is not a PDF (it looks like a Windows program)"),
        ("blank.pdf", b"", 400, "empty_file", "the file is empty"),
        ("locked.pdf", ENCRYPTED.read_bytes(), 422, "password_protected", "the PDF is password-protected"),
    ],
)
def test_uploads_of_such_files_get_their_status_and_nothing_is_kept(client, settings, name, data, status, code, reason):
    before = client.get("/documents").json()["documents"]
    response = upload(client, (name, data))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and reason in error["message"]
    (result,) = error["details"]["files"]
    assert result["status"] == "skipped" and result["reason"].startswith(reason)
    assert uploads_left(settings.corpus_dir) == []
    assert client.get("/documents").json()["documents"] == before


def test_a_refused_file_beside_a_good_one_is_reported_and_the_good_one_queued(client, settings):
    note = b"Kulob district clinics\n\nIn 2021 the Kulob clinics programme equipped 14 rural health posts.\n"
    response = upload(client, ("setup.pdf", EXE), ("clinics.txt", note))
    assert response.status_code == 202
    assert [(r["status"], r["reason"]) for r in response.json()["files"]] == [
        ("skipped", "this file is not a PDF (it looks like a Windows program)"),
        ("queued", None),
    ]
    assert uploads_left(settings.corpus_dir) == ["clinics.txt"]


# ---------------------------------------------------------------------------- B. limits on the work per document


def page_bomb(pages: int) -> bytes:
    """A small PDF whose page tree lists the same page ``pages`` times (600 KB for 100,000)."""
    content = b"BT /F1 12 Tf 72 720 Td (One page listed many times over in the page tree.) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b"3 0 R " * pages + b"] /Count " + str(pages).encode() + b" >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode() + b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_a_pdf_listing_one_page_100000_times_is_refused_at_once(tmp_path):
    import time

    data = page_bomb(100_000)
    assert 550_000 < len(data) < 650_000
    started = time.monotonic()
    error = refusal(tmp_path, "bomb.pdf", data, limits=Limits.from_settings(Settings(_env_file=None)))
    assert time.monotonic() - started < 2.0
    assert error.kind == "limit" and str(error).startswith("too many pages (100,000 > 2,000 limit)")
    # Within the limit it is read.
    assert read(tmp_path, "one.pdf", page_bomb(1)).text.startswith("One page listed many times")


def test_the_time_budget_stops_a_long_pdf_part_way(tmp_path):
    import time

    limits = Limits.from_settings(Settings(_env_file=None, max_pdf_pages=200_000, max_read_s=0.5))
    started = time.monotonic()
    error = refusal(tmp_path, "bomb.pdf", page_bomb(100_000), limits=limits)
    assert time.monotonic() - started < 3.0
    assert error.kind == "limit" and str(error).startswith("reading it took longer than the 0.5 s limit (at page ")


def test_the_time_budget_holds_for_html_too(tmp_path):
    page = b"<html><body>" + b"<section><p>Rasht valley schools programme, a paragraph.</p></section>" * 20_000 + b"</body></html>"
    error = refusal(tmp_path, "big.html", page, limits=Limits(max_read_s=0.01))
    assert error.kind == "limit" and "took longer than the 0.01 s limit" in str(error)
    assert "Rasht valley" in read(tmp_path, "big2.html", page).text


def test_an_upload_over_the_page_limit_is_413_with_the_reason_and_fast(client, settings):
    import time

    started = time.monotonic()
    response = upload(client, ("bomb.pdf", page_bomb(100_000)))
    assert time.monotonic() - started < 5.0
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "too_large" and "too many pages (100,000 > 2,000 limit)" in error["message"]
    assert uploads_left(settings.corpus_dir) == []


def test_the_corpus_folder_uses_the_settings_limits(settings, tmp_path):
    from assistant.search.build import build_index

    (settings.corpus_dir / "bomb.pdf").write_bytes(page_bomb(50))
    report = build_index(settings.model_copy(update={"max_pdf_pages": 10}), FakeEmbedder())
    assert {s.source: s.reason for s in report.skipped}["bomb.pdf"].startswith("too many pages (50 > 10 limit)")


# ---------------------------------------------------------------------------- C. no silent loss in HTML

POLICY = DATA / "debian-python-policy.html"


def visible_chars(raw: bytes) -> int:
    """Characters (not spaces) a browser shows of a page's body: its text less scripts and styles."""
    import re

    import lxml.html

    root = lxml.html.document_fromstring(raw)
    for elem in root.xpath("//script|//style|//noscript|//template"):
        elem.drop_tree()
    return len(re.sub(r"\s+", "", root.find("body").text_content()))


def test_the_sphinx_python_policy_page_is_read_whole(tmp_path):
    raw = POLICY.read_bytes()
    doc = read(tmp_path, "python-policy.html", raw)
    kept = len("".join(doc.text.split()))
    assert kept >= 0.95 * visible_chars(raw), (kept, visible_chars(raw))  # 169 of 31,802 characters before
    assert "4.7. Modules Byte-Compilation" in doc.text and "3.5.2. Interpreter Location" in doc.text
    assert not any("very little text" in w for w in doc.warnings)
    assert doc.info()["chars"] == len(doc.text)


def test_when_main_content_extraction_keeps_under_half_the_whole_body_is_indexed_with_a_warning(tmp_path):
    body = "".join(f"<p>Paragraph {i} of the Gorno-Badakhshan livelihoods report, outside the main element.</p>" for i in range(60))
    page = f"<html><body><main><h1>Summary</h1><p>{'A short summary of the report. ' * 8}</p></main><div>{body}</div></body></html>"
    doc = read(tmp_path, "report.html", page.encode())
    assert "Paragraph 59 of the Gorno-Badakhshan" in doc.text and "A short summary" in doc.text
    (warning,) = [w for w in doc.warnings if "main-content extraction" in w]
    assert "so the whole page was indexed" in warning


def test_a_page_whose_main_content_is_most_of_it_gets_no_warning(tmp_path):
    doc = read(tmp_path, "datatype3.html", (DATA / "sqlite-datatype3.html").read_bytes())
    assert not any("main-content" in w for w in doc.warnings)


def test_nesting_deeper_than_256_elements_does_not_cut_the_document(tmp_path):
    page = "<html><body>" + "".join(f"<div><h2>Section {i}</h2><p>Text of section {i}.</p>" for i in range(400)) + "<p>The end.</p>"
    doc = read(tmp_path, "unclosed.html", page.encode())
    assert doc.text.count("Text of section") == 400 and "Text of section 399." in doc.text and "The end." in doc.text


def test_a_text_run_over_10_mb_does_not_cut_the_document(tmp_path):
    page = "<html><body><p>" + "Khorog " * 1_600_000 + "</p><p>The paragraph after the long run.</p></body></html>"
    assert len(page) > 11_000_000
    doc = read(tmp_path, "long.html", page.encode())
    assert doc.text.rstrip().endswith("The paragraph after the long run.") and doc.text.count("Khorog") == 1_600_000


def test_nesting_beyond_the_parsers_reach_is_refused_with_the_reason(tmp_path):
    page = "<html><body>" + "<div>" * 100_000 + "deep text" + "</div>" * 100_000 + "<p>shallow text after it</p></body></html>"
    error = refusal(tmp_path, "deep.html", page.encode())
    assert error.kind == "limit" and str(error).startswith("HTML nested more than 2,047 elements deep")


def test_the_warning_and_the_length_give_one_character_count(tmp_path):
    doc = read(tmp_path, "short.html", b"<html><body><p>Only a short note about the Dushanbe water utility.</p></body></html>")
    (warning,) = [w for w in doc.warnings if w.startswith("very little text")]
    assert warning == f"very little text ({doc.info()['chars']} characters)"


# ---------------------------------------------------------------------------- D. Word documents


def make_docx(path: Path, title: str = "Khatlon Rural Water Supply Project") -> Path:
    """A real .docx as Word users write them: a heading, body text, a bulleted and a numbered list, a fact table."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = "Ministry of Energy and Water Resources"
    document.add_heading("Khatlon Rural Water Supply Project", level=1)
    document.add_paragraph("The project brings piped drinking water to villages of the Khatlon region of Tajikistan.")
    document.add_heading("Activities", level=2)
    for item in ("Rehabilitation of 42 kilometres of pipes", "Training of village water committees"):
        document.add_paragraph(item, style="List Bullet")
    for item in ("Survey the villages", "Build the intakes", "Hand over to the committees"):
        document.add_paragraph(item, style="List Number")
    table = document.add_table(rows=0, cols=2)
    for label, value in (("Budget", "USD 12,500,000"), ("Duration", "01.03.2021 - 28.02.2026"), ("Project number", "TJ-KRW-0417")):
        cells = table.add_row().cells
        cells[0].text, cells[1].text = label, value
    document.add_paragraph("Households in Bokhtar and Kulob districts are the first to be connected.")
    document.save(str(path))
    return path


def test_a_docx_keeps_headings_lists_and_tables_in_order(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    make_docx(folder / "khatlon water.docx")
    (doc,) = load_corpus(folder).documents
    assert doc.doc_id == "khatlon-water" and doc.title == "Khatlon Rural Water Supply Project"
    assert doc.text == (
        "Khatlon Rural Water Supply Project\n\n"
        "The project brings piped drinking water to villages of the Khatlon region of Tajikistan.\n\n"
        "Activities\n\n"
        "- Rehabilitation of 42 kilometres of pipes\n- Training of village water committees\n"
        "1. Survey the villages\n2. Build the intakes\n3. Hand over to the committees\n\n"
        "Budget | USD 12,500,000\nDuration | 01.03.2021 - 28.02.2026\nProject number | TJ-KRW-0417\n\n"
        "Households in Bokhtar and Kulob districts are the first to be connected.\n"
    )


def test_a_docx_is_held_to_the_same_limits_and_reports(tmp_path):
    path = make_docx(tmp_path / "water.docx")
    error = refusal(tmp_path, "water.docx", path.read_bytes(), limits=Limits(max_read_s=1e-9))
    assert error.kind == "limit" and "took longer than" in str(error)
    assert str(refusal(tmp_path, "fake.docx", EXE)) == "this file is not a Word document (it looks like a Windows program)"
    assert str(refusal(tmp_path, "empty.docx", b"")) == "the file is empty"


def test_a_docx_in_the_corpus_folder_is_indexed_and_searchable(settings):
    from assistant.search.build import build_index
    from assistant.search.index import load_index

    make_docx(settings.corpus_dir / "khatlon-water.docx")
    report = build_index(settings, FakeEmbedder())
    assert "khatlon-water.docx" not in {s.source for s in report.skipped}
    index = load_index(settings.index_dir)
    assert "Project number | TJ-KRW-0417" in index.documents["khatlon-water"].text


def test_a_docx_upload_is_indexed_and_cited(client, settings, tmp_path):
    import time

    response = upload(client, ("Khatlon water.docx", make_docx(tmp_path / "k.docx").read_bytes()))
    assert response.status_code == 202, response.text
    (result,) = response.json()["files"]
    assert result["status"] == "queued" and result["doc_id"] == "uploads/Khatlon-water"
    deadline = time.monotonic() + 60
    while not (client.get("/health").json().get("building") is None and "uploads/Khatlon-water" in doc_ids(client)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    body = client.post("/ask", json={"question": "How many kilometres of pipes does the Khatlon Rural Water Supply Project rehabilitate?"})
    assert any(c["doc_id"] == "uploads/Khatlon-water" for c in body.json()["citations"])
    full = client.get("/documents/uploads/Khatlon-water").json()
    assert "Budget | USD 12,500,000" in full["text"]


def doc_ids(client) -> set[str]:
    return {d["doc_id"] for d in client.get("/documents").json()["documents"]}


# ---------------------------------------------------------------------------- E. metadata a person recognises


def pdf_with_info(source: Path, target: Path, **info: str) -> Path:
    """``source`` with its document information replaced (as other tools write it)."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(source))
    writer.add_metadata({f"/{key}": value for key, value in info.items()})
    writer.write(str(target))
    return target


@pytest.mark.parametrize(
    "junk",
    ["X Desktop Group (http://www.freedesktop.org)", "Microsoft Word - final_v3.docx", "www.example.org", "LibreOffice 7.4", "Document1"],
)
def test_a_pdf_whose_metadata_title_is_junk_takes_its_own_heading(tmp_path, junk):
    pdf = pdf_with_info(PDF, tmp_path / "in.pdf", Title=junk, Author="X Desktop Group", CreationDate="D:20190612093000+05'00'")
    doc = read(tmp_path, "report.pdf", pdf.read_bytes())
    assert doc.title == "Appropriate Uses For SQLite"
    assert doc.date == "2019-06-12" and doc.language == ["en"]


def test_a_real_metadata_title_is_kept(tmp_path):
    pdf = pdf_with_info(PDF, tmp_path / "in.pdf", Title="When to use SQLite: a guide", Author="SQLite")
    assert read(tmp_path, "report.pdf", pdf.read_bytes()).title == "When to use SQLite: a guide"


def test_a_title_that_is_the_author_is_not_a_title(tmp_path):
    pdf = pdf_with_info(PDF, tmp_path / "in.pdf", Title="Ministry of Economic Development", Author="Ministry of Economic Development")
    assert read(tmp_path, "report.pdf", pdf.read_bytes()).title == "Appropriate Uses For SQLite"


def test_the_corpus_metadata_file_still_wins(tmp_path):
    import json

    folder = tmp_path / "corpus"
    folder.mkdir()
    pdf_with_info(PDF, folder / "report.pdf", Title="X Desktop Group (http://www.freedesktop.org)", CreationDate="D:20190612")
    (folder / "metadata.json").write_text(json.dumps({"report.pdf": {"title": "Given title", "date": "2020-01", "language": ["fr"]}}))
    (doc,) = load_corpus(folder).documents
    assert (doc.title, doc.date, doc.language) == ("Given title", "2020-01", ["fr"])


def test_a_french_docx_with_a_generator_title_gets_its_heading_date_and_language(tmp_path):
    import datetime

    import docx

    document = docx.Document()
    document.core_properties.title = "Microsoft Word - fiche_projet.docx"
    document.core_properties.created = datetime.datetime(2022, 9, 1, 8, 0)
    document.add_paragraph("Direction du développement et de la coopération")
    document.add_heading("Projet de fondations numériques au Tadjikistan", level=1)
    document.add_paragraph("Le projet est financé par la Suisse et mis en œuvre avec la Banque mondiale dans les régions du pays.")
    document.save(str(tmp_path / "fiche.docx"))
    doc = read(tmp_path, "fiche.docx", (tmp_path / "fiche.docx").read_bytes())
    assert doc.title == "Projet de fondations numériques au Tadjikistan"
    assert doc.date == "2022-09-01" and doc.language == ["fr"]


def test_an_html_page_gives_its_declared_date_and_its_language(tmp_path):
    page = (
        '<html lang="ru"><head><title>Отчёт</title><meta name="citation_publication_date" content="2021-04-15"></head><body>'
        "<h1>Отчёт о проекте</h1><p>Проект финансируется Швейцарией и реализуется в регионах страны для жителей сёл.</p></body></html>"
    )
    doc = read(tmp_path, "otchet.html", page.encode())
    assert (doc.title, doc.date, doc.language) == ("Отчёт", "2021-04-15", ["ru"])


def test_the_documents_list_shows_date_and_language(client, tmp_path):
    import time

    pdf = pdf_with_info(PDF, tmp_path / "in.pdf", Title="X Desktop Group (http://www.freedesktop.org)", CreationDate="D:20190612")
    assert upload(client, ("sqlite.pdf", pdf.read_bytes())).status_code == 202
    deadline = time.monotonic() + 60
    while "uploads/sqlite" not in doc_ids(client) or client.get("/health").json().get("building") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (info,) = [d for d in client.get("/documents").json()["documents"] if d["doc_id"] == "uploads/sqlite"]
    assert (info["title"], info["date"], info["language"]) == ("Appropriate Uses For SQLite", "2019-06-12", ["en"])


# ---------------------------------------------------------------------------- F. PDF pages in citations


def page_words(path: Path) -> list[str]:
    """Each page's text as pdfium gives it, letters and digits only, for finding a paragraph's page."""
    import re

    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return [re.sub(r"[^\w]+", "", pdf[n].get_textpage().get_text_range()) for n in range(len(pdf))]
    finally:
        pdf.close()


@pytest.mark.parametrize("name", ["sqlite-whentouse.pdf", "sqlite-about-latex.pdf"])
def test_every_paragraph_of_a_pdf_knows_its_pages_exactly(tmp_path, name):
    import re

    doc = read(tmp_path, name, (DATA / name).read_bytes())
    pages = page_words(DATA / name)
    paragraphs = [m for m in re.finditer(r"[^\n]+(?:\n[^\n]+)*", doc.text)]
    assert [[m.start(), m.end()] for m in paragraphs] == [s[:2] for s in doc.page_spans]  # every paragraph, offsets exact
    for start, end, first, last in doc.page_spans:
        words = re.sub(r"[^\w]+", "", doc.text[start:end])
        head, tail = words[:12], words[-12:] if first == last else re.sub(r"[^\w]+", "", doc.text[start:end].split()[-1])
        assert head in pages[first - 1] and tail in pages[last - 1], (doc.text[start:end][:60], first, last)
    assert doc.info()["pages"] == len(pages) and doc.pages(0, 10) == (1, 1)
    assert read(tmp_path, "note.txt", b"A text file has no pages at all, so nothing is said about them.").pages(0, 10) is None


def test_citations_of_a_pdf_carry_their_page_in_ask_and_the_openai_response(client, settings):
    import time

    assert upload(client, ("whentouse.pdf", PDF.read_bytes())).status_code == 202
    deadline = time.monotonic() + 60
    while "uploads/whentouse" not in doc_ids(client) or client.get("/health").json().get("building") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (info,) = [d for d in client.get("/documents").json()["documents"] if d["doc_id"] == "uploads/whentouse"]
    assert info["pages"] == 6
    text = client.get("/documents/uploads/whentouse").json()["text"]
    doc = load_document(settings.corpus_dir / "uploads" / "whentouse.pdf", settings.corpus_dir)
    question = "Does SQLite support an unlimited number of simultaneous readers?"
    body = client.post("/ask", json={"question": question, "mode": "extractive"}).json()
    cited = [c for c in body["citations"] + body["related"] if c["doc_id"] == "uploads/whentouse"]
    assert cited, body
    for c in cited:
        start, end = (c["quote_start"], c["quote_end"]) if c["quote_end"] > c["quote_start"] else (c["start"], c["end"])
        assert text[c["quote_start"] : c["quote_end"]] == c["quote"]
        assert (c["page"], c["page_end"]) == doc.pages(start, end) and 1 <= c["page"] <= c["page_end"] <= 6
    readers = text.index("SQLite supports an unlimited number of simultaneous readers")
    assert doc.pages(readers, readers + 20) == (4, 4)
    reply = client.post("/v1/chat/completions", json={"model": "assistant-extractive", "messages": [{"role": "user", "content": question}]})
    assert reply.status_code == 200, reply.text
    extra = [c for c in reply.json()["citations"] if c["doc_id"] == "uploads/whentouse"]
    assert extra and all(isinstance(c["page"], int) and c["page_end"] >= c["page"] for c in extra)
    others = [c for c in body["citations"] + body["related"] if not c["source"].endswith(".pdf")]
    assert all(c["page"] is None and c["page_end"] is None for c in others)


# ---------------------------------------------------------------------------- scanned PDFs (OCR)


@pytest.mark.slow
def test_a_scanned_page_is_read_by_ocr_when_tesseract_is_installed(tmp_path):
    import re

    from assistant.ingest.ocr import tesseract_languages

    if tesseract_languages() is None:
        pytest.skip("Tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-rus)")
    doc = read(tmp_path, "scanned.pdf", (DATA / "sqlite-whentouse-scanned.pdf").read_bytes())
    assert any(w.startswith("read by OCR (Tesseract, ") and w.endswith(": page 1") for w in doc.warnings), doc.warnings
    # The scan is page 2 of sqlite-whentouse.pdf: most of that page's words come back.
    import pypdfium2 as pdfium

    original = pdfium.PdfDocument(str(PDF))
    words = re.findall(r"[a-z]{4,}", original[1].get_textpage().get_text_range().lower())
    original.close()
    found = set(re.findall(r"[a-z]{4,}", doc.text.lower()))
    recall = sum(w in found for w in words) / len(words)
    assert recall >= 0.9, recall
    assert doc.page_spans and all(span[2] == span[3] == 1 for span in doc.page_spans)
