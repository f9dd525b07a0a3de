"""What a question asks for (a number, a date, a name...) and whether a sentence holds it.

Recognised in English, French and Russian. Dates in every common form count as dates:
``31.08.2028``, ``2022-09-01``, ``1 September 2022``, ``September 2022``, ``1er septembre 2022``,
``1 сентября 2022 г.``, ``в 2022 году`` and bare years.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from assistant.search.keyword import fold, tokenize

# What a question asks for, recognised in English, French and Russian.
_KINDS = {
    "percent": r"what percentage|what share|what proportion|what per ?cent|quel pourcentage|какой процент|какая доля",
    "money": r"how much (?:money|funding|did .* cost|does .* cost|was|is)|\bbudget\b|\bcost\b|\bfunding\b|\bremittances\b|"
    r"\bmontant\b|\bco[uû]t\b|\bbudget\b|сколько стоил|\bбюджет|\bстоимост|объ[её]м денежных|сумм[аы]",
    "date": r"\bwhen\b|what year|which year|since when|what date|\bquand\b|quelle ann[ée]e|quelle date|depuis quand|"
    r"\bкогда\b|в каком году|с какого года|какого года|какой год|с каких пор",
    "number": r"how many|how much|what percentage|what share|what (?:is|was) the (?:budget|amount|number|total)|"
    r"\bcombien\b|quel (?:est|était) le (?:budget|montant|nombre)|\bсколько\b|каков(?:ы|а)? (?:бюджет|сумма|число)",
    "where": r"^\s*where\b|\bwhere (?:was|were|is|did)|in which (?:city|town|country|region|place)|\bo[uù] (?:a|se|est)\b|"
    r"dans quelle ville|\bгде\b|в каком городе",
    "person": r"what is the name of|what was the name of|who is the (?:director|head|minister|manager|chief|leader|ambassador)|"
    r"как зовут|\bqui dirige\b|quel est le nom",
    "who": r"^\s*who\b|\bwho (?:is|was|were|are|led|funds|finances|funded|organi[sz]ed)|which (?:organi[sz]ation|agency|ministry|"
    r"country|countries|government|donor|city)|\bqui\b|quelle? (?:organisation|agence|pays|ville)|\bкто\b|какая организация|"
    r"какое агентство|какая страна|какие страны|какой город",
}
_KIND_RES = {kind: re.compile(pattern, re.IGNORECASE) for kind, pattern in _KINDS.items()}
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)s?\b")
_MONTHS_EN = "january|february|march|april|may|june|july|august|september|october|november|december"
_MONTHS_EN_SHORT = r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
_MONTHS_FR = "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre"
# Russian month names in any case ending: "сентябрь", "сентября", "в сентябре".
_MONTHS_RU = (
    r"январ[ьяе]|феврал[ьяе]|март[ае]?|апрел[ьяе]|ма[йяе]|июн[ьяе]|июл[ьяе]|август[ае]?|"
    r"сентябр[ьяе]|октябр[ьяе]|ноябр[ьяе]|декабр[ьяе]"
)
_MONTH_NAME = rf"(?:{_MONTHS_EN}|(?:{_MONTHS_EN_SHORT})\.?|{_MONTHS_FR}|{_MONTHS_RU})"
DATE = re.compile(
    r"(?<![\w.])(?:"
    r"\d{1,2}[./]\d{1,2}[./](?:\d{4}|\d{2})"  # 31.08.2028, 1/9/22
    r"|\d{4}-\d{1,2}-\d{1,2}"  # 2022-09-01
    rf"|{_MONTH_NAME}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # September 1, 2022
    rf"|\d{{1,2}}(?:st|nd|rd|th|er|re)?\s+{_MONTH_NAME}(?:,?\s+\d{{4}})?(?:\s*г(?:ода|\.))?"  # 1 September (2022), 1er septembre
    rf"|{_MONTH_NAME},?\s+\d{{4}}(?:\s*г(?:ода|\.))?"  # September 2022, сентября 2022 г.
    r"|(?:в\s+)?(?:1[89]|20)\d\d\s*(?:году|года|г\.)"  # в 2022 году
    r")(?![\w])",
    re.IGNORECASE,
)
# A month name or a numeric date (for the checks below).
_MONTH = re.compile(rf"{DATE.pattern}|\b(?:{_MONTHS_EN}|{_MONTHS_FR})\b", re.IGNORECASE)


_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|dozen|deux|trois|quatre|cinq|sept|huit|neuf|dix|cent|mille)\b",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"\b(?:CHF|USD|US\$|EUR|TJS|somoni|francs?|dollars?|euros?)\b|[$€£]\s?\d|\d\s?(?:million|billion|mln|bn)\b", re.IGNORECASE
)
_PERSON = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b")
_ORG_WORDS = frozenset(
    "Ministry Minister Office Agency Programme Program Project Department Bank Government Commission Committee Foundation "
    "Network Republic Service Services Centre Center Group Development Society Civil Deputy Executive President Justice "
    "Foreign Affairs Public Digital Technologies Innovation National State Council Institute University Fund Union "
    "Organisation Organization Association Initiative Reform Registration System Systems Halls Hall House Houses".split()
)
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-ZА-Я][\w’'-]+|\b[A-Z]{2,}\b")


def question_kind(question: str) -> str | None:
    """'date', 'number', 'who' or None.

    >>> [question_kind(q) for q in ("How many staff?", "Quand ?", "Кто финансирует проект?", "What is the budget?", "Why?")]
    ['number', 'date', 'who', 'money', None]
    """
    for kind, pattern in _KIND_RES.items():
        if pattern.search(question):
            return kind
    return None


def has_kind(sentence: str, kind: str | None, question: str = "") -> bool:
    """Does ``sentence`` hold something of ``kind`` that the question does not already say?

    >>> has_kind("The program organized five events in 2021.", "number", "How many events in 2021?")
    True
    >>> has_kind("Tajikistan joined in 2011.", "date", "What happened in 2011?")
    False
    """
    known = set(re.findall(r"\w+", fold(question)))

    def new(matches: Iterable[re.Match[str]]) -> bool:
        return any(fold(m.group(0)).rstrip("s") not in known and fold(m.group(0)) not in known for m in matches)

    if kind == "date":
        return new(_YEAR.finditer(sentence)) or new(_MONTH.finditer(sentence))
    if kind == "number":
        without_years = _YEAR.sub(" ", sentence) if not _YEAR.search(question) else sentence
        return new(re.finditer(r"\d[\d’',.]*|" + _NUMBER.pattern[3:], without_years, re.IGNORECASE))
    if kind == "money":
        return bool(_MONEY.search(sentence))
    if kind == "percent":
        return bool(re.search(r"\d\s?%|\bper ?cent\b|\bpour ?cent\b|процент", sentence, re.IGNORECASE))
    if kind == "person":
        return any(not (set(m.group(0).split()) & _ORG_WORDS) and new([m]) for m in _PERSON.finditer(sentence))
    if kind in ("who", "where"):
        return new(m for m in _CAPITALISED.finditer(sentence) if not _MONTH.fullmatch(m.group(0)))
    return False


def counted_words(question: str) -> list[str]:
    """What an English "how many" question counts, with its acronym.

    >>> counted_words("How many civil society organisations were registered?")
    ['civil', 'society', 'organisations', 'cso']
    """
    match = re.search(r"how many ((?:[\w’'-]+\s*){1,3})", question, re.IGNORECASE)
    if not match:
        return []
    words = [w for w in tokenize(match.group(1)) if not w.isdigit()][:3]
    stop = {"did", "does", "do", "were", "was", "are", "is", "have", "has"}
    words = words[: next((i for i, w in enumerate(words) if w in stop), len(words))]
    return words + ["".join(w[0] for w in words)] if len(words) > 1 else words


def counts_noun(sentence: str, nouns: list[str]) -> bool:
    """Is one of ``nouns`` (or its plural/singular) within four words after a number in ``sentence``?

    >>> counts_noun("over 450 government officials through 180 sessions", ["officials"])
    True
    >>> counts_noun("a team of nine Tajik researchers", ["members"])
    False
    """
    words = re.findall(r"[\w’'-]+", fold(sentence))
    stems = [n[:5] for n in nouns if n]
    for i, word in enumerate(words):
        if word[0].isdigit() or _NUMBER.fullmatch(word):
            if any(w.startswith(stem) for w in words[i + 1 : i + 5] for stem in stems):
                return True
    return False


_EXPLANATION = re.compile(
    r"^\s*(?:why|how(?!\s+(?:many|much|long|old|often|far|big|large|high))|explain|describe|in what way)\b"
    r"|\b(?:pourquoi|comment|expliquez|décrivez)\b"
    r"|\b(?:почему|зачем|каким образом|объясните|опишите)\b|^\s*как(?!\s+(?:зовут|долго|много))\b",
    re.IGNORECASE,
)


def wants_explanation(question: str) -> bool:
    """Does the question ask why or how (an explanation, best answered by a whole sentence)?

    >>> [wants_explanation(q) for q in ("Why was it set up?", "How many staff?", "Comment le projet aide-t-il ?", "Почему?")]
    [True, False, True, True]
    """
    return bool(_EXPLANATION.search(question))


_NAME = re.compile(r"(?<=[\s(«\"'])[A-ZÀ-ÖØ-ÞА-ЯЁ][\w\-]+|\b\d[\d’',.]*\d\b|\b\d\b")


def question_names(question: str) -> list[str]:
    """The question's names (capitalised words after its first) and numbers.

    >>> question_names("When did Kyrgyzstan become an IOM Member State in 1994?")
    ['Kyrgyzstan', 'IOM', 'Member', 'State', '1994']
    """
    return _NAME.findall(question)


def joined_digits(text: str) -> str:
    """Digit groups joined: '9’200’000' -> '9200000'."""
    return re.sub(r"(?<=\d)[\s’',.\u202f](?=\d{3}\b)", "", text)
