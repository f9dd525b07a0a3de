"""``GET /documents`` and ``GET /documents/{doc_id}``: plain lookups, async so that they never wait
for a worker thread behind long answers."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from assistant.errors import NotFound
from assistant.server.errors import ERRORS
from assistant.server.routes.state import AppState, app_state
from assistant.server.schemas import DocumentList, DocumentText, ErrorResponse

router = APIRouter(tags=["documents"])
State = Annotated[AppState, Depends(app_state)]


@router.get("/documents", response_model=DocumentList, responses=ERRORS)
async def documents(state: State) -> dict[str, Any]:
    """The corpus with its metadata and warnings, and the files that could not be indexed (with why): among them
    uploads whose indexing failed, which are retried."""
    index = state.live.ready().index
    failed = [
        {"source": f["file"], "reason": f"indexing failed ({f['error']}); retried in {f['retry_in_s']:.0f} s"}
        for f in state.live.failures()
    ]
    return {"documents": [d.info() for d in index.documents.values()], "skipped": index.manifest.get("skipped", []) + failed}


@router.get("/documents/{doc_id:path}", response_model=DocumentText, responses={**ERRORS, 404: {"model": ErrorResponse}})
async def document(doc_id: str, state: State) -> dict[str, Any]:
    """One document's metadata and full text (citation offsets point into ``text``)."""
    doc = state.live.ready().index.documents.get(doc_id)
    if doc is None:
        raise NotFound(f"No document with id {doc_id!r}.")
    return {**doc.info(), "text": doc.text}
