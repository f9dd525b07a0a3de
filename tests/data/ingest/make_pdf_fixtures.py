"""Rebuild the PDF fixtures from SQLite's public-domain documentation pages (Debian's sqlite3-doc).

Not a test: run by hand with the system Python (LibreOffice's ``uno`` module, pdflatex) and the
project venv on ``PYTHONPATH`` for lxml, pypdf and pypdfium2, as tests/data/ingest/README.md describes::

    python3 tests/data/ingest/make_pdf_fixtures.py /usr/share/doc/sqlite3 tests/data/ingest
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from xml.sax.saxutils import escape

TITLE = "Appropriate Uses For SQLite"
ITEMS_PER_SECTION = 4

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.3" '
    'office:mimetype="application/vnd.oasis.opendocument.text"'
)

STYLES = """
<office:font-face-decls>
 <style:font-face style:name="Body" svg:font-family="'DejaVu Serif:liga'" style:font-family-generic="roman"/>
</office:font-face-decls>
<office:styles>
 <style:default-style style:family="paragraph">
  <style:paragraph-properties fo:hyphenation-ladder-count="no-limit"/>
  <style:text-properties style:font-name="Body" fo:font-size="10.5pt" fo:language="en" fo:country="US"
   fo:hyphenate="true" fo:hyphenation-remain-char-count="3" fo:hyphenation-push-char-count="3"/>
 </style:default-style>
 <style:style style:name="Standard" style:family="paragraph"/>
 <style:style style:name="Text_20_body" style:display-name="Text body" style:family="paragraph">
  <style:paragraph-properties fo:text-align="justify" fo:margin-bottom="0.18cm"/>
 </style:style>
 <style:style style:name="Title" style:family="paragraph">
  <style:paragraph-properties fo:text-align="center" fo:margin-bottom="0.5cm"/>
  <style:text-properties fo:font-size="18pt" fo:font-weight="bold" fo:hyphenate="false"/>
 </style:style>
 <style:style style:name="Heading_20_1" style:display-name="Heading 1" style:family="paragraph" style:default-outline-level="1">
  <style:paragraph-properties fo:margin-top="0.4cm" fo:margin-bottom="0.2cm" fo:keep-with-next="always"/>
  <style:text-properties fo:font-size="14pt" fo:font-weight="bold" fo:hyphenate="false"/>
 </style:style>
 <style:style style:name="Heading_20_2" style:display-name="Heading 2" style:family="paragraph" style:default-outline-level="2">
  <style:paragraph-properties fo:margin-top="0.3cm" fo:margin-bottom="0.15cm" fo:keep-with-next="always"/>
  <style:text-properties fo:font-size="11.5pt" fo:font-weight="bold" fo:hyphenate="false"/>
 </style:style>
 <style:style style:name="Contents_20_Heading" style:display-name="Contents Heading" style:family="paragraph">
  <style:text-properties fo:font-size="13pt" fo:font-weight="bold"/>
 </style:style>
 <style:style style:name="Contents_20_1" style:display-name="Contents 1" style:family="paragraph">
  <style:paragraph-properties><style:tab-stops>
   <style:tab-stop style:position="11.8cm" style:type="right" style:leader-style="dotted" style:leader-text="."/>
  </style:tab-stops></style:paragraph-properties>
 </style:style>
 <style:style style:name="Contents_20_2" style:display-name="Contents 2" style:family="paragraph">
  <style:paragraph-properties fo:margin-left="0.5cm"><style:tab-stops>
   <style:tab-stop style:position="11.3cm" style:type="right" style:leader-style="dotted" style:leader-text="."/>
  </style:tab-stops></style:paragraph-properties>
 </style:style>
 <style:style style:name="Header" style:family="paragraph">
  <style:paragraph-properties fo:text-align="end"/><style:text-properties fo:font-size="8.5pt" fo:font-style="italic"/>
 </style:style>
 <style:style style:name="Footer" style:family="paragraph">
  <style:paragraph-properties fo:text-align="center"/><style:text-properties fo:font-size="8.5pt"/>
 </style:style>
</office:styles>
<office:automatic-styles>
 <style:page-layout style:name="pm1">
  <style:page-layout-properties fo:page-width="14.8cm" fo:page-height="21cm" fo:margin-top="1.2cm" fo:margin-bottom="1.2cm"
   fo:margin-left="1.5cm" fo:margin-right="1.5cm"/>
  <style:header-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-bottom="0.3cm"/></style:header-style>
  <style:footer-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-top="0.3cm"/></style:footer-style>
 </style:page-layout>
