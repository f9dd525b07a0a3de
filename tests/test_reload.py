"""Re-indexing while serving: the new build is swapped in, requests already running keep the old one."""

from fastapi.testclient import TestClient

from assistant.search.build import build_index
from assistant.server.app import create_app
from assistant.service import open_service
from tests.fakes import FakeEmbedder


def test_new_build_is_swapped_in_while_serving(settings):
    embedder = FakeEmbedder()
    service = open_service(settings, embedder)
    with TestClient(create_app(settings, service)) as client:
        live = client.app.state.live
        assert len(client.get("/documents").json()["documents"]) == 5
        old_pipeline = live.service.pipeline

        (settings.corpus_dir / "rasht.md").write_text("# Rasht Valley note\n\nThe Rasht Valley programme trained 12 teachers.\n")
        build_index(settings, FakeEmbedder())  # what `assistant index` does in another process
        live.refresh()  # what the watcher does every few seconds

        docs = client.get("/documents").json()["documents"]
        assert len(docs) == 6 and any(d["doc_id"] == "rasht" for d in docs)
        assert live.service.pipeline is not old_pipeline
        # A request that started before the swap finishes on the old index.
        assert old_pipeline.retriever.index.manifest["build"] != live.service.index.manifest["build"]
        assert "rasht" not in old_pipeline.retriever.index.documents
        assert old_pipeline.ask("Which valley trained teachers?").mode == "extractive"
        body = client.post("/ask", json={"question": "How many teachers did the Rasht Valley programme train?"}).json()
        assert (body["citations"] or body["related"])[0]["doc_id"] == "rasht"
