"""Ingestion turns real user files into text clean enough to answer from (fixtures: tests/data/ingest/README.md)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from assistant.ingest.chunking import chunk_document
from assistant.ingest.documents import (
    MAX_FILE_BYTES,
    Document,
    UnreadableFile,
    clean_text,
    corpus_files,
    extract_text,
    load_corpus,
    load_document,
)
from assistant.ingest.readers import Limits, decode_text, text_warnings

DATA = Path(__file__).parent / "data" / "ingest"


def load(tmp_path: Path, *names: str, limits: Limits | None = None):
    """Copy fixtures into a fresh corpus folder and load it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, corpus / name)
    return load_corpus(corpus, limits or Limits())


def only_doc(tmp_path: Path, name: str) -> Document:
    result = load(tmp_path, name)
    assert result.skipped == [], result.skipped
    (doc,) = result.documents
    return doc


def lines(doc: Document) -> list[str]:
    return doc.text.split("\n")


def assert_offsets_exact(doc: Document) -> None:
    """Cleaning happened before the text became Document.text: chunks index into it exactly."""
    assert clean_text(doc.text) == doc.text
    for chunk in chunk_document(doc, 400, 60):
        assert doc.text[chunk.start : chunk.end] == chunk.text


# ---------------------------------------------------------------- HTML


def test_html_definition_list_keeps_its_terms(tmp_path: Path):
    raw = (DATA / "sqlite-conflict.html").read_text(encoding="utf-8")
    assert "<dt><b>ROLLBACK</b></dt>" in raw and "violation occurs, an immediate ROLLBACK\noccurs" in raw
    doc = only_doc(tmp_path, "sqlite-conflict.html")
    assert doc.title == "Constraint Conflict Resolution in SQLite"
    # Term and definition together, the definition's source line breaks gone.
    assert (
        "ROLLBACK — When a constraint violation occurs, an immediate ROLLBACK occurs, thus ending the current transaction, "
        "and the command aborts with a return code of SQLITE_CONSTRAINT. If no transaction is active (other than the implied "
        "transaction that is created on every command) then this algorithm works the same as ABORT."
    ) in lines(doc)
    for term in ("ABORT", "FAIL", "IGNORE", "REPLACE"):
        assert any(line.startswith(f"{term} — When a") for line in lines(doc)), term
    # Menus, the search form, scripts and the tagline are not content.
    for boilerplate in ("Documentation", "Download", "Search Documentation", "toggle_div", "antiRobot", "Choose any three"):
        assert boilerplate not in doc.text
    assert_offsets_exact(doc)


def test_html_tables_become_rows_of_cells_and_tabs_go(tmp_path: Path):
    raw = (DATA / "sqlite-datatype3.html").read_text(encoding="utf-8")
    assert "\t<li>TEXT</li>" in raw and "  INT<br>\n  INTEGER<br>" in raw
    doc = only_doc(tmp_path, "sqlite-datatype3.html")
    text = doc.text
    assert "\t" not in text
    header = "Example Typenames From The CREATE TABLE Statement or CAST Expression | Resulting Affinity | Rule Used To Determine Affinity"
    table = text[text.index(header) :].split("\n\n")[0].split("\n")
    assert table == [
        header,
        "INT, INTEGER, TINYINT, SMALLINT, MEDIUMINT, BIGINT, UNSIGNED BIG INT, INT2, INT8 | INTEGER | 1",
        "CHARACTER(20), VARCHAR(255), VARYING CHARACTER(255), NCHAR(55), NATIVE CHARACTER(70), NVARCHAR(100), TEXT, CLOB | TEXT | 2",
        "BLOB no datatype specified | BLOB | 3",
        "REAL, DOUBLE, DOUBLE PRECISION, FLOAT | REAL | 4",
        "NUMERIC, DECIMAL(10,5), BOOLEAN, DATE, DATETIME | NUMERIC | 5",
    ]
    assert "- TEXT\n- NUMERIC\n- INTEGER\n- REAL\n- BLOB" in text  # the tab-indented list, one item a line
    assert "3.1.1. Affinity Name Examples" in lines(doc)
    assert "Documentation" not in text and "Search Changelog" not in text
    assert_offsets_exact(doc)


