"""An OpenAI-compatible chat client: ``POST {base_url}/v1/chat/completions``, plain or streamed.

Retries on connection errors, timeouts, 429 and 5xx, within one time budget; every failure is
an ``AnswerError`` with a message that never contains the API key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from assistant.config import Settings
from assistant.errors import AnswerError

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 2.0


@dataclass(frozen=True)
class Completion:
    """The whole text of one chat completion and why the model stopped ("stop", "length", ...)."""

    text: str
    finish_reason: str | None


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
        self._client = client or httpx.Client(timeout=settings.llm_timeout_s)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- public calls

    def complete(self, messages: list[dict]) -> str:
        """The model's reply to ``messages``, in one piece."""
        return self.chat(messages).text

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """The model's reply as text deltas, as they arrive."""
        for item in self.stream_chat(messages):
            if isinstance(item, str):
                yield item

    def chat(self, messages: list[dict]) -> Completion:
        """Like ``complete``, with the finish reason."""
        with self._open(self._payload(messages, stream=False), stream=False) as response:
            return self._parse_completion(response)

    def stream_chat(self, messages: list[dict]) -> Iterator[str | Completion]:
        """Like ``stream``, then a final ``Completion`` with the whole text and the finish reason.

        A stream that breaks off before its ``finish_reason`` or ``data: [DONE]`` raises AnswerError.
        """
        deadline = time.monotonic() + self._budget_s()
        with self._open(self._payload(messages, stream=True), stream=True) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignored "stream": true and answered in one piece.
                completion = self._parse_completion(response)
                if completion.text:
                    yield completion.text
                yield completion
                return
            parts: list[str] = []
            done = False
            finish: str | None = None
            try:
                for line in response.iter_lines():
                    if time.monotonic() > deadline:
                        raise AnswerError(f"the LLM stream took longer than {self._budget_s():.0f} s")
                    line = line.strip()
                    if not line.startswith("data:"):
                        continue  # blank lines, ": keep-alive" comments, "event:"/"id:" fields
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    chunk = _json(data, "the LLM stream sent malformed JSON")
                    if not isinstance(chunk, dict):
                        raise AnswerError("the LLM stream sent an unexpected chunk")
                    if "error" in chunk:
                        raise AnswerError(f"the LLM endpoint reported an error mid-stream: {self._redact(_error_text(chunk))}")
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
            except httpx.TimeoutException:
                raise AnswerError(f"the LLM stream stalled (no data for {self.settings.llm_timeout_s:g} s)") from None
            except httpx.HTTPError as exc:
                raise AnswerError(f"the LLM stream broke off ({type(exc).__name__})") from None
        if not done and finish is None:
            raise AnswerError("the LLM stream ended before it was complete (no finish_reason or [DONE])")
        yield Completion("".join(parts), finish)

    def health(self) -> dict:
        """``{"configured": True, "reachable": bool, "model": ...}`` (plus ``"error"``); never raises."""
        info: dict = {"configured": True, "reachable": False, "model": self.settings.llm_model}
        try:
            timeout = min(self.settings.llm_timeout_s, HEALTH_TIMEOUT_S)
            response = self._client.get(f"{self.base_url}/v1/models", headers=self._headers(), timeout=timeout)
            # 404: the server answers but has no model list; that still counts as reachable.
            if response.status_code < 400 or response.status_code == 404:
                info["reachable"] = True
            else:
                info["error"] = f"HTTP {response.status_code}"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            info["error"] = self._redact(f"{type(exc).__name__}: {exc}")[:200]
        return info

    # -------------------------------------------------------- internals

    def _payload(self, messages: list[dict], stream: bool) -> dict:
        payload = {
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

    def _budget_s(self) -> float:
        return self.settings.llm_timeout_s * (self.settings.llm_retries + 1)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _open(self, payload: dict, stream: bool) -> _Response:
        return _Response(self, payload, stream)

    def _send(self, payload: dict, stream: bool) -> httpx.Response:
        """POST with retries on connection errors, timeouts, 429 and 5xx; returns a 2xx response."""
        attempts = self.settings.llm_retries + 1
        deadline = time.monotonic() + self._budget_s()
        for attempt in range(1, attempts + 1):
            timeout = max(0.001, min(self.settings.llm_timeout_s, deadline - time.monotonic()))
            try:
                request = self._client.build_request("POST", self.url, json=payload, headers=self._headers(), timeout=timeout)
                response = self._client.send(request, stream=stream)
            except httpx.TimeoutException:
                error = AnswerError(f"the LLM endpoint did not answer within {timeout:.3g} s")
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                error = AnswerError(f"cannot reach the LLM endpoint ({self._redact(_short(exc))})")
            except httpx.HTTPError as exc:  # a bad URL, an unsupported protocol: retrying will not help
                raise AnswerError(f"cannot call the LLM endpoint ({self._redact(_short(exc))})") from None
            else:
                if response.is_success:
                    return response
                error = self._http_error(response)
                if not (response.status_code == 429 or response.status_code >= 500):
                    raise error
            backoff = min(MAX_BACKOFF_S, 0.25 * 2 ** (attempt - 1))
            if attempt == attempts or time.monotonic() + backoff >= deadline:
                if attempt > 1:
                    error = AnswerError(f"{error} (after {attempt} attempts)")
                raise error
            log.warning("LLM request failed (%s); retrying in %.2f s (attempt %d of %d)", error, backoff, attempt + 1, attempts)
            time.sleep(backoff)
        raise AssertionError("unreachable")

    def _http_error(self, response: httpx.Response) -> AnswerError:
        try:
            response.read()
            message = _error_text(response.json())
        except Exception:  # noqa: BLE001 - the body is only a hint
            message = ""
        finally:
            response.close()
        detail = f": {self._redact(message)[:300]}" if message else ""
        return AnswerError(f"the LLM endpoint answered HTTP {response.status_code}{detail}")

    def _parse_completion(self, response: httpx.Response) -> Completion:
        try:
            response.read()
            text = response.text
        except httpx.TimeoutException:
            raise AnswerError(f"the LLM endpoint did not finish its answer within {self.settings.llm_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise AnswerError(f"the LLM answer broke off ({type(exc).__name__})") from None
        data = _json(text, "the LLM endpoint answered with malformed JSON")
        if not isinstance(data, dict):
            raise AnswerError("the LLM endpoint answered with unexpected JSON")
        if "error" in data:
            raise AnswerError(f"the LLM endpoint reported an error: {self._redact(_error_text(data))[:300]}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise AnswerError("the LLM response has no choices")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise AnswerError("the LLM response has no message content")
        finish = choices[0].get("finish_reason")
        return Completion(content, str(finish) if finish else None)


class _Response:
    """Context manager around ``LLMClient._send``: the response is closed on the way out."""

    def __init__(self, client: LLMClient, payload: dict, stream: bool):
        self._client, self._payload, self._stream = client, payload, stream
        self._response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        self._response = self._client._send(self._payload, self._stream)
        return self._response

    def __exit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()


def _json(text: str, message: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise AnswerError(message) from None


def _error_text(data: object) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), if any."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or "")
        if isinstance(error, str):
            return error
    return ""


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