</office:automatic-styles>
<office:master-styles>
 <style:master-page style:name="Standard" style:page-layout-name="pm1">
  <style:header><text:p text:style-name="Header">SQLite documentation: Appropriate Uses</text:p></style:header>
  <style:footer><text:p text:style-name="Footer">Page <text:page-number text:select-page="current">1</text:page-number></text:p>
  </style:footer>
 </style:master-page>
</office:master-styles>
"""

TOC = """
<text:table-of-content text:name="Table of Contents1">
 <text:table-of-content-source text:outline-level="2">
  <text:index-title-template text:style-name="Contents_20_Heading">Contents</text:index-title-template>
  {templates}
 </text:table-of-content-source>
 <text:index-body><text:index-title text:name="Table of Contents1_Head">
  <text:p text:style-name="Contents_20_Heading">Contents</text:p></text:index-title></text:index-body>
</text:table-of-content>
"""

ENTRY = """<text:table-of-content-entry-template text:outline-level="{level}" text:style-name="Contents_20_{level}">
  <text:index-entry-text/><text:index-entry-tab-stop style:type="right" style:leader-char="."/><text:index-entry-page-number/>
 </text:table-of-content-entry-template>"""


def _text(elem) -> str:
    return re.sub(r"\s+", " ", elem.text_content()).strip()


def blocks_from_html(html_path: Path) -> list[tuple[str, str]]:
    """(style, text) pairs from the page: intro paragraphs, then each section's first list items."""
    import lxml.html

    root = lxml.html.parse(str(html_path)).getroot()
    h1 = root.find(".//h1")
    out: list[tuple[str, str]] = []
    for elem in h1.itersiblings():
        if elem.tag == "p":
            out.append(("Text_20_body", _text(elem)))
        elif elem.tag == "h2":
            out.append(("Heading_20_1", _text(elem)))
        elif elem.tag in ("ul", "ol"):
            for item in elem.findall("li")[:ITEMS_PER_SECTION]:
                lead = item.find(".//b")
                out.append(("Heading_20_2", _text(lead).replace("\u2192", "-").rstrip(" -")))
                lead.drop_tree()
                for para in item.iter("p"):
                    if _text(para):
                        out.append(("Text_20_body", _text(para)))
    return out


def write_fodt(blocks: list[tuple[str, str]], path: Path) -> None:
    """A flat ODT with a title, a table of contents, running header and footer, justified hyphenated text."""
    body = [f'<text:p text:style-name="Title">{escape(TITLE)}</text:p>']
    body.append(TOC.format(templates="".join(ENTRY.format(level=n) for n in (1, 2))))
    for style, text in blocks:
        if style.startswith("Heading"):
            level = style[-1]
            body.append(f'<text:h text:style-name="{style}" text:outline-level="{level}">{escape(text)}</text:h>')
        else:
            body.append(f'<text:p text:style-name="{style}">{escape(text)}</text:p>')
    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document {NS}>{STYLES}<office:body><office:text>{"".join(body)}'
    path.write_text(xml + "</office:text></office:body></office:document>\n", encoding="utf-8")


