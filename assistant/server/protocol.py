"""uvicorn's h11 protocol with the request time limits of the settings in the environment.

``assistant serve --workers N`` hands uvicorn this module's class by name, so that every worker
process builds it from the same ``ASSISTANT_*`` variables (see ``middleware.timed_h11_protocol``).
The settings are read when uvicorn first asks for ``TimedH11Protocol``, not at import.
"""

from functools import cache

from assistant.config import Settings
from assistant.server.middleware import timed_h11_protocol


@cache
def _protocol() -> type:
    settings = Settings()
    return timed_h11_protocol(settings.http_header_timeout_s, settings.http_body_timeout_s)


def __getattr__(name: str) -> type:
    if name == "TimedH11Protocol":
        return _protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
