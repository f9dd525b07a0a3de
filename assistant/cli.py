"""Command line: ``assistant index | search | ask | serve | eval``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.config import Settings
from assistant.errors import AssistantError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from assistant.answer.types import Citation
    from assistant.evaluation.harness import Progress as CountProgress
    from assistant.search.build import BuildProgress, Progress

log = logging.getLogger("assistant")


def _progress_bar(desc: str) -> Progress:
    from tqdm import tqdm

    bar: tqdm | None = None

    def update(state: BuildProgress) -> None:
        """A bar in characters; tqdm's rate and ETA come from the measured embedding speed."""
        nonlocal bar
        if bar is None:
            bar = tqdm(total=state.chars_total, desc=desc, unit="char", unit_scale=True, file=sys.stderr, disable=state.chars_total == 0)
        bar.n = state.chars_done
        bar.set_postfix_str(f"{state.documents_done}/{state.documents_total} documents", refresh=False)
        bar.refresh()
        if state.chars_done >= state.chars_total and state.documents_done >= state.documents_total:
            bar.close()

    return update


def _count_bar(desc: str) -> CountProgress:
    """A bar counting items (questions): ``update(done, total)``."""
    from tqdm import tqdm

    bar: tqdm | None = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="question", file=sys.stderr, disable=total == 0)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line."""
    keys = ("corpus_dir", "index_dir", "embedder", "host", "port", "top_k")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**_overrides(args))


def cmd_index(args: argparse.Namespace) -> int:
    from assistant.search.backend import create_backend
    from assistant.search.embedders import create_embedder

    settings = _settings(args)
    embedder = create_embedder(settings)
    report = create_backend(settings).sync(embedder, _progress_bar("embedding"), rebuild=args.rebuild)
    print(
        f"Indexed {report.documents} documents into {report.chunks} chunks "
        f"({report.embedded_chunks} embedded, {report.reused_chunks} reused) "
        f"in {report.seconds:.1f} s; index type {report.index_type}; embedder {embedder.name}."
    )
    if report.characters and report.seconds:
        print(f"Embedded {report.characters:,} characters ({report.characters / report.seconds:,.0f} characters/s).")
    for item in report.skipped:
        print(f"  skipped {item.source}: {item.reason}")
    if report.skipped:
        print(f"{len(report.skipped)} file(s) skipped.")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from assistant.service import open_service

    service = open_service(_settings(args), progress=_progress_bar("embedding"))
    result = service.retriever.search(args.question, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(
            json.dumps({"passages": [p.to_dict() for p in result.passages], "timings_ms": result.timings_ms}, ensure_ascii=False, indent=2)
        )
        return 0
    if not result.passages:
        print("No passages found.")
    for rank, p in enumerate(result.passages, 1):
        dense = "-" if p.dense_score is None else f"{p.dense_score:.3f}"
        kw = "-" if p.keyword_score is None else f"{p.keyword_score:.2f}"
        print(f"[{rank}] {p.title}  ({p.source} chars {p.start}-{p.end})")
        print(f"    fused {p.score:.4f}  dense {dense}  keyword {kw}")
        snippet = " ".join(p.text.split())
        print(f"    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.service import open_service

    service = open_service(_settings(args), progress=_progress_bar("embedding"))
    answer = service.pipeline.ask(args.question, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(answer.answer)
    sources = answer.related if answer.abstained else answer.citations
    if sources:
        print("\nClosest passages:" if answer.abstained else "\nSources:")
    for c in sources:
        page = "" if c.page is None else f"p. {c.page}, " if c.page_end == c.page else f"pp. {c.page}–{c.page_end}, "
        print(f"[{c.n}] {c.title} — {c.publisher or 'unknown publisher'} ({c.source}, {page}chars {c.start}-{c.end})")
        if c.quote:
            print(f"    “{_marked_quote(c)}” (chars {c.quote_start}-{c.quote_end})")
    for warning in answer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _marked_quote(c: Citation) -> str:
    """The quoted sentence on one line, with the short answer in bold (a terminal) or «between marks»."""
    if c.answer_start is None or c.answer_end is None:
        return " ".join(c.quote.split())
    a, b = c.answer_start - c.quote_start, c.answer_end - c.quote_start
    on, off = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("«", "»")
    return " ".join(f"{c.quote[:a]}{on}{c.quote[a:b]}{off}{c.quote[b:]}".split())


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from assistant.server.app import create_app, uvicorn_options

    settings = _settings(args)
    workers = args.workers or 1
    print(
        f"Serving the chat page and API on http://{settings.host}:{settings.port}/ (API docs at /docs) with {workers} "
        f"worker{'s' if workers > 1 else ''}; a missing or stale index is built in the background (progress at /health). "
        "Ctrl+C stops.",
        flush=True,
    )
    logging.getLogger("assistant").setLevel(logging.INFO if args.verbose else logging.WARNING)
    # With limits for slow, idle and too many clients (see uvicorn_options and the README).
    options = uvicorn_options(settings)
    if workers == 1:
        uvicorn.run(create_app(settings), **options, log_level="warning")
        return 0
    # Several processes: each builds the app (and loads the models once) from the environment, so the
    # command line's settings go there; with the PostgreSQL store they all serve the same data.
    for key, value in _overrides(args).items():
        os.environ[f"ASSISTANT_{key.upper()}"] = str(value)
    options["http"] = "assistant.server.protocol:TimedH11Protocol"
    uvicorn.run("assistant.server.app:create_app", factory=True, workers=workers, **options, log_level="warning")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from assistant.evaluation import run

    base = _settings(args)
    configs = run.configurations(args.compare)
    sets = run.question_sets(args.questions, args.sets)
    results = run.run_all(args, base, configs, sets, _progress_bar, _count_bar)
    run.print_tables(results)
    run.write_report(results, args.out_dir)
    return run.baseline_step(args, results, len(configs))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus-dir", dest="corpus_dir", type=Path, help="documents folder (default: corpus)")
        p.add_argument("--index-dir", dest="index_dir", type=Path, help="index folder (default: index)")
        p.add_argument("--embedder", choices=["e5", "use", "minilm", "sentence-transformers"])

    p = sub.add_parser("index", help="build or update the index")
    common(p)
    p.add_argument("--rebuild", action="store_true", help="PostgreSQL store: re-embed everything for another embedder or chunking")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="list the passages retrieved for a question")
    common(p)
    p.add_argument("question")
    p.add_argument("-k", "--top-k", dest="top_k", type=int, default=None)
    p.add_argument("--mode", choices=["hybrid", "dense", "keyword"])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="answer a question with numbered sources")
    common(p)
    p.add_argument("question")
    p.add_argument("-k", "--top-k", dest="top_k", type=int, default=None)
    p.add_argument("--mode", choices=["auto", "extractive", "llm"])
    p.add_argument("--json", action="store_true", help="print the /ask JSON")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="score the pipeline on the labelled questions")
    common(p)
    p.add_argument(
        "--sets",
        default="test,unseen,removed,near_miss,conversations",
        help="question sets: test, unseen, removed, near_miss, conversations, calibration, all",
    )
    p.add_argument("--questions", type=Path, help="a question file of your own instead of the sets")
    p.add_argument("--folder", type=Path, default=Path("evaluation"), help="where the question sets are")
    p.add_argument("--compare", action="append", metavar="SETTING=V1,V2", help="compare values of a setting (repeatable: all combinations)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--out-dir", type=Path, default=Path("evaluation/reports"))
    p.add_argument("--baseline", type=Path, default=Path("evaluation/baseline.json"))
    p.add_argument("--write-baseline", action="store_true", help="record this run as the baseline")
    p.add_argument("--tolerance", type=float, default=0.03, help="allowed drop of a headline metric (absolute)")
    p.set_defaults(func=cmd_eval)

    for name, entry in plugin_commands().items():
        # Dispatched in main() with all their arguments; each has its own --help.
        sub.add_parser(name, help=f"{_summary(entry)} ('assistant {name} --help')", add_help=False)

    p = sub.add_parser("serve", help="serve the chat page and the API (builds the index first if needed)")
    common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="worker processes (default 1; several share one PostgreSQL store best)")
    p.set_defaults(func=cmd_serve)
    return parser


def plugin_commands() -> dict[str, EntryPoint]:
    """Commands that other packages add (``assistant.commands`` entry points: benchmarks, training).

    They import the product; the product only knows them by name.
    """
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="assistant.commands")}


def _summary(entry: EntryPoint) -> str:
    known = {
        "bench": "speed and memory benchmarks",
        "bench-external": "SciFact and XQuAD benchmarks",
        "train-reader": "train the answer reader",
        "calibrate": "fit the answer step's decision on the calibration questions",
    }
    return known.get(entry.name, entry.value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plugins = plugin_commands()
    if argv and argv[0] in plugins:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        command: Callable[[list[str]], int] = plugins[argv[0]].load()
        return command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
