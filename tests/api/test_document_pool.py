"""Public verifications in the app's document processes (QIHUB_DOCUMENT_PROCESSES): same answers, fresh trust.

The `hub` fixture's hubs may verify in the API process; these hubs verify in one process of their own, as
`qihub serve` does by default, and the pool's failure paths are driven for real (a process is stopped and
killed mid-verification).
"""

import os
import pickle
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.document_pool import DocumentPool, _Failure
from certificates.xml import XmlRejected
from signing.verification_service import verify_for_registry
from signing.xades import sign_dcc
from storage.database import session_scope
from storage.errors import InvalidInputError
from storage.settings import Settings
from tests.api.document_pool_support import answer_with_process_killed_mid_job, wait_for
from tests.api.test_verification_api import DCC, XML, _signing_lab
from tests.conftest import ADMIN_KEY, Hub
from tests.paths import XMLDSIG_CORPUS


@contextmanager
def _hub_verifying_in_one_process(tmp_path: Path, **settings_values: Any) -> Iterator[Hub]:
    settings = Settings(
        data_dir=tmp_path / "data", bootstrap_admin_key=ADMIN_KEY, document_processes=1, **settings_values
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Hub(client=client, settings=settings, backend="sqlite")
    app.state.engine.dispose()


@pytest.fixture
def pooled_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub (SQLite) that verifies in one document process."""
    with _hub_verifying_in_one_process(tmp_path) as hub:
        yield hub


def _pool(hub: Hub) -> DocumentPool:
    return hub.client.app.state.document_pool  # type: ignore[attr-defined,no-any-return]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_no_process_starts_before_the_first_verification(pooled_hub):
    assert pooled_hub.client.get("/healthz").status_code == 200
    assert _pool(pooled_hub).process_ids() == []


def test_a_verification_process_answers_as_the_api_process_would(pooled_hub):
    _, _, key, chain = _signing_lab(pooled_hub, "Lab Pool")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    moment = datetime.now(UTC).replace(microsecond=0)  # a fixed validation time: both reports say it
    at = {"at": moment.isoformat()}
    response = pooled_hub.client.post("/api/v1/verify", params=at, content=signed, headers=XML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    pool = _pool(pooled_hub)
    assert pool.completed == 1
    assert len(pool.process_ids()) == 1 and os.getpid() not in pool.process_ids()
    with session_scope(pooled_hub.engine) as session:
        here = verify_for_registry(session, settings=pooled_hub.settings, data=signed, at=moment)
    assert response.json() == here.model_dump(mode="json", by_alias=True)
    assert response.json()["indication"] == "TOTAL_PASSED"

    page = pooled_hub.client.post("/api/v1/verify", params=at, content=signed, headers={**XML, "Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "TOTAL_PASSED" in page.text and "Lab Pool signer" in page.text
    assert pool.completed == 2 and len(pool.process_ids()) == 1  # the same process, kept warm


def test_refused_xml_and_unknown_digests_answer_the_same_problems_from_a_process(pooled_hub):
    bomb = (XMLDSIG_CORPUS / "xml-attacks-defusedxml" / "xmlbomb.xml").read_bytes()
    refused = pooled_hub.client.post("/api/v1/verify", content=bomb, headers=XML)
    assert 400 <= refused.status_code < 500
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"].startswith("xml-")
    unknown = pooled_hub.client.get(f"/api/v1/verify/{'0' * 64}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not-found"
    page = pooled_hub.client.get("/verify", params={"sha256": "f" * 64})
    assert page.status_code == 404 and "No registered document" in page.text
    assert _pool(pooled_hub).completed == 3


def test_registered_documents_and_the_verify_page_are_verified_in_a_process(pooled_hub):
    _, headers, key, chain = _signing_lab(pooled_hub, "Lab Pool Registry")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    created = pooled_hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    assert created.status_code == 201, created.text
    digest = created.json()["sha256"]
    report = pooled_hub.client.get(f"/api/v1/verify/{digest}").json()
    assert (report["indication"], report["registry"]["status"]) == ("TOTAL_PASSED", "issued")
    assert report["transparency"]["included"] is True
    page = pooled_hub.client.get("/verify", params={"sha256": digest})
    assert page.status_code == 200 and "TOTAL_PASSED" in page.text and "<form" in page.text
    assert _pool(pooled_hub).completed == 2


def test_a_revoked_signing_certificate_is_seen_by_the_processes_next_verification(pooled_hub):
    # The process caches the trust context; the revocation committed by the API process reaches it at once.
    organization_id, headers, key, chain = _signing_lab(pooled_hub, "Lab Pool Revoked")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    first = pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert first["indication"] == "TOTAL_PASSED"
    listed = pooled_hub.client.get(f"/api/v1/labs/{organization_id}/signing-certificates", headers=headers)
    revoked = pooled_hub.client.post(
        f"/api/v1/labs/{organization_id}/signing-certificates/{listed.json()[0]['id']}/revoke",
        json={"reason": "keyCompromise"},
        headers=headers,
    )
    assert revoked.status_code == 200, revoked.text
    report = pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert next(c for c in report["checks"] if c["id"] == "revocation")["result"] == "FAILED"
    assert report["indication"] != "TOTAL_PASSED"


def test_a_registration_is_seen_by_the_processes_next_verification(pooled_hub):
    _, headers, key, chain = _signing_lab(pooled_hub, "Lab Pool Later")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    before = pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert before["registry"]["status"] == "unknown"
    created = pooled_hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    assert created.status_code == 201, created.text
    after = pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert after["registry"]["status"] == "issued"
    assert after["transparency"]["included"] is True


def test_a_process_killed_mid_verification_answers_503_and_the_next_verification_gets_a_fresh_one(pooled_hub):
    _, _, key, chain = _signing_lab(pooled_hub, "Lab Pool Killed")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    assert pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML).status_code == 200
    pool = _pool(pooled_hub)
    [pid] = pool.process_ids()
    killed = answer_with_process_killed_mid_job(
        pool, pid, lambda: pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML)
    )
    assert killed.status_code == 503
    assert killed.headers["content-type"] == "application/problem+json"
    assert killed.json()["code"] == "verification-unavailable"

    again = pooled_hub.client.post("/api/v1/verify", content=signed, headers=XML)
    assert again.status_code == 200 and again.json()["indication"] == "TOTAL_PASSED"
    assert pool.lost == 1 and len(pool.process_ids()) == 1 and pool.process_ids() != [pid]


def test_a_process_that_hangs_past_the_timeout_is_killed_and_its_request_answers_503(tmp_path):
    with _hub_verifying_in_one_process(tmp_path, document_job_timeout_s=1.0) as hub:
        _, _, key, chain = _signing_lab(hub, "Lab Pool Hung")
        signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
        assert hub.client.post("/api/v1/verify", content=signed, headers=XML).status_code == 200
        pool = _pool(hub)
        [pid] = pool.process_ids()
        os.kill(pid, signal.SIGSTOP)  # alive but never answers: only the timeout frees the request
        try:
            hung = hub.client.post("/api/v1/verify", content=signed, headers=XML)
        finally:
            if _exists(pid):
                os.kill(pid, signal.SIGKILL)
        assert hung.status_code == 503
        assert hung.headers["content-type"] == "application/problem+json"
        assert hung.json()["code"] == "verification-timeout"
        wait_for(lambda: not _exists(pid))  # killed by the pool, not left stopped

        again = hub.client.post("/api/v1/verify", content=signed, headers=XML)
        assert again.status_code == 200 and again.json()["indication"] == "TOTAL_PASSED"
        assert pool.lost == 1 and pool.process_ids() not in ([], [pid])


def test_a_process_that_died_while_idle_is_replaced_without_failing_a_verification(pooled_hub):
    assert pooled_hub.client.post("/api/v1/verify", content=DCC, headers=XML).status_code == 200
    pool = _pool(pooled_hub)
    [pid] = pool.process_ids()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _exists(pid))
    response = pooled_hub.client.post("/api/v1/verify", content=DCC, headers=XML)
    assert response.status_code == 200, response.text
    assert response.json()["subIndication"] == "FORMAT_FAILURE"  # unsigned: reported, not refused
    assert pool.lost == 1 and pool.process_ids() != [pid]


def test_a_stopped_pool_answers_503_and_leaves_no_process(pooled_hub):
    assert pooled_hub.client.post("/api/v1/verify", content=DCC, headers=XML).status_code == 200
    pool = _pool(pooled_hub)
    [pid] = pool.process_ids()
    pool.shutdown()
    assert pool.process_ids() == []
    assert not _exists(pid)
    response = pooled_hub.client.post("/api/v1/verify", content=DCC, headers=XML)
    assert response.status_code == 503 and response.json()["code"] == "verification-unavailable"
    page = pooled_hub.client.get("/verify", params={"sha256": "f" * 64})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")


def test_zero_processes_verify_in_the_api_process(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", document_processes=0)
    app = create_app(settings)
    with TestClient(app) as client:
        response = client.post("/api/v1/verify", content=DCC, headers=XML)
    app.state.engine.dispose()
    assert response.status_code == 200 and response.json()["indication"] == "TOTAL_FAILED"
    assert app.state.document_pool.completed == 0 and app.state.document_pool.process_ids() == []


def test_errors_cross_the_process_boundary_as_their_own_class():
    rejected = pickle.loads(pickle.dumps(_Failure.of(XmlRejected("too-deep", "deeper than 256", line=7)))).rebuild()
    assert isinstance(rejected, XmlRejected)
    assert (rejected.code, rejected.detail, rejected.line) == ("too-deep", "deeper than 256", 7)
    invalid = pickle.loads(pickle.dumps(_Failure.of(InvalidInputError("bad", extra={"report": {"a": 1}})))).rebuild()
    assert isinstance(invalid, InvalidInputError) and (invalid.detail, invalid.extra) == ("bad", {"report": {"a": 1}})

    class LocalError(Exception):  # not importable by name: only its text can cross
        pass

    unpicklable = _Failure.of(LocalError("boom")).rebuild()
    assert isinstance(unpicklable, RuntimeError) and "boom" in str(unpicklable)
