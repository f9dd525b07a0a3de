"""Split evaluation/questions.jsonl into calibration and test halves, grouped by evidence.

Run from the repository root:  .venv/bin/python evaluation/resplit.py

1. Each question's evidence spans are located in its document (doc_id, start, end of each quote).
2. Two questions fall in the same group when any of their spans overlap in the same document; a French or
   Russian question that translates another therefore joins it through the shared evidence. Unanswerable
   questions have no evidence, so the translations among them are listed by hand in TRANSLATION_OF.
3. Whole groups go to one half. Groups are taken largest first (ties by the sha256 of their smallest id) and
   each goes to the half that keeps the two halves closest in size and in their counts by language, type,
   answerability and language x answerability; then single groups are moved, or two swapped, while that
   brings the halves closer still.

The result is deterministic; it rewrites evaluation/split.json and prints a summary.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "evaluation" / "questions.jsonl"
SPLIT = ROOT / "evaluation" / "split.json"
CORPUS = ROOT / "corpus"

# Unanswerable questions (no evidence) that translate another question, found by reading them:
# translation -> original.
TRANSLATION_OF = {
    "q185": "q162",  # fr budget of MSDSP's Local Governance Programme
    "q187": "q161",  # ru cost of the study tour to Georgia
    "q188": "q160",  # ru name of the Deputy Minister of Justice who led the delegation
    "q189": "q175",  # ru remittances sent home by Tajik migrants in 2014
    "q190": "q173",  # ru number of teachers in "Skilled Teachers, Skilled Nation"
}

ABOUT = (
    "evaluation/questions.jsonl split in two by evaluation/resplit.py, grouped by evidence: questions whose quoted "
    "evidence overlaps in the same document (so a translated question and its original) are in the same half, "
    "and so are the unanswerable translations listed in the script. Whole groups are assigned greedily, largest "
    "first (ties by sha256 of the group's smallest id), then improved by moving or swapping groups, to balance "
    "the halves by size, language, type and answerability; no evidence span is shared between the halves. "
    "'calibration' fits the answer step's numbers (assistant calibrate); 'test' is what the figures are reported "
    "on. Regenerate only with the script."
)


def load_documents(folder: Path = CORPUS) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def load_rows(path: Path = QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evidence_spans(row: dict, documents: dict[str, str]) -> list[tuple[str, int, int]]:
    """(doc_id, start, end) of each evidence quote (its first occurrence, as the harness locates it)."""
    spans = []
    for ev in row.get("evidence", []):
        start = documents[ev["doc_id"]].find(ev["quote"])
        if start < 0:
            raise ValueError(f"{row['id']}: quote not found in {ev['doc_id']}: {ev['quote'][:60]!r}")
        spans.append((ev["doc_id"], start, start + len(ev["quote"])))
    return spans


def overlap(a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]) -> bool:
    return any(x[0] == y[0] and x[1] < y[2] and y[1] < x[2] for x in a for y in b)


def groups(rows: list[dict], documents: dict[str, str]) -> list[list[str]]:
    """Connected components of 'evidence overlaps' plus the TRANSLATION_OF pairs; each sorted by id."""
    spans = {r["id"]: evidence_spans(r, documents) for r in rows}
    parent = {i: i for i in spans}

    def find(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ids = sorted(spans)
    for n, a in enumerate(ids):
        for b in ids[n + 1 :]:
            if overlap(spans[a], spans[b]):
                parent[find(a)] = find(b)
    for a, b in TRANSLATION_OF.items():
        parent[find(a)] = find(b)
    out: dict[str, list[str]] = {}
    for i in ids:
        out.setdefault(find(i), []).append(i)
    return sorted(out.values(), key=lambda g: g[0])


def _features(row: dict) -> list[tuple]:
    return [
        ("all",),
        ("language", row["language"]),
        ("type", row["type"]),
        ("answerable", row["answerable"]),
        ("language x answerable", row["language"], row["answerable"]),
    ]


def assign(rows: list[dict], grouped: list[list[str]]) -> dict[str, list[str]]:
    """Greedy balance of whole groups between the halves."""
    by_id = {r["id"]: r for r in rows}
    counts = {"calibration": Counter(), "test": Counter()}
    halves: dict[str, list[str]] = {"calibration": [], "test": []}

    def cost(cal: Counter, test: Counter) -> int:
        return sum((cal[k] - test[k]) ** 2 for k in set(cal) | set(test))

    order = sorted(grouped, key=lambda g: (-len(g), hashlib.sha256(g[0].encode()).hexdigest()))
    for group in order:
        add = Counter(f for i in group for f in _features(by_id[i]))
        as_cal = cost(counts["calibration"] + add, counts["test"])
        as_test = cost(counts["calibration"], counts["test"] + add)
        if as_cal != as_test:
            half = "calibration" if as_cal < as_test else "test"
        else:  # a tie: the smaller half, then calibration
            half = "test" if len(halves["test"]) < len(halves["calibration"]) else "calibration"
        halves[half] += group
        counts[half] += add
    _improve(order, halves, {tuple(g): Counter(f for i in g for f in _features(by_id[i])) for g in order}, cost)
    return {k: sorted(v) for k, v in halves.items()}


def _improve(order: list[list[str]], halves: dict[str, list[str]], adds: dict[tuple, Counter], cost) -> None:
    """Then move one group, or swap two, while that lowers the imbalance (the best change first; ties by order)."""
    where = {tuple(g): ("calibration" if g[0] in set(halves["calibration"]) else "test") for g in order}

    def totals() -> dict[str, Counter]:
        out = {"calibration": Counter(), "test": Counter()}
        for g, half in where.items():
            out[half] += adds[g]
        return out

    while True:
        now = totals()
        best, change = cost(now["calibration"], now["test"]), None
        keys = [tuple(g) for g in order]
        for n, a in enumerate(keys):
            for b in [None, *keys[n + 1 :]]:
                if b is not None and where[a] == where[b]:
                    continue
                cal, test = Counter(now["calibration"]), Counter(now["test"])
                for g in (a, b):
                    if g is None:
                        continue
                    src, dst = (cal, test) if where[g] == "calibration" else (test, cal)
                    src.subtract(adds[g])
                    dst.update(adds[g])
                c = cost(cal, test)
                if c < best:
                    best, change = c, (a, b)
        if change is None:
            break
        for g in change:
            if g is not None:
                where[g] = "test" if where[g] == "calibration" else "calibration"
    halves["calibration"] = [i for g, h in where.items() if h == "calibration" for i in g]
    halves["test"] = [i for g, h in where.items() if h == "test" for i in g]


def shared_spans(rows: list[dict], documents: dict[str, str], split: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(test id, calibration id) pairs whose evidence spans overlap."""
    spans = {r["id"]: evidence_spans(r, documents) for r in rows}
    return [(t, c) for t in split["test"] for c in split["calibration"] if overlap(spans[t], spans[c])]


