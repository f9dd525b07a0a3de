"""The one error shape at the HTTP boundary: ``{"error": {"code", "message", "details"}}``.

Domain errors (``assistant.errors``) carry their status and code; ``ApiError`` adds the ones
only HTTP has (401, 415...). ``error_body`` is shared with the event stream's ``error`` event.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.server.schemas import ErrorResponse

log = logging.getLogger(__name__)


class ApiError(AssistantError):
    """An error of the HTTP layer itself, with its status, code and optional headers."""

    def __init__(self, status: int, code: str, message: str, details: object | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, details)
        self.status, self.code, self.headers = status, code, headers


def error_body(code: str, message: str, details: object | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: object | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


UNAUTHORISED = ApiError(
    401, "unauthorised", "A valid API key is required: send 'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": "Bearer"}
)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    415: {"model": ErrorResponse, "description": "Body is not JSON"},
    422: {"model": ErrorResponse, "description": "Invalid field values"},
    503: {"model": ErrorResponse, "description": "Index not ready, or busy (code overloaded, with Retry-After)"},
}


def multipart_problem(exc: StarletteHTTPException) -> tuple[int, str, str] | None:
    """(status, code, message) naming what is wrong with a multipart form body, when that is what
    failed to parse (the form parser's own error is the exception's cause); else None."""
    cause = exc.__cause__ or exc.__context__
    if not isinstance(cause, MultiPartException) and not (isinstance(exc.detail, str) and "multipart" in exc.detail.lower()):
        return None
    detail = str(getattr(cause, "message", None) or cause or exc.detail)
    lowered = detail.lower()
    if "too many files" in lowered or "too many fields" in lowered:
        return 413, "too_many_parts", f"The form has too many parts: {detail.rstrip('.')}."
    if "exceeded maximum size" in lowered:
        return 413, "part_too_large", f"A form field that is not a file is too large: {detail.rstrip('.')}."
    if "boundary" in lowered:
        return 400, "invalid_multipart", "The multipart/form-data body has no boundary (set Content-Type: multipart/form-data; boundary=…)."
    return 400, "invalid_multipart", f"The multipart/form-data body could not be read: {detail.rstrip('.')}."


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Every error leaves as ``{"error": {"code", "message", "details"}}`` with a 4xx/5xx status."""

    @app.exception_handler(AssistantError)
    async def domain_error(_: Request, exc: AssistantError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "invalid_json", "The request body is not valid JSON.")
        friendly = {
            "string_too_short": "must not be empty",
            "string_pattern_mismatch": "must hold some text and no control characters",
            "string_unicode": "must be valid Unicode text",
        }

        def explain(e: dict[str, Any]) -> str:
            """A field's problem in words, quoting the field's own limit (pydantic's error ctx)."""
            kind, ctx = e.get("type"), e.get("ctx") or {}
            if kind == "string_too_long":
                return f"is longer than {ctx.get('max_length', settings.max_question_chars)} characters"
            if kind == "too_long" and "max_length" in ctx:
                return f"has more than {ctx['max_length']} items"
            if kind == "too_short" and "min_length" in ctx:
                return f"needs at least {ctx['min_length']} items"
            return friendly.get(str(kind), str(e.get("msg", "")).removeprefix("Value error, ").removeprefix("question "))

        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": explain(e),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
        return error_response(422, "invalid_request", message or "Invalid request.", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        messages = {
            400: "The request body is not valid JSON.",
            413: f"The request body is too large (limit {settings.max_body_bytes} bytes).",
        }
        form = multipart_problem(exc)
        if form is not None:
            return error_response(*form)
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "Internal server error.")
