"""``GET``/``HEAD /health``: index, embedder and LLM status. It never calls the LLM itself: it
reports the client's cached reachability."""

import os
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request

from assistant.answer.llm.client import HEALTH_TIMEOUT_S
from assistant.server.middleware import key_ok
from assistant.server.routes.state import AppState, app_state
from assistant.service import LLMEndpoint

router = APIRouter(tags=["service"])


@router.head("/health", include_in_schema=False)
@router.get("/health")
async def health(request: Request, state: Annotated[AppState, Depends(app_state)]) -> dict[str, Any]:
    """Index, embedder and LLM status. With an API key configured, a request without the key
    gets only ``{"status"}`` (a liveness probe). ``degraded``: it answers, but uploads whose indexing failed
    (``failed``: file, error, attempts, when the next retry is) are not searchable yet."""
    live, settings = state.live, state.settings
    service = live.service
    building = {**live.building, "message": live.describe_progress()} if live.building is not None else None
    failed = live.failures()
    status = ("degraded" if failed else "ok") if service is not None else "building" if building else "unavailable"
    if settings.api_key is not None and not key_ok(request.headers.get("authorization", ""), settings):
        return {"status": status}
    llm: dict[str, object] = {"configured": bool(settings.llm_base_url)}
    if service is not None and service.llm_client is not None:
        llm.update(await _llm_health(service.llm_client))
    if service is None:
        return {"status": status, "error": live.error, "building": building, "failed": failed, "llm": llm}
    m = service.index.manifest
    return {
        "status": status,
        "building": building,
        "failed": failed,  # uploads saved but not indexed (retried): [{"file", "doc_id", "error", "attempts", "retry_in_s"}]
        "index": {
            "documents": len(service.index.documents),
            "chunks": service.index.chunk_count,
            "build": m["build"],
            "built_at": m["built_at"],
            "index_type": m["index_type"],
            "skipped": m.get("skipped", []),
        },
        "embedder": {"name": service.embedder.name, "dim": service.embedder.dim},
        "store": settings.store,
        "answers": state.admission.status(),  # in flight and queued, of the limits (ASSISTANT_MAX_ANSWERS, ASSISTANT_ANSWER_QUEUE)
        "process": os.getpid(),  # which worker answered (assistant serve --workers N)
        "llm": llm,
    }


async def _llm_health(client: LLMEndpoint) -> dict[str, object]:
    """The LLM client's cached reachability; waits (without blocking the loop) only for the very first probe."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S + 1.0
    info = client.health(wait=False)
    while info is None and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        info = client.health(wait=False)
    return dict(info) if info is not None else {"reachable": None, "error": "the first reachability check has not finished"}