def export_pdf(fodt: Path, pdf: Path) -> None:
    """Open the document in LibreOffice, update the table of contents and export a tagged-free PDF."""
    import uno
    from com.sun.star.beans import PropertyValue

    pipe = f"fixtures{time.time_ns()}"
    proc = subprocess.Popen(["soffice", "--headless", "--norestore", f"--accept=pipe,name={pipe};urp;"])
    try:
        resolver = uno.getComponentContext().ServiceManager.createInstanceWithContext(
            "com.sun.star.bridge.UnoUrlResolver", uno.getComponentContext()
        )
        for _ in range(60):
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:  # noqa: BLE001 - LibreOffice still starting
                time.sleep(0.5)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)

        def prop(name, value):
            p = PropertyValue()
            p.Name, p.Value = name, value
            return p

        doc = desktop.loadComponentFromURL(fodt.resolve().as_uri(), "_blank", 0, (prop("Hidden", True),))
        indexes = doc.getDocumentIndexes()
        for i in range(indexes.getCount()):
            indexes.getByIndex(i).update()
        doc.refresh()
        doc.storeToURL(pdf.resolve().as_uri(), (prop("FilterName", "writer_pdf_Export"),))
        doc.close(True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def image_only_pdf(src: Path, out: Path, page_index: int = 1, scale: float = 1.0) -> None:
    """A "scanned" copy of one page: the page rendered to a grey image, no text layer."""
    import pypdfium2 as pdfium

    page = pdfium.PdfDocument(str(src))[page_index]
    bitmap = page.render(scale=scale, grayscale=True)
    width, height = bitmap.width, bitmap.height
    rows = bitmap.buffer
    stride = bitmap.stride
    raw = b"".join(bytes(rows[y * stride : y * stride + width]) for y in range(height))
    pw, ph = page.get_size()
    image = zlib.compress(raw, 9)
    content = f"q {pw:.2f} 0 0 {ph:.2f} 0 0 cm /Im0 Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2f} {ph:.2f}] /Contents 4 0 R "
        f"/Resources << /XObject << /Im0 5 0 R >> >> >>".encode(),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /FlateDecode /Length %d >>\nstream\n" % (width, height, len(image)) + image + b"\nendstream",
    ]
    data = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    data += b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    out.write_bytes(bytes(data))


def encrypted_pdf(src: Path, out: Path, pages: int = 1) -> None:
    """The first pages of ``src``, encrypted with a user password (RC4-128: no extra crypto package needed)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(src).pages[:pages]:
        writer.add_page(page)
    writer.encrypt(user_password="fixture-user", owner_password="fixture-owner", algorithm="RC4-128")
    with out.open("wb") as fh:
        writer.write(fh)


TEX_PAGES = [("about.html", "About SQLite"), ("serverless.html", "Serverless"), ("zeroconf.html", "Zero-Configuration")]

TEX_PREAMBLE = r"""\pdfgentounicode=0
\documentclass[a5paper,10pt]{article}
\usepackage[margin=16mm]{geometry}
\pagestyle{myheadings}\markright{About SQLite}
\title{About SQLite}\author{SQLite documentation (public domain)}\date{}
\begin{document}\maketitle\tableofcontents
"""

_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def tex_source(doc_dir: Path) -> str:
    """A LaTeX article from three pages: one section each, their own headings as subsections."""
    import lxml.html

    parts = [TEX_PREAMBLE]
    for name, section in TEX_PAGES:
        parts.append(f"\\section{{{section}}}\n")
        root = lxml.html.parse(str(doc_dir / name)).getroot()
        for bad in root.xpath("//div[contains(@class, 'rightsidebar')]|//script"):
            bad.drop_tree()
        started = False
        for elem in root.iter("h1", "h2", "p"):
            text = _text(elem)
            if elem.tag != "p":
                heading = re.sub(r"^[0-9.]+ ", "", text)
                if heading.lower() != section.lower():
                    parts.append(f"\\subsection{{{tex_escape(heading)}}}\n")
                started = True
            elif started and text and not text.startswith("This page last modified"):
                parts.append(tex_escape(text) + "\n\n")
    parts.append("\\end{document}\n")
    return "".join(parts)


def tex_pdf(doc_dir: Path, pdf: Path) -> None:
    """Typeset with pdflatex (twice, for the table of contents): TeX ligatures, hyphenation, running heads."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "about.tex").write_text(tex_source(doc_dir), encoding="utf-8")
        for _ in range(2):
            subprocess.run(["pdflatex", "-interaction=nonstopmode", "about.tex"], cwd=tmp, check=True, capture_output=True)
        pdf.write_bytes((Path(tmp) / "about.pdf").read_bytes())


def main(doc_dir: str, out_dir: str) -> None:
    out, docs = Path(out_dir), Path(doc_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fodt = Path(tmp) / "whentouse.fodt"
        write_fodt(blocks_from_html(docs / "whentouse.html"), fodt)
        export_pdf(fodt, out / "sqlite-whentouse.pdf")
    tex_pdf(docs, out / "sqlite-about-latex.pdf")
    image_only_pdf(out / "sqlite-whentouse.pdf", out / "sqlite-whentouse-scanned.pdf")
    encrypted_pdf(out / "sqlite-whentouse.pdf", out / "sqlite-whentouse-encrypted.pdf")


if __name__ == "__main__":
    main(*sys.argv[1:3])
