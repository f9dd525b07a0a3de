"""PostgresStore against a real PostgreSQL with pgvector (``tests/pg.py``), compared with the local store.

What must be identical to ``LoadedIndex`` on the seed corpus with the same embedder: the documents,
the chunks and their offsets, dense results (ids, order, inner products), keyword results (BM25 with
the same tokens and formula; scores equal to float32 precision), sentence rows and vectors, sentence
idf, keyword coverage, and so the extractive answers. Tolerated: the order of results whose scores
tie to within 1e-5 (float32 in bm25s and FAISS, float64 in PostgreSQL), and so hybrid order where
fused scores tie.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from assistant.answer.extractive import ExtractiveAnswerer
from assistant.errors import IndexNotReady
from assistant.ingest.documents import Document
from assistant.search.build import build_index
from assistant.search.index import load_index
from assistant.search.retriever import Retriever
from assistant.search.store import Store
from tests.fakes import FakeEmbedder
from tests.pg import pg_server, pg_url  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")
postgres = pytest.importorskip("assistant.search.postgres.store")
pg_schema = pytest.importorskip("assistant.search.postgres.schema")

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [json.loads(line)["question"] for line in (ROOT / "evaluation" / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
QUESTIONS += ["Jamoat Management Plan SdDC", "Грузия государственные услуги", "développement numérique", "", "!!!"]
TIE = 1e-5


def key(p) -> tuple:
    return (p.doc_id, p.start, p.end, p.chunk_id, p.text)


def assert_same_ranking(a: list, b: list, what: str) -> None:
    """Same passages in the same order, except that passages whose scores tie (within TIE) may swap."""
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.score == pytest.approx(y.score, abs=TIE), f"{what}: score at {i}"
        if key(x) != key(y):
            tied = [key(p) for p in a if abs(p.score - x.score) <= TIE]
            assert key(y) in tied, f"{what}: {key(x)[:3]} != {key(y)[:3]} at {i}"
    assert {key(p) for p in a if p.score > a[-1].score + TIE} == {key(p) for p in b if p.score > b[-1].score + TIE}, what


@pytest.fixture
def stores(settings, pg_url):  # noqa: F811
    """The seed corpus in a local index and in PostgreSQL, built with the same fake embedder."""
    emb = FakeEmbedder()
    build_index(settings, emb)
    store = postgres.PostgresStore(pg_url)
    report = store.sync(settings, FakeEmbedder())
    yield load_index(settings.index_dir), store, emb, report
    store.close()


def test_schema_is_versioned_and_migrating_twice_is_a_no_op(pg_url):  # noqa: F811
    store = postgres.PostgresStore(pg_url)
    with pytest.raises(IndexNotReady, match="no index yet"):
        _ = store.chunk_count
    assert store.migrate(dim=16) == pg_schema.SCHEMA_VERSION
    assert store.migrate(dim=16) == pg_schema.SCHEMA_VERSION
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(v,) for v in range(1, pg_schema.SCHEMA_VERSION + 1)]
        assert conn.execute("SELECT count(*), min(dim) FROM state").fetchone() == (1, 16)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'chunks'")}
        assert {"chunks_embedding", "chunks_tsv", "chunks_document"} <= indexes
    assert store.chunk_count == 0 and len(store.documents) == 0 and store.generation() == 0
    assert store.dense_search(np.ones((1, 16), np.float32) / 4, 5) == ([], {})
    assert store.keyword_search("anything", 5) == ([], {})
    store.close()


def test_same_documents_chunks_and_sentences_as_the_local_store(stores):
    local, store, _, report = stores
    assert isinstance(store, Store)
    assert (report.documents, report.chunks, report.sentences) == (5, local.chunk_count, len(local.sentences))
    assert report.embedded_chunks == report.chunks and report.added == 5 and report.generation > 0
    assert list(store.documents) == list(local.documents)
    for doc_id, doc in local.documents.items():
        assert store.documents[doc_id] == doc
    assert store.chunk_count == local.chunk_count
    assert store.manifest["config"] == local.manifest["config"]
    assert store.manifest["counts"] == local.manifest["counts"]
    assert store.manifest["index_type"] == local.manifest["index_type"] == "flat"
    with psycopg.connect(store.url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")]
    assert [store.chunk(i) for i in ids] == local.chunks  # same chunks, same offsets, same ids ("doc#n")
    for i in ids:
        c = store.chunk(i)
        assert store.documents[c.doc_id].text[c.start : c.end] == c.text
    for c in local.chunks[::3]:
        a, b = local.sentences_in(c.doc_id, c.start, c.end), store.sentences_in(c.doc_id, c.start, c.end)
        assert [(r.doc_id, r.start, r.end) for r in a] == [(r.doc_id, r.start, r.end) for r in b]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.vector, y.vector, atol=1e-6)
            assert (x.previous_vector is None) == (y.previous_vector is None)
            if x.previous_vector is not None:
                np.testing.assert_allclose(x.previous_vector, y.previous_vector, atol=1e-6)
    tokens = {"jamoat", "plan", "remittances", "проект", "nowhere"}
    (idf_a, unknown_a), (idf_b, unknown_b) = local.sentence_idf(tokens), store.sentence_idf(tokens)
    assert idf_a == pytest.approx(idf_b) and unknown_a == pytest.approx(unknown_b)
    for q in QUESTIONS[:20] + ["Jamoat plan xyzzy", "Грузия"]:
        assert store.keyword_coverage(q) == local.keyword_coverage(q)


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_retriever_returns_the_same_passages(stores, settings, mode):
    local, store, emb, _ = stores
    a, b = Retriever(local, emb, settings), Retriever(store, emb, settings)
    found = 0
    for q in QUESTIONS:
        pa = a.search(q, top_k=8, mode=mode).passages
        pb = b.search(q, top_k=8, mode=mode).passages
        assert_same_ranking(pa, pb, f"{mode}: {q!r}")
        for p in pb:
            assert store.documents[p.doc_id].text[p.start : p.end] == p.text
        found += bool(pb)
    assert found >= len(QUESTIONS) // 2  # questions in another language than the text find no keywords


def test_extractive_answers_and_citations_are_the_same(stores, settings):
    local, store, emb, _ = stores
    for q in QUESTIONS[:40]:
        answers = []
        for index in (local, store):
            retriever = Retriever(index, emb, settings)
            answer = ExtractiveAnswerer(settings, index).answer(q, retriever.search(q))
            for c in answer.citations:
                text = index.documents[c.doc_id].text
                assert text[c.start : c.end] == c.text and text[c.quote_start : c.quote_end] == c.quote
            answers.append(answer)
        x, y = answers
        assert (x.answer, x.abstained) == (y.answer, y.abstained), q
        assert [(c.doc_id, c.quote_start, c.quote_end) for c in x.citations] == [
            (c.doc_id, c.quote_start, c.quote_end) for c in y.citations
        ]


def test_two_phase_keyword_search_stays_exact(stores, monkeypatch):
    local, store, _, _ = stores
    monkeypatch.setattr(postgres, "PHASE_ONE_CANDIDATES", 1)  # phase one: the rarest word only
    calls = []
    bm25 = store._bm25
    monkeypatch.setattr(store, "_bm25", lambda match, *args: calls.append(len(match)) or bm25(match, *args))
    phases = []
    for q in QUESTIONS:
        calls.clear()
        ranked_a, scores_a = local.keyword_search(q, 10)
        ranked_b, scores_b = store.keyword_search(q, 10)
        phases.append(len(calls))
        a = [(local.chunk(i).chunk_id, scores_a[i]) for i in ranked_a]
        b = [(store.chunk(i).chunk_id, scores_b[i]) for i in ranked_b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=TIE), q
        if a:  # the same chunks, except those tied with the last one
            assert {c for c, s in a if s > a[-1][1] + TIE} == {c for c, s in b if s > b[-1][1] + TIE}, q
    assert phases.count(1) and phases.count(2)  # both endings happened: pruned after phase one, and phase two


def test_hnsw_search_finds_the_exact_neighbours_on_a_small_corpus(stores):
    local, store, emb, _ = stores
    hnsw = postgres.PostgresStore(store.url, index_type="hnsw")
    assert hnsw.manifest["index_type"] == "hnsw"
    for q in QUESTIONS[:20]:
        v = emb.embed_queries([q])
        ids, scores = hnsw.dense_search(v, 10)
        exact_ids, exact_scores = store.dense_search(v, 10)
        assert [round(scores[i], 5) for i in ids] == [round(exact_scores[i], 5) for i in exact_ids]
    hnsw.close()


def test_incremental_sync_matches_a_fresh_local_build(stores, settings):
    _, store, _, first = stores
    corpus = settings.corpus_dir
    iom = corpus / "iom-tajikistan-diaspora-engagement-2014.txt"
    iom.write_text(iom.read_text(encoding="utf-8") + "\nA new closing paragraph about remittances.\n", encoding="utf-8")
    (corpus / "new.md").write_text("# New\n\nA new note on Rasht Valley and its jamoats.\n", encoding="utf-8")
    (corpus / "undp-tajik-delegation-georgia-public-services-2019.txt").unlink()
    emb = FakeEmbedder()
    report = store.sync(settings, emb)
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 3)
    assert 0 < report.embedded_chunks <= 4 and emb.passages_embedded == report.embedded_chunks + report.embedded_sentences
    assert report.generation > first.generation
    again = store.sync(settings, FakeEmbedder())
    assert (again.added, again.updated, again.removed, again.embedded_chunks) == (0, 0, 0, 0)
    assert again.generation == report.generation  # nothing changed: workers need not reload

    build_index(settings, FakeEmbedder())
    local = load_index(settings.index_dir)
    assert list(store.documents) == list(local.documents)
    assert store.manifest["counts"] == local.manifest["counts"]
    for q in QUESTIONS[:30]:
        assert store.keyword_coverage(q) == local.keyword_coverage(q)
        ranked_a, scores_a = local.keyword_search(q, 10)
        ranked_b, scores_b = store.keyword_search(q, 10)
        assert [scores_a[i] for i in ranked_a] == pytest.approx([scores_b[i] for i in ranked_b], abs=TIE)
    (idf_a, unknown_a), (idf_b, unknown_b) = local.sentence_idf({"remittances", "rasht"}), store.sentence_idf({"remittances", "rasht"})
    assert idf_a == pytest.approx(idf_b) and unknown_a == pytest.approx(unknown_b)
    _assert_consistent(store.url)


def _assert_consistent(url: str) -> None:
    """The counters and term frequencies agree with the rows (what a half-written document would break)."""
    with psycopg.connect(url) as conn:
        docs = conn.execute("SELECT count(*), coalesce(sum(chunk_count), 0), coalesce(sum(sentence_count), 0) FROM documents").fetchone()
        rows = conn.execute("SELECT (SELECT count(*) FROM chunks), (SELECT count(*) FROM sentences)").fetchone()
        state = conn.execute("SELECT documents, chunks, sentences, tokens FROM state").fetchone()
        tokens = conn.execute("SELECT coalesce(sum(n_tokens), 0) FROM chunks").fetchone()[0]
        assert docs == (state[0], rows[0], rows[1]) and state[1:3] == rows and state[3] == tokens
        per_doc = conn.execute(
            "SELECT d.doc_id FROM documents d LEFT JOIN chunks c ON c.document = d.id GROUP BY d.id HAVING count(c.id) <> d.chunk_count"
        ).fetchall()
        assert per_doc == []
        df = conn.execute(
            """SELECT count(*) FROM terms t FULL JOIN (SELECT term, sum(c) AS c FROM documents, unnest(terms, term_chunks) AS u(term, c)
               GROUP BY term) AS d USING (term) WHERE t.chunk_df IS DISTINCT FROM d.c AND coalesce(d.c, 0) + coalesce(t.chunk_df, 0) > 0"""
        ).fetchone()[0]
        assert df == 0


def test_uploads_are_added_deleted_and_kept_by_sync(stores, settings):
    local, store, emb, _ = stores
    other = postgres.PostgresStore(store.url, refresh_s=0)  # another worker
    before = other.generation()
    doc = Document("uploads/note", "uploads/note.txt", "A note", "The Zorvakh water board met in May 2021.\n", "0" * 64)
    added = store.add_document(doc, emb)
    assert added["chunks"] == 1 and added["sentences"] == 1
    assert other.generation() > before and other.documents["uploads/note"] == doc and len(other.documents) == 6
    ids, _ = other.keyword_search("Zorvakh water board", 3)
    assert other.chunk(ids[0]).doc_id == "uploads/note"
    assert store.sync(settings, FakeEmbedder()).removed == 0  # a sync keeps uploads
    assert "uploads/note" in store.documents
    assert store.delete_document("uploads/note") and not store.delete_document("uploads/note")
    assert "uploads/note" not in other.documents and other.keyword_search("Zorvakh", 3) == ([], {})
    _assert_consistent(store.url)
    other.close()


def test_a_file_under_uploads_that_a_sync_writes_stays_an_upload(stores, settings):
    _, store, _, _ = stores
    (settings.corpus_dir / "uploads").mkdir(exist_ok=True)
    (settings.corpus_dir / "uploads" / "late.txt").write_text("The Vakhsh clinic opened in 2020.\n", encoding="utf-8")
    assert store.sync(settings, FakeEmbedder()).added == 1  # e.g. saved before a restart, never indexed
    with psycopg.connect(store.url) as conn:
        origins = dict(conn.execute("SELECT doc_id, origin FROM documents").fetchall())
    assert origins["uploads/late"] == "upload" and set(origins.values()) == {"corpus", "upload"}


def test_another_embedder_or_chunking_is_refused_until_rebuilt(stores, settings):
    _, store, _, _ = stores
    with pytest.raises(IndexNotReady, match="chunk_size: store has 800, settings say 500"):
        store.sync(settings.model_copy(update={"chunk_size": 500}), FakeEmbedder())
    with pytest.raises(IndexNotReady, match="256-dimensional"):
        postgres.PostgresStore.open(store.url, settings, FakeEmbedder(name="other", dim=64))
    with pytest.raises(IndexNotReady, match="embedder"):
        store.add_document(Document("x", "x.txt", "X", "Some text here.\n", "0" * 64), FakeEmbedder(name="other"))
    generation = store.generation()
    report = store.sync(settings, FakeEmbedder(name="other", dim=64), rebuild=True)
    assert report.embedded_chunks == report.chunks and report.generation > generation
    postgres.PostgresStore.open(store.url, settings, FakeEmbedder(name="other", dim=64)).close()


def test_killed_sync_leaves_every_indexed_document_whole(stores, settings, tmp_path):
    local, store, emb, first = stores
    for path in sorted(settings.corpus_dir.glob("*.txt")):
        path.write_text(path.read_text(encoding="utf-8") + "\nA closing paragraph added for this test.\n", encoding="utf-8")
    script = tmp_path / "slow_sync.py"
    script.write_text(
        f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from assistant.config import Settings
from assistant.search.postgres import sync as pg_sync
from assistant.search.postgres import PostgresStore
from tests.fakes import FakeEmbedder

pg_sync.BATCH_CHARS = 1  # one document per batch: some are written before the kill

class Slow(FakeEmbedder):
    def embed_passages(self, texts):
        print("embedding", flush=True)
        time.sleep(0.3)
        return super().embed_passages(texts)

s = Settings(_env_file=None, corpus_dir={str(settings.corpus_dir)!r}, index_dir={str(settings.index_dir)!r})
PostgresStore({store.url!r}).sync(s, Slow())
print("finished", flush=True)
"""
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    for _ in range(4):  # two documents embedded (chunks, then sentences): at least one written
        assert proc.stdout.readline().strip() == "embedding"
        _assert_consistent(store.url)  # what readers see while the sync writes
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert "finished" not in proc.stdout.read()

    _assert_consistent(store.url)
    fresh = postgres.PostgresStore(store.url)
    assert list(fresh.documents) == list(local.documents)  # nothing lost
    with psycopg.connect(store.url) as conn:
        texts = dict(conn.execute("SELECT doc_id, text FROM documents").fetchall())
    rewritten = [d for d, t in texts.items() if t.endswith("added for this test.\n")]
    assert 1 <= len(rewritten) < 5
    for doc_id, text in texts.items():
        if doc_id not in rewritten:
            assert text == local.documents[doc_id].text
    # The sync lock died with the process: the next sync finishes the work.
    report = fresh.sync(settings, FakeEmbedder())
    assert report.updated == 5 - len(rewritten) and report.unchanged == len(rewritten)
    _assert_consistent(store.url)
    fresh.close()


