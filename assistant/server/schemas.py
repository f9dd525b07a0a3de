"""Request and response bodies of the HTTP API (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from assistant.answer.followup import MAX_TURNS, Turn
from assistant.answer.types import Citation

# Some text, and no control characters other than tab, newline and carriage return.
_OK = r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
QUESTION_PATTERN = rf"^{_OK}*[^\s\x00-\x1F\x7F-\x9F]{_OK}*$"


class HistoryTurn(BaseModel):
    """One earlier exchange of the conversation, as the client kept it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=4000, description="What was asked.")
    answer: str = Field(default="", max_length=8000, description="What the assistant answered.")
    doc_ids: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=20, description="The documents that answer cited (a retrieval prior for the follow-up)."
    )
    search_question: str | None = Field(default=None, max_length=8000, description="What was searched for it, if the client kept it.")

    def turn(self) -> Turn:
        return Turn(self.question, self.answer, list(self.doc_ids), self.search_question)


class AskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, pattern=r"\S", description="The question, in plain language (English, French or Russian).")
    top_k: int | None = Field(default=None, ge=1, le=20, description="How many passages to retrieve.")
    mode: Literal["auto", "extractive", "llm"] | None = Field(default=None, description="Answerer; auto uses the LLM when configured.")
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=MAX_TURNS,
        description="Earlier turns of the conversation, oldest first: a follow-up ('And when does it end?') is searched "
        "as a standalone question (see search_question in the response).",
    )

    def turns(self) -> list[Turn]:
        return [t.turn() for t in self.history]

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
    check: dict[str, Any] | None = None
    search_question: str | None = Field(default=None, description="What was searched: the question, or a follow-up made standalone.")
    rewrite: str | None = Field(default=None, description="How the question was made standalone: none, rules or llm.")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


UPLOAD_FOLDER = "uploads"  # below the corpus folder: where POST /documents saves files, and the only documents DELETE removes


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
    pages: int | None = Field(default=None, description="A PDF's number of pages; null for other formats.")
    warnings: list[str] = Field(default_factory=list, description="What a reader should know about this document's text.")

    @computed_field(description="Added with POST /documents (its file is under uploads/): DELETE /documents/{doc_id} removes it.")  # type: ignore[prop-decorator]  # pydantic's documented form
    @property
    def uploaded(self) -> bool:
        return self.source.startswith(UPLOAD_FOLDER + "/")


class SkippedFile(BaseModel):
    source: str = Field(description="The file, relative to the corpus folder.")
    reason: str = Field(description="Why it was not indexed.")


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    skipped: list[SkippedFile] = Field(default_factory=list, description="Files of the corpus folder that could not be indexed, and why.")


class DocumentText(DocumentInfo):
    text: str


# ---------------------------------------------------------------- uploads (uploads.py)


class UploadResult(BaseModel):
    file: str = Field(description="The file name as sent.")
    status: Literal["queued", "skipped"] = Field(description="queued: saved and being indexed; skipped: refused (see reason).")
    doc_id: str | None = Field(default=None, description="The document's id (queued), or the existing document it duplicates.")
    source: str | None = Field(default=None, description="Where it was saved, relative to the corpus folder (uploads/...).")
    reason: str | None = Field(default=None, description="Why it was skipped.")


class UploadResponse(BaseModel):
    files: list[UploadResult] = Field(description="One result per file, in the order sent.")
    message: str = Field(description="What happens next, in a sentence.")


class DeleteResponse(BaseModel):
    doc_id: str
    status: Literal["deleted", "queued"] = Field(
        description="deleted: gone from the index now (PostgreSQL); queued: its file is gone and the index is being rebuilt without it."
    )


# ---------------------------------------------------------------- OpenAI-compatible API (/v1, openai_api.py)


class ChatContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts are read."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # extra: e.g. the "citations" of an earlier answer of this server

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ChatContentPart] | None = None
    name: str | None = None


class ChatStreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. The last user message is the question; earlier user and
    assistant messages are the conversation; system messages are ignored. Sampling parameters
    are accepted and ignored (answers quote the documents)."""

    # Other OpenAI parameters are accepted and ignored; JSON types as the schema says ("5" is not a number).
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(description="assistant (the server's default mode), assistant-extractive, or assistant-llm.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: ChatStreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1.")
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    citations: list[Citation] = Field(default_factory=list, description="The numbered sources, as in /ask.")


class ChatChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    finish_reason: Literal["stop"]
    logprobs: None = None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    system_fingerprint: str | None = None
    citations: list[Citation] = Field(default_factory=list, description="Extra: the sources, as in /ask.")
    search_question: str | None = Field(default=None, description="Extra: what was searched (the follow-up made standalone).")
    rewrite: str | None = Field(default=None, description="Extra: how the question was made standalone: none, rules or llm.")
    abstained: bool = Field(default=False, description="Extra: the documents do not answer the question.")
    warnings: list[str] = Field(default_factory=list, description="Extra: as in /ask.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody
