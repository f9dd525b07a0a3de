"""Sentence spans with character offsets, for quoting the exact supporting text."""

from __future__ import annotations

import re

# Words after which a full stop does not end a sentence.
ABBREVIATIONS = frozenset("st dr mr mrs ms no nos vs etc e.g i.e fig approx inc ltd co jr sr prof gen art p pp vol ca cf".split())
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"'”’»)]*\s+(?=[\"'“‘«(]?[A-ZÀ-ÖØ-ÞА-ЯЁ0-9•\-–])|\n+")


def split_sentences(text: str, offset: int = 0, max_chars: int = 600) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences in ``text``, shifted by ``offset``; lines are boundaries.

    >>> t = "Dushanbe, 18 Nov. The plan for 2015-2020 is new. St. Petersburg helped!\\n- A bullet"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['Dushanbe, 18 Nov.', 'The plan for 2015-2020 is new.', 'St. Petersburg helped!', '- A bullet']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group().strip() == "" and "\n" not in match.group():
            before = text[start : match.start()].rstrip("\"'”’»)")
            last_word = re.findall(r"([\w.]+)\.$", before)
            if last_word and (last_word[0].lower() in ABBREVIATIONS or len(last_word[0]) == 1):
                continue
        _add(spans, text, start, match.start(), offset, max_chars)
        start = match.end()
    _add(spans, text, start, len(text), offset, max_chars)
    return spans


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int, offset: int, max_chars: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end - start < 2 or not any(ch.isalnum() for ch in text[start:end]):
        return
    # Very long "sentences" (tables, run-on lists) are cut at clause marks so quotes stay short.
    while end - start > max_chars:
        cut = max(text.rfind(sep, start, start + max_chars) for sep in ("; ", ", ", " | ", " "))
        if cut <= start:
            break
        spans.append((start + offset, cut + 1 + offset))
        start = cut + 1
        while start < end and text[start].isspace():
            start += 1
    spans.append((start + offset, end + offset))