def test_html_layout_tables_and_link_menus(tmp_path: Path):
    doc = only_doc(tmp_path, "libxslt-intro.html")
    assert doc.title == "Introduction"
    assert "- Libxslt is based on libxml for XML parsing, tree manipulation and XPath support" in lines(doc)
    assert "This document describes libxslt, the XSLT C library developed for the GNOME project." in lines(doc)
    for menu in ("Main Menu", "Related links", "API Indexes", "Mail archive", "Perl XSLT bindings", "Search ..."):
        assert menu not in doc.text
    assert " | " not in doc.text  # layout tables are not data tables


def test_html_texinfo_definitions_without_navigation_or_permalinks(tmp_path: Path):
    doc = only_doc(tmp_path, "libffi-primitive-types.html")
    assert "ffi_type_uint8 — An unsigned, 8-bit integer type." in lines(doc)
    assert (
        "ffi_type_schar — The C signed char type. (Note that there is not an exact equivalent to the C char type in libffi; "
        "ordinarily you should either use ffi_type_schar or ffi_type_uchar depending on whether char is signed.)"
    ) in lines(doc)
    assert "¶" not in doc.text and "Next:" not in doc.text and "[Index]" not in doc.text


@pytest.mark.parametrize("name", ["sqlite-conflict.html", "sqlite-datatype3.html", "libxslt-intro.html", "libffi-primitive-types.html"])
def test_html_whitespace_is_normalised(tmp_path: Path, name: str):
    import lxml.html

    code = "\n".join(pre.text_content() for pre in lxml.html.parse(str(DATA / name)).getroot().iter("pre"))
    doc = only_doc(tmp_path, name)
    assert "\t" not in doc.text and "\n\n\n" not in doc.text
    for paragraph in doc.text.strip().split("\n\n"):
        rows = paragraph.split("\n")
        if all(row.strip() in code for row in rows):
            continue  # preformatted text keeps its lines and indentation
        assert "  " not in paragraph and paragraph == paragraph.strip(), paragraph
        # A paragraph is one line, unless it is a list (one item a line) or a table (one row a line).
        assert len(rows) == 1 or all(re.match(r"(- |\d+\. )", r) for r in rows) or all(" | " in r for r in rows), paragraph


# ---------------------------------------------------------------- PDF


def pypdf_text(path: Path) -> str | None:
    """What the previous extractor (pypdf) read from a fixture, to show the problems the tests are about (None without pypdf)."""
    try:
        import pypdf
    except ImportError:
        return None
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(path).pages)


def test_pdf_contents_headers_footers_and_hyphenation_are_cleaned(tmp_path: Path):
    before = pypdf_text(DATA / "sqlite-whentouse.pdf")
    assert before is None or ("Websites......" in before and "SQL data-\nbase engines" in before and "Page 2" in before)
    doc = only_doc(tmp_path, "sqlite-whentouse.pdf")
    text = doc.text
    assert doc.title == "Appropriate Uses For SQLite"
    # The table of contents (dot leaders), running header and "Page N" footer are gone.
    assert not re.search(r"\.{4,}", text) and "Contents" not in lines(doc)
    assert "SQLite documentation: Appropriate Uses" not in text and not re.search(r"^Page \d+$", text, re.M)
    assert lines(doc).count("Websites") == 1 and "Data analysis" in lines(doc)  # headings once, no contents entries
    # Lines re-joined into paragraphs, words split by hyphenation re-joined, real hyphens kept.
    assert (
        "SQLite is not directly comparable to client/server SQL database engines such as MySQL, Oracle, PostgreSQL, "
        "or SQL Server since SQLite is trying to solve a different problem."
    ) in lines(doc)
    for word in ("scalability", "airplanes", "reliable data services", "financial analysis tools", "easier to install", "colleague"):
        assert word in text, word
    for compound in ("command-line shell", "set-top boxes", "lovingly-attended", "15-20%", "2022-12-13", "third-party", "long-running"):
        assert compound in text, compound
    # A sentence running over a page break stays one sentence.
    assert "must operate without expert human support. SQLite is a good fit" in text
    assert "The traditional File/Open operation" in text
    assert doc.warnings == []
    assert_offsets_exact(doc)


