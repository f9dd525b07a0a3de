"""Adding documents over HTTP: ``POST /documents`` (multipart files) and ``DELETE /documents/{doc_id}``.

An upload goes the folder path's way: each file is saved into ``<corpus_dir>/uploads/`` and read with
``load_document`` (the same readers, cleaning, type and size limits as ``assistant index``). A file is
written to a hidden temporary name, read, then renamed into place and synced before the 202 answer, so
nothing acknowledged is lost if the server stops: the next start's build (local store) or sync
(PostgreSQL) finds it. Indexing then runs in the background through ``LiveService.update`` and shows in
``/health`` (``building``).

Only uploads can be deleted here; the rest of the corpus folder belongs to whoever manages it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse

from assistant.config import Settings
from assistant.errors import NotFound, StoreUnavailable
from assistant.fsutil import fsync_dir
from assistant.ingest.documents import SUPPORTED_SUFFIXES, Document, Limits, UnreadableFile, doc_id_for, file_hash, load_document
from assistant.ingest.readers import human_size
from assistant.live import LiveService
from assistant.search.store import Store
from assistant.server.errors import ERRORS, ApiError, error_response
from assistant.server.schemas import UPLOAD_FOLDER, DeleteResponse, ErrorResponse, UploadResponse

log = logging.getLogger(__name__)

ACCEPTED = ", ".join(sorted(SUPPORTED_SUFFIXES))
MAX_STEM_BYTES = 150  # a file name's stem, in UTF-8 bytes (file systems allow 255 for the whole name)
STALE_TEMP_S = 24 * 3600  # temporary files older than this (left by a server that stopped mid-upload) are removed


def safe_file_name(name: str) -> str:
    """A file name that is safe to create in the uploads folder: no folders, no hidden or special names,
    word characters, dots and dashes only; the suffix in lower case. Its stem is its document id's tail.

    >>> safe_file_name("../../etc/passwd.txt"), safe_file_name("C:\\\\Users\\\\me\\\\Rapport annuel (2021).PDF")
    ('passwd.txt', 'Rapport-annuel-2021.pdf')
    >>> safe_file_name(".txt"), safe_file_name("..."), safe_file_name("отчёт.md")
    ('document.txt', 'document', 'отчёт.md')
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    suffix = re.sub(r"[^\w]+", "", suffix).lower()
    stem = re.sub(r"[^\w.-]+", "-", stem)
    stem = re.sub(r"-{2,}", "-", stem).strip(".-_")
    while len(stem.encode("utf-8")) > MAX_STEM_BYTES:
        stem = stem[:-1].rstrip(".-_")
    return f"{stem or 'document'}" + (f".{suffix}" if suffix else "")


