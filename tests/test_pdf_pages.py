"""``GET /documents/{doc_id}/pages/{n}.png``: a PDF's page rendered, a citation's quote highlighted on it."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageChops

from assistant.config import Settings
from assistant.server.app import create_app
from tests.conftest import ROOT, SEED_CORPUS
from tests.fakes import FakeEmbedder
from tests.pdfs import pdf_bytes

WIDTH, HEIGHT = 612, 792  # US Letter, in points
SCALE = 1000 / WIDTH
PAGE_ONE = [(650, "Annual report on rural water supply in Khatlon."), (600, "The first phase repaired the old wells of the region.")]
PAGE_TWO = [
    (650, "Results of the second phase are summed up here."),
    (600, "The new pipeline brings clean water to twelve villages"),
    (586, "of the Vakhsh valley. Maintenance is paid by the users."),
    (200, "Costs were reviewed by the district council in March."),
]
SENTENCE = "The new pipeline brings clean water to twelve villages of the Vakhsh valley."


def make_pdf(pages: list[list[tuple[int, str]]]) -> bytes:
    """A minimal valid PDF drawing each page's (baseline, line) pairs in Helvetica 12 at x = 72: the one-page
    ``make_pdf`` of tests/test_documents.py, with several pages and lines."""
    count = len(pages)
    font = 3 + 2 * count
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    for i, lines in enumerate(pages):
        stream = "".join(f"BT /F1 12 Tf 72 {y} Td ({text}) Tj ET\n" for y, text in lines).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return pdf_bytes(objects)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pages")
    corpus = root / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    (corpus / "report.pdf").write_bytes(make_pdf([PAGE_ONE, PAGE_TWO]))
    shutil.copy(ROOT / "tests" / "data" / "ingest" / "sqlite-whentouse.pdf", corpus / "whentouse.pdf")
    settings = Settings(_env_file=None, corpus_dir=corpus, index_dir=root / "index", reader=False, embedder="use")
    with TestClient(create_app(settings, embedder=FakeEmbedder()), raise_server_exceptions=False) as c:
        c.app.state.live.wait(60)
        yield c


def png(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, max-age=3600"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def quote_offsets(client, doc_id: str, sentence: str) -> tuple[int, int]:
    text = client.get(f"/documents/{doc_id}").json()["text"]
    start = text.index(sentence)
    return start, start + len(sentence)


def px(x: float, y: float) -> tuple[int, int]:
    """A point of the page (PDF points, y upwards) as a pixel of its rendering."""
    return round(x * SCALE), round((HEIGHT - y) * SCALE)


def yellow(rgb: tuple[int, int, int]) -> bool:
    r, _, b = rgb
    return r > 200 and r - b > 40


def test_a_page_renders_as_a_png_about_1000_px_wide(client):
    image = png(client.get("/documents/report/pages/2.png"))
    assert image.size == (1000, math.ceil(HEIGHT * SCALE))
    assert client.get("/documents/report").json()["pages"] == 2  # the document route still answers beside it


def test_the_quoted_sentence_is_highlighted_where_it_is_and_nowhere_else(client):
    start, end = quote_offsets(client, "report", SENTENCE)
    plain = png(client.get("/documents/report/pages/2.png"))
    marked_response = client.get(f"/documents/report/pages/2.png?start={start}&end={end}")
    marked = png(marked_response)
    assert marked_response.headers["x-highlight-rects"] == "2"  # the sentence's two lines
    changed = ImageChops.difference(plain, marked).getbbox()
    assert changed is not None
    left, top = px(72, 600 + 14)
    right, bottom = px(WIDTH - 72, 586 - 6)
    assert left - 4 <= changed[0] and top <= changed[1] and changed[2] <= right and changed[3] <= bottom, changed
    # The paper between the letters of the first line: white in the plain page, tinted yellow in the highlighted one.
    (x0, y0), (x1, y1) = px(80, 600 + 8), px(300, 600 + 1)
    paper = [(x, y) for x in range(x0, x1) for y in range(y0, y1) if plain.getpixel((x, y)) == (255, 255, 255)]
    tinted = [xy for xy in paper if yellow(marked.getpixel(xy))]
    assert len(paper) > 1000 and len(tinted) == len(paper), (len(paper), len(tinted))
    # Far away (the heading, the last paragraph) nothing changed.
    for y in (650 + 4, 200 + 4):
        box = (0, px(0, y + 10)[1], 1000, px(0, y - 14)[1])
        assert ImageChops.difference(plain.crop(box), marked.crop(box)).getbbox() is None


def test_a_quote_not_on_the_page_leaves_it_plain(client):
    start, end = quote_offsets(client, "report", SENTENCE)
    plain = png(client.get("/documents/report/pages/1.png"))
    other = client.get(f"/documents/report/pages/1.png?start={start}&end={end}")
    assert other.headers["x-highlight-rects"] == "0"
    assert ImageChops.difference(plain, png(other)).getbbox() is None


def test_a_sentence_of_a_real_pdf_is_found_on_its_page(client):
    start, end = quote_offsets(client, "whentouse", "SQLite supports an unlimited number of simultaneous readers")
    response = client.get(f"/documents/whentouse/pages/4.png?start={start}&end={end}")
    image = png(response)
    assert image.width == 1000 and int(response.headers["x-highlight-rects"]) >= 1


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/documents/nothing-here/pages/1.png", 404, "not_found"),
        ("/documents/akdn-civil-society-activities-tajikistan/pages/1.png", 400, "not_a_pdf"),
        ("/documents/report/pages/3.png", 404, "page_out_of_range"),
        ("/documents/report/pages/0.png", 404, "page_out_of_range"),
        ("/documents/report/pages/1.png?start=5", 400, "invalid_range"),
        ("/documents/report/pages/1.png?start=9&end=9", 400, "invalid_range"),
        ("/documents/report/pages/1.png?start=-1&end=9", 400, "invalid_range"),
        ("/documents/report/pages/1.png?start=0&end=99999999", 400, "invalid_range"),
        ("/documents/report/pages/1.png?start=abc&end=9", 400, "invalid_range"),
    ],
)
def test_errors_have_their_status_and_code(client, path, status, code):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if code == "page_out_of_range":
        assert response.json()["error"]["details"] == {"pages": 2}


def test_a_document_whose_file_is_gone_is_404(client, tmp_path: Path):
    corpus = Path(client.app.state.assistant.settings.corpus_dir)
    moved = tmp_path / "whentouse.pdf"
    shutil.move(corpus / "whentouse.pdf", moved)
    try:
        response = client.get("/documents/whentouse/pages/1.png")
    finally:
        shutil.move(moved, corpus / "whentouse.pdf")
    # (or, once the folder watcher has seen the file go, the document itself is gone)
    assert response.status_code == 404 and response.json()["error"]["code"] in {"source_missing", "not_found"}


def test_pages_render_while_pdfs_are_read_in_other_threads(client, tmp_path):
    """pdfium is not thread-safe: reading a PDF (indexing) and rendering one (the viewer) share one lock,
    so running both at once from several threads gives the same text and the same image every time."""
    from concurrent.futures import ThreadPoolExecutor

    from assistant.ingest.pdf import pdf_text
    from assistant.server.routes.pages import render_page

    source = ROOT / "tests" / "data" / "ingest" / "sqlite-whentouse.pdf"
    expected_text = pdf_text(source).text
    expected_png, _ = render_page(source, 2, None)
    with ThreadPoolExecutor(6) as pool:
        reads = [pool.submit(pdf_text, source) for _ in range(6)]
        renders = [pool.submit(render_page, source, 2, None) for _ in range(12)]
        assert all(f.result().text == expected_text for f in reads)
        assert all(f.result()[0] == expected_png for f in renders)
