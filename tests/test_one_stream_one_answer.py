"""One stream is one answer: after LLM text was sent, a failure ends the stream with an ``error`` event,
never a ``done`` with a different answer; a failure before any text falls back in ``done``.

The page's side (it then asks extractively) is in ``tests/test_chat_page_api_key.py``.
"""

from __future__ import annotations

from assistant.errors import AnswerError
from tests import markup_service as shared
from tests.fakes import Scripted
from tests.markup_service import QUESTION, make_service, scripted_client, sse_events

corpus, index_dir = shared.corpus, shared.index_dir  # shared fixtures (tests/markup_service.py)


def test_a_stream_that_fails_after_text_ends_with_an_error_event(corpus, index_dir):
    service = make_service(corpus, index_dir)
    answerer = Scripted("The project is financed by Switzerland [1]. ", "It also ", AnswerError("the LLM stream broke off"))
    with scripted_client(service, answerer) as client:
        events = sse_events(client.post("/ask/stream", json={"question": QUESTION, "mode": "llm"}).text)
    names = [name for name, _ in events]
    assert names == ["delta", "delta", "error"], names
    error = events[-1][1]["error"]
    assert error["code"] == "llm_failed" and "broke off" in error["message"]
    assert error["details"] == {"retry_mode": "extractive"}


def test_a_stream_that_fails_before_any_text_falls_back_in_done(corpus, index_dir):
    service = make_service(corpus, index_dir)
    with scripted_client(service, Scripted(AnswerError("the LLM endpoint did not answer"))) as client:
        events = sse_events(client.post("/ask/stream", json={"question": QUESTION, "mode": "llm"}).text)
    assert [name for name, _ in events] == ["done"]
    done = events[-1][1]
    assert done["mode"] == "extractive" and any("did not answer" in w for w in done["warnings"])
