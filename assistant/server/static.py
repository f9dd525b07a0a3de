"""The chat page: static files shipped inside the package (``assistant/web``)."""

from __future__ import annotations

from importlib import resources

from fastapi.staticfiles import StaticFiles

from assistant.server.errors import error_response


def web_dir():
    """The folder of the chat page's files in the installed package."""
    return resources.files("assistant.web")


class WebFiles(StaticFiles):
    """The chat page's files (GET and HEAD). An API path reached here was asked with the wrong
    method (405 naming the right ones); any other method elsewhere is not found (404)."""

    def __init__(self, api_methods: dict[str, set[str]], **kwargs):
        super().__init__(**kwargs)
        self.api_methods = api_methods

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        allowed = self.api_methods.get(path) if scope["type"] == "http" else None
        hidden = path.endswith((".py", ".pyc")) or "__pycache__" in path  # the package's own files
        if allowed or hidden or (scope["type"] == "http" and scope["method"] not in ("GET", "HEAD")):
            if allowed:
                message = f"{scope['method']} is not allowed on {scope['path']}; use {', '.join(sorted(allowed))}."
                response = error_response(405, "method_not_allowed", message, headers={"Allow": ", ".join(sorted(allowed))})
            else:
                response = error_response(404, "not_found", f"No {scope['method']} route at {scope['path']}.")
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
