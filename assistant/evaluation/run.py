"""``assistant eval``: the question sets run over each configuration, the tables, the report and the baseline.

``assistant.cli.cmd_eval`` calls these in order; the progress bars come from the command line module.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.errors import ConfigError
from assistant.evaluation import harness as ev

if TYPE_CHECKING:
    from assistant.search.build import Progress
    from assistant.search.embedders import Embedder
    from assistant.service import Service

# Settings that change the index: a configuration that sets one gets an index folder of its own.
INDEX_SETTINGS = ("embedder", "chunk_size", "chunk_overlap", "embed_titles", "embedder_model_path")

Results = dict[str, dict[str, ev.Summary]]  # set -> configuration -> report
Configuration = dict[str, str]  # setting -> value, from --compare
Headlines = dict[str, dict[str, float | None]]  # set -> its headline metrics


def configurations(compare: list[str] | None) -> list[Configuration]:
    """Every combination of the ``--compare SETTING=v1,v2`` values (one empty configuration without any)."""
    axes = []
    for spec in compare or []:
        key, _, values = spec.partition("=")
        if key not in Settings.model_fields or not values:
            raise ConfigError(f"--compare takes SETTING=value1,value2 with a known setting, not {spec!r}")
        axes.append([(key, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] or [{}]


def question_sets(questions: Path | None, sets: str) -> list[str]:
    """The sets named by ``--sets`` (or ``custom`` for a ``--questions`` file); unknown names are an error."""
    chosen = ["custom"] if questions else [s.strip() for s in sets.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in (*ev.SETS, "custom")]
    if unknown:
        raise ConfigError(f"unknown question set(s) {', '.join(unknown)}; choose from {', '.join(ev.SETS)}")
    return chosen


def config_settings(base: Settings, cfg: Configuration) -> tuple[str, Settings]:
    """A configuration's name and settings; one that changes the index is indexed under ``index_dir/eval``."""
    name = ", ".join(f"{k}={v}" for k, v in cfg.items()) or "default"
    settings = Settings.model_validate({**base.model_dump(), **cfg})
    key = f"{settings.embedder}-{settings.chunk_size}-{settings.chunk_overlap}-{int(settings.embed_titles)}"
    if cfg and any(k in cfg for k in INDEX_SETTINGS):
        settings = settings.model_copy(update={"index_dir": base.index_dir / "eval" / key})
    return name, settings


def run_set(
    set_name: str,
    args: argparse.Namespace,
    settings: Settings,
    embedder: Embedder,
    service: Service,
    texts: dict[str, str],
    name: str,
    count_bar: Callable[[str], ev.Progress],
) -> ev.Summary:
    """One question set's report for one configuration (``texts``: its index's documents by id)."""
    if set_name == "conversations":
        conversations = ev.load_conversations(args.folder / "conversations.jsonl", texts)[: args.limit or None]
        return ev.run_conversations(service.pipeline, conversations, count_bar(f"conversations {name}"))
    if set_name == "removed":
        work = Path(tempfile.mkdtemp(prefix="eval-removed-"))
        questions = ev.load_set("test", texts, args.folder)[: args.limit or None]
        report = ev.run_removed(settings, embedder, questions, work, count_bar(f"removed {name}"))
        shutil.rmtree(work, ignore_errors=True)
        return report
    questions = ev.load_questions(args.questions, texts) if args.questions else ev.load_set(set_name, texts, args.folder)
    return ev.run_evaluation(service.pipeline, questions[: args.limit or None], count_bar(f"{set_name} {name}"))


