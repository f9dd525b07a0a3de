"""What the benchmark sections share: the fixed questions, timing and memory helpers, tables, synthetic vectors."""

from __future__ import annotations

import json
import resource
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from assistant.evaluation import report
from assistant.evaluation.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent


SEED_CORPUS = ROOT / "corpus"


SCIFACT = ROOT.parent / "shared" / "bench" / "scifact" / "corpus.jsonl"


SCIFACT_DOCS = 5183


CHILD_TAG = "BENCH_RESULT "


# A fixed, varied list: English, French and Russian; factoid, number, date, and a few the seed
# corpus does not answer (the abstention path).
QUESTIONS = [
    "Who finances the Digital Foundations Project in Tajikistan?",
    "How many government officials did the Local Governance Programme train?",
    "When did Tajikistan become an IOM Member State?",
    "Which country did the Tajik delegation visit to study public service halls?",
    "Which city's water utility partnered with the Dushanbe utility?",
    "What does MSDSP stand for?",
    "How many civil society organisations were formally registered in Tajikistan in 1997?",
    "In what year was MSDSP's Local Governance Programme established?",
    "What is the budget of the Tajikistan Digital Foundations Project?",
    "What is the population of Tajikistan in 2030?",
    "Who won the football world cup in 1998?",
    "Qui finance le projet Digital Foundations au Tadjikistan ?",
    "Combien de fonctionnaires le programme de gouvernance locale a-t-il formés ?",
    "Depuis quand le Tadjikistan est-il membre de l'OIM ?",
    "Quel est le budget de la Suisse pour le projet Tajikistan Digital Foundations ?",
    "À quelle date se termine la phase en cours du projet Digital Foundations ?",
    "Quelle est la capitale de l'Australie ?",
    "Кто финансирует проект «Цифровые основы Таджикистана»?",
    "Сколько государственных служащих обучила программа местного управления?",
    "С какого года Таджикистан является членом Международной организации по миграции?",
    "Какую страну посетила таджикская делегация, чтобы изучить опыт предоставления государственных услуг?",
    "Каковы два ожидаемых результата проекта Tajikistan Digital Foundations?",
    "Сколько сотрудников работает в МОМ в Таджикистане?",
    "Какая погода будет завтра в Париже?",
]


STAGES = ("embed_query", "dense_search", "keyword_search", "fusion", "answer")


def summary_ms(values_s: Sequence[float]) -> dict:
    """p50/p95/p99/mean in milliseconds from durations in seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "mean_ms": float(np.mean(ms)) if ms else None,
    }


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 1) -> None:
    print(f"\n== {title}")
    print(report.table(headers, rows, digits=digits), flush=True)


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process in MB, from /proc (Linux)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _time_calls(fn: Callable[[str], object], questions: list[str], n: int) -> tuple[list[float], list[object]]:
    durations, outputs = [], []
    for i in range(n):
        q = questions[i % len(questions)]
        t = time.perf_counter()
        out = fn(q)
        durations.append(time.perf_counter() - t)
        outputs.append(out)
    return durations, outputs


def _interleaved(
    paths: dict[str, Callable[[str], object]], questions: list[str], n: int
) -> tuple[dict[str, list[float]], dict[str, list[object]]]:
    """Time every path on the same question in turn, so background load hits them alike."""
    durations: dict[str, list[float]] = {k: [] for k in paths}
    outputs: dict[str, list[object]] = {k: [] for k in paths}
    for i in range(n):
        q = questions[i % len(questions)]
        for name, fn in paths.items():
            t = time.perf_counter()
            out = fn(q)
            durations[name].append(time.perf_counter() - t)
            outputs[name].append(out)
    return durations, outputs


_POOL: list[str] = []


def distinct_question(i: int) -> str:
    """The i-th of an endless list of distinct questions: the evaluation questions, then again with a
    number added (a different text: no cache can answer it)."""
    if not _POOL:
        _POOL.extend(first_time_questions())
    q = _POOL[i % len(_POOL)]
    return q if i < len(_POOL) else f"{q.rstrip('?？ ')} ({i // len(_POOL)})?"


def _interleaved_distinct(paths: dict[str, Callable[[str], object]], pool: list[str], n: int):
    """Like ``_interleaved``, but path k's i-th question is pool[i * len(paths) + k]: nothing repeats."""
    durations: dict[str, list[float]] = {k: [] for k in paths}
    outputs: dict[str, list[object]] = {k: [] for k in paths}
    for i in range(n):
        for k, (name, fn) in enumerate(paths.items()):
            q = pool[i * len(paths) + k]
            t = time.perf_counter()
            out = fn(q)
            durations[name].append(time.perf_counter() - t)
            outputs[name].append(out)
    return durations, outputs


def first_time_questions() -> list[str]:
    """Every distinct question of the evaluation sets (en/fr/ru, answerable or not): asked once each,
    none repeats, so no cache helps."""
    out: list[str] = []
    for name in ("questions.jsonl", "questions_unseen.jsonl"):
        path = ROOT / "evaluation" / name
        if path.exists():
            out += [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(dict.fromkeys(out)) or QUESTIONS


class Mixture:
    """Clustered synthetic unit vectors: Gaussian clusters with a power-law (low effective rank)
    covariance in a random basis, so nearest neighbours have structure as real embeddings do."""

    def __init__(self, dim: int, clusters: int, seed: int = 0, spread: float = 0.9):
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((clusters, dim)).astype(np.float32)
        self.centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        spectrum = 1 / np.sqrt(np.arange(1, dim + 1))
        spectrum *= spread / np.linalg.norm(spectrum)  # expected noise norm = spread
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.transform = (spectrum[:, None] * basis.T).astype(np.float32)
        self.dim = dim

    def sample(self, n: int, seed: int, block: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for i in range(0, n, block):
            m = min(block, n - i)
            labels = rng.integers(len(self.centers), size=m)
            x = self.centers[labels] + rng.standard_normal((m, self.dim), dtype=np.float32) @ self.transform
            out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out
