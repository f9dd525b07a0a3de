"""Property-based fuzzing of the HTTP API against its own OpenAPI schema (schemathesis).

The app runs in-process over an index of the seed corpus built with the deterministic
``FakeEmbedder`` (no model, builds in under a second). Every operation in the app's
``/openapi.json`` gets schemathesis' positive and negative examples (``MAX_EXAMPLES`` per
operation, derandomised so CI runs are repeatable); each response must not be a 5xx and must
conform to the schema: documented status code and content type, body matching its schema,
schema-invalid requests rejected.

Needs: ``pip install schemathesis`` (the module is skipped when it is missing).
"""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402  (hypothesis comes with schemathesis)
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from assistant.config import Settings  # noqa: E402
from assistant.server.app import create_app  # noqa: E402
from assistant.service import open_service  # noqa: E402
from tests.fakes import FakeEmbedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
MAX_EXAMPLES = 30


def _schema_app():
    """An app built only to render its OpenAPI schema (the schema does not depend on the index)."""
    return create_app(Settings(_env_file=None, corpus_dir=SEED_CORPUS))


# The app's own /openapi.json. Loaded eagerly from a schema-only app rather than with
# ``schemathesis.pytest.from_fixture``: the lazy loader of schemathesis 4.32 reads
# ``request.node._nodeid``, which pytest 9 no longer has (AttributeError).
schema = schemathesis.openapi.from_dict(_schema_app().openapi())


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory):
    """The app over a FakeEmbedder index of the seed corpus (schemathesis runs its lifespan)."""
    index_dir = tmp_path_factory.mktemp("fuzz-index")
    app_settings = Settings(_env_file=None, corpus_dir=SEED_CORPUS, index_dir=index_dir, embed_batch_size=64)
    service = open_service(app_settings, embedder=FakeEmbedder())
    return create_app(app_settings, service)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case, api_app):
    """No 5xx, documented status codes and content types, bodies that match the schema.

    A body over the server's size limit is refused with 413 before its fields are read (the schema
    allows a conversation history longer than that limit in the worst case), so such a case is
    checked for the 413 and the error shape only.
    """
    response = case.call(app=api_app)
    if response.status_code == 413 and len(response.request.body or b"") > Settings(_env_file=None).max_body_bytes:
        assert response.json()["error"]["code"] == "too_large"
        return
    # A multipart part of random bytes is schema-valid but not a document: refusing it (415) is right.
    excluded = [positive_data_acceptance] if (case.method, case.path) == ("POST", "/documents") else []
    case.validate_response(response, excluded_checks=excluded)


# ---------------------------------------------------------------- the known gaps, one test each


@pytest.mark.parametrize(
    ("method", "path", "allowed"), [("PUT", "/ask", "POST"), ("DELETE", "/ask/stream", "POST"), ("POST", "/health", "GET")]
)
def test_method_not_allowed_names_the_allowed_methods(api_app, method, path, allowed):
    with TestClient(api_app) as client:
        response = client.request(method, path)
    assert response.status_code == 405
    assert allowed in response.headers.get("allow", "")


def test_schema_states_the_question_constraints():
    question = _schema_app().openapi()["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert question.get("minLength", 0) >= 1 or "pattern" in question
    assert "maxLength" in question
