"""The torch modules of the e5 encoders: the 4-bit word embeddings, the LoRA adapters and the reader.

Imported only where torch is needed (``model``, ``reader`` and ``onnx_reader`` import it lazily),
so reading the model file or a ``Reading`` never loads torch.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

from .modelfile import BLOCK_BYTES, QK

if TYPE_CHECKING:
    from transformers import BertModel


class Q4Embedding(torch.nn.Module):
    """A frozen embedding table kept in Q4_0 blocks; looked-up rows are dequantised."""

    blocks: torch.Tensor  # [rows, dim / 32, 18] uint8, a registered (non-persistent) buffer

    def __init__(self, blocks: NDArray[np.uint8], dim: int) -> None:
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

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b = self.blocks[ids]  # [..., nb, 18] uint8
        scale = b[..., :2].contiguous().view(torch.float16).float()  # [..., nb, 1]
        qs = b[..., 2:]
        values = torch.cat([qs & 0x0F, qs >> 4], dim=-1).float() - 8.0
        return (values * scale).reshape(*ids.shape, self.dim)


class LoRALinear(torch.nn.Module):
    """``base(x) + scale * B(A(x))`` with the base frozen; ``merged`` folds it into one Linear."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        return out + (x @ self.lora_a.t()) @ self.lora_b.t() * self.scale

    def merged(self) -> torch.nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


class ReaderModule(torch.nn.Module):
    """The reader: an e5 encoder (its adapters wrapped by the caller) and a start/end span head."""

    def __init__(self, encoder: BertModel) -> None:
        super().__init__()
        self.encoder = encoder
        self.span = torch.nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden: torch.Tensor = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.span(hidden).float()
        return logits[..., 0], logits[..., 1]
