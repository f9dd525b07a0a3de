"""The chat page: static files shipped inside the package (``assistant/web``).

Only the files named in ``PAGE_FILES`` are ever served (never the package's own Python files or
anything else in the folder), each with the page's security headers."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from fastapi.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from assistant.server.errors import error_response

# The page's ES modules in web/js/, imported by app.js (the entry module) and by each other.
PAGE_MODULES = (
    "answer",
    "api",
    "chat",
    "documents",
    "dom",
    "history",
    "i18n",
    "keyfield",
    "layout",
    "library",
    "panel",
    "quotes",
    "tabs",
    "uploads",
)

# The page's files, relative to the web folder: the only paths served besides "/".
PAGE_FILES = frozenset(
    {
        "index.html",
        "app.js",
        "style.css",
        "favicon.svg",
        "i18n/en.js",
        "i18n/fr.js",
        "i18n/ru.js",
        *(f"js/{name}.js" for name in PAGE_MODULES),
    }
)

# The page runs only its own scripts and styles (no inline ones), talks only to this server,
# and is never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def web_dir() -> Traversable:
    """The folder of the chat page's files in the installed package."""
    return resources.files("assistant.web")


def page_paths() -> frozenset[str]:
    """The URL paths of the page's own files (open without an API key)."""
    return frozenset({"/"} | {f"/{name}" for name in PAGE_FILES})


def with_security_headers(send: Send) -> Send:
    """``send`` adding the page's security headers to the response start."""
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []), *(h for h in encoded if h[0] not in present)]}
        await send(message)

    return wrapped


class WebFiles(StaticFiles):
    """The chat page's files (GET and HEAD), from the explicit list only. An API path reached here
    was asked with the wrong method (405 naming the right ones); anything else is not found (404)."""

    def __init__(self, api_methods: dict[str, set[str]], **kwargs: Any):
        super().__init__(**kwargs)
        self.api_methods = api_methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        send = with_security_headers(send)
        path = scope.get("path", "")
        allowed = self.api_methods.get(path)
        listed = path == "/" or path.removeprefix("/") in PAGE_FILES
        if allowed or not listed or scope["method"] not in ("GET", "HEAD"):
            if allowed:
                message = f"{scope['method']} is not allowed on {scope['path']}; use {', '.join(sorted(allowed))}."
                response = error_response(405, "method_not_allowed", message, headers={"Allow": ", ".join(sorted(allowed))})
            else:
                response = error_response(404, "not_found", f"No {scope['method']} route at {scope['path']}.")
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
