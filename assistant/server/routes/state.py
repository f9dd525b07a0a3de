"""The app's typed state, and the request checks shared by routes."""

from dataclasses import dataclass

from fastapi import Request

from assistant.config import Settings
from assistant.live import LiveService
from assistant.server.admission import Admission
from assistant.server.errors import ApiError


@dataclass(frozen=True)
class AppState:
    """What the routes read: the loaded (or loading) assistant, the settings and the answer slots."""

    live: LiveService
    settings: Settings
    admission: Admission


async def app_state(request: Request) -> AppState:
    """The state ``create_app`` stored on the app (use as ``Depends(app_state)``).

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, and every
    request would then take a thread before admission control sees it."""
    state: AppState = request.app.state.assistant
    return state


async def json_body(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request body as JSON with 'Content-Type: application/json'.")