def test_documents_mapping_loads_texts_on_demand(stores):
    _, store, _, _ = stores
    docs = store.documents
    assert len(docs) == 5 and "nope" not in docs and docs.get("nope") is None
    with pytest.raises(KeyError):
        docs["nope"]
    first = next(iter(docs))
    assert docs[first] is docs[first]  # cached
    assert asdict(docs[first])["text"]
    infos = store.document_infos()
    assert [i["doc_id"] for i in infos] == list(docs)
    assert infos[0] == {**docs[first].info(), "language": infos[0]["language"]} and infos[0]["language"] == docs[first].language


def test_benchmark_functions_run_on_a_tiny_size(pg_url):  # noqa: F811
    from benchmarks.postgres import ann, ingest

    figures = ann(pg_url, n=2_000, dim=64, queries=20, ef_search=(100,))
    assert figures["hnsw"][0]["recall_at_k"] >= 0.9 and figures["hnsw"][0]["latency_ms"]["p50"] > 0
    assert figures["index_build_s"] >= 0 and figures["exact_scan_latency_ms"]["p95"] > 0
    figures = ingest(pg_url, documents=4, chunks_per_doc=3, dim=64, queries=3)
    assert figures["chunks"] == 12 and figures["chunks_per_s"] > 0 and figures["store_keyword_ms"]["p50"] > 0
