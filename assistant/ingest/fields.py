"""Fact-sheet fields: the label–value pairs of a document's tables and fact lines, with exact offsets.

Project pages and reports state what people ask most — budget, dates, number, partners — as rows
(``Budget | CHF 9’200’000 |``), as header tables (``Pays/région | Période | Budget |`` over a row of
cells) and as ``Label value`` lines (``Numéro de projet 7F09822``). :func:`find_fields` returns one
:class:`Field` per pair, a row that packs several pairs split into one field each::

    >>> text = "Budget | Phase en cours Budget de la Suisse CHF 9’200’000 Budget de l'Organisation CHF 7’000’000 |\\n"
    >>> [f.unit for f in find_fields(text)]
    ['Budget de la Suisse — CHF 9’200’000', "Budget de l'Organisation — CHF 7’000’000"]
    >>> f = find_fields("Numéro de projet 7F09822\\n")[0]
    >>> (f.label, f.value, f.kind, f.start, f.end)
    ('Numéro de projet', '7F09822', 'code', 0, 24)

Offsets index the text given (``Document.text``), so ``text[f.label_start:f.label_end]`` is the label
and ``text[f.value_start:f.value_end]`` the value exactly as written (``f.value`` has its spaces and
line breaks normalised to single spaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.ingest.text import _Lazy

__all__ = ["Field", "dates_in", "find_fields"]

_NUMBER = r"\d{1,3}(?:[’'\u202f., ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_CURRENCY = r"CHF|USD|EUR|GBP|JPY|TJS|RUB|US\$|\$|€|£|somoni|сомони|руб\.?|долл\.?"
_SCALE = r"(?:\s?(?:million|millions|mn|m|billion|bn|milliards?|млн\.?|млрд\.?|тыс\.?))?"
_AMOUNT = rf"(?:(?:{_CURRENCY})\s?(?:{_NUMBER}){_SCALE}|(?:{_NUMBER}){_SCALE}\s?(?:{_CURRENCY}))(?![\w’'])"
_MONTHS = (
    r"(?:jan(?:uary|vier)?|feb(?:ruary)?|févr(?:ier)?|mar(?:ch|s)?|apr(?:il)?|avr(?:il)?|may|mai|june?|juin|july?|juil(?:let)?|"
    r"aug(?:ust)?|août|sep(?:t(?:ember|embre)?)?|oct(?:ober|obre)?|nov(?:ember|embre)?|dec(?:ember)?|déc(?:embre)?|"
    r"январ[ья]|феврал[ья]|марта?|апрел[ья]|ма[йя]|июн[ья]|июл[ья]|августа?|сентябр[ья]|октябр[ья]|ноябр[ья]|декабр[ья])"
)
_DATE = (
    rf"(?:\d{{1,2}}[./]\d{{1,2}}[./](?:19|20)\d{{2}}|(?:19|20)\d{{2}}-\d{{2}}-\d{{2}}|(?:\d{{1,2}}(?:er)?\s)?{_MONTHS}\.?\s(?:19|20)\d{{2}}"
    rf"|{_MONTHS}\s\d{{1,2}},?\s(?:19|20)\d{{2}})"
)
_DASH = r"\s*(?:[-–—]|to|au|à|по|до)\s*"
_RANGE = rf"(?:{_DATE}{_DASH}{_DATE}|(?:19|20)\d{{2}}\s*[-–—]\s*(?:19|20)\d{{2}}(?!\d))"
_CODE = r"(?:(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)*)"
_VALUE = _Lazy(rf"(?P<range>{_RANGE})|(?P<date>{_DATE})|(?P<amount>{_AMOUNT})", re.I)
_WHOLE_VALUE = _Lazy(rf"^(?:(?P<range>{_RANGE})|(?P<date>{_DATE})|(?P<amount>{_AMOUNT})|(?P<code>{_CODE}))$", re.I)
_CODE_WHOLE = _Lazy(rf"^{_CODE}$")
_LINE_FIELD = _Lazy(rf"^(?P<label>[^\W\d_][^|\n]{{1,70}}?)\s+(?P<value>{_RANGE}|{_AMOUNT}|{_DATE}|\b{_CODE})\s*$", re.I | re.M)
_SEPARATOR = _Lazy(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")
_SPACE = _Lazy(r"\s+")
MAX_LABEL_WORDS = 10
MAX_SHORT_VALUE = 80  # a cell that is no amount, date or code is a field only when it is this short
MAX_LONE_VALUE = 40  # ... and this short when label and value are cells of two lines ("Label |" then "value |")


@dataclass(frozen=True)
class Field:
    """One label–value pair. ``kind``: "amount", "date", "date_range", "code", "list" or "text".

    ``context`` is the words a packed cell put before the label ("Phase en cours"), ``row`` the label of
    the row it came from ("Budget"); both ``None`` when there are none.
    """

    label: str
    value: str
    kind: str
    label_start: int
    label_end: int
    value_start: int
    value_end: int
    context: str | None = None
    row: str | None = None

    @property
    def start(self) -> int:
        return min(self.label_start, self.value_start)

    @property
    def end(self) -> int:
        return max(self.label_end, self.value_end)

    @property
    def unit(self) -> str:
        """The field as one line to show or embed: "Label — value"."""
        return f"{self.label} — {self.value}"


def find_fields(text: str) -> list[Field]:
    """Every field of ``text`` in document order (see the module's docstring)."""
    fields: list[Field] = []
    lines = _lines(text)
    i = 0
    while i < len(lines):
        start, end = lines[i]
        line = text[start:end]
        if "|" in line:
            cells = _cells(text, start, end)
            if i + 1 < len(lines) and _SEPARATOR.match(text[slice(*lines[i + 1])]) and len(cells) >= 2:
                found, i = _header_table(text, lines, i, cells)
                fields.extend(found)
                continue
            if len(cells) >= 2 and cells[0][0] < cells[0][1]:
                fields.extend(_row_fields(text, cells[0], cells[1]))
            elif len(cells) == 1 and line.rstrip().endswith("|") and i + 1 < len(lines):
                following = _cells(text, *lines[i + 1])
                if len(following) == 1 and text[slice(*lines[i + 1])].rstrip().endswith("|"):
                    value = following[0]
                    kind = _whole_kind(text[value[0] : value[1]])
                    short = kind not in {"text", "list"} or value[1] - value[0] <= MAX_LONE_VALUE
                    if kind and short and _plausible_label(text[cells[0][0] : cells[0][1]]):
                        fields.append(_field(text, cells[0], value, kind))
                        i += 2
                        continue
        else:
            match = _LINE_FIELD.match(line)
            if match and _plausible_label(match.group("label")):
                label = (start + match.start("label"), start + match.end("label"))
                value = (start + match.start("value"), start + match.end("value"))
                fields.append(_field(text, label, value, _whole_kind(match.group("value")) or "text"))
        i += 1
    return fields


def _lines(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in text.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cells(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The stripped cells of ``text[start:end]`` split at "|"; the empty cell after a closing "|" dropped."""
    cells, pos = [], start
    for part in text[start:end].split("|"):
        cells.append(_strip(text, pos, pos + len(part)))
        pos += len(part) + 1
    while cells and cells[-1][0] == cells[-1][1]:
        cells.pop()
    return cells


def _whole_kind(value: str) -> str | None:
    """What a whole cell is: an amount, a date, a date range, a code, a short list or short text; ``None`` if prose."""
    value = _SPACE.sub(" ", value).strip()
    if not value:
        return None
    match = _WHOLE_VALUE.match(value)
    if match:
        kind = match.lastgroup
        if kind == "code" and not _CODE_WHOLE.match(value):
            return None
        return "date_range" if kind == "range" else kind
    if len(value) > MAX_SHORT_VALUE:
        return None
    return "list" if re.search(r"[,;] ", value) else "text"


def _plausible_label(label: str) -> bool:
    words = label.split()
    return 1 <= len(words) <= MAX_LABEL_WORDS and not label.rstrip().endswith((",", ":", ";")) and label[:1].isupper()


def _field(
    text: str, label: tuple[int, int], value: tuple[int, int], kind: str, context: str | None = None, row: str | None = None
) -> Field:
    return Field(
        label=_SPACE.sub(" ", text[label[0] : label[1]]).strip(),
        value=_SPACE.sub(" ", text[value[0] : value[1]]).strip(),
        kind=kind,
        label_start=label[0],
        label_end=label[1],
        value_start=value[0],
        value_end=value[1],
        context=context,
        row=row,
    )


def _row_fields(text: str, label: tuple[int, int], cell: tuple[int, int]) -> list[Field]:
    """A ``Label | value |`` row: the whole value, or each label–value pair the value cell packs."""
    row = _SPACE.sub(" ", text[label[0] : label[1]]).strip()
    body = text[cell[0] : cell[1]]
    matches = list(_VALUE.finditer(body))
    if not matches:
        kind = _whole_kind(body)
        if kind is None:
            return []
        if kind == "text" and _CODE_WHOLE.match(body.strip()):
            kind = "code"
        return [_field(text, label, cell, kind)]
    out: list[Field] = []
    prev = 0
    head = row.split()[0].casefold() if row else ""
    for match in matches:
        group = match.lastgroup
        assert group is not None  # each of _VALUE's alternatives is a named group
        kind = "date_range" if group == "range" else group
        value = (cell[0] + match.start(), cell[0] + match.end())
        sub = _strip(text, cell[0] + prev, cell[0] + match.start())
        prev = match.end()
        words = text[sub[0] : sub[1]]
        if not words:
            if not out:  # the value stands alone: the row's label is its label
                out.append(_field(text, label, value, kind))
            continue
        context = None
        at = words.casefold().find(head) if head else -1
        if at > 0 and words[at - 1].isspace():
            context = _SPACE.sub(" ", words[:at]).strip()
            sub = (sub[0] + at, sub[1])
        if len(text[sub[0] : sub[1]].split()) > MAX_LABEL_WORDS:
            continue
        out.append(_field(text, sub, value, kind, context, row))
    return out


def _header_table(text: str, lines: list[tuple[int, int]], i: int, header: list[tuple[int, int]]) -> tuple[list[Field], int]:
    """A header row, its ``---|---`` line, then one row of cells that may run over several lines."""
    start = lines[i + 2][0] if i + 2 < len(lines) else len(text)
    stop = i + 2
    while stop < len(lines) and text[slice(*lines[stop])].strip():
        stop += 1
        if text[start : lines[stop - 1][1]].count("|") >= len(header):
            break
    end = lines[stop - 1][1] if stop > i + 2 else start
    cells = _cells(text, start, end)
    fields = []
    for label, cell in zip(header, cells, strict=False):
        body = text[cell[0] : cell[1]]
        kind = _whole_kind(body)
        if kind is None or cell[0] == cell[1]:
            continue
        fields.append(_field(text, label, cell, kind))
    return fields, max(stop, i + 2)


_DATE_ONLY = _Lazy(_DATE, re.I)


def dates_in(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The offsets of the dates written in ``text[start:end]`` ("01.09.2022 - 31.08.2028": two).

    >>> t = "Phase 1 01.09.2022 - 31.08.2028"
    >>> [t[a:b] for a, b in dates_in(t, 8, len(t))]
    ['01.09.2022', '31.08.2028']
    """
    return [(start + m.start(), start + m.end()) for m in _DATE_ONLY.finditer(text[start:end])]


def field_span(text: str, f: Field) -> tuple[int, int]:
    """The span to quote for a field: label and value when one line holds both, else the value alone."""
    if "\n" in text[f.start : f.end]:
        return f.value_start, f.value_end
    return f.start, f.end


def text_units(text: str, sentences: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The units the answer step quotes: ``sentences``, with every one that holds fields replaced by
    its fields ("Budget de la Suisse CHF 9’200’000" instead of the whole ``Budget | ... |`` row).

    >>> t = "Intro line.\\nBudget | Budget de la Suisse CHF 9’200’000 Budget de l'Organisation CHF 7’000’000 |\\n"
    >>> [t[s:e] for s, e in text_units(t, [(0, 11), (12, len(t) - 1)])]
    ['Intro line.', 'Budget de la Suisse CHF 9’200’000', "Budget de l'Organisation CHF 7’000’000"]
    """
    fields = sorted({field_span(text, f) for f in find_fields(text)})
    if not fields:
        return list(sentences)
    kept: list[tuple[int, int]] = []
    for s, e in fields:  # a field inside one already kept (a header table's cell) adds nothing
        if not kept or s >= kept[-1][1]:
            kept.append((s, e))
    out = [(s, e) for s, e in sentences if not any(fs < e and s < fe for fs, fe in kept)]
    return sorted(out + kept)
