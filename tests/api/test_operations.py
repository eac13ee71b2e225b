"""Health, readiness, metrics, the committed OpenAPI document and the validation endpoint."""

import json

from api.openapi import openapi_document
from tests.paths import DCC_CORPUS, REPO_ROOT

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
SCHEMATRON = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/invalid_schematron.xml"


def test_health_and_readiness_answer(hub):
    assert hub.client.get("/healthz").json() == {"status": "ok"}
    ready = hub.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True


def test_readiness_fails_when_the_database_is_gone(hub):
    hub.client.app.state.engine.dispose()
    hub.client.app.state.engine = __import__("sqlalchemy").create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    assert hub.client.get("/readyz").status_code == 503


def test_metrics_count_requests_and_submissions(hub):
    _, lab = hub.make_org()
    hub.client.post(
        "/api/v1/certificates", content=VALID.read_bytes(), headers={**lab, "Content-Type": "application/xml"}
    )
    text = hub.client.get("/metrics").text
    assert 'qihub_certificates_submitted_total{source="xml"} 1.0' in text
    assert 'route="/api/v1/certificates"' in text


def test_validate_reports_schema_version_and_findings_and_stores_nothing(hub):
    _, lab = hub.make_org()
    ok = hub.client.post("/api/v1/validate", content=VALID.read_bytes(), headers={"Content-Type": "application/xml"})
    assert ok.status_code == 200
    assert ok.json()["valid"] is True
    assert ok.json()["schemaVersion"] == "3.3.0"
    rules = hub.client.post(
        "/api/v1/validate", content=SCHEMATRON.read_bytes(), headers={"Content-Type": "application/xml"}
    ).json()
    assert rules["schemaValid"] is True
    assert rules["valid"] is False
    assert any(finding["severity"] == "error" for finding in rules["findings"])
    assert hub.client.get("/api/v1/certificates", headers=lab).json()["items"] == []


def test_committed_openapi_document_matches_the_app():
    committed = json.loads((REPO_ROOT / "openapi/openapi.json").read_text())
    assert committed == openapi_document(), "run `make openapi` and commit openapi/openapi.json"


def test_home_page_links_the_api_docs(hub):
    page = hub.client.get("/")
    assert page.status_code == 200
    assert 'href="/docs"' in page.text