def test_pdf_ligatures_and_tex_layout(tmp_path: Path):
    before = pypdf_text(DATA / "sqlite-about-latex.pdf")
    assert before is None or ("ﬁ" in before and "ﬀ" in before)
    doc = only_doc(tmp_path, "sqlite-about-latex.pdf")
    text = doc.text
    assert not re.search("[\ufb00-\ufb06]", text)
    assert "di\ufb00erent" not in text and "different" in text and "disk files" in text
    assert not re.search(r"^About SQLite \d+$", text, re.M)  # the running head with its page number
    assert not re.search(r"(\. ){4,}", text) and text.count("2.1 SQLite Is Serverless") == 1
    paragraph_starts = [line.split(". ")[0] for line in lines(doc)]
    assert "SQLite is an embedded SQL database engine" in paragraph_starts  # TeX's indented paragraphs
    assert "can cause the object code to be much larger.) There is a tradeoff" in text  # across the page break
    for word in ("Nevertheless", "interrupted by system crashes", "honest about all bugs"):
        assert word in text, word
    assert_offsets_exact(doc)


def test_scanned_pdf_is_skipped_and_a_partly_scanned_one_warns(tmp_path: Path):
    pdfium = pytest.importorskip("pypdfium2")
    mixed = pdfium.PdfDocument.new()
    for name in ("sqlite-whentouse.pdf", "sqlite-whentouse-scanned.pdf"):
        mixed.import_pages(pdfium.PdfDocument(str(DATA / name)))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mixed.save(str(corpus / "mixed.pdf"))
    result = load(tmp_path, "sqlite-whentouse-scanned.pdf", limits=Limits(ocr=False))  # OCR: tests/test_ingest_formats.py
    assert [(s.source, s.reason) for s in result.skipped] == [
        ("sqlite-whentouse-scanned.pdf", "no text layer: scanned PDF? (OCR is off: ASSISTANT_OCR=false)")
    ]
    (doc,) = result.documents
    assert doc.warnings == ["no text layer on 1 of 7 pages (scanned pages?): page 7; OCR is off: ASSISTANT_OCR=false"]
    assert doc.info()["warnings"] == doc.warnings


def test_encrypted_and_broken_pdfs_are_skipped_with_reasons(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "truncated.pdf").write_bytes((DATA / "sqlite-whentouse.pdf").read_bytes()[:20000])
    result = load(tmp_path, "sqlite-whentouse-encrypted.pdf")
    reasons = {s.source: s.reason for s in result.skipped}
    assert reasons["sqlite-whentouse-encrypted.pdf"].startswith("the PDF is password-protected")
    assert reasons["truncated.pdf"].startswith("broken PDF (")
    assert result.documents == []


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    for page in pypdf.PdfReader(DATA / "sqlite-whentouse.pdf").pages[:2]:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")  # opens without a password, like in a viewer
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    writer.write(corpus / "restricted.pdf")
    (doc,) = load_corpus(corpus).documents
    assert doc.title == "Appropriate Uses For SQLite" and "SQLite does not compete with client/server databases." in doc.text


# ---------------------------------------------------------------- text encodings


def test_utf16_with_bom_is_text_not_binary(tmp_path: Path):
    raw = (DATA / "python-unicode-howto-utf16le.txt").read_bytes()
    assert raw[:2] == b"\xff\xfe" and b"\x00" in raw[:100]
    doc = only_doc(tmp_path, "python-unicode-howto-utf16le.txt")
    assert "So are 'È' and 'Í'." in doc.text and "1F600   '😀'; GRINNING FACE" in doc.text
    assert "\r" not in doc.text and "\ufeff" not in doc.text and "\x00" not in doc.text
    assert doc.title == ".. _unicode-howto:"
    assert doc.warnings == []


def test_every_unicode_form_decodes_to_the_same_text():
    text, _ = decode_text((DATA / "python-unicode-howto-utf16le.txt").read_bytes())
    forms = [
        ("utf-16-le", "\ufeff"),
        ("utf-16-be", "\ufeff"),
        ("utf-8", "\ufeff"),
        ("utf-8", ""),
        ("utf-32-le", "\ufeff"),
        ("utf-32-be", "\ufeff"),
    ]
    forms += [("utf-16-le", ""), ("utf-16-be", "")]  # no BOM: recognised by the NUL in every other byte
    for encoding, bom in forms:
        assert decode_text((bom + text).encode(encoding)) == (text, []), (encoding, bom)


