"""Two files that would share a document id do not poison the index (hardening round two, item 1)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from assistant.search.build import build_index
from assistant.server.app import create_app
from assistant.service import open_service
from tests.fakes import FakeEmbedder


def test_colliding_ids_are_renamed_and_everything_keeps_working(settings):
    corpus = settings.corpus_dir
    (corpus / "report.txt").write_text("The Rasht Valley programme trained 12 teachers in 2021.\n", encoding="utf-8")
    (corpus / "report.md").write_text("# Khatlon note\n\nThe Khatlon programme built 7 schools in 2020.\n", encoding="utf-8")
    (corpus / "a b.txt").write_text("The Sughd programme repaired 4 bridges.\n", encoding="utf-8")
    (corpus / "a-b.txt").write_text("The Pamir programme planted 900 trees.\n", encoding="utf-8")
    report = build_index(settings, FakeEmbedder())
    assert report.documents == 9
    service = open_service(settings, FakeEmbedder(), build=False)
    ids = set(service.index.documents)
    assert {"report", "report-txt", "a-b", "a-b-txt"} <= ids
    renamed = service.index.documents["report-txt"]
    assert renamed.source == "report.txt" and any("report.md" in w for w in renamed.warnings)
    answer = service.pipeline.ask("How many schools did the Khatlon programme build?")
    assert answer.mode == "extractive"  # no crash
    with TestClient(create_app(settings, service)) as client:
        assert client.get("/health").json()["status"] == "ok"
        listed = {d["doc_id"] for d in client.get("/documents").json()["documents"]}
        assert {"report", "report-txt", "a-b", "a-b-txt"} <= listed
        for doc_id in ("report", "report-txt"):
            assert client.get(f"/documents/{doc_id}").status_code == 200

    # Removing the duplicate: the next build reuses what it can and does not crash.
    (corpus / "report.md").unlink()
    again = build_index(settings, FakeEmbedder())
    assert again.documents == 8 and again.reused_chunks > 0
    assert "report" in open_service(settings, FakeEmbedder(), build=False).index.documents


def test_an_unreadable_previous_build_is_replaced_not_fatal(settings):
    build_index(settings, FakeEmbedder())
    build = next((settings.index_dir / "builds").iterdir())
    (build / "chunks.jsonl").write_text("not json\n", encoding="utf-8")
    (settings.corpus_dir / "extra.txt").write_text("The Rasht Valley programme trained 12 teachers.\n", encoding="utf-8")
    report = build_index(settings, FakeEmbedder())  # the broken build cannot be reused: everything is embedded again
    assert report.documents == 6 and report.reused_chunks == 0
    assert open_service(settings, FakeEmbedder(), build=False).index.documents
