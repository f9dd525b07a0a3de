"""Reading an LLM endpoint's replies off the wire: a whole body or an event stream's lines, each
within the call's time budget and a size cap, and the message of an OpenAI-style error body."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

import httpx

from assistant.answer.llm.budget import Call
from assistant.errors import AnswerError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def too_large(limit: int) -> AnswerError:
    return AnswerError(f"the LLM reply is larger than {limit:,} bytes (llm_max_reply_bytes); it was cut off")


def read_body(response: httpx.Response, call: Call, limit: int, what: str) -> bytes:
    """The whole body, within the call's time and at most ``limit`` bytes."""
    length = response.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
            call.check(what)
    except AnswerError:
        raise
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise call.failure(exc, what, "the LLM answer broke off") from None
    call.check(what, clock=False)  # a connection cut at the time limit can look like a short, complete body
    return b"".join(chunks)


def event_lines(response: httpx.Response, call: Call, limit: int) -> Iterator[str]:
    """The lines of an event stream, within the call's time and the size cap (also for a line that never ends)."""
    what = "the LLM stream did not finish"
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []
    size = 0
    after_cr = False
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            call.check(what)
            text = decoder.decode(chunk)
            if not text:
                continue  # the middle of a UTF-8 character
            if after_cr and text[0] == "\n":
                text = text[1:]  # the "\r\n" was split between two chunks
            after_cr = text.endswith("\r")
            if not text:
                continue
            pieces = _LINE_BREAK.split(text)
            if len(pieces) == 1:
                pending.append(text)
                continue
            yield "".join(pending) + pieces[0]
            yield from pieces[1:-1]
            pending = [pieces[-1]]
    except AnswerError:
        raise
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise call.failure(exc, what, "the LLM stream broke off") from None
    call.check(what, clock=False)
    rest = "".join(pending) + decoder.decode(b"", final=True)
    if rest:
        yield rest


def parse_json(text: str | bytes, message: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise AnswerError(message) from None


def error_text(data: object) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), if any."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or "")
        if isinstance(error, str):
            return error
    return ""