def test_legacy_code_page_is_decoded_with_a_warning():
    text, _ = decode_text((DATA / "python-unicode-howto-utf16le.txt").read_bytes())
    decoded, warnings = decode_text(text.encode("utf-16")[2:].decode("utf-16-le").encode("cp1252", errors="ignore"))
    assert "So are 'È' and 'Í'." in decoded
    assert warnings and warnings[0].startswith("not UTF-8: decoded as")


# ---------------------------------------------------------------- symlinks and size


def test_symlinks_leading_out_of_the_corpus_are_refused(tmp_path: Path):
    corpus, outside = tmp_path / "corpus", tmp_path / "private"
    (corpus / "pages").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(DATA / "libffi-primitive-types.html", corpus / "pages" / "types.html")
    shutil.copy(DATA / "sqlite-conflict.html", outside / "secret.html")
    (corpus / "leak.html").symlink_to(outside / "secret.html")
    (corpus / "relative-leak.html").symlink_to(Path("..") / "private" / "secret.html")
    (corpus / "private-folder").symlink_to(outside, target_is_directory=True)
    (corpus / "alias.html").symlink_to(Path("pages") / "types.html")
    (corpus / "dangling.txt").symlink_to(corpus / "gone.txt")

    result = load_corpus(corpus)
    assert sorted(d.source for d in result.documents) == ["alias.html", "pages/types.html"]
    assert not any("ROLLBACK" in d.text for d in result.documents)
    assert {s.source: s.reason for s in result.skipped} == {
        "dangling.txt": "broken symlink (its target does not exist)",
        "leak.html": "symlink to a file outside the corpus folder (not followed)",
        "private-folder": "symlink to a folder outside the corpus folder (not followed)",
        "relative-leak.html": "symlink to a file outside the corpus folder (not followed)",
    }
    assert [p.name for p in corpus_files(corpus)] == ["alias.html", "types.html"]
    with pytest.raises(UnreadableFile, match="outside the corpus folder"):
        load_document(corpus / "leak.html", corpus)


def test_per_file_size_limit_is_configurable(tmp_path: Path):
    assert MAX_FILE_BYTES == 50 * 1024 * 1024
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("sqlite-datatype3.html", "sqlite-conflict.html"):
        shutil.copy(DATA / name, corpus / name)
    result = load_corpus(corpus, 20_000)
    assert [d.source for d in result.documents] == ["sqlite-conflict.html"]
    assert [(s.source, s.reason) for s in result.skipped] == [("sqlite-datatype3.html", "file too large (38.2 KiB > 19.5 KiB limit)")]
    assert len(load_corpus(corpus).documents) == 2
    with pytest.raises(UnreadableFile, match="file too large"):
        extract_text(corpus / "sqlite-datatype3.html", 1_000)


# ---------------------------------------------------------------- warnings


def test_document_warnings_default_empty_and_old_index_rows_still_load():
    row = {"doc_id": "d", "source": "d.txt", "title": "T", "text": "Text.\n", "sha256": "0", "language": []}
    doc = Document(**row)
    assert doc.warnings == [] and doc.info()["warnings"] == []


def test_text_warnings_on_short_garbled_and_mis_decoded_text():
    raw = (DATA / "python-unicode-howto-utf16le.txt").read_bytes()
    text, _ = decode_text(raw)
    assert text_warnings(text) == []
    # What a PDF font without a Unicode map gives: every other word unreadable.
    garbled = re.sub(r"\w+ (\w+)", lambda m: m.group().split()[0] + " " + "\ufffd" * len(m.group(1)), text)
    assert any(w.startswith("text looks garbled") for w in text_warnings(garbled))
    mojibake = text.encode("utf-8").decode("cp1252", errors="ignore")
    assert any("mis-decoded" in w for w in text_warnings(mojibake))
    assert text_warnings(text[:150]) == ["very little text (122 characters)"]
