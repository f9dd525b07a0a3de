"""Near-miss questions: one entity, year or number of a question swapped for another of its kind.

"When did Kyrgyzstan become an IOM Member State?" asked of a passage about Tajikistan: the passage
still looks right but no longer answers (SQuAD 2.0's hardest kind of unanswerable question). The
replacement comes from the same collection and never occurs in the passage.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)?(?![\w.,]*\d)")
# A capitalised word that is not the question's first word (Latin or Cyrillic, hyphens allowed).
NAME = re.compile(r"(?<=[\s(«\"'])[A-ZÀ-ÖØ-ÞА-ЯЁ][\w\-]{2,}")


@dataclass
class Pools:
    """Replacements by kind, gathered from a collection's questions and passages."""

    years: list[str]
    numbers: list[str]
    names: list[str]

    @classmethod
    def gather(cls, texts: Iterable[str]) -> Pools:
        years, numbers, names = set(), set(), set()
        for t in texts:
            years |= set(YEAR.findall(t))
            numbers |= {n for n in NUMBER.findall(t) if not YEAR.fullmatch(n)}
            names |= set(NAME.findall(t))
        return cls(sorted(years), sorted(numbers), sorted(names))


def swap(question: str, context: str, pools: Pools, rng: random.Random) -> str | None:
    """The question with one year, number or name that the context holds replaced by one it
    does not hold; None when the question has nothing to swap.

    >>> pools = Pools(["1994", "2001"], ["12"], ["Tajikistan", "Kyrgyzstan"])
    >>> swap("When did Tajikistan join IOM?", "Tajikistan joined IOM in 1994.", pools, random.Random(0))
    'When did Kyrgyzstan join IOM?'
    """
    folded = context.casefold()
    options = []
    for pattern, pool in ((YEAR, pools.years), (NUMBER, pools.numbers), (NAME, pools.names)):
        for m in pattern.finditer(question):
            if pattern is NUMBER and YEAR.fullmatch(m.group()):
                continue
            if m.group().casefold() in folded:
                options.append((m, pool))
    rng.shuffle(options)
    for m, pool in options:
        old = m.group()
        for _ in range(20):
            if not pool:
                break
            new = rng.choice(pool)
            if new.casefold() != old.casefold() and new.casefold() not in folded and new.casefold() not in question.casefold():
                return question[: m.start()] + new + question[m.end() :]
    return None