def summary(rows: list[dict], split: dict[str, list[str]]) -> str:
    by_id = {r["id"]: r for r in rows}
    lines = []
    for half in ("calibration", "test"):
        members = [by_id[i] for i in split[half]]
        cells = Counter((r["language"], "answerable" if r["answerable"] else "unanswerable") for r in members)
        detail = ", ".join(f"{lang} {kind} {n}" for (lang, kind), n in sorted(cells.items()))
        lines.append(f"{half}: {len(members)} questions ({detail})")
    return "\n".join(lines)


def main() -> None:
    documents = load_documents()
    rows = load_rows()
    by_id = {r["id"]: r for r in rows}
    for a, b in TRANSLATION_OF.items():
        assert a in by_id and b in by_id, (a, b)
    grouped = groups(rows, documents)
    split = assign(rows, grouped)
    answerable_test = {i for i in split["test"] if by_id[i]["answerable"]}

    if SPLIT.exists():
        old = json.loads(SPLIT.read_text(encoding="utf-8"))
        pairs = shared_spans(rows, documents, old)
        touched = {t for t, _ in pairs if by_id[t]["answerable"]}
        old_answerable = sum(by_id[i]["answerable"] for i in old["test"])
        print(f"split.json being replaced: {len(touched)} of {old_answerable} answerable test questions share evidence with calibration")

    SPLIT.write_text(json.dumps({"about": ABOUT, **split}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    sizes = Counter(len(g) for g in grouped)
    print(f"{len(rows)} questions in {len(grouped)} groups (sizes: {', '.join(f'{n} of {k}' for k, n in sorted(sizes.items()))})")
    print(f"{len(TRANSLATION_OF)} unanswerable translation pairs listed by hand, each kept in one half")
    print(summary(rows, split))
    pairs = shared_spans(rows, documents, split)
    print(f"evidence spans shared across the halves: {len(pairs)} ({len(answerable_test)} answerable test questions)")
    assert not pairs and sorted(split["calibration"] + split["test"]) == sorted(by_id)
    print(f"wrote {SPLIT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
