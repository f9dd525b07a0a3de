"""An OpenAI-compatible chat client: ``POST {base_url}/v1/chat/completions``, plain or streamed.

Every call has ONE time budget, ``llm_timeout_s``: connecting, every read and every retry fit
inside it. A timer cuts the call's connection when the budget runs out, so a server that
trickles bytes, streams without end or never finishes a line cannot hold a call longer. Replies
are read up to ``llm_max_reply_bytes`` (plain or streamed). A call made under a ``CancelToken``
(``cancellable``) stops as soon as the token is cancelled: the server cancels it when the client
that asked goes away. Retries on connection errors, timeouts, 429 and 5xx, within the budget;
every failure is an ``AnswerError`` with a message that never contains the API key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

import httpx

from assistant.answer.llm.budget import Call
from assistant.answer.llm.wire import error_text, event_lines, parse_json, read_body
from assistant.cancellation import current_cancel_token
from assistant.config import Settings
from assistant.errors import AnswerError, Cancelled

if TYPE_CHECKING:
    from assistant.answer.llm.prompt import Message

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0  # the most one reachability probe may take
HEALTH_CACHE_S = 30.0  # how long a probe's result (or a real call's outcome) is reused
MAX_BACKOFF_S = 2.0
MAX_ERROR_BODY_BYTES = 64 * 1024  # of an error response, read only for its message


@dataclass(frozen=True)
class Completion:
    """The whole text of one chat completion and why the model stopped ("stop", "length", ...)."""

    text: str
    finish_reason: str | None


class LLMHealth(TypedDict):
    """What ``LLMClient.health`` reports about the endpoint."""

    configured: bool
    reachable: bool
    model: str
    error: NotRequired[str]


# ------------------------------------------------------------ the client


class LLMClient:
    """Chat completions from an OpenAI-compatible endpoint; every failure is an ``AnswerError``.

    Example: ``LLMClient(Settings(llm_base_url="http://127.0.0.1:8080")).complete([{"role": "user", "content": "Hi"}])``
    """

    def __init__(self, settings: Settings, client: httpx.Client | None = None):
        if not settings.llm_base_url:
            raise ValueError("llm_base_url is not set")
        self.settings = settings
        base = settings.llm_base_url.strip().rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        self.url = f"{base}/v1/chat/completions"
        self._key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        self._owns_client = client is None
        # A fresh connection per call: the budget's timer knows it from the moment it is made (and
        # never cuts a pooled connection that another call reuses). Uncompressed, so the size cap
        # counts what is held in memory.
        self._client = client or httpx.Client(
            timeout=settings.llm_timeout_s,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept-Encoding": "identity"},
        )
        self._health_lock = threading.Lock()
        self._health: LLMHealth | None = None
        self._health_at = 0.0
        self._probe: threading.Thread | None = None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- public calls

    def complete(self, messages: list[Message]) -> str:
        """The model's reply to ``messages``, in one piece."""
        return self.chat(messages).text

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """The model's reply as text deltas, as they arrive."""
        for item in self.stream_chat(messages):
            if isinstance(item, str):
                yield item

    def chat(self, messages: list[Message]) -> Completion:
        """Like ``complete``, with the finish reason."""
        call = Call(self.settings.llm_timeout_s, current_cancel_token())
        response = None
        try:
            response = self._send(call, self._payload(messages, stream=False))
            return self._parse_completion(response, call)
        finally:
            call.close()
            if response is not None:
                response.close()

    def stream_chat(self, messages: list[Message]) -> Iterator[str | Completion]:
        """Like ``stream``, then a final ``Completion`` with the whole text and the finish reason.

        A stream that breaks off before its ``finish_reason`` or ``data: [DONE]``, runs past the
        time limit or grows past the size cap raises AnswerError.
        """
        call = Call(self.settings.llm_timeout_s, current_cancel_token())
        response = None
        try:
            response = self._send(call, self._payload(messages, stream=True))
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignored "stream": true and answered in one piece.
                completion = self._parse_completion(response, call)
                if completion.text:
                    yield completion.text
                yield completion
                return
            parts: list[str] = []
            done = False
            finish: str | None = None
            for line in event_lines(response, call, self.settings.llm_max_reply_bytes):
                line = line.strip()
                if not line.startswith("data:"):
                    continue  # blank lines, ": keep-alive" comments, "event:"/"id:" fields
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = parse_json(data, "the LLM stream sent malformed JSON")
                if not isinstance(chunk, dict):
                    raise AnswerError("the LLM stream sent an unexpected chunk")
                if "error" in chunk:
                    raise AnswerError(f"the LLM endpoint reported an error mid-stream: {self._redact(error_text(chunk))}")
                choices = chunk.get("choices")
                if not choices:
                    continue  # e.g. the usage chunk of stream_options.include_usage
                choice = choices[0] if isinstance(choices, list) else None
                if not isinstance(choice, dict):
                    raise AnswerError("the LLM stream sent a chunk without a valid choice")
                delta = choice.get("delta") or {}
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    parts.append(content)
                    yield content
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
            if not done and finish is None:
                call.check("the LLM stream did not finish", clock=False)  # a stream cut at the time limit says so
                raise AnswerError("the LLM stream ended before it was complete (no finish_reason or [DONE])")
            yield Completion("".join(parts), finish)
        finally:
            call.close()
            if response is not None:
                response.close()

    def health(self, wait: bool = True) -> LLMHealth | None:
        """``{"configured": True, "reachable": bool, "model": ...}`` (plus ``"error"``); never raises.

        The endpoint is probed at most once at a time and once every ``HEALTH_CACHE_S`` seconds
        (each probe within ``HEALTH_TIMEOUT_S``); in between, the last result is returned, kept up
        to date by the real calls. So asking often never loads the endpoint. A stale result starts
        a probe in the background and is returned meanwhile. Before the first probe has finished:
        waits for it when ``wait``, else returns None.
        """
        with self._health_lock:
            info = self._health
            stale = info is None or time.monotonic() - self._health_at >= HEALTH_CACHE_S
            if stale and self._probe is None:
                self._probe = threading.Thread(target=self._run_probe, name="llm-health-probe", daemon=True)
                self._probe.start()
            probe = self._probe
        if info is None and wait and probe is not None:
            probe.join(HEALTH_TIMEOUT_S + 1.0)
            info = self._health
        return info.copy() if info is not None else None

    # -------------------------------------------------------- internals

    def _run_probe(self) -> None:
        info: LLMHealth = {"configured": True, "reachable": False, "model": self.settings.llm_model, "error": "the probe failed"}
        try:
            info = self._probe_once()
        finally:
            with self._health_lock:
                self._health, self._health_at, self._probe = info, time.monotonic(), None

    def _probe_once(self) -> LLMHealth:
        info: LLMHealth = {"configured": True, "reachable": False, "model": self.settings.llm_model}
        call = Call(min(self.settings.llm_timeout_s, HEALTH_TIMEOUT_S), None)
        try:
            request = self._client.build_request(
                "GET", f"{self.base_url}/v1/models", headers=self._headers(), timeout=call.timeout(), extensions={"trace": call.trace}
            )
            response = self._client.send(request, stream=True)  # the status is enough: the body is never read
            response.close()
            # 404: the server answers but has no model list; that still counts as reachable.
            if response.status_code < 400 or response.status_code == 404:
                info["reachable"] = True
            else:
                info["error"] = f"HTTP {response.status_code}"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            if call.expired:
                info["error"] = f"no answer within {call.budget_s:g} s"
            else:
                info["error"] = self._redact(f"{type(exc).__name__}: {exc}")[:200]
        finally:
            call.close()
        return info

    def _note(self, reachable: bool, error: str | None = None) -> None:
        """What a real call learnt about the endpoint, for ``health``."""
        info: LLMHealth = {"configured": True, "reachable": reachable, "model": self.settings.llm_model}
        if error:
            info["error"] = error[:200]
        with self._health_lock:
            self._health, self._health_at = info, time.monotonic()

    def _payload(self, messages: list[Message], stream: bool) -> dict[str, object]:
        payload: dict[str, object] = {
            "model": self.settings.llm_model,
            "messages": messages,
            "temperature": self.settings.llm_temperature,
            "max_tokens": self.settings.llm_max_tokens,
        }
        if stream:
            payload["stream"] = True
        return payload

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _send(self, call: Call, payload: dict[str, object]) -> httpx.Response:
        """POST with retries on connection errors, timeouts, 429 and 5xx, all within the call's
        budget; returns a 2xx response whose body is not read yet (the caller closes it)."""
        attempts = self.settings.llm_retries + 1
        for attempt in range(1, attempts + 1):
            call.check("the LLM endpoint did not answer")
            try:
                request = self._client.build_request(
                    "POST", self.url, json=payload, headers=self._headers(), timeout=call.timeout(), extensions={"trace": call.trace}
                )
                response = self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                error = call.failure(exc, "the LLM endpoint did not answer", "")
                if isinstance(error, Cancelled):
                    raise error from None
                if isinstance(exc, httpx.ConnectTimeout):
                    self._note(False, str(error))
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if call.cancelled or call.expired:
                    raise call.failure(exc, "the LLM endpoint did not answer", "") from None
                error = AnswerError(f"cannot reach the LLM endpoint ({self._redact(_short(exc))})")
                self._note(False, str(error))
            except httpx.HTTPError as exc:  # a bad URL, an unsupported protocol: retrying will not help
                raise AnswerError(f"cannot call the LLM endpoint ({self._redact(_short(exc))})") from None
            else:
                call.watch(response.extensions.get("network_stream"))
                if response.is_success:
                    self._note(True)
                    return response
                error = self._http_error(response, call)
                if not (response.status_code == 429 or response.status_code >= 500):
                    raise error
            backoff = min(MAX_BACKOFF_S, 0.25 * 2 ** (attempt - 1))
            if attempt == attempts or time.monotonic() + backoff >= call.deadline:
                if attempt > 1:
                    error = AnswerError(f"{error} (after {attempt} attempts)")
                raise error
            log.warning("LLM request failed (%s); retrying in %.2f s (attempt %d of %d)", error, backoff, attempt + 1, attempts)
            call.sleep(backoff)
        raise AssertionError("unreachable")

    def _http_error(self, response: httpx.Response, call: Call) -> AnswerError:
        try:
            message = error_text(json.loads(read_body(response, call, MAX_ERROR_BODY_BYTES, "the LLM error response did not finish")))
        except Exception:  # noqa: BLE001 - the body is only a hint
            message = ""
        finally:
            response.close()
        detail = f": {self._redact(message)[:300]}" if message else ""
        return AnswerError(f"the LLM endpoint answered HTTP {response.status_code}{detail}")

    def _parse_completion(self, response: httpx.Response, call: Call) -> Completion:
        body = read_body(response, call, self.settings.llm_max_reply_bytes, "the LLM endpoint did not finish its answer")
        data = parse_json(body, "the LLM endpoint answered with malformed JSON")
        if not isinstance(data, dict):
            raise AnswerError("the LLM endpoint answered with unexpected JSON")
        if "error" in data:
            raise AnswerError(f"the LLM endpoint reported an error: {self._redact(error_text(data))[:300]}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise AnswerError("the LLM response has no choices")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise AnswerError("the LLM response has no message content")
        finish = choices[0].get("finish_reason")
        return Completion(content, str(finish) if finish else None)


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
