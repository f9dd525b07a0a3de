"""The LLM answerer: an OpenAI-compatible chat client, and an answerer that checks what the model says.

``LLMClient`` talks to ``POST {base_url}/v1/chat/completions`` (plain or streamed), with retries
and one error type (``AnswerError``) for every failure. ``LLMAnswerer`` asks it to answer from
numbered passages with ``[n]`` citations, then keeps only the sentences the cited passages
support: every number in a sentence must occur in a passage it cites, and a sentence must share
words with them (unless it is written in another language than the passages). When no sentence
survives, or the model says the passages do not answer, the answer is an abstention.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import httpx

from assistant.answer.pipeline import NO_ANSWER, Answer, AnswerError, Citation, citation, related
from assistant.config import Settings
from assistant.ingest.sentences import split_sentences
from assistant.search.index import LoadedIndex
from assistant.search.keyword import fold, tokenize
from assistant.search.retriever import Passage, SearchResult

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent.parent.parent / "prompts"
SENTINEL = "NOT_IN_DOCUMENTS"
NO_ANSWER_BY_LANGUAGE = {
    "en": NO_ANSWER,
    "fr": "Les documents ne répondent pas à cette question.",
    "ru": "Документы не отвечают на этот вопрос.",
}
HEALTH_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 2.0


# ---------------------------------------------------------------- client


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


# ---------------------------------------------------------------- prompt


@dataclass(frozen=True)
class Prompt:
    """The system and user templates of ``prompts/answer.md``."""

    system: str
    user: str

    @classmethod
    def load(cls, path: Path) -> Prompt:
        text = re.sub(r"<!--.*?-->", "", path.read_text(encoding="utf-8"), flags=re.S)
        match = re.search(r"^=== system ===\n(.*?)^=== user ===\n(.*)\Z", text, flags=re.S | re.M)
        if not match:
            raise ValueError(f"{path} must have an '=== system ===' and an '=== user ===' section")
        return cls(match.group(1).strip(), match.group(2).strip())

    def messages(self, question: str, passages: list[Passage]) -> list[dict]:
        values = {
            "sentinel": SENTINEL,
            "count": str(len(passages)),
            "passages": "\n\n".join(_passage_block(i, p) for i, p in enumerate(passages, 1)),
            "question": _defuse(question.strip()),
        }

        def fill(template: str) -> str:
            return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)

        return [{"role": "system", "content": fill(self.system)}, {"role": "user", "content": fill(self.user)}]


def _defuse(text: str) -> str:
    """Passage text cannot close or open a passage tag (so it cannot pose as the question)."""
    return re.sub(r"<(/?)(passage)", r"‹\1\2", text, flags=re.I)


def _passage_block(n: int, passage: Passage) -> str:
    title = _defuse(" ".join(passage.title.split())).replace('"', "'")
    return f'<passage n="{n}" title="{title}">\n{_defuse(passage.text.strip())}\n</passage>'


# ---------------------------------------------------------------- checking the answer

# [1], [1, 2], [1][2], [passage 1]; one or two digits, so "[2019]" stays text.
_MARKER = re.compile(r"\[\s*(?:passages?\s*)?\d{1,2}(?:\s*[,;]\s*(?:passages?\s*)?\d{1,2})*\s*\]", re.I)
_MARKER_RUN = rf"{_MARKER.pattern}(?:[ \t]*{_MARKER.pattern})*"
_MARKER_RUN_RE = re.compile(rf"[ \t]*({_MARKER_RUN})[ \t]*", re.I)
# "... million. [1]" -> "... million [1]." so a marker stays with the sentence it closes.
_MARKER_AFTER_STOP = re.compile(rf"[ \t]*([.!?…]+)[ \t]*({_MARKER_RUN})", re.I)
_NOT_COVERED = re.compile(
    r"\b(?:documents?|passages?|sources?|texts?|context|information)\b[^.!?]{0,80}?"
    r"\b(?:(?:do|does|did|can|could)\s*(?:not|n[’']t)|not\s+(?:mention|state|specif|say|contain|cover|provid|includ|give|answer|address)\w*)"
    r"|\bnot\s+(?:mentioned|stated|specified|given|provided|covered|found|included|addressed)\s+(?:in|by)\s+(?:the\s+)?"
    r"(?:documents?|passages?|sources?|texts?|context)\b"
    r"|\bno\s+(?:information|mention|data|details)\b|\bnot\s+enough\s+information\b|\b(?:i|we)\s+(?:do\s+not|don[’']t)\s+know\b"
    r"|\b(?:documents?|passages?|sources?|textes?|extraits?)\b[^.!?]{0,80}?\bne\s+\w+|\baucune\s+(?:information|mention|donnée)"
    r"|\bje\s+ne\s+sais\s+pas\b|\bpas\s+(?:mentionnée?s?|précisée?s?|indiquée?s?)\s+dans\b"
    r"|(?:документ|источник|текст|отрывк|фрагмент)\w*[^.!?]{0,80}?\bне\s|нет\s+(?:информации|данных|сведений)"
    r"|не\s+(?:упоминается|указан\w*|сказано|говорится)|не\s+знаю",
    re.I,
)
# Lines like "Sources: [1], [2]" or "Answer:" carry no claim; they are left out silently.
_BOILERPLATE = frozenset(
    "source sources reference references citation citations passage passages document documents answer "
    "reponse sources extrait extraits источник источники ответ".split()
)
_DATE = re.compile(r"(?<![\w.,])(?:\d{1,2}[./]\d{1,2}[./](?:\d{4}|\d{2})|\d{4}[-/.]\d{1,2}[-/.]\d{1,2})(?![\w])")
_SPACED = re.compile(r"(?<![\d.,’'])(\d{1,3})((?:[ \u00a0\u202f\u2009]\d{3})+)(?![\d])")
_CODE = re.compile(r"(?=[^\W_]*\d)(?=[^\W_]*[^\W\d_])[^\W_]+")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th|s|er|re|ere|e|eme|me|x|г|гг|й|я|е|го|м|х)$")
_NUMBER = re.compile(r"\d+(?:[.,’'\u2019]\d+)*")
_SCALE = re.compile(
    r"\s*(thousands?|k|millions?|mln|mn|m|billions?|bn|milliards?|mille|миллион\w*|млн|миллиард\w*|млрд|тысяч\w*|тыс)\b", re.I
)
_SCALES = {"thousand": 3, "k": 3, "mille": 3, "тыс": 3, "million": 6, "mln": 6, "mn": 6, "m": 6, "млн": 6, "миллион": 6}
_SCALES |= {"billion": 9, "bn": 9, "milliard": 9, "миллиард": 9, "млрд": 9}
_NUMBER_WORDS = {
    **dict.fromkeys(["one", "un", "une", "один", "одна", "одно", "первый"], 1),
    **dict.fromkeys(["two", "deux", "два", "две", "двух", "второй"], 2),
    **dict.fromkeys(["three", "trois", "три", "трех", "трёх"], 3),
    **dict.fromkeys(["four", "quatre", "четыре"], 4),
    **dict.fromkeys(["five", "cinq", "пять"], 5),
    **dict.fromkeys(["six", "шесть"], 6),
    **dict.fromkeys(["seven", "sept", "семь"], 7),
    **dict.fromkeys(["eight", "huit", "восемь"], 8),
    **dict.fromkeys(["nine", "neuf", "девять"], 9),
    **dict.fromkeys(["ten", "dix", "десять"], 10),
    **dict.fromkeys(["eleven", "onze"], 11),
    **dict.fromkeys(["twelve", "douze"], 12),
    **dict.fromkeys(["twenty", "vingt"], 20),
    **dict.fromkeys(["hundred", "cent", "сто"], 100),
}
_MONTHS = {
    **{w: i for i, w in enumerate("january february march april may june july august september october november december".split(), 1)},
    **{w: i for i, w in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)},
    **{w: i for i, w in enumerate("janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre".split(), 1)},
    "sept": 9,
}
_MONTH_IN_DATE = re.compile(
    r"(?:\b\d{1,2}(?:st|nd|rd|th|er)?\s+)?\b("
    + "|".join(sorted({m for m in _MONTHS if len(m) > 3 and m != "sept"}, key=len, reverse=True))
    + r"|sept|jan|feb|mar|apr|may|mai|jun|jul|aug|sep|oct|nov|dec|январ\w*|феврал\w*|март\w*|апрел\w*|ма[йяе]|июн\w*|июл\w*|август\w*"
    r"|сентябр\w*|октябр\w*|ноябр\w*|декабр\w*)\b\.?(?:,?\s+\d{4}\b)?"
)
_MONTH_STEMS_RU = ("январ", "феврал", "март", "апрел", "ма", "июн", "июл", "август", "сентябр", "октябр", "ноябр", "декабр")
_LANGUAGE_MARKERS = {
    "en": frozenset("the and of is are was were to in by with for which that this from has have been its".split()),
    "fr": frozenset("le la les des du est et une un dans par pour sur aux au qui que été sont ont ses leur avec".split()),
}
MAX_MARKERS = 3  # a sentence with more markers than this and than content words is citation spam
LEXICAL_SHARE = 1 / 3  # a sentence must share at least this share of its content words (and at least one)
# Words about the sources rather than claims; left out of the lexical check.
_META_WORDS = frozenset("according document documents passage passages source sources mention mentions mentioned".split())


def _canon(number: str) -> str:
    """'09' -> '9', '9.20' -> '9.2', '9200000' -> '9200000'."""
    try:
        return format(Decimal(number).normalize(), "f")
    except InvalidOperation:
        return number


def _scaled(value: str, power: int) -> str:
    return _canon(str(Decimal(value).scaleb(power)))


def _number_values(raw: str) -> set[str]:
    """Readings of one written number: '9’200’000' -> {'9200000'}, '2,700' -> {'2700', '2.7'}."""
    groups = re.split(r"[.,’'\u2019]", raw)
    seps = re.findall(r"[.,’'\u2019]", raw)
    if not seps:
        return {_canon(raw)}
    values = set()
    if all(len(g) == 3 for g in groups[1:]):
        values.add(_canon("".join(groups)))  # every separator groups thousands
    last = seps[-1]
    if last in ".," and last not in seps[:-1] and all(len(g) == 3 for g in groups[1:-1]):
        values.add(_canon("".join(groups[:-1]) + "." + groups[-1]))  # the last one is a decimal point
    return values or {"raw:" + raw}  # "1.2.3": compare as written


@dataclass
class _Numbers:
    """The numbers (each a set of readings) and letter-digit codes ('7F09822') of a text."""

    mentions: list[tuple[str, set[str]]] = field(default_factory=list)
    loose: set[str] = field(default_factory=set)  # extra readings a passage may be matched by

    def values(self) -> set[str]:
        return {v for _, vs in self.mentions for v in vs} | self.loose


def _numbers(text: str, loose: bool = False) -> _Numbers:
    """Numbers, amounts, dates and codes in ``text``; ``loose`` adds extra readings (for passages)."""
    out = _Numbers()

    def take_dates(m: re.Match) -> str:
        for part in re.split(r"[-./]", m.group()):
            out.mentions.append((part, {_canon(part)}))
        if loose:
            out.loose.add("raw:" + m.group())
        return " "

    text = _DATE.sub(take_dates, text)
    if not loose:
        # A month named next to a day or a year ("March 2007", "18 November") must match too.
        for m in _MONTH_IN_DATE.finditer(fold(text)):
            if any(ch.isdigit() for ch in m.group()):
                month = _MONTHS.get(m.group(1)) or next(
                    (i for i, stem in enumerate(_MONTH_STEMS_RU, 1) if m.group(1).startswith(stem)), None
                )
                if month:
                    out.mentions.append((m.group(1), {str(month)}))

    def take_codes(m: re.Match) -> str:
        word = fold(m.group())
        ordinal = _ORDINAL.match(word)
        if ordinal:
            out.mentions.append((m.group(), {_canon(ordinal.group(1))}))
        else:
            out.mentions.append((m.group(), {"code:" + word}))
            if loose:
                out.loose.update(_canon(d) for d in re.findall(r"\d+", word))
        return " "

    text = _CODE.sub(take_codes, text)
    if loose:
        out.loose.update(_canon(d) for m in _SPACED.finditer(text) for d in re.findall(r"\d+", m.group()))
    text = _SPACED.sub(lambda m: m.group(1) + re.sub(r"\s", "’", m.group(2)), text)
    for m in _NUMBER.finditer(text):
        values = _number_values(m.group())
        scale = _SCALE.match(text, m.end())
        if scale:
            word = fold(scale.group(1))
            power = next((_SCALES[w] for w in sorted(_SCALES, key=len, reverse=True) if word.startswith(w)), 0)
            values |= {_scaled(v, power) for v in values if not v.startswith("raw:")}
        out.mentions.append((m.group(), values))
        if loose:
            out.loose.update(_canon(d) for d in re.findall(r"\d+", m.group()))
    if loose:
        for word in tokenize(text, drop_stopwords=False):
            if word in _NUMBER_WORDS:
                out.loose.add(str(_NUMBER_WORDS[word]))
            month = _MONTHS.get(word)
            if month is None and len(word) >= 3:
                month = next((i for i, stem in enumerate(_MONTH_STEMS_RU, 1) if word.startswith(stem) and len(word) - len(stem) <= 2), None)
            if month:
                out.loose.add(str(month))
    return out


def _words(text: str) -> set[str]:
    """Content words of ``text`` (folded, no stopwords, no numbers, at least two letters)."""
    return {w for w in tokenize(text) if len(w) >= 2 and not any(ch.isdigit() for ch in w)}


def _shares(word: str, vocabulary: set[str]) -> bool:
    """Same word, or the same stem: one is a prefix of the other (4+ letters), or 5+ letters in common."""
    if word in vocabulary:
        return True
    for other in vocabulary:
        common = os.path.commonprefix([word, other])
        if len(common) >= 5 or (len(common) >= 4 and common in (word, other)):
            return True
    return False


def _languages(text: str) -> set[str]:
    """Languages a text is written in, roughly: 'ru' for Cyrillic; 'en'/'fr' from function words."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return set()
    cyrillic = sum("\u0400" <= ch <= "\u04ff" for ch in letters) / len(letters)
    found = {"ru"} if cyrillic > 0.2 else set()
    if cyrillic < 0.8:
        words = re.findall(r"[^\W\d_]+", text.lower())
        hits = {lang: sum(w in markers for w in words) for lang, markers in _LANGUAGE_MARKERS.items()}
        total = sum(hits.values())
        found |= {lang for lang, n in hits.items() if n and n >= 0.25 * total}
    return found


