"""Numbers, amounts, dates and codes in text, each with its possible readings.

'9’200’000' and 'CHF 9.2 million' share the reading '9200000'; '2,700' reads as 2700 or 2.7;
'31.08.2028' gives 31, 8 and 2028. The LLM answer check compares readings, not spellings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from assistant.search.keyword import fold, tokenize

_DATE = re.compile(r"(?<![\w.,])(?:\d{1,2}[./]\d{1,2}[./](?:\d{4}|\d{2})|\d{4}[-/.]\d{1,2}[-/.]\d{1,2})(?![\w])")
_SPACED = re.compile(r"(?<![\d.,’'])(\d{1,3})((?:[ \u00a0\u202f\u2009]\d{3})+)(?![\d])")
_CODE = re.compile(r"(?=[^\W_]*\d)(?=[^\W_]*[^\W\d_])[^\W_]+")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th|s|er|re|ere|e|eme|me|x|г|гг|й|я|е|го|м|х)$")
_NUMBER = re.compile(r"\d+(?:[.,’'\u2019]\d+)*")
_SCALE = re.compile(
    r"\s*(thousands?|k|millions?|mln|mn|m|billions?|bn|milliards?|mille|миллион\w*|млн|миллиард\w*|млрд|тысяч\w*|тыс)\b", re.I
)
_SCALES = {"thousand": 3, "k": 3, "mille": 3, "тыс": 3, "million": 6, "mln": 6, "mn": 6, "m": 6, "млн": 6, "миллион": 6}
_SCALES |= {"billion": 9, "bn": 9, "milliard": 9, "миллиард": 9, "млрд": 9}
_NUMBER_WORDS = {
    **dict.fromkeys(["one", "un", "une", "один", "одна", "одно", "первый"], 1),
    **dict.fromkeys(["two", "deux", "два", "две", "двух", "второй"], 2),
    **dict.fromkeys(["three", "trois", "три", "трех", "трёх"], 3),
    **dict.fromkeys(["four", "quatre", "четыре"], 4),
    **dict.fromkeys(["five", "cinq", "пять"], 5),
    **dict.fromkeys(["six", "шесть"], 6),
    **dict.fromkeys(["seven", "sept", "семь"], 7),
    **dict.fromkeys(["eight", "huit", "восемь"], 8),
    **dict.fromkeys(["nine", "neuf", "девять"], 9),
    **dict.fromkeys(["ten", "dix", "десять"], 10),
    **dict.fromkeys(["eleven", "onze"], 11),
    **dict.fromkeys(["twelve", "douze"], 12),
    **dict.fromkeys(["twenty", "vingt"], 20),
    **dict.fromkeys(["hundred", "cent", "сто"], 100),
}
_MONTHS = {
    **{w: i for i, w in enumerate("january february march april may june july august september october november december".split(), 1)},
    **{w: i for i, w in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)},
    **{w: i for i, w in enumerate("janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre".split(), 1)},
    "sept": 9,
}
_MONTH_IN_DATE = re.compile(
    r"(?:\b\d{1,2}(?:st|nd|rd|th|er)?\s+)?\b("
    + "|".join(sorted({m for m in _MONTHS if len(m) > 3 and m != "sept"}, key=len, reverse=True))
    + r"|sept|jan|feb|mar|apr|may|mai|jun|jul|aug|sep|oct|nov|dec|январ\w*|феврал\w*|март\w*|апрел\w*|ма[йяе]|июн\w*|июл\w*|август\w*"
    r"|сентябр\w*|октябр\w*|ноябр\w*|декабр\w*)\b\.?(?:,?\s+\d{4}\b)?"
)
_MONTH_STEMS_RU = ("январ", "феврал", "март", "апрел", "ма", "июн", "июл", "август", "сентябр", "октябр", "ноябр", "декабр")


def _canon(number: str) -> str:
    """'09' -> '9', '9.20' -> '9.2', '9200000' -> '9200000'."""
    try:
        return format(Decimal(number).normalize(), "f")
    except InvalidOperation:
        return number


def _scaled(value: str, power: int) -> str:
    return _canon(str(Decimal(value).scaleb(power)))


def _number_values(raw: str) -> set[str]:
    """Readings of one written number: '9’200’000' -> {'9200000'}, '2,700' -> {'2700', '2.7'}."""
    groups = re.split(r"[.,’'\u2019]", raw)
    seps = re.findall(r"[.,’'\u2019]", raw)
    if not seps:
        return {_canon(raw)}
    values = set()
    if all(len(g) == 3 for g in groups[1:]):
        values.add(_canon("".join(groups)))  # every separator groups thousands
    last = seps[-1]
    if last in ".," and last not in seps[:-1] and all(len(g) == 3 for g in groups[1:-1]):
        values.add(_canon("".join(groups[:-1]) + "." + groups[-1]))  # the last one is a decimal point
    return values or {"raw:" + raw}  # "1.2.3": compare as written


@dataclass
class Numbers:
    """The numbers (each a set of readings) and letter-digit codes ('7F09822') of a text."""

    mentions: list[tuple[str, set[str]]] = field(default_factory=list)
    loose: set[str] = field(default_factory=set)  # extra readings a passage may be matched by

    def values(self) -> set[str]:
        return {v for _, vs in self.mentions for v in vs} | self.loose


def numbers(text: str, loose: bool = False) -> Numbers:
    """Numbers, amounts, dates and codes in ``text``; ``loose`` adds extra readings (for passages)."""
    out = Numbers()

    def take_dates(m: re.Match[str]) -> str:
        for part in re.split(r"[-./]", m.group()):
            out.mentions.append((part, {_canon(part)}))
        if loose:
            out.loose.add("raw:" + m.group())
        return " "

    text = _DATE.sub(take_dates, text)
    if not loose:
        # A month named next to a day or a year ("March 2007", "18 November") must match too.
        for m in _MONTH_IN_DATE.finditer(fold(text)):
            if any(ch.isdigit() for ch in m.group()):
                month = _MONTHS.get(m.group(1)) or next(
                    (i for i, stem in enumerate(_MONTH_STEMS_RU, 1) if m.group(1).startswith(stem)), None
                )
                if month:
                    out.mentions.append((m.group(1), {str(month)}))

    def take_codes(m: re.Match[str]) -> str:
        word = fold(m.group())
        ordinal = _ORDINAL.match(word)
        if ordinal:
            out.mentions.append((m.group(), {_canon(ordinal.group(1))}))
        else:
            out.mentions.append((m.group(), {"code:" + word}))
            if loose:
                out.loose.update(_canon(d) for d in re.findall(r"\d+", word))
        return " "

    text = _CODE.sub(take_codes, text)
    if loose:
        out.loose.update(_canon(d) for m in _SPACED.finditer(text) for d in re.findall(r"\d+", m.group()))
    text = _SPACED.sub(lambda m: m.group(1) + re.sub(r"\s", "’", m.group(2)), text)
    for m in _NUMBER.finditer(text):
        values = _number_values(m.group())
        scale = _SCALE.match(text, m.end())
        if scale:
            word = fold(scale.group(1))
            power = next((_SCALES[w] for w in sorted(_SCALES, key=len, reverse=True) if word.startswith(w)), 0)
            values |= {_scaled(v, power) for v in values if not v.startswith("raw:")}
        out.mentions.append((m.group(), values))
        if loose:
            out.loose.update(_canon(d) for d in re.findall(r"\d+", m.group()))
    if loose:
        for word in tokenize(text, drop_stopwords=False):
            if word in _NUMBER_WORDS:
                out.loose.add(str(_NUMBER_WORDS[word]))
            month = _MONTHS.get(word)
            if month is None and len(word) >= 3:
                month = next((i for i, stem in enumerate(_MONTH_STEMS_RU, 1) if word.startswith(stem) and len(word) - len(stem) <= 2), None)
            if month:
                out.loose.add(str(month))
    return out
