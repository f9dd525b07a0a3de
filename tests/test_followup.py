"""Follow-up questions become standalone search questions (rules, or a checked LLM rewrite)."""

from __future__ import annotations

import pytest

from assistant.answer.followup import Turn, rewrite
from assistant.answer.llm.prompt import Prompt
from assistant.errors import AnswerError

FIRST = Turn(
    "Who funds the Digital Foundations Project?", "Switzerland, with the World Bank [1]", ["sdc-tajikistan-digital-foundations-project"]
)


@pytest.mark.parametrize(
    ("follow_up", "carried"),
    [
        ("And when does it end?", "Digital Foundations Project"),
        ("How much does Switzerland put in?", None),  # complete enough: has its own subject
        ("Et quand se termine-t-il ?", "Digital Foundations Project"),
        ("А когда он закончится?", "Digital Foundations Project"),
        ("What about the budget?", "Digital Foundations Project"),
    ],
)
def test_rules_carry_the_topic_only_when_needed(follow_up, carried):
    result = rewrite(follow_up, [FIRST])
    if carried is None:
        assert result.question == follow_up and result.method == "none"
    else:
        assert result.method == "rules" and carried in result.question and result.question.startswith(follow_up.rstrip(" ?"))
        assert result.prefer_docs == FIRST.doc_ids


def test_a_complete_question_is_left_alone():
    q = "How many civil society organisations were registered in Tajikistan in 1997?"
    assert rewrite(q, [FIRST]).question == q
    assert rewrite(q, []).question == q


class ScriptedLLM:
    def __init__(self, reply: str | Exception):
        self.reply = reply
        self.messages = None

    def complete(self, messages):
        self.messages = messages
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


PROMPT = Prompt.load(name="condense.md")


def test_the_llm_rewrite_is_used_when_it_passes_the_check():
    llm = ScriptedLLM("When does the Digital Foundations Project end?")
    result = rewrite("And when does it end?", [FIRST], llm, PROMPT)
    assert result.method == "llm" and result.question == "When does the Digital Foundations Project end?"
    assert "Who funds the Digital Foundations Project?" in llm.messages[1]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        AnswerError("the LLM endpoint did not answer within 5 s"),
        "",
        "Quand se termine le projet ?",  # another language than the follow-up
        "When does the project that started in 2019 end?",  # a number nobody said
        "line one\nline two",
    ],
)
def test_any_llm_failure_falls_back_to_the_rules(reply):
    result = rewrite("And when does it end?", [FIRST], ScriptedLLM(reply), PROMPT)
    assert result.method == "rules" and "Digital Foundations Project" in result.question
