"""Reading PDF pages without a text layer by OCR, when Tesseract is installed (Debian: ``tesseract-ocr``
with ``-eng``, ``-fra``, ``-rus``): each page is rendered by pypdfium2 to a grey image and read by the
``tesseract`` command; its lines come back with their boxes in PDF points, as a text layer's would."""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from assistant.ingest.text import PDFIUM_LOCK

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

DPI = 300
LANGUAGES = ("eng", "fra", "rus", "tgk")  # the corpus's languages, those installed are used together
HOW_TO_ENABLE = "install Tesseract to read it (Debian: apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-rus)"


class Bitmap(Protocol):
    """A page rendered by pypdfium2 (``PdfBitmap``; pypdfium2 ships no type information)."""

    def to_numpy(self) -> NDArray[np.uint8]: ...


class RenderablePage(Protocol):
    """What OCR needs of a pypdfium2 ``PdfPage``: its rendering and its height in PDF points."""

    def render(self, *, scale: float, grayscale: bool) -> Bitmap: ...

    def get_height(self) -> float: ...


@functools.cache
def tesseract_languages() -> str | None:
    """The ``-l`` argument for the installed corpus languages ("eng+fra+rus"); ``None`` without Tesseract."""
    command = shutil.which("tesseract")
    if command is None:
        return None
    try:
        listed = subprocess.run([command, "--list-langs"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    installed = {line.strip() for line in listed.splitlines()[1:]}
    chosen = [lang for lang in LANGUAGES if lang in installed]
    return "+".join(chosen) if chosen else None


def ocr_lines(page: RenderablePage, seconds: float) -> list[tuple[str, float, float, float, float]]:
    """The page's text lines by OCR: (text, x0, x1, baseline, size) in PDF points, y upwards; [] when none.

    Raises ``subprocess.TimeoutExpired`` past ``seconds``.
    """
    languages = tesseract_languages()
    if languages is None:
        return []
    scale = DPI / 72
    with PDFIUM_LOCK:
        bitmap = page.render(scale=scale, grayscale=True)
        pixels = bitmap.to_numpy().copy()
        height_pt = page.get_height()
    if pixels.ndim == 3:
        pixels = pixels[:, :, 0]
    with tempfile.TemporaryDirectory(prefix="assistant-ocr-") as folder:
        image = Path(folder) / "page.pgm"
        with image.open("wb") as out:
            out.write(f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode())
            out.write(pixels.astype("uint8").tobytes())
        command = [shutil.which("tesseract") or "tesseract", str(image), "stdout", "-l", languages, "--dpi", str(DPI), "tsv"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, seconds), check=False)
    if done.returncode != 0:
        log.warning("tesseract failed: %s", done.stderr.strip()[-300:])
        return []
    return _tsv_lines(done.stdout, scale, height_pt)


def _tsv_lines(tsv: str, scale: float, height_pt: float) -> list[tuple[str, float, float, float, float]]:
    """Tesseract's word rows grouped into lines (block, paragraph, line), boxes turned into PDF points.

    >>> tsv = "level\\tpage_num\\tblock_num\\tpar_num\\tline_num\\tword_num\\tleft\\ttop\\twidth\\theight\\tconf\\ttext\\n"
    >>> tsv += "5\\t1\\t1\\t1\\t1\\t1\\t100\\t200\\t80\\t40\\t95\\tHello\\n5\\t1\\t1\\t1\\t1\\t2\\t200\\t200\\t90\\t40\\t96\\tworld\\n"
    >>> _tsv_lines(tsv, 2.0, 500.0)
    [('Hello world', 50.0, 145.0, 380.0, 20.0)]
    """
    lines: dict[tuple[int, int, int], list[tuple[str, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        key = (int(cols[2]), int(cols[3]), int(cols[4]))
        left, top, width, height = (int(c) for c in cols[6:10])
        lines.setdefault(key, []).append((cols[11].strip(), left, top, width, height))
    out = []
    for words in lines.values():
        text = " ".join(w[0] for w in words)
        x0 = min(w[1] for w in words) / scale
        x1 = max(w[1] + w[3] for w in words) / scale
        bottom = max(w[2] + w[4] for w in words) / scale
        size = round(sorted(w[4] for w in words)[len(words) // 2] / scale)
        out.append((text, x0, x1, height_pt - bottom, float(size)))
    return out
