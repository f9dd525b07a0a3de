"""The LLM prompt: ``prompts/answer.md`` (shipped inside the package) filled with the passages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypedDict

from assistant.search.retriever import Passage

SENTINEL = "NOT_IN_DOCUMENTS"


class Message(TypedDict):
    """One chat message of a prompt, as the OpenAI-compatible endpoint takes it."""

    role: str
    content: str


def prompt_text(name: str) -> str:
    """A prompt file of the installed package (``assistant/prompts/<name>``)."""
    return resources.files("assistant.prompts").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Prompt:
    """The system and user templates of a prompt file (``prompts/answer.md``, ``prompts/condense.md``)."""

    system: str
    user: str

    @classmethod
    def load(cls, path: Path | None = None, name: str = "answer.md") -> Prompt:
        """The prompt in ``path``, or the packaged prompt file ``name``."""
        raw = path.read_text(encoding="utf-8") if path is not None else prompt_text(name)
        text = re.sub(r"<!--.*?-->", "", raw, flags=re.S)
        match = re.search(r"^=== system ===\n(.*?)^=== user ===\n(.*)\Z", text, flags=re.S | re.M)
        if not match:
            raise ValueError(f"{path or name} must have an '=== system ===' and an '=== user ===' section")
        return cls(match.group(1).strip(), match.group(2).strip())

    def messages(self, question: str, passages: list[Passage]) -> list[Message]:
        """The answer prompt's messages for a question and its numbered passages."""
        return self.render(
            {
                "sentinel": SENTINEL,
                "count": str(len(passages)),
                "passages": "\n\n".join(_passage_block(i, p) for i, p in enumerate(passages, 1)),
                "question": _defuse(question.strip()),
            }
        )

    def render(self, values: dict[str, str]) -> list[Message]:
        """System and user messages with ``{{name}}`` placeholders filled in one pass."""

        def fill(template: str) -> str:
            return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)

        return [{"role": "system", "content": fill(self.system)}, {"role": "user", "content": fill(self.user)}]


def _defuse(text: str) -> str:
    """Passage text cannot close or open a passage tag (so it cannot pose as the question)."""
    return re.sub(r"<(/?)(passage)", r"‹\1\2", text, flags=re.I)


def _passage_block(n: int, passage: Passage) -> str:
    title = _defuse(" ".join(passage.title.split())).replace('"', "'")
    return f'<passage n="{n}" title="{title}">\n{_defuse(passage.text.strip())}\n</passage>'