def language(text: str) -> str | None:
    """The single most likely language of a short text ('en', 'fr', 'ru'), or None.

    >>> language("Quel est le budget du projet ?"), language("Сколько стоит проект?"), language("42")
    ('fr', 'ru', None)
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    if sum("\u0400" <= ch <= "\u04ff" for ch in letters) / len(letters) > 0.5:
        return "ru"
    words = re.findall(r"[^\W\d_]+", text.lower())
    hits = {lang: sum(w in markers for w in words) for lang, markers in _LANGUAGE_MARKERS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    return best if hits[best] and list(hits.values()).count(hits[best]) == 1 else None


@dataclass
class _Source:
    """What the check needs to know about one retrieved passage."""

    passage: Passage
    words: set[str]
    numbers: set[str]
    languages: set[str]
    folded: str


@dataclass
class _Sentence:
    text: str  # with markers rewritten
    claim: str  # without markers
    sources: list[int]  # 0-based passage numbers it cites, in order


class _Checker:
    """Checks the model's answer sentence by sentence, as the text arrives.

    ``feed`` takes text deltas and returns the text of the sentences that passed (markers
    renumbered in order of first use); ``finish`` does the rest; ``answer`` builds the Answer.
    """

    def __init__(self, question: str, passages: list[Passage], index: LoadedIndex):
        self.question = question
        self.passages = passages
        self.index = index
        self._sources: dict[int, _Source] = {}
        self._buffer = ""
        self._emitted = False
        self.kept: list[_Sentence] = []
        self.order: list[int] = []  # 0-based passage numbers, in order of first citation
        self.removed: list[dict] = []
        self.dropped: list[int] = []
        self.sentences = 0
        self.not_covered = 0
        self.sentinel = False
        self.cross_language = 0
        self.raw: list[str] = []

    # -------------------------------------------------------- streaming

    def feed(self, delta: str) -> str:
        self.raw.append(delta)
        self._buffer = _MARKER_AFTER_STOP.sub(_move_markers, self._buffer + delta)
        spans = split_sentences(self._buffer, max_chars=1_000_000)
        if len(spans) < 2:
            return ""
        # Every span but the last is complete: the next sentence has begun.
        out = self._consume(spans[:-1])
        self._buffer = self._buffer[spans[-2][1] :]
        return out

    def finish(self, finish_reason: str | None) -> str:
        self._buffer = _MARKER_AFTER_STOP.sub(_move_markers, self._buffer)
        spans = split_sentences(self._buffer, max_chars=1_000_000)
        cut_off = None
        if finish_reason == "length" and spans:
            last = self._buffer[spans[-1][0] : spans[-1][1]]
            if not re.search(rf"[.!?…:;]\s*(?:{_MARKER_RUN})?$", last.strip()):
                cut_off, spans = last, spans[:-1]
        out = self._consume(spans)
        if cut_off is not None:
            self.sentences += 1
            self.removed.append({"sentence": cut_off, "reason": "cut off at max_tokens"})
        self._buffer = ""
        return out

    def _consume(self, spans: list[tuple[int, int]]) -> str:
        out = []
        previous = 0
        for start, end in spans:
            gap = self._buffer[previous:start]
            previous = end
            text = self._check(self._buffer[start:end])
            if text is None:
                continue
            if self._emitted:
                out.append("\n" * min(gap.count("\n"), 2) if "\n" in gap else " ")
            out.append(text)
            self._emitted = True
        return "".join(out)

    # -------------------------------------------------------- one sentence

    def _source(self, i: int) -> _Source:
        if i not in self._sources:
            p = self.passages[i]
            text = f"{p.title}\n{p.text}"
            self._sources[i] = _Source(p, _words(text), _numbers(text, loose=True).values(), _languages(p.text), fold(text))
        return self._sources[i]

    def _check(self, sentence: str) -> str | None:
        """The sentence as it goes into the answer (markers renumbered), or None when it is left out."""
        cited: list[int] = []
        invalid: list[int] = []
        for m in _MARKER.finditer(sentence):
            for n in map(int, re.findall(r"\d+", m.group())):
                (cited if 1 <= n <= len(self.passages) else invalid).append(n)
        self.dropped.extend(invalid)
        cited = list(dict.fromkeys(n - 1 for n in cited))
        claim = _strip_markers(sentence)
        if SENTINEL.casefold() in sentence.casefold().replace(" ", "_"):
            self.sentinel = True
            return None
        if not any(ch.isalnum() for ch in claim) or (_words(claim) <= _BOILERPLATE and not _numbers(claim).mentions):
            return None  # a stray "[1]" line, "Sources: [1], [2]"
        self.sentences += 1
        markers = len(_MARKER.findall(sentence))
        if markers > max(MAX_MARKERS, len(_words(claim))):
            reason = f"{markers} citation markers for {len(_words(claim))} content words"  # "[1] and [2] and [3] and [4]"
        elif cited:
            reason = self._unsupported(claim, cited)
        else:
            reason = "cites no existing passage" if invalid else "no citation"
        if reason and _NOT_COVERED.search(claim) and self._numbers_known(claim):
            # "The documents do not say ...": kept, without citations (nothing can support an absence).
            self.not_covered += 1
            return claim
        if reason:
            self.removed.append({"sentence": sentence, "reason": reason})
            return None
        for i in cited:
            if i not in self.order:
                self.order.append(i)
        text = _rewrite_markers(sentence, self._renumber)
        self.kept.append(_Sentence(text, claim, cited))
        return text

    def _renumber(self, numbers: list[int]) -> str:
        return "".join(f"[{self.order.index(n - 1) + 1}]" for n in dict.fromkeys(numbers) if n - 1 in self.order)

    def _numbers_known(self, claim: str) -> bool:
        """A "not in the documents" sentence may repeat numbers from the question or the passages only."""
        known = _numbers(self.question, loose=True).values()
        for i in range(len(self.passages)):
            known |= self._source(i).numbers
        return all(values & known for _, values in _numbers(claim).mentions)

    def _unsupported(self, claim: str, cited: list[int]) -> str | None:
        sources = [self._source(i) for i in cited]
        numbers = set().union(*(s.numbers for s in sources))
        folded = " ".join(s.folded for s in sources)
        for written, values in _numbers(claim).mentions:
            codes = {v[len("code:") :] for v in values if v.startswith("code:")}
            if values & numbers or any(code in folded for code in codes):
                continue
            return f"'{written}' is not in the cited passages"
        words = _words(claim) - _META_WORDS
        if not words:
            return None
        claim_languages = _languages(claim)
        passage_languages = set().union(*(s.languages for s in sources))
        if claim_languages and passage_languages and not claim_languages & passage_languages:
            # Written in another language than the passages: words cannot be compared, numbers were.
            self.cross_language += 1
            return None
        vocabulary = set().union(*(s.words for s in sources))
        shared = sum(_shares(w, vocabulary) for w in words)
        if shared < max(1, math.ceil(LEXICAL_SHARE * len(words))):
            return f"shares {shared} of {len(words)} content words with the cited passages"
        return None

    # -------------------------------------------------------- the result

    def check(self) -> dict:
        return {
            "sentences": self.sentences,
            "supported": len(self.kept),
            "not_covered": self.not_covered,
            "removed": self.removed,
            "dropped_markers": sorted(set(self.dropped)),
            "cross_language": self.cross_language,
            "sentinel": self.sentinel,
        }

    def answer(self, text: str, warnings: list[str], timings: dict[str, float]) -> Answer:
        warnings = list(warnings)
        if self.dropped:
            markers = ", ".join(f"[{n}]" for n in sorted(set(self.dropped)))
            warnings.append(f"The model cited passages that do not exist ({markers}); those citations were removed.")
        if self.removed:
            n = len(self.removed)
            warnings.append(
                f"{n} sentence{'s' if n != 1 else ''} of the model's answer {'were' if n != 1 else 'was'} removed:"
                " not supported by the cited passages."
            )
        if not self.kept:
            if self.removed and not self.sentinel and not self.not_covered:
                warnings.append("No sentence of the model's answer was supported by the passages, so it was withheld.")
            return Answer(
                answer=NO_ANSWER_BY_LANGUAGE.get(language(self.question) or "en", NO_ANSWER),
                abstained=True,
                mode="llm",
                related=related(self.passages, self.index),
                warnings=warnings,
                timings_ms=timings,
                check=self.check(),
            )
        return Answer(
            answer=text.strip(),
            abstained=False,
            mode="llm",
            citations=self.citations(),
            warnings=warnings,
            timings_ms=timings,
            check=self.check(),
        )

    def citations(self) -> list[Citation]:
        out = []
        for n, i in enumerate(self.order, 1):
            claims = [s.claim for s in self.kept if i in s.sources]
            start, end = _best_quote(self.passages[i], self.index, claims, self.question)
            out.append(citation(n, self.passages[i], self.index, start, end))
        return out


def _move_markers(m: re.Match) -> str:
    return " " + m.group(2).strip() + m.group(1) + " "


def _rewrite_markers(sentence: str, replace) -> str:
    """``sentence`` with each run of markers ("[1][2]", "[1, 3]") replaced by ``replace(numbers)``."""

    def sub(m: re.Match) -> str:
        new = replace([int(n) for n in re.findall(r"\d+", m.group(1))])
        after = m.string[m.end() : m.end() + 1]
        glue = "" if not after or after in ".!?…,;:)\n" else " "
        before = "" if m.start() == 0 else " "
        if new:
            return f"{before}{new}{glue}"
        return " " if before and glue else ""

    return _MARKER_RUN_RE.sub(sub, sentence).strip()


def _strip_markers(sentence: str) -> str:
    return _rewrite_markers(sentence, lambda numbers: "")


def _best_quote(passage: Passage, index: LoadedIndex, claims: list[str], question: str) -> tuple[int, int]:
    """The sentence of the passage that best supports the claims citing it (document offsets)."""
    text = index.documents[passage.doc_id].text
    spans = split_sentences(text[passage.start : passage.end], offset=passage.start)
    if not spans:
        return passage.start, passage.end
    claim_words = _words(" ".join(claims))
    claim_numbers = {v for _, vs in _numbers(" ".join(claims)).mentions for v in vs}
    question_words = _words(question)

    def score(span: tuple[int, int]) -> float:
        sentence = text[span[0] : span[1]]
        words = _words(sentence)
        numbers = _numbers(sentence, loose=True).values()
        return (
            3 * len(claim_numbers & numbers)
            + sum(_shares(w, words) for w in claim_words)
            + 0.5 * sum(_shares(w, words) for w in question_words)
        )

    return max(spans, key=score)  # the first of equals


# ---------------------------------------------------------------- answerer


class LLMAnswerer:
    """Answers from the retrieved passages with an LLM, keeping only what the passages support.

    When the model replies with the sentinel, or no sentence of its answer survives the check,
    the result is an abstention (``abstained=True``, ``related`` passages), not an error.
    Errors of the endpoint, and an empty reply, raise ``AnswerError`` (the pipeline then answers
    extractively).
    """

    mode = "llm"

    def __init__(self, settings: Settings, index: LoadedIndex, client: LLMClient, prompt_path: Path | None = None):
        self.settings = settings
        self.index = index
        self.client = client
        self.prompt = Prompt.load(prompt_path or PROMPTS_DIR / "answer.md")

    def messages(self, question: str, search: SearchResult) -> list[dict]:
        return self.prompt.messages(question, search.passages)

    def answer(self, question: str, search: SearchResult) -> Answer:
        result = None
        for item in self._run(question, search, stream=False):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    def stream(self, question: str, search: SearchResult) -> Iterator[str | Answer]:
        """Text of the checked sentences as the model writes them, then the final Answer."""
        yield from self._run(question, search, stream=True)

    def _run(self, question: str, search: SearchResult, stream: bool) -> Iterator[str | Answer]:
        checker = _Checker(question, search.passages, self.index)
        if not search.passages:
            yield checker.answer("", [], {})
            return
        messages = self.messages(question, search)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        checking = 0.0
        finish: str | None = None
        text: list[str] = []
        if stream:
            for item in self.client.stream_chat(messages):
                if isinstance(item, Completion):
                    finish = item.finish_reason
                    continue
                timings.setdefault("llm_first_token", _ms(started))
                t = time.perf_counter()
                out = checker.feed(item)
                checking += time.perf_counter() - t
                if out:
                    text.append(out)
                    yield out
        else:
            completion = self.client.chat(messages)
            finish = completion.finish_reason
            t = time.perf_counter()
            text.append(checker.feed(completion.text))
            checking += time.perf_counter() - t
        if not "".join(checker.raw).strip():
            raise AnswerError("the LLM returned an empty answer")
        t = time.perf_counter()
        tail = checker.finish(finish)
        if tail:
            text.append(tail)
            if stream:
                yield tail
        warnings = ["The model's answer was cut off at max_tokens."] if finish == "length" else []
        answer = checker.answer("".join(text), warnings, timings)
        checking += time.perf_counter() - t
        timings["llm"] = round(_ms(started) - checking * 1000, 3)
        timings["check"] = round(checking * 1000, 3)
        log.info("LLM answer check: %s", {k: v for k, v in answer.check.items() if k != "removed"})
        yield answer


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
