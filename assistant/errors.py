"""The product's domain errors: one base class, each kind with the HTTP status it maps to.

The server turns any ``AssistantError`` into ``{"error": {"code", "message", "details"}}``
with ``status``; the command line prints its message and exits with 2.

The whole tree::

    AssistantError                  500 internal_error
    ├── IndexNotReady               503 not_ready
    │   └── BuildInProgress         503 not_ready (another process is building the same index)
    ├── CorpusError                 503 corpus_error
    ├── ConfigError                 500 config_error
    ├── NotFound                    404 not_found
    ├── AnswerError                 502 answerer_failed
    │   └── StreamFailed            502 llm_failed (after part of a streamed answer was sent)
    ├── Cancelled                   499 client_closed_request (the client went away)
    └── ApiError                    any status (``assistant.server.errors``: HTTP-only refusals)
        └── Overloaded              503 overloaded (``assistant.server.admission``)

``Cancelled`` is not an ``AnswerError``: the answer step's fallback to the extractive answer
catches ``AnswerError`` only, so a cancelled request is never answered another way.
``ApiError`` and ``Overloaded`` live beside the server code that raises them (they need the
HTTP layer) and are not re-exported here, so that this module imports nothing.
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


class BuildInProgress(IndexNotReady):
    """Another process (a server worker, ``assistant index``, a store sync) is building the same index."""


class StoreUnavailable(AssistantError):
    """The store's database cannot be reached, or did not answer in time (503 store_unavailable)."""

    status = 503
    code = "store_unavailable"


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


class StreamFailed(AnswerError):
    """The LLM failed after part of its answer was already streamed: the stream ends with an error
    event (the client may ask again extractively), never with a different answer."""

    code = "llm_failed"


class Cancelled(AssistantError):
    """The client that asked went away, so the work for it was stopped."""

    status = 499
    code = "client_closed_request"
