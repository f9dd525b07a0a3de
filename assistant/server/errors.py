"""The one error shape at the HTTP boundary: ``{"error": {"code", "message", "details"}}``.

Domain errors (``assistant.errors``) carry their status and code; ``ApiError`` adds the ones
only HTTP has (401, 415...). ``error_body`` is shared with the event stream's ``error`` event.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.server.schemas import ErrorResponse

log = logging.getLogger(__name__)


class ApiError(AssistantError):
    """An error of the HTTP layer itself, with its status, code and optional headers."""

    def __init__(self, status: int, code: str, message: str, details: object | None = None, headers: dict | None = None):
        super().__init__(message, details)
        self.status, self.code, self.headers = status, code, headers


def error_body(code: str, message: str, details: object | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: object | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


UNAUTHORISED = ApiError(
    401, "unauthorised", "A valid API key is required: send 'Authorization: Bearer <key>'.", headers={"WWW-Authenticate": "Bearer"}
)

ERRORS = {
    400: {"model": ErrorResponse, "description": "Malformed request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    415: {"model": ErrorResponse, "description": "Body is not JSON"},
    422: {"model": ErrorResponse, "description": "Invalid field values"},
    503: {"model": ErrorResponse, "description": "Index not ready, or busy (code overloaded, with Retry-After)"},
}


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
        max_chars = settings.max_question_chars
        friendly = {
            "string_too_short": "must not be empty",
            "string_pattern_mismatch": "must hold some text and no control characters",
            "string_too_long": f"is longer than {max_chars} characters",
            "string_unicode": "must be valid Unicode text",
        }
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": friendly.get(e.get("type"), str(e.get("msg", "")).removeprefix("Value error, ").removeprefix("question ")),
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
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "Internal server error.")
