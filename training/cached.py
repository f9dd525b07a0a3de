"""Training the reader's top layers on cached outputs of its frozen lower layers.

The lower layers of the encoder never change in this mode, so their output for every training
window is computed once (``HiddenCache``: one bfloat16 memory map, ~0.75 KB a token) and each
training step runs only the top layers forward and backward: a fraction of a full step.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("training.reader")


class Split:
    """A reader module cut after layer ``frozen``: ``prefix`` (frozen) and ``top`` (trained)."""

    def __init__(self, module, frozen: int):
        self.module = module
        self.encoder = module.encoder
        self.frozen = frozen
        layers = self.encoder.encoder.layer
        if not 0 < frozen < len(layers):
            raise SystemExit(f"--train-top must leave 1 to {len(layers) - 1} frozen layers")
        self.top_layers = list(layers[frozen:])

    def _mask(self, mask, hidden):
        """The layers' attention mask, built as BertModel builds it for an encoder (public helper, stable across releases)."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=mask)

    def prefix(self, ids, mask):
        """The frozen lower layers' output (no gradients, no dropout)."""
        import torch

        with torch.inference_mode():
            hidden = self.encoder.embeddings(input_ids=ids)
            extended = self._mask(mask, hidden)
            for layer in self.encoder.encoder.layer[: self.frozen]:
                hidden = layer(hidden, extended)
        return hidden

    def top(self, hidden, mask):
        """Start and end logits from the cached lower-layer output."""
        extended = self._mask(mask, hidden)
        for layer in self.top_layers:
            hidden = layer(hidden, extended)
        logits = self.module.span(hidden).float()
        return logits[..., 0], logits[..., 1]

    def train(self, on: bool = True) -> None:
        for layer in self.top_layers:
            layer.train(on)
        self.module.span.train(on)


class HiddenCache:
    """The prefix output of every window, stored once in a bfloat16 memory map (reused if complete)."""

    def __init__(self, path: Path, lengths: list[int], width: int):
        self.path = Path(path)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
        self.width = width
        total = int(self.lengths.sum())
        self.done = self.path.with_suffix(".done")
        mode = "r+" if self.path.exists() and self.path.stat().st_size == total * width * 2 else "w+"
        self.data = np.memmap(self.path, dtype=np.uint16, mode=mode, shape=(max(total, 1), width))

    def fill(self, split: Split, ids: list[list[int]], pad: int, batch_size: int = 32, what: str = "windows") -> None:
        """Run the prefix over every window (sorted by length to pad little), with progress."""
        import torch

        from assistant.e5.reader import pad_batch

        if self.done.exists() and self.done.read_text() == str(len(ids)):
            log.info("cached %s: %s (reused)", what, self.path)
            return
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        t0 = time.time()
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x, mask = pad_batch([ids[i] for i in idx], pad)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = split.prefix(x, mask)
            hidden = hidden.to(torch.bfloat16).view(torch.uint16).numpy()
            for row, i in enumerate(idx):
                s, n = self.starts[i], self.lengths[i]
                self.data[s : s + n] = hidden[row, :n]
            if (b // batch_size) % 50 == 0:
                rate = (b + len(idx)) / (time.time() - t0)
                log.info("caching %s: %d/%d  %.0f windows/s  ETA %.0f min", what, b + len(idx), len(ids), rate, (len(ids) - b) / rate / 60)
        self.data.flush()
        self.done.write_text(str(len(ids)))

    def batch(self, idx: list[int], multiple: int = 32):
        """Hidden states [batch, width, dim] (padded with zeros) and the attention mask."""
        import torch

        n = -(-int(self.lengths[idx].max()) // multiple) * multiple
        out = np.zeros((len(idx), n, self.width), dtype=np.uint16)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for row, i in enumerate(idx):
            s, k = self.starts[i], self.lengths[i]
            out[row, :k] = self.data[s : s + k]
            mask[row, :k] = 1
        return torch.from_numpy(out).view(torch.bfloat16), mask
