import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from assistant.config import Settings
from assistant.errors import IndexNotReady
from assistant.search.build import build_index
from assistant.search.index import CHUNKER_VERSION, current_build, index_status, load_index, make_faiss_index
from assistant.search.retriever import Retriever
from tests.conftest import ROOT
from tests.fakes import FakeEmbedder


def status(settings: Settings, embedder: FakeEmbedder):
    return index_status(settings, embedder.name, embedder.dim)


def test_build_writes_manifest_and_loads(settings):
    emb = FakeEmbedder()
    assert not status(settings, emb).ready
    report = build_index(settings, emb)
    assert report.documents == 5 and report.chunks > 5 and report.embedded_chunks == report.chunks
    assert report.index_type == "flat"
    loaded = load_index(settings.index_dir)
    m = loaded.manifest
    assert m["config"] == {
        "embedder": "fake-hash-256",
        "dim": 256,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "embed_titles": True,
        "chunker": CHUNKER_VERSION,
    }
    assert set(m["documents"]) == set(loaded.documents)
    assert all(len(d["sha256"]) == 64 for d in m["documents"].values())
    assert m["built_at"] and m["counts"]["chunks"] == len(loaded.chunks) == loaded.vectors.shape[0]
    assert np.allclose(np.linalg.norm(loaded.vectors, axis=1), 1.0, atol=1e-5)
    for c in loaded.chunks:
        assert loaded.documents[c.doc_id].text[c.start : c.end] == c.text
    assert status(settings, emb).ready


def test_only_changed_documents_are_re_embedded(settings):
    emb = FakeEmbedder()
    first = build_index(settings, emb)
    iom = settings.corpus_dir / "iom-tajikistan-diaspora-engagement-2014.txt"
    iom.write_text(iom.read_text(encoding="utf-8") + "\nA new closing paragraph about remittances.\n", encoding="utf-8")
    st = status(settings, emb)
    assert not st.ready and any("changed" in r and "iom-" in r for r in st.reasons)

    emb2 = FakeEmbedder()
    second = build_index(settings, emb2)
    assert second.chunks >= first.chunks
    assert 0 < second.embedded_chunks <= 3  # only the IOM chunks whose text changed
    assert second.embedded_sentences == 1  # and the one new sentence
    assert second.reused_chunks == second.chunks - second.embedded_chunks
    assert emb2.passages_embedded == second.embedded_chunks + second.embedded_sentences
    assert status(settings, emb2).ready


def test_added_and_removed_files_make_the_index_stale(settings):
    emb = FakeEmbedder()
    build_index(settings, emb)
    (settings.corpus_dir / "new.md").write_text("# New\n\nA new note on Rasht Valley.\n", encoding="utf-8")
    (settings.corpus_dir / "undp-tajik-delegation-georgia-public-services-2019.txt").unlink()
    reasons = " ".join(status(settings, emb).reasons)
    assert "added: new.md" in reasons and "removed: undp-" in reasons
    report = build_index(settings, emb)
    assert report.documents == 5
    assert "new" in load_index(settings.index_dir).documents


@pytest.mark.parametrize(
    "change",
    [{"chunk_size": 500}, {"chunk_overlap": 10}, {"embed_titles": False}],
)
def test_changed_chunking_forces_full_rebuild(settings, change):
    emb = FakeEmbedder()
    build_index(settings, emb)
    changed = settings.model_copy(update=change)
    st = status(changed, emb)
    assert not st.ready and any(next(iter(change)) in r for r in st.reasons)
    emb2 = FakeEmbedder()
    report = build_index(changed, emb2)
    assert report.reused_chunks == 0 and report.embedded_chunks == report.chunks


def test_changed_embedder_forces_full_rebuild(settings):
    build_index(settings, FakeEmbedder())
    other = FakeEmbedder(name="another-model")
    assert any("embedder changed" in r for r in status(settings, other).reasons)
    report = build_index(settings, other)
    assert report.reused_chunks == 0


