"""Keyword search: a Unicode-aware tokeniser and BM25 (``bm25s``) over chunk texts."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Short function words of English, French and Russian; they carry no topic.
_STOPWORDS = """
    a an and are as at be but by did do does for from had has have how i in is it its of on or
    that the their there these this those to was were what when where which who whom whose why
    will with would you your about into than then they them our we can could should may also not
    le la les l un une des du de d et ou en est sont au aux ce ces cet cette qui que quoi quel
    quelle quels quelles dont pour par sur dans avec sans se sa son ses leur leurs il elle ils
    elles on nous vous a ont été être qu combien comment pourquoi quand où
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только её
    мне было вот от меня ещё нет о из ему теперь когда даже ну ли если уже или ни быть был него
    до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для
    мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того
    потому этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда зачем
    всех никогда можно при наконец два об другой хоть после над больше тот через эти нас про всего
    них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя
    такой им более всегда конечно всю между каков какова каковы сколько почему
    """


def fold(text: str) -> str:
    """Lower-case and strip accents: 'Développement' -> 'developpement', 'Проект' -> 'проект'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


STOPWORDS = frozenset(fold(w) for w in _STOPWORDS.split())


def tokenize(text: str, drop_stopwords: bool = True) -> list[str]:
    """Words of any script, folded; numbers kept ('9’200’000' -> '9', '200', '000').

    >>> tokenize("Le Projet de développement, Проект цифровых основ 2022!")
    ['projet', 'developpement', 'проект', 'цифровых', 'основ', '2022']
    """
    words = _WORD.findall(fold(text))
    if drop_stopwords:
        return [w for w in words if w not in STOPWORDS]
    return words


class KeywordIndex:
    """BM25 over a fixed list of texts; ``scores`` returns one score per text."""

    def __init__(self, texts: Sequence[str]):
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)
        tokens = [tokenize(t) or ["\u2400"] for t in texts]
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self.vocabulary = frozenset(t for doc in tokens for t in doc)
        self.size = len(texts)

    def coverage(self, query: str) -> float:
        """Share of the query's words found anywhere in the texts (low for a query in another language)."""
        tokens = tokenize(query)
        return sum(t in self.vocabulary for t in tokens) / len(tokens) if tokens else 0.0

    def scores(self, query: str) -> NDArray[np.float32]:
        tokens = tokenize(query)
        if not tokens or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
