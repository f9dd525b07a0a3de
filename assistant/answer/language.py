"""Which language a text is in (English, French, Russian), and the fixed texts in each.

>>> question_language("Quel est le budget du projet ?"), question_language("Сколько стоит проект?")
('fr', 'ru')
>>> no_answer_text("ru")
'В документах нет ответа на этот вопрос.'
"""

from __future__ import annotations

import re

NO_ANSWER = {
    "en": "The documents do not answer this question.",
    "fr": "Les documents ne répondent pas à cette question.",
    "ru": "В документах нет ответа на этот вопрос.",
}

# Short function words: a few of them mark a text's language.
MARKERS = {
    "en": frozenset("the and of is are was were to in by with for which that this from has have been its what who how when".split()),
    "fr": frozenset(
        "le la les des du est et une un dans par pour sur aux au qui que été sont ont ses leur avec quel quelle quels quelles "
        "combien quand pourquoi comment".split()
    ),
}
_FRENCH_ACCENTS = re.compile(r"[àâçéèêëîïôûùœ]")
_WORDS = re.compile(r"[^\W\d_]+")


def _cyrillic_share(text: str) -> float | None:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    return sum("\u0400" <= ch <= "\u04ff" for ch in letters) / len(letters)


def language(text: str) -> str | None:
    """The single most likely language of a short text ('en', 'fr', 'ru'), or None when unclear.

    >>> language("Quel est le budget du projet ?"), language("Сколько стоит проект?"), language("42"), language("MSDSP?")
    ('fr', 'ru', None, None)
    """
    cyrillic = _cyrillic_share(text)
    if cyrillic is None:
        return None
    if cyrillic > 0.3:
        return "ru"
    words = _WORDS.findall(text.lower())
    hits = {lang: sum(w in markers for w in words) for lang, markers in MARKERS.items()}
    if hits["fr"] >= 2 and hits["fr"] >= hits["en"]:
        return "fr"
    if hits["en"] > hits["fr"]:
        return "en"
    if hits["fr"] > hits["en"] or _FRENCH_ACCENTS.search(text.lower()):
        return "fr"
    return None


def question_language(question: str) -> str:
    """``language(question)``, English when unclear."""
    return language(question) or "en"


def languages(text: str) -> set[str]:
    """Every language a longer text (a passage, an answer sentence) is partly written in."""
    cyrillic = _cyrillic_share(text)
    if cyrillic is None:
        return set()
    found = {"ru"} if cyrillic > 0.2 else set()
    if cyrillic < 0.8:
        words = _WORDS.findall(text.lower())
        hits = {lang: sum(w in markers for w in words) for lang, markers in MARKERS.items()}
        total = sum(hits.values())
        found |= {lang for lang, n in hits.items() if n and n >= 0.25 * total}
    return found


def no_answer_text(lang: str | None) -> str:
    return NO_ANSWER.get(lang or "en", NO_ANSWER["en"])
