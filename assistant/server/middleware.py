"""Checks made before a request body is parsed: its size, and the API key."""

from __future__ import annotations

import hmac

from assistant.config import Settings
from assistant.server.errors import UNAUTHORISED, error_response

QUESTION_PATHS = ("/ask", "/ask/stream")


class Guard:
    """Request size limit (declared or streamed bodies) and the API key, checked before the body is parsed."""

    def __init__(self, app, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.settings.max_body_bytes
        too_large = error_response(413, "too_large", f"The request body is larger than {limit} bytes.")
        if self.settings.api_key is not None and scope["method"] == "POST" and scope["path"] in QUESTION_PATHS:
            if not key_ok(headers.get("authorization", ""), self.settings):
                e = UNAUTHORISED
                return await error_response(e.status, e.code, e.message, headers=e.headers)(scope, receive, send)
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return await error_response(400, "bad_request", "Content-Length is not a number.")(scope, receive, send)
            if int(length) > limit:
                return await too_large(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        # A body of unknown length is read here, up to the limit, then handed on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def key_ok(authorization: str, settings: Settings) -> bool:
    scheme, _, token = authorization.partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected)
