"""Follow-up questions: turn "And when does it end?" into a question that can be searched alone.

Without an LLM, a rule-based rewrite fires only when the follow-up needs it: it refers back
(pronouns, demonstratives: "it", "they", "cette", "его"), is elliptical ("and in 2006?", "what
about Georgia?", "et le budget ?", "а когда?"), or has too few content words to search with. It
then carries over the previous question's topic: its names, acronyms and content words that the
follow-up does not already have. A complete question is left unchanged. The documents the
previous answer cited are a retrieval prior either way.

With an LLM, ``prompts/condense.md`` asks the model for the standalone question; the reply is
checked (one question, same language, not much longer, no invented numbers) and the rule-based
rewrite is used on any failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from assistant.answer.language import language
from assistant.search.keyword import STOPWORDS, fold, tokenize

if TYPE_CHECKING:
    from assistant.answer.llm.prompt import Message, Prompt

log = logging.getLogger(__name__)

_MARKERS = re.compile(r"\s*\[\d+\]")
MAX_TURNS = 10  # earlier turns than these are not looked at
MAX_TOPIC_WORDS = 8

# Words that point back to something said before.
_REFERS_BACK = frozenset(
    fold(w)
    for w in """
    it its it's they them their theirs this that these those he him his she her there then such the same
    il elle ils elles lui leur leurs son sa ses ce cet cette ces celui celle ceux celles y en là-bas alors
    он она оно они его ее её их ему ей им нем ней них этот эта это эти этого этой этих тот та те того той тех там тогда такой такая такие
    """.split()
)
# Openings of an elliptical follow-up.
_ELLIPSIS = re.compile(
    r"^\s*(?:and|but|also|what about|how about|what of|same for|and what about|"
    r"et|mais|aussi|quid de|qu'en est-il|et pour|et en|et le|et la|et les|"
    r"а|и|но|ещё|еще|что насчет|что насчёт|как насчет|как насчёт|а как|а что)\b",
    re.IGNORECASE,
)
_QUESTION_WORDS = frozenset(
    fold(w)
    for w in """
    what which who whom whose when where why how many much long does did do is are was were can could should
    quel quelle quels quelles qui quoi quand ou où comment combien pourquoi est-ce
    что какой какая какие кто когда где почему зачем как сколько каков какова
    """.split()
)
_NAME = re.compile(r"\b(?:[A-ZА-ЯЁ][\w’'-]+(?:\s+(?:of|for|and|de|du|des|la|le|и)?\s*[A-ZА-ЯЁ][\w’'-]+)*|[A-ZА-ЯЁ]{2,}\w*)\b")


class Completer(Protocol):
    """What the LLM rewrite needs of a client (``LLMClient``): the model's reply to chat messages."""

    def complete(self, messages: list[Message]) -> str: ...


@dataclass
class Turn:
    """One earlier exchange: what was asked (and searched), answered, and cited."""

    question: str
    answer: str = ""
    doc_ids: list[str] = field(default_factory=list)
    search_question: str | None = None


@dataclass
class Rewrite:
    """What to search for, and why."""

    question: str  # the standalone question (the follow-up itself when complete)
    prefer_docs: list[str]  # documents the previous answers cited
    method: str  # "none" (standalone), "rules" or "llm"


def content_words(text: str) -> list[str]:
    return [w for w in tokenize(text) if w not in _QUESTION_WORDS and not w.isdigit() and len(w) > 1]


def needs_context(question: str) -> bool:
    """Does a question lean on an earlier one?

    >>> [needs_context(q) for q in ("And when does it end?", "Et le budget ?", "А когда?", "What about Georgia?")]
    [True, True, True, True]
    >>> [needs_context(q) for q in ("Who funds the Digital Foundations Project?", "Quand le projet DFP se termine-t-il ?")]
    [False, False]
    """
    if _ELLIPSIS.search(question):
        return True
    words = re.findall(r"[^\W\d_][\w’'-]*", question)
    if any(fold(w) in _REFERS_BACK for w in words) and len(content_words(question)) <= 3:
        return True
    return len(content_words(question)) <= 1