def run_all(
    args: argparse.Namespace,
    base: Settings,
    configs: list[Configuration],
    sets: list[str],
    progress_bar: Callable[[str], Progress],
    count_bar: Callable[[str], ev.Progress],
) -> Results:
    """Every set under every configuration; an embedder is loaded once and shared by the configurations that use it."""
    from assistant.search.embedders import create_embedder
    from assistant.service import open_service

    embedders: dict[str, Embedder] = {}
    results: Results = {}
    for cfg in configs:
        name, settings = config_settings(base, cfg)
        if settings.embedder not in embedders:
            embedders[settings.embedder] = create_embedder(settings)
        embedder = embedders[settings.embedder]
        service = open_service(settings, embedder, progress=progress_bar(f"indexing {name}"))
        texts = {d: doc.text for d, doc in service.index.documents.items()}
        for set_name in sets:
            results.setdefault(set_name, {})[name] = run_set(set_name, args, settings, embedder, service, texts, name, count_bar)
    return results


def print_removed(by_config: dict[str, ev.Summary]) -> None:
    for n, r in by_config.items():
        print(f"\nremoved ({n}): abstained on {r['abstention']['removed']:.3f} of {r['questions']} test questions "
              f"whose evidence sentences were deleted from the corpus; by language {r['by_language']}")  # fmt: skip


def print_conversations(by_config: dict[str, ev.Summary]) -> None:
    first = next(iter(by_config.values()))
    print("\nConversations: the follow-up asked after its first turn, written out in full, and bare")
    print(ev.table([(f"{n}: {way}", r[way]) for n, r in by_config.items() for way in ("with_history", "standalone", "bare")]))
    print(ev.table(list(first["by_language"].items())))


def print_answers(set_name: str, by_config: dict[str, ev.Summary]) -> None:
    first = next(iter(by_config.values()))
    print(f"\n{set_name}: answer metrics over answerable questions; abstaining counts as a miss")
    print(ev.table([(n, r["overall"]) for n, r in by_config.items()]))
    if len(by_config) == 1:
        print(ev.table(list(first["by_language"].items())))
        print(ev.table(list(first["by_type"].items())))


def print_tables(results: Results) -> None:
    for set_name, by_config in results.items():
        if set_name == "removed":
            print_removed(by_config)
        elif set_name == "conversations":
            print_conversations(by_config)
        else:
            print_answers(set_name, by_config)


def write_report(results: Results, out_dir: Path) -> None:
    """The whole run as ``out_dir/eval-<time>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (out_dir / f"eval-{stamp}.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nReport: {out_dir}/eval-{stamp}.json")


def headlines(results: Results) -> Headlines:
    """Each set's headline metrics, from its first configuration."""
    summaries = {s: next(iter(r.values())) for s, r in results.items()}
    return {
        s: ev.headline(r["with_history"] if s == "conversations" else r if s == "removed" else r["overall"]) for s, r in summaries.items()
    }


def write_baseline(path: Path, current: Headlines) -> None:
    """Record these sets' headlines in the baseline, keeping the other sets recorded there."""
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    sets_out = {**old.get("sets", {}), **{s: {"headline": h} for s, h in current.items()}}
    path.write_text(json.dumps({"sets": sets_out}, indent=2) + "\n", encoding="utf-8")
    print(f"Baseline written to {path}")


def check_baseline(path: Path, current: Headlines, tolerance: float) -> int:
    """1 (after printing each) when a headline metric fell below the baseline by more than ``tolerance``, else 0."""
    recorded = json.loads(path.read_text(encoding="utf-8")).get("sets", {})
    problems = []
    for set_name, headline in current.items():
        if set_name in recorded:
            problems += [f"{set_name}: {p}" for p in ev.regressions_of(headline, recorded[set_name]["headline"], tolerance)]
    for problem in problems:
        print(f"REGRESSION {problem}")
    if problems:
        return 1
    print(f"No headline metric below the baseline by more than {tolerance}.")
    return 0


def baseline_step(args: argparse.Namespace, results: Results, n_configs: int) -> int:
    """``--write-baseline`` records the run; otherwise a single-configuration run is checked against the baseline."""
    current = headlines(results)
    if args.write_baseline:
        write_baseline(args.baseline, current)
    elif args.baseline.exists() and n_configs == 1:
        return check_baseline(args.baseline, current, args.tolerance)
    return 0
