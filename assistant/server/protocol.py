"""uvicorn's h11 protocol with the request time limits of the settings in the environment.

``assistant serve --workers N`` hands uvicorn this module's class by name, so that every worker
process builds it from the same ``ASSISTANT_*`` variables (see ``middleware.timed_h11_protocol``).
"""

from assistant.config import Settings
from assistant.server.middleware import timed_h11_protocol

_settings = Settings()
TimedH11Protocol = timed_h11_protocol(_settings.http_header_timeout_s, _settings.http_body_timeout_s)