def topic(question: str) -> list[str]:
    """The names, acronyms and content words of a question, names first.

    >>> topic("Who funds the Digital Foundations Project in Tajikistan?")
    ['Digital Foundations Project', 'Tajikistan', 'funds']
    """
    names = [m.group(0) for m in _NAME.finditer(question) if fold(m.group(0)) not in _QUESTION_WORDS | STOPWORDS]
    named = {w for n in names for w in tokenize(n)}
    words = [w for w in content_words(question) if w not in named]
    out = list(dict.fromkeys([*names, *words]))
    return out[:MAX_TOPIC_WORDS]


def rule_rewrite(question: str, history: list[Turn]) -> Rewrite:
    """The follow-up with the previous question's topic carried over, when it needs it.

    >>> turns = [Turn("Who funds the Digital Foundations Project?", "...", ["sdc"])]
    >>> rule_rewrite("And when does it end?", turns).question
    'And when does it end? (Digital Foundations Project, funds)'
    >>> rule_rewrite("Who finances the UNDP study tour to Georgia?", turns).question
    'Who finances the UNDP study tour to Georgia?'
    """
    history = history[-MAX_TURNS:]
    prefer = list(dict.fromkeys(d for t in reversed(history) for d in t.doc_ids))
    if not history or not needs_context(question):
        return Rewrite(question, prefer if history and needs_context(question) else [], "none")
    previous = history[-1]
    have = set(tokenize(question))
    carried = [t for t in topic(previous.search_question or previous.question) if not set(tokenize(t)) <= have]
    if not carried:
        return Rewrite(question, prefer, "none")
    text = question.rstrip()
    mark = "?" if text.endswith("?") else ""
    body = text.rstrip("?？ ").rstrip()
    return Rewrite(f"{body}{' ?' if mark and language(question) == 'fr' else mark} ({', '.join(carried)})", prefer, "rules")


def check_condensed(original: str, condensed: str, history: list[Turn]) -> str | None:
    """The LLM's standalone question if it can be trusted, else None.

    >>> turns = [Turn("Who funds the Digital Foundations Project?")]
    >>> check_condensed("And when?", "When does the Digital Foundations Project end?", turns)
    'When does the Digital Foundations Project end?'
    >>> check_condensed("Et quand ?", "When does it end?", turns) is None  # another language
    True
    >>> check_condensed("And the budget?", "What was the budget in 2019?", turns) is None  # a number from nowhere
    True
    """
    text = condensed.strip().strip('"“”«»').strip()
    if not text or "\n" in text or len(text) > max(300, 4 * len(original)):
        return None
    lang_in, lang_out = language(original), language(text)
    if lang_in and lang_out and lang_in != lang_out:
        return None
    said = " ".join([original, *(f"{t.question} {t.search_question or ''} {t.answer}" for t in history)])
    if any(n not in re.findall(r"\d+", said) for n in re.findall(r"\d+", text)):
        return None
    return text


def llm_rewrite(question: str, history: list[Turn], client: Completer, prompt: Prompt) -> str | None:
    """The LLM's standalone question (checked), or None when the call or the check fails."""
    from assistant.errors import AnswerError

    lines = []
    for t in history[-MAX_TURNS:]:
        lines.append(f"User: {t.question.strip()}")
        if t.answer:
            lines.append("Assistant: " + _MARKERS.sub("", t.answer.strip())[:400])
    try:
        reply = client.complete(prompt.render({"history": "\n".join(lines), "question": question.strip()}))
    except AnswerError as exc:
        log.warning("condensing the follow-up failed, using the rule-based rewrite: %s", exc)
        return None
    checked = check_condensed(question, reply, history)
    if checked is None:
        log.warning("the condensed question did not pass the check, using the rule-based rewrite: %r", reply[:200])
    return checked


def rewrite(question: str, history: list[Turn] | None, client: Completer | None = None, prompt: Prompt | None = None) -> Rewrite:
    """The question to search for: the follow-up made standalone when it needs the history."""
    history = [t for t in (history or []) if t.question.strip()][-MAX_TURNS:]
    ruled = rule_rewrite(question, history)
    if not history or client is None or prompt is None:
        return ruled
    condensed = llm_rewrite(question, history, client, prompt)
    if condensed is None:
        return ruled
    return Rewrite(condensed, ruled.prefer_docs or list(dict.fromkeys(d for t in reversed(history) for d in t.doc_ids)), "llm")
