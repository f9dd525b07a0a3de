"""Adding one document: over HTTP against the folder path.

- upload: ``POST /documents`` with the file to a running server (its index of the corpus already
  built), until an ``/ask`` with a question the file answers cites it: saving, reading, the
  background rebuild (unchanged documents reuse their vectors) and the new build going live.
- folder: the file dropped into ``<corpus>/uploads/`` and ``build_index`` run in a fresh process over
  the index of the corpus as it was before (what ``assistant index`` does): start-up, imports, the
  model, reading the corpus and embedding the new document. With ``full=True`` also from an empty
  index folder (everything embedded).

``upload_vs_folder`` returns both times and their ratio (upload / folder). From the command line,
with a generated 40-page PDF by default::

    python -m benchmarks.uploads [--file F --question Q] [--pages 40] [--json out.json]

Settings come from ``ASSISTANT_*`` variables as usual (``env`` adds to them); both paths use the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How many apricot trees did the Zarafshan Valley Orchards Programme plant?"
ANSWER_PAGE = 27  # the generated PDF's page that answers QUESTION

_FOLDER_BUILD = """
import json, sys, time
started = time.perf_counter()
from assistant.config import Settings
from assistant.search.build import build_index
from assistant.search.embedders import create_embedder
settings = Settings()
embedder = create_embedder(settings)
loaded = time.perf_counter()
report = build_index(settings, embedder)
print(json.dumps({"build_s": report.seconds, "load_s": round(loaded - started, 2), "documents": report.documents,
                  "embedded_chunks": report.embedded_chunks, "characters": report.characters}))
