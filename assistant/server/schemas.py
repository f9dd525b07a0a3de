"""Request and response bodies of the HTTP API (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.answer.types import Citation

# Some text, and no control characters other than tab, newline and carriage return.
_OK = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
QUESTION_PATTERN = rf"^{_OK}*[^\s\x00-\x1F\x7F-\x9F]{_OK}*$"


class AskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, pattern=r"\S", description="The question, in plain language (English, French or Russian).")
    top_k: int | None = Field(default=None, ge=1, le=20, description="How many passages to retrieve.")
    mode: Literal["auto", "extractive", "llm"] | None = Field(default=None, description="Answerer; auto uses the LLM when configured.")

    @field_validator("top_k", mode="before")
    @classmethod
    def _json_integer(cls, value: object) -> object:
        # A JSON integer (5 or 5.0), not a string or a boolean.
        if isinstance(value, bool) or isinstance(value, str) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("top_k must be a whole number from 1 to 20")
        return value


def ask_request_model(max_chars: int) -> type[AskFields]:
    """The /ask body, with the configured question length in its schema."""

    class AskRequest(AskFields):
        question: str = Field(
            min_length=1,
            max_length=max_chars,
            pattern=QUESTION_PATTERN,
            description="The question, in plain language (English, French or Russian); not blank, no control characters.",
        )

    return AskRequest


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    mode: Literal["extractive", "llm"]
    citations: list[Citation]
    related: list[Citation]
    timings_ms: dict[str, float]
    warnings: list[str]
    check: dict | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DocumentInfo(BaseModel):
    doc_id: str
    title: str
    publisher: str | None
    date: str | None
    period: str | None
    language: list[str]
    description: str | None
    source: str
    chars: int


class DocumentList(BaseModel):
    documents: list[DocumentInfo]


class DocumentText(DocumentInfo):
    text: str
