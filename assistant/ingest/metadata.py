"""Metadata a person recognises: a title that is a title (not a generator, an organisation, a URL or a file
name), the document's date from its own properties, and its language from its text."""

from __future__ import annotations

import re
from datetime import date, datetime

from assistant.ingest.text import _Lazy

__all__ = ["detect_language", "document_date", "is_junk_title"]

_URL = _Lazy(r"(?:https?://|www\.|\b[\w-]+\.(?:com|org|net|int|gov|edu)\b|@[\w-]+\.)", re.I)
_GENERATOR = _Lazy(
    r"^(?:untitled\b.*|document\s*\d*|doc\d*|page\s*\d*|slide\s*\d*|title|no title|none|null|unknown|presentation\s*\d*|"
    r"(?:microsoft|libreoffice|openoffice|adobe|acrobat|distiller|pdftex|pdflatex|latex|ghostscript|wkhtmltopdf|chromium|"
    r"skia|cairo|reportlab|itext|prince|quartz|pdfcreator|writer|indesign|framemaker)\b.*|"
    r".*\.(?:docx?|odt|rtf|pptx?|xlsx?|indd|tex|dvi|pdf|html?|txt|qxd|pub))$",
    re.I,
)
_ORGANISATION = _Lazy(r"\b(?:group|inc|ltd|llc|gmbh|corp|corporation|limited|consortium)\.?\s*(?:\([^)]*\))?$", re.I)


def is_junk_title(title: str | None, *others: str | None) -> bool:
    """Is this metadata title not a title: empty, a URL or e-mail, a generator or file name, an organisation,
    no words, or the same as the author or producer (``others``)?

    >>> is_junk_title("X Desktop Group (http://www.freedesktop.org)"), is_junk_title("Microsoft Word - draft_v3.docx")
    (True, True)
    >>> is_junk_title("Annual Report 2023"), is_junk_title("Ministry of Finance", "Ministry of Finance")
    (False, True)
    """
    text = " ".join((title or "").split())
    if len(text) < 4 or sum(ch.isalpha() for ch in text) < 3:
        return True
    if _URL.search(text) or _GENERATOR.match(text) or _ORGANISATION.search(text):
        return True
    folded = text.casefold()
    return any(other and " ".join(other.split()).casefold() == folded for other in others)


_PDF_DATE = _Lazy(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")
_ISO_DATE = _Lazy(r"^\s*(\d{4})-(\d{2})(?:-(\d{2}))?")


def document_date(value: object) -> str | None:
    """An ISO date (``YYYY-MM-DD``, or ``YYYY-MM``/``YYYY`` when that is all it says) from a PDF date string,
    an ISO string or a datetime; ``None`` for anything implausible.

    >>> document_date("D:20230409102200+02'00'"), document_date("2019-06"), document_date(datetime(2021, 3, 1, 9, 30))
    ('2023-04-09', '2019-06', '2021-03-01')
    >>> document_date("D:19700101000000Z"), document_date("soon")
    (None, None)
    """
    if isinstance(value, datetime | date):
        parts = [value.year, value.month, value.day]
    elif isinstance(value, str) and (m := _ISO_DATE.match(value) or _PDF_DATE.match(value.strip())):
        parts = [int(p) for p in m.groups() if p]
    else:
        return None
    year = parts[0]
    if not 1980 <= year <= datetime.now().year + 1:  # 1970 and earlier: an unset clock
        return None
    if len(parts) > 1 and not 1 <= parts[1] <= 12 or len(parts) > 2 and not 1 <= parts[2] <= 31:
        return None
    return "-".join([f"{parts[0]:04d}"] + [f"{p:02d}" for p in parts[1:]])


_WORDS = _Lazy(r"[^\W\d_]+")
_STOPWORDS = {
    "en": {"the", "and", "of", "to", "in", "is", "for", "with", "that", "on", "by", "are", "this", "from", "as", "was"},
    "fr": {"le", "la", "les", "des", "et", "du", "de", "pour", "est", "une", "dans", "en", "sur", "au", "aux", "par", "qui"},
    "ru": {"и", "в", "на", "не", "что", "по", "с", "для", "как", "из", "это", "от", "к", "о", "также", "при"},
    "tg": {"ва", "дар", "бо", "аз", "ба", "барои", "мебошад", "ки", "то", "ин", "он", "шуд", "карда", "чун"},
}
_TAJIK_LETTERS = set("ғӣқӯҳҷҒӢҚӮҲҶ")


def detect_language(text: str, sample: int = 20_000) -> str | None:
    """The text's language among the corpus's (en, fr, ru, tg) by their commonest words; ``None`` when unsure.

    >>> detect_language("The project is financed by the Swiss Agency and runs in the regions of Tajikistan.")
    'en'
    >>> detect_language("Le projet est financé par la Suisse et mis en œuvre dans les régions du pays.")
    'fr'
    >>> detect_language("Проект финансируется Швейцарией и реализуется в регионах страны для жителей.")
    'ru'
    """
    words = [w.casefold() for w in _WORDS.findall(text[:sample])]
    if len(words) < 8:
        return None
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    tajik = sum(ch in _TAJIK_LETTERS for ch in text[:sample])
    if tajik >= 5:
        counts["tg"] += tajik
    lang, best = max(counts.items(), key=lambda item: item[1])
    if best < max(2, 0.04 * len(words)):
        return None
    return lang