"""


def upload_vs_folder(
    file: Path,
    question: str,
    *,
    corpus_dir: Path = ROOT / "corpus",
    workdir: Path | None = None,
    env: dict[str, str] | None = None,
    full: bool = False,
    timeout_s: float = 1800,
) -> dict:
    """Seconds from ``POST /documents`` to an ``/ask`` citing ``file``, and of the folder path; their ratio."""
    file = Path(file)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="upload-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus"
    shutil.copytree(corpus_dir, corpus)
    environment = {**os.environ, **(env or {}), "ASSISTANT_CORPUS_DIR": str(corpus), "ASSISTANT_INDEX_DIR": str(workdir / "index")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    deadline = time.monotonic() + timeout_s

    with _server(environment, workdir / "server.log", deadline) as base:
        _wait(lambda: _idle(base), deadline, "the server's start-up build")
        before = workdir / "index-before"
        shutil.copytree(workdir / "index", before, ignore=shutil.ignore_patterns(".lock"))
        started = time.perf_counter()
        with file.open("rb") as fh:
            response = httpx.post(f"{base}/documents", files={"files": (file.name, fh)}, timeout=600)
        posted = time.perf_counter() - started
        if response.status_code != 202 or response.json()["files"][0]["status"] != "queued":
            raise RuntimeError(f"the upload was refused: {response.status_code} {response.text[:500]}")
        result = response.json()["files"][0]
        doc_id = result["doc_id"]
        _wait(lambda: _idle(base) and doc_id in _doc_ids(base), deadline, "the upload to be indexed")
        indexed = time.perf_counter() - started
        answer = _wait(lambda: _cited(base, question, doc_id), deadline, f"an /ask citing {doc_id}", every=0.5)
        searchable = time.perf_counter() - started

    folder = _folder_path(file, corpus_dir, result["source"], before, workdir / "folder", environment, timeout_s)
    figures = {
        "file": file.name,
        "bytes": file.stat().st_size,
        "doc_id": doc_id,
        "upload_post_s": round(posted, 3),  # saved and read, answered 202
        "upload_indexed_s": round(indexed, 3),  # listed in /documents, no build running
        "upload_s": round(searchable, 3),  # an /ask cites it
        "folder_s": folder["wall_s"],  # fresh process: start, imports, model, build_index
        "folder_build_s": folder["build_s"],  # build_index alone
        "folder_load_s": folder["load_s"],  # imports and the model
        "embedded_chunks": folder["embedded_chunks"],
        "characters": folder["characters"],
        "answer": answer["answer"][:200],
    }
    figures["ratio"] = figures["upload_s"] / figures["folder_s"]
    if full:
        shutil.rmtree(before)
        whole = _folder_path(file, corpus_dir, result["source"], before, workdir / "folder-full", environment, timeout_s)
        figures |= {"folder_full_s": whole["wall_s"], "folder_full_build_s": whole["build_s"], "ratio_full": searchable / whole["wall_s"]}
    return figures


def _folder_path(file: Path, corpus_dir: Path, source: str, index_dir: Path, target: Path, env: dict, timeout_s: float) -> dict:
    """``build_index`` in a fresh process over ``corpus_dir`` plus ``file`` at ``source``, into ``index_dir``."""
    shutil.copytree(corpus_dir, target)
    (target / source).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(file, target / source)
    child_env = {**env, "ASSISTANT_CORPUS_DIR": str(target), "ASSISTANT_INDEX_DIR": str(index_dir)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _FOLDER_BUILD], env=child_env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"the folder build failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"wall_s": round(wall, 3), **json.loads(done.stdout.strip().splitlines()[-1])}


@contextmanager
def _server(env: dict, log_path: Path, deadline: float) -> Iterator[str]:
    """``uvicorn assistant.server.app:create_app --factory`` on a free port; its base URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", "assistant.server.app:create_app", "--factory", "--port", str(port), "--no-access-log"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is not None or _health(base) is not None, deadline, "the server to listen")
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log_path.read_text(errors='replace')[-2000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _health(base: str) -> dict | None:
    try:
        return httpx.get(f"{base}/health", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None


def _idle(base: str) -> bool:
    health = _health(base)
    if health and health.get("status") == "unavailable":
        raise RuntimeError(f"the server cannot serve: {health.get('error')}")
    return bool(health) and health.get("status") == "ok" and health.get("building") is None


def _doc_ids(base: str) -> set[str]:
    return {d["doc_id"] for d in httpx.get(f"{base}/documents", timeout=30).json()["documents"]}


def _cited(base: str, question: str, doc_id: str) -> dict | None:
    answer = httpx.post(f"{base}/ask", json={"question": question}, timeout=120).json()
    return answer if any(c["doc_id"] == doc_id for c in answer.get("citations", [])) else None


def _wait(probe, deadline: float, what: str, every: float = 0.05):
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------------------- a generated PDF

DISTRICTS = "Khujand Isfara Panjakent Ayni Kulob Danghara Vahdat Rasht Tavildara Khorog Murghob Ishkoshim Vanj Darvoz".split()
TOPICS = [
    "repaired {n} kilometres of irrigation canals with the water users' association of {d}",
    "trained {n} teachers of the {d} district in the new primary school curriculum",
    "connected {n} households of {d} to a safe drinking water network",
    "equipped {n} rural health centres of {d} with solar panels and vaccine refrigerators",
    "granted {n} small loans to women entrepreneurs in the markets of {d}",
    "rebuilt {n} pedestrian bridges over the river near {d}",
    "registered {n} farmers of {d} in the new digital land cadastre",
    "planted {n} hectares of pistachio and almond seedlings on the slopes above {d}",
]


def synthetic_pdf(path: Path, pages: int = 40, answer_page: int = ANSWER_PAGE) -> Path:
    """A ``pages``-page PDF report with a text layer, distinct sentences on every page; ``answer_page``
    says how many apricot trees the programme planted (``QUESTION``)."""
    lines_per_page = []
    for page in range(1, pages + 1):
        lines = [f"Zarafshan Valley Orchards Programme - annual report, section {page}", ""]
        for i in range(8):
            n = (page * 37 + i * 11) % 900 + 12
            d = DISTRICTS[(page + i) % len(DISTRICTS)]
            sentence = f"In {2010 + (page + i) % 14} the programme " + TOPICS[(page * 3 + i) % len(TOPICS)].format(n=n, d=d) + "."
            sentence += f" Its committee of {d} met {n % 9 + 2} times that year and reported the results of activity {page}.{i + 1}."
            lines += _wrap(sentence, 88) + [""]
        if page == answer_page:
            lines += _wrap("In 2020 the Zarafshan Valley Orchards Programme planted 4,000 apricot trees with 300 farming households.", 88)
        lines_per_page.append(lines)
    path.write_bytes(_pdf(lines_per_page))
    return path


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([line] if line else [])


def _pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF (Helvetica, A4), one page per list of lines."""

    def escape(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 10 Tf", "13 TL", "56 790 Td"] + [f"({escape(line)}) '" for line in lines] + ["ET"]
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>" % content
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % n
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer << /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.uploads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, help="the document to add (default: a generated PDF of --pages pages)")
    parser.add_argument("--question", default=QUESTION, help="a question the file answers")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--full", action="store_true", help="also the folder path from an empty index folder")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    file = args.file or synthetic_pdf(workdir / f"zarafshan-report-{args.pages}p.pdf", args.pages)
    figures = upload_vs_folder(file, args.question, corpus_dir=args.corpus, workdir=workdir / "run", full=args.full)
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