def uploads_dir(settings: Settings) -> Path:
    return settings.corpus_dir / UPLOAD_FOLDER


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One writer at a time in the uploads folder (across threads and worker processes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _taken(folder: Path) -> set[str]:
    """The document ids (case-folded) of the files in the uploads folder, whatever their type."""
    return {doc_id_for(Path(p.name)).casefold() for p in folder.iterdir() if not p.name.startswith(".")}


def free_name(folder: Path, name: str) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``... : the first whose document id no file there has (any type)."""
    taken = _taken(folder)
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = name, 2
    while doc_id_for(Path(candidate)).casefold() in taken:
        candidate, n = f"{stem}-{n}{suffix}", n + 1
    return candidate


@dataclass
class Outcome:
    """One file's result (the API's ``UploadResult``) and, when queued, its Document."""

    file: str
    status: str
    kind: str = ""  # why skipped: type, size, duplicate, unreadable
    reason: str | None = None
    doc_id: str | None = None
    source: str | None = None
    document: Document | None = None

    def result(self) -> dict[str, str | None]:
        return {"file": self.file, "status": self.status, "doc_id": self.doc_id, "source": self.source, "reason": self.reason}


class Claims:
    """The files this process saved, by content: sha256 -> (source, doc id), or None while a request is saving it.
    The duplicate check sees uploads in flight: a request whose bytes another one is saving waits for it and is
    answered as a duplicate of its document, so that N concurrent identical uploads make one document."""

    def __init__(self, corpus_dir: Path):
        self.corpus_dir = corpus_dir
        self._files: dict[str, tuple[str, str] | None] = {}
        self._changed = threading.Condition()

    def claim(self, sha: str, known: dict[str, str]) -> str | None:
        """None: the caller saves this file and then calls ``saved`` or ``release``; else the id it duplicates."""
        with self._changed:
            while True:
                if sha in known:
                    return known[sha]
                if sha not in self._files:
                    self._files[sha] = None
                    return None
                entry = self._files[sha]
                if entry is None:  # being saved by another request
                    self._changed.wait()
                elif (self.corpus_dir / entry[0]).is_file():
                    return entry[1]
                else:  # deleted since
                    del self._files[sha]

    def saved(self, sha: str, source: str, doc_id: str) -> None:
        with self._changed:
            self._files[sha] = (source, doc_id)
            self._changed.notify_all()

    def release(self, sha: str) -> None:
        with self._changed:
            if self._files.get(sha) is None:
                self._files.pop(sha, None)
            self._changed.notify_all()


def save_upload(
    settings: Settings, filename: str, data: BinaryIO, size: int | None, known: dict[str, str], claims: Claims | None = None
) -> Outcome:
    """Check, save and read one uploaded file; ``known`` maps the sha256 of documents already there to their ids,
    ``claims`` the files saved or being saved by this process. Blocking: run it in a worker thread."""
    claims = claims if claims is not None else Claims(settings.corpus_dir)
    name = safe_file_name(filename)
    suffix = Path(name).suffix
    limit = int(settings.max_file_mb * 1024 * 1024)
    if suffix not in SUPPORTED_SUFFIXES:
        return Outcome(filename, "skipped", "type", f"unsupported file type '{suffix or '(none)'}' (accepted: {ACCEPTED})")
    if size is not None and size > limit:
        return Outcome(filename, "skipped", "size", f"file too large ({human_size(size)} > {human_size(limit)} limit)")
    folder = uploads_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    tmp = folder / f".upload-{uuid.uuid4().hex}{suffix}"  # hidden: never read as part of the corpus
    sha = None
    try:
        digest = hashlib.sha256()
        with tmp.open("xb") as out:
            while block := data.read(1 << 20):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if (twin := claims.claim(digest.hexdigest(), known)) is not None:
            return Outcome(filename, "skipped", "duplicate", f"the same file is already there as {twin}", doc_id=twin)
        sha = digest.hexdigest()
        try:
            document = load_document(tmp, settings.corpus_dir, None, Limits.from_settings(settings))
        except UnreadableFile as exc:
            return Outcome(filename, "skipped", exc.kind, str(exc))
        except OSError as exc:  # as load_corpus words it
            return Outcome(filename, "skipped", "unreadable", f"cannot read file: {exc.strerror or exc}")
        with _folder_lock(folder):
            if (twin_path := _twin(folder, tmp, sha)) is not None:  # another worker process saved the same bytes meanwhile
                rel = twin_path.relative_to(settings.corpus_dir)
                claims.saved(sha, rel.as_posix(), doc_id_for(rel))
                return Outcome(filename, "skipped", "duplicate", f"the same file is already there as {doc_id_for(rel)}", doc_id_for(rel))
            final = _place(tmp, folder, name)
            fsync_dir(folder)
        rel = final.relative_to(settings.corpus_dir)
        # As ``load_corpus`` will read it: the id and source of its place (nothing else depends on the file name).
        document = replace(document, doc_id=doc_id_for(rel), source=rel.as_posix())
        claims.saved(sha, document.source, document.doc_id)
    finally:
        tmp.unlink(missing_ok=True)
        if sha is not None:
            claims.release(sha)  # unless saved: refused, or the save failed
    log.info("saved upload %r as %s", filename, document.source)
    return Outcome(filename, "queued", doc_id=document.doc_id, source=document.source, document=document)


def _twin(folder: Path, tmp: Path, sha: str) -> Path | None:
    """A file of the uploads folder with the same bytes as ``tmp`` (call it under the folder lock)."""
    size = tmp.stat().st_size
    for path in folder.iterdir():
        try:
            if not path.name.startswith(".") and path.is_file() and path.stat().st_size == size and file_hash(path) == sha:
                return path
        except OSError:
            continue
    return None


def _place(tmp: Path, folder: Path, name: str) -> Path:
    """Give ``tmp`` its free name in ``folder`` without ever replacing a file (one dropped there by hand meanwhile)."""
    while True:
        final = folder / free_name(folder, name)
        try:
            os.link(tmp, final)  # fails if the name exists, unlike rename
            return final
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if final.exists():
                continue
            os.rename(tmp, final)
            return final


def _remove_stale_temporaries(folder: Path) -> None:
    cutoff = time.time() - STALE_TEMP_S
    for path in folder.glob(".upload-*"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


_REFUSALS = {
    "type": (415, "unsupported_media_type"),
    "size": (413, "too_large"),
    "limit": (413, "too_large"),
    "encrypted": (422, "password_protected"),
    "empty": (400, "empty_file"),
}


def _refusal(outcomes: list[Outcome]) -> JSONResponse:
    """The error for a request whose every file was refused, with every file's result in ``details``: 415 (all of
    an unsupported type, or not what their names say), 413 (all too large, or too much work: pages, parse time),
    422 ``password_protected`` (all need a password), 400 ``empty_file`` (all empty), else 400 ``no_documents``."""
    kinds = {o.kind for o in outcomes}
    listed = "; ".join(f"{o.file}: {o.reason}" for o in outcomes[:5]) + ("; ..." if len(outcomes) > 5 else "")
    message = f"No document was added ({listed})."
    status, code = _REFUSALS.get(kinds.pop(), (400, "no_documents"))
    if kinds:  # refused for more than one kind of reason
        status, code = 400, "no_documents"
    return error_response(status, code, message, {"files": [o.result() for o in outcomes]})


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    413: {"model": ErrorResponse, "description": "Too large, or every file too large"},
    415: {"model": ErrorResponse, "description": "Not multipart, or every file of an unsupported type"},
    422: {"model": ErrorResponse, "description": "Every file password-protected"},
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    202: {"model": DeleteResponse, "description": "File removed; the index is being rebuilt without it"},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse, "description": "Not an uploaded document"},
}


def uploads_router(live: LiveService, settings: Settings) -> APIRouter:
    """``POST /documents`` and ``DELETE /documents/{doc_id}``; include it in the app."""
    router = APIRouter(tags=["documents"])
    claims = Claims(settings.corpus_dir)

    async def multipart(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "Send the files as multipart/form-data, in a field named 'files'.")

    @router.post(
        "/documents", status_code=202, dependencies=[Depends(multipart)], response_model=UploadResponse, responses=UPLOAD_RESPONSES
    )
    async def upload(
        files: Annotated[list[UploadFile], File(description=f"One or more files: {ACCEPTED}.")],
    ) -> JSONResponse:
        """Add documents: each file is saved into the corpus folder (``uploads/``) and read as ``assistant index``
        reads files; then it is indexed in the background (``/health`` shows ``building``) and becomes searchable.

        202 with one result per file (``queued``, or ``skipped`` with the reason). When every file is refused:
        415 (all of an unsupported type or not what their names say), 413 (all too large or too much work), 422 (all
        password-protected) or 400 (``empty_file`` or ``no_documents``), with the results in ``error.details.files``.
        The whole request may hold ``ASSISTANT_MAX_UPLOAD_MB`` (100) and each file ``ASSISTANT_MAX_FILE_MB`` (50).
        """
        return await _save_and_queue(live, settings, claims, files)

    @router.delete("/documents/{doc_id:path}", response_model=DeleteResponse, responses=DELETE_RESPONSES)
    async def delete(doc_id: str) -> JSONResponse:
        """Remove an uploaded document: its file under ``uploads/`` and its index entries (200 when it is gone from
        the index, 202 while the local index is rebuilt without it). Documents of the corpus folder itself are
        managed by its owner (409)."""
        return await anyio.to_thread.run_sync(_delete, live, settings, doc_id)

    return router


async def _save_and_queue(live: LiveService, settings: Settings, claims: Claims, files: list[UploadFile]) -> JSONResponse:
    """Save each file (in a worker thread), queue the readable ones for indexing, and say what became of each."""
    service = live.service
    known: dict[str, str] = {}
    if service is not None:
        known = await anyio.to_thread.run_sync(_known_hashes, live, service.index, settings.corpus_dir)
    outcomes = []
    for item in files:
        name = item.filename or ""
        try:
            outcome = await anyio.to_thread.run_sync(save_upload, settings, name, item.file, item.size, known, claims)
        except OSError as exc:  # the others still count
            log.error("cannot save the upload %r into %s: %s", name, uploads_dir(settings), exc)
            outcome = Outcome(name, "skipped", "storage", f"the server could not save it ({exc.strerror or exc})")
        outcomes.append(outcome)
    queued = [o.document for o in outcomes if o.document is not None]
    if not queued:
        return _refusal(outcomes)
    live.update(queued)
    n = len(queued)
    message = f"{n} document{'s are' if n > 1 else ' is'} being indexed; /health shows the progress (building)."
    return JSONResponse({"files": [o.result() for o in outcomes], "message": message}, status_code=202)


def _known_hashes(live: LiveService, index: Store, corpus_dir: Path) -> dict[str, str]:
    """sha256 of every indexed file that is still there -> its document id (a deleted one may still be indexed)."""
    infos = live.backend.document_list(index)
    return {d["sha256"]: d["doc_id"] for d in infos if (corpus_dir / d["source"]).is_file()}


def _delete(live: LiveService, settings: Settings, doc_id: str) -> JSONResponse:
    service = live.service
    doc = service.index.documents.get(doc_id) if service is not None else None
    folder = uploads_dir(settings)
    if doc is not None:
        source = doc.source
    else:  # saved but not indexed yet?
        pending = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
        pending = [p for p in pending if doc_id_for(p.relative_to(settings.corpus_dir)) == doc_id]
        if not pending:
            raise NotFound(f"No document with id {doc_id!r}.")
        source = pending[0].relative_to(settings.corpus_dir).as_posix()
    if not source.startswith(UPLOAD_FOLDER + "/"):
        raise ApiError(
            409,
            "not_an_upload",
            f"{doc_id!r} is a document of the corpus folder ({source}), which its owner manages: remove its file there and"
            " reindex to drop it. Only uploaded documents can be deleted here.",
            {"source": source},
        )
    if doc is not None and service is not None and len(service.index.documents) == 1:
        raise ApiError(409, "last_document", f"{doc_id!r} is the only document: the index cannot be empty. Add another first.")
    path = settings.corpus_dir / source
    if not path.parent.resolve().is_relative_to(folder.resolve()):
        raise ApiError(409, "not_an_upload", f"{doc_id!r} is not in the uploads folder.")
    key = doc.doc_id if doc is not None else doc_id
    # A store that takes writes at once loses the document first (StoreUnavailable: 503, the file kept, the DELETE
    # can be repeated); a rebuilt one only after the file is gone, since the rebuild reads the folder.
    gone = live.forget(key) if live.backend.incremental else False
    with _folder_lock(folder):
        path.unlink(missing_ok=True)
        fsync_dir(folder)
    log.info("deleted upload %s", source)
    if not live.backend.incremental:
        gone = live.forget(key)
    elif doc is None:  # it was being added: an add that ran meanwhile is undone (a failed one finds no file)
        try:
            live.forget(key)
        except StoreUnavailable as exc:
            log.warning("deleted %s; the store could not be asked again (%s)", source, exc)
    return JSONResponse({"doc_id": doc_id, "status": "deleted" if gone else "queued"}, status_code=200 if gone else 202)
