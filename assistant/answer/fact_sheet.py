"""Questions a project's fact sheet answers: when it starts or ends, its number and its budget.

"When does the Digital Foundations Project end?" is answered by the field ``Phase 1
01.09.2022 - 31.08.2028`` of the project's page, which reads nothing like the question (another
language, no verb), so neither retrieval nor the reader links the two. When the question asks for
one of these facts, the title and publisher of the document the answer step ranks first name
everything the question names (the fact sheet is about the project its title names: "What is the
project number of the World Bank's initiative?" is not asked of it), and that document has a field
of the right kind, the field is the answer: its label and value quoted with exact offsets, the
asked-for date or code marked inside it.

- a start: the first date of the document's first date range; an end: the last date of its last
  (ranges written on one line with their label first);
- a number: the value of the first code field whose label says number, code or ID;
- a budget ("What is its budget?", "Budget de la Suisse ?", "What is the total budget including
  partners?"): the first amount field whose label says budget and every qualifier the question
  names (Swiss, total or including partners, already allocated, the organisation's), in any of the
  three languages; fields with label and value on one line first. A question that asks who, which
  or when about a budget asks something else.

Nothing here is fitted; everything else goes to the calibrated decision. When the decision quotes
a field, ``asked_value`` marks its value if it is the kind the question asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.answer.kinds import question_kind
from assistant.answer.types import Answer, citation
from assistant.ingest.fields import Field, dates_in, field_span, find_fields
from assistant.search.retriever import Passage
from assistant.search.store import Store

_ASKS = {
    "end": re.compile(
        r"\b(?:(?:when|what date|which date)\b.*\b(?:end|ends|ended|finish|finishes|close|closes|closed|conclude|concludes|run until)\b"
        r"|end date|until when)"
        r"|\b(?:date de (?:fin|clôture)|(?:quand|quelle date)\b.*\b(?:termin\w*|achève|prend fin|fin)\b|jusqu'à quand)"
        r"|(?:когда\b.*\b(?:заканчива|законч|заверш|оконч)|дата (?:окончания|завершения)|до какого)",
        re.I,
    ),
    "start": re.compile(
        r"\b(?:(?:when|what date|which date)\b.*\b(?:start|starts|started|begin|begins|began|launch|launched|commence|commenced)\b"
        r"|start date)"
        r"|\b(?:date de début|(?:quand|quelle date)\b.*\b(?:commenc|débu|démarr|lanc))"
        r"|(?:когда\b.*\b(?:начал|начина|стартова|запущ)|дата начала)",
        re.I,
    ),
    "budget": re.compile(r"\bbudget\w*|бюджет", re.I),
    "code": re.compile(
        r"\b(?:project|credit|grant|loan)\s+(?:number|no\.?|code|id)\b|\b(?:number|code|id) of the project\b"
        r"|\bnuméro\b|\bnum[ée]ro de (?:projet|crédit)|(?:номер|код)\w*\s+проект|\bномер\b",
        re.I,
    ),
}
_BUDGET = re.compile(r"\bbudget\w*|бюджет", re.I)
_NOT_AN_AMOUNT = re.compile(
    r"\b(?:who|whom|whose|which|when|where|why|qui|quel(?:le)?s? (?:ministère|organisme)|quand|où|pourquoi)\b"
    r"|кто|когда|где|почему|зачем|какое ведомство",
    re.I,
)
# A qualifier the question names -> the words of a label that carry it (labels in any of the three languages).
_QUALIFIERS = [
    (re.compile(r"\b(?:total|overall|including|all partners|y compris|ensemble)\b|всего|общ\w+|включая", re.I),
     re.compile(r"total|y compris|including|partenaires|partners|всего|общ|включая", re.I)),
    (re.compile(r"\b(?:swiss|switzerland|suisse|helvétique)\b|швейцар", re.I), re.compile(r"suisse|swiss|швейцар", re.I)),
    (re.compile(r"\b(?:allocated|committed|disbursed|spent|attribué\w*|déjà)\b|выделен|израсходован", re.I),
     re.compile(r"attribué|allocated|déjà|выделен", re.I)),
    (re.compile(r"\b(?:organi[sz]ation\w*|organisme|agency)\b|организаци", re.I), re.compile(r"organi[sz]ation|организаци", re.I)),
]  # fmt: skip
_CODE_LABEL = re.compile(r"\b(?:num[ée]ro|number|no\.?|code|id|identifi\w*|r[ée]f[ée]rence)\b|номер|код", re.I)


def asked_fact(question: str) -> str | None:
    """ "start", "end", "code" or None.

    >>> [asked_fact(q) for q in ("When does the project end?", "Quel est le numéro du projet ?", "Когда начался проект?", "Who funds it?")]
    ['end', 'code', 'start', None]
    >>> [asked_fact(q) for q in ("Quand le projet a-t-il commencé ?", "Quand se termine-t-il ?", "Qui a lancé le projet ?",
    ...                          "Quand a-t-il été financé ?", "À quelle date se termine la phase en cours ?")]
    ['start', 'end', None, None, 'end']
    >>> [asked_fact(q) for q in ("And what is its budget?", "Budget de la Suisse ?", "Каков бюджет проекта?",
    ...                          "Who prepares the budget?", "When was the budget approved?")]
    ['budget', 'budget', 'budget', None, None]
    """
    for fact, pattern in _ASKS.items():
        if pattern.search(question):
            if fact == "budget" and _NOT_AN_AMOUNT.search(question):
                continue
            return fact
    return None


@dataclass(frozen=True)
class Fact:
    """The field that answers, the span to quote (label and value, or the value alone) and the words to mark."""

    field: Field
    quote: tuple[int, int]
    marked: tuple[int, int]


def find_fact(fact: str, text: str, fields: list[Field] | None = None, question: str = "") -> Fact | None:
    """The field of ``text`` that states ``fact`` ("start", "end", "code" or "budget": the
    ``question``'s qualifiers choose among budgets), or None.

    >>> t = "Phases du projet | Phase 1 01.09.2022 - 31.08.2028 |\\nNuméro de projet 7F09822\\n"
    >>> [t[slice(*find_fact(f, t).marked)] for f in ("start", "end", "code")]
    ['01.09.2022', '31.08.2028', '7F09822']
    >>> t = "Budget | Budget de la Suisse CHF 9’200’000 Budget y compris partenaires de projet CHF 37’000’000 |\\n"
    >>> [t[slice(*find_fact("budget", t, question=q).quote)] for q in ("What is its budget?", "And the total, including partners?")]
    ['Budget de la Suisse CHF 9’200’000', 'Budget y compris partenaires de projet CHF 37’000’000']
    """
    fields = find_fields(text) if fields is None else fields
    if fact == "budget":
        return _budget(text, fields, question)
    if fact in ("start", "end"):
        ranges = [f for f in fields if f.kind == "date_range" and len(dates_in(text, f.value_start, f.value_end)) >= 2]
        if not ranges:
            return None
        ranges = [f for f in ranges if "\n" not in text[f.start : f.end]] or ranges  # label and value on one line first
        f = ranges[0] if fact == "start" else ranges[-1]
        dates = dates_in(text, f.value_start, f.value_end)
        return Fact(f, field_span(text, f), dates[0] if fact == "start" else dates[-1])
    codes = [f for f in fields if f.kind == "code" and _CODE_LABEL.search(f.label)]
    if not codes:
        return None
    f = codes[0]
    return Fact(f, field_span(text, f), (f.value_start, f.value_end))


def fact_answer(question: str, asked: str, top: Passage, text: str, fields: list[Field], index: Store) -> Answer | None:
    """The answer quoting the field of ``top``'s document ``text`` that states the ``asked`` fact, or None."""
    found = find_fact(asked, text, fields, question)
    if found is None:
        return None
    a, b = found.quote
    unit = Passage(f"{top.doc_id}#field", top.doc_id, top.title, top.source, text[a:b], a, b, top.score)
    cite = citation(1, unit, index, a, b, found.marked)
    return Answer(answer=f"{cite.quote} [1]", abstained=False, mode="extractive", citations=[cite],
                  check={"decision": "answer", "reason": f"fact-sheet field ({asked}): {found.field.label}"})  # fmt: skip


def _budget(text: str, fields: list[Field], question: str) -> Fact | None:
    wanted = [label for asks, label in _QUALIFIERS if asks.search(question)]
    budgets = [f for f in fields if f.kind == "amount" and _BUDGET.search(f.label) and all(w.search(f.label) for w in wanted)]
    budgets = [f for f in budgets if "\n" not in text[f.start : f.end]] or budgets  # label and value on one line first
    if not budgets:
        return None
    f = budgets[0]
    return Fact(f, field_span(text, f), (f.value_start, f.value_end))


_KINDS = {"money": ("amount",), "date": ("date", "date_range")}


def asked_value(unit: str, offset: int, question: str) -> tuple[int, int] | None:
    """When the quoted ``unit`` (at ``offset`` in its document) is one field whose value is the kind
    the question asks for (an amount for "how much", a date, a code for "what is the number"), the
    value's document offsets: the words to mark.

    >>> asked_value("Budget de la Suisse CHF 9’200’000", 100, "What is the Swiss budget?")
    (120, 133)
    >>> asked_value("Budget de la Suisse CHF 9’200’000", 100, "Who funds it?") is None
    True
    """
    fields = find_fields(unit + "\n")
    if len(fields) != 1:
        return None
    f = fields[0]
    wanted = ("code",) if asked_fact(question) == "code" else _KINDS.get(question_kind(question) or "", ())
    return (offset + f.value_start, offset + f.value_end) if f.kind in wanted else None