def test_crash_during_build_keeps_previous_index(settings):
    build_index(settings, FakeEmbedder())
    before = current_build(settings.index_dir)
    (settings.corpus_dir / "extra.txt").write_text("Extra document about Sughd.\n" * 50, encoding="utf-8")
    settings = settings.model_copy(update={"chunk_size": 300, "chunk_overlap": 0})
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(settings, FakeEmbedder(fail_after=10))
    assert current_build(settings.index_dir) == before
    assert len(load_index(settings.index_dir).documents) == 5
    assert not any(p.name.startswith(".tmp") for p in (settings.index_dir / "builds").iterdir())


def test_kill_9_during_build_leaves_previous_index_loadable(settings, tmp_path):
    build_index(settings, FakeEmbedder())
    before = current_build(settings.index_dir)
    script = tmp_path / "slow_build.py"
    script.write_text(
        f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from assistant.config import Settings
from assistant.search.build import build_index
from tests.fakes import FakeEmbedder

class Slow(FakeEmbedder):
    def embed_passages(self, texts):
        print("embedding", flush=True)
        time.sleep(0.2)
        return super().embed_passages(texts)

s = Settings(_env_file=None, corpus_dir={str(settings.corpus_dir)!r}, index_dir={str(settings.index_dir)!r},
             chunk_size=200, chunk_overlap=0, embed_batch_size=2)
build_index(s, Slow())
print("finished", flush=True)
"""
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "embedding"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert current_build(settings.index_dir) == before
    loaded = load_index(settings.index_dir)
    assert loaded.manifest["config"]["chunk_size"] == settings.chunk_size
    # The lock died with the process: a new build goes through and cleans up the leftovers.
    build_index(settings.model_copy(update={"chunk_size": 300}), FakeEmbedder())
    assert not any(p.name.startswith(".tmp") for p in (settings.index_dir / "builds").iterdir())


def test_corrupted_or_missing_index_is_detected(settings):
    with pytest.raises(IndexNotReady, match="no index"):
        load_index(settings.index_dir)
    build_index(settings, FakeEmbedder())
    build = current_build(settings.index_dir)
    with (build / "vectors.npy").open("r+b") as fh:
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\xff" * 8)
    with pytest.raises(IndexNotReady, match="corrupted"):
        load_index(settings.index_dir)


def test_manifest_of_another_format_version_is_rejected(settings):
    build_index(settings, FakeEmbedder())
    path = current_build(settings.index_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = 999
    path.write_text(json.dumps(manifest))
    assert any("another version" in r for r in status(settings, FakeEmbedder()).reasons)
    with pytest.raises(IndexNotReady, match="another version"):
        load_index(settings.index_dir)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivfpq"])
def test_index_types_find_nearest_neighbours(index_type):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = make_faiss_index(vectors, index_type)
    _, ids = index.search(vectors[:50], 1)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.9


def test_hybrid_search_returns_provenance(settings):
    emb = FakeEmbedder()
    build_index(settings, emb)
    retriever = Retriever(load_index(settings.index_dir), emb, settings)
    result = retriever.search("Jamoat Management Plan SdDC", top_k=3)
    top = result.passages[0]
    assert top.doc_id == "akdn-civil-society-activities-tajikistan"
    assert "Jamoat Management Plan" in top.text
    assert top.keyword_score > 0 and top.dense_score is not None and top.keyword_rank >= 1
    doc_text = retriever.index.documents[top.doc_id].text
    assert doc_text[top.start : top.end] == top.text
    assert {"embed_query", "dense_search", "keyword_search", "fusion"} <= set(result.timings_ms)
    dense_only = retriever.search("Jamoat Management Plan", top_k=3, mode="dense").passages
    assert all(p.keyword_score is None for p in dense_only)
    kw_only = retriever.search("Jamoat Management Plan", top_k=3, mode="keyword").passages
    assert all(p.dense_score is None for p in kw_only)
