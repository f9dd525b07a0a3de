"""The product's domain errors: one base class, each kind with the HTTP status it maps to.

The server turns any ``AssistantError`` into ``{"error": {"code", "message", "details"}}``
with ``status``; the command line prints its message and exits with 2.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base of the errors the product expects and explains."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: object | None = None):
        super().__init__(message)
        self.message = message
        self.details = details


class IndexNotReady(AssistantError):
    """The index is missing, stale, corrupted, being built, or built for another configuration."""

    status = 503
    code = "not_ready"


class CorpusError(AssistantError):
    """The documents folder is missing or holds nothing that can be indexed."""

    status = 503
    code = "corpus_error"


class ConfigError(AssistantError):
    """The settings name something that does not exist or cannot work together."""

    status = 500
    code = "config_error"


class AnswerError(AssistantError):
    """An answerer could not produce an answer (the LLM endpoint failed, timed out, replied garbage)."""

    status = 502
    code = "answerer_failed"


class NotFound(AssistantError):
    status = 404
    code = "not_found"


class Cancelled(AnswerError):
    """The client that asked went away, so the work for it was stopped."""

    status = 499
    code = "client_closed_request"
