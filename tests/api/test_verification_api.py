"""Public verification: POST /api/v1/verify, GET /api/v1/verify/{sha256}, the /verify page, signed submissions."""

import hashlib
from pathlib import Path

from cryptography import x509
from lxml import etree

from certificates.service import Actor
from organizations.models import Organization
from signing.pki import load_or_create_hub_ca
from signing.service import enrol_signing_certificate
from signing.xades import sign_dcc
from storage.database import session_scope
from tests.paths import REPO_ROOT, XMLDSIG_CORPUS
from tests.signing.pki_helpers import make_csr

DCC = (REPO_ROOT / "demo" / "certificates" / "dcclib-valid.xml").read_bytes()
OTHER_DCC = (REPO_ROOT / "demo" / "certificates" / "gp-temperature-typical.xml").read_bytes()
XML = {"Content-Type": "application/xml"}
DCC_NS = "https://ptb.de/dcc"


def _signing_lab(hub, name: str) -> tuple[str, dict[str, str], object, list[x509.Certificate]]:
    """A lab with an accreditation number and a hub-CA certificate for a key the test holds."""
    organization_id, headers = hub.make_org(name)
    with session_scope(hub.engine) as session:
        organization = session.get(Organization, organization_id)
        organization.accreditation_number = f"D-K-{organization_id[:8]}"
        session.add(organization)
        session.flush()
        csr, key = make_csr(common_name=f"{name} signer")
        row = enrol_signing_certificate(
            session,
            actor=Actor(organization=organization),
            organization_id=organization_id,
            csr_pem=csr,
            settings=hub.settings,
        )
        certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
    return organization_id, headers, key, [certificate, load_or_create_hub_ca(hub.settings).certificate]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _count_certificates(hub, headers) -> int:
    response = hub.client.get("/api/v1/certificates", headers=headers)
    assert response.status_code == 200
    return len(response.json()["items"])


def test_post_verify_answers_json_without_a_key(hub):
    _, _, key, chain = _signing_lab(hub, "Lab Verify")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    response = hub.client.post("/api/v1/verify", content=signed, headers=XML)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["indication"] == "TOTAL_PASSED", [c for c in report["checks"] if c["result"] == "FAILED"]
    assert report["documentSha256"] == _sha256(signed)
    assert report["registry"]["status"] == "unknown"
    assert report["signer"]["boundLab"] == "Lab Verify"
    assert [check["id"] for check in report["checks"]][:2] == ["format", "dcc-schema"]


def test_post_verify_answers_html_on_request(hub):
    _, _, key, chain = _signing_lab(hub, "Lab Html")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    response = hub.client.post("/api/v1/verify", content=signed, headers={**XML, "Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "TOTAL_PASSED" in response.text and "Lab Html signer" in response.text


def test_post_verify_with_a_past_time_reports_that_time(hub):
    _, _, key, chain = _signing_lab(hub, "Lab Past")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    response = hub.client.post("/api/v1/verify", params={"at": "2001-01-01T00:00:00Z"}, content=signed, headers=XML)
    report = response.json()
    assert report["validationTime"].startswith("2001-01-01")
    assert (report["indication"], report["subIndication"]) == ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")


def test_registered_document_shows_issued_revoked_and_superseded(hub):
    _, headers, key, chain = _signing_lab(hub, "Lab Registry")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    created = hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    assert created.status_code == 201, created.text
    digest = created.json()["sha256"]

    issued = hub.client.get(f"/api/v1/verify/{digest}").json()
    assert issued["indication"] == "TOTAL_PASSED"
    assert issued["registry"]["status"] == "issued"
    assert issued["registry"]["organizationName"] == "Lab Registry"
    assert next(c for c in issued["checks"] if c["id"] == "lab-binding")["result"] == "PASSED"
    assert issued["transparency"]["included"] is True

    replacement = hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=OTHER_DCC, headers={**headers, **XML}
    )
    assert replacement.status_code == 201, replacement.text
    superseded = hub.client.post(
        f"/api/v1/certificates/{created.json()['id']}/supersede",
        json={"replacementId": replacement.json()["id"], "reason": "amended values"},
        headers=headers,
    )
    assert superseded.status_code == 200, superseded.text
    report = hub.client.get(f"/api/v1/verify/{digest}").json()
    assert report["registry"]["status"] == "superseded"
    assert report["registry"]["supersededById"] == replacement.json()["id"]
    assert next(c for c in report["checks"] if c["id"] == "registry-superseded")["result"] == "WARNING"


def test_a_revoked_registration_fails_verification_with_its_reason(hub):
    _, headers, key, chain = _signing_lab(hub, "Lab Revoke")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    created = hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    assert created.status_code == 201, created.text
    revoked = hub.client.post(
        f"/api/v1/certificates/{created.json()['id']}/revoke", json={"reason": "wrong serial number"}, headers=headers
    )
    assert revoked.status_code == 200, revoked.text
    report = hub.client.get(f"/api/v1/verify/{created.json()['sha256']}", headers={"Accept": "application/json"}).json()
    assert report["registry"]["status"] == "revoked"
    assert report["registry"]["reason"] == "wrong serial number"
    assert report["indication"] == "TOTAL_FAILED"
    page = hub.client.get(f"/api/v1/verify/{created.json()['sha256']}", headers={"Accept": "text/html"})
    assert "revoked" in page.text and "wrong serial number" in page.text


def test_unknown_digest_is_a_404_problem(hub):
    response = hub.client.get(f"/api/v1/verify/{'0' * 64}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not-found"
    assert hub.client.get("/api/v1/verify/not-a-digest").status_code == 422


def test_drafts_are_not_published_to_verifiers(hub):
    _, headers = hub.make_org("Lab Draft")
    created = hub.client.post("/api/v1/certificates", content=DCC, headers={**headers, **XML})
    assert created.status_code == 201
    assert hub.client.get(f"/api/v1/verify/{created.json()['sha256']}").status_code == 404


def test_hostile_files_get_4xx_problems(hub):
    for name in ("xmlbomb.xml", "external.xml", "quadratic.xml", "cyclic.xml"):
        body = (XMLDSIG_CORPUS / "xml-attacks-defusedxml" / name).read_bytes()
        response = hub.client.post("/api/v1/verify", content=body, headers=XML)
        assert 400 <= response.status_code < 500, name
        assert response.headers["content-type"] == "application/problem+json", name
    assert hub.client.post("/api/v1/verify", content=b"not xml", headers=XML).status_code == 400
    assert hub.client.post("/api/v1/verify", content=b"", headers=XML).status_code == 400
    assert hub.client.post("/api/v1/verify", content=DCC, headers={"Content-Type": "text/plain"}).status_code == 415
    assert hub.client.post("/api/v1/verify", content=DCC, headers={**XML, "Accept": "image/png"}).status_code == 406


def test_an_unsigned_document_is_reported_not_refused(hub):
    response = hub.client.post("/api/v1/verify", content=DCC, headers=XML)
    assert response.status_code == 200
    assert (response.json()["indication"], response.json()["subIndication"]) == ("TOTAL_FAILED", "FORMAT_FAILURE")


def test_a_tampered_signed_submission_is_refused_and_nothing_is_stored(hub):
    _, headers, key, chain = _signing_lab(hub, "Lab Tamper")
    root = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=chain))
    root.find(f".//{{{DCC_NS}}}uniqueIdentifier").text = "FORGED-42"
    tampered = etree.tostring(root)
    response = hub.client.post("/api/v1/certificates", content=tampered, headers={**headers, **XML})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "signature-invalid"
    assert problem["report"]["subIndication"] == "HASH_FAILURE"
    assert _count_certificates(hub, headers) == 0


def test_a_signature_by_another_labs_certificate_is_refused(hub):
    _, _, key_a, chain_a = _signing_lab(hub, "Lab A")
    _, headers_b, _, _ = _signing_lab(hub, "Lab B")
    signed_by_a = sign_dcc(DCC, private_key=key_a, certificate_chain=chain_a)
    response = hub.client.post("/api/v1/certificates", content=signed_by_a, headers={**headers_b, **XML})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "signer-not-bound-to-lab"
    assert _count_certificates(hub, headers_b) == 0


def test_the_verify_page_renders_the_form_and_a_registered_report(hub):
    _, headers, key, chain = _signing_lab(hub, "Lab Page")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    created = hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    form = hub.client.get("/verify")
    assert form.status_code == 200 and "<form" in form.text
    page = hub.client.get("/verify", params={"sha256": created.json()["sha256"]})
    assert page.status_code == 200 and "TOTAL_PASSED" in page.text
    unknown = hub.client.get("/verify", params={"sha256": "f" * 64})
    assert unknown.status_code == 404 and "No registered document" in unknown.text


def test_the_openapi_document_lists_the_verification_routes():
    document = Path(REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert '"/api/v1/verify"' in document and '"/api/v1/verify/{sha256}"' in document


def test_a_revoked_signing_certificate_is_seen_by_the_very_next_verification(hub):
    # Public verifications reuse the trust context for a few seconds; a revocation committed by this hub drops it.
    organization_id, headers, key, chain = _signing_lab(hub, "Lab Revoked Signer")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    assert hub.client.post("/api/v1/verify", content=signed, headers=XML).json()["indication"] == "TOTAL_PASSED"
    listed = hub.client.get(f"/api/v1/labs/{organization_id}/signing-certificates", headers=headers)
    assert listed.status_code == 200, listed.text
    certificate_id = listed.json()[0]["id"]
    revoked = hub.client.post(
        f"/api/v1/labs/{organization_id}/signing-certificates/{certificate_id}/revoke",
        json={"reason": "keyCompromise"},
        headers=headers,
    )
    assert revoked.status_code == 200, revoked.text
    report = hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert report["indication"] != "TOTAL_PASSED"
    assert next(c for c in report["checks"] if c["id"] == "revocation")["result"] == "FAILED"


def test_a_document_registered_after_a_verification_is_known_to_the_next_one(hub):
    # Registry answers are reused for a few seconds too; a registration committed by this hub drops them.
    _, headers, key, chain = _signing_lab(hub, "Lab Later Registration")
    signed = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    assert hub.client.post("/api/v1/verify", content=signed, headers=XML).json()["registry"]["status"] == "unknown"
    created = hub.client.post(
        "/api/v1/certificates", params={"issue": "true"}, content=signed, headers={**headers, **XML}
    )
    assert created.status_code == 201, created.text
    report = hub.client.post("/api/v1/verify", content=signed, headers=XML).json()
    assert report["registry"]["status"] == "issued"
    assert report["transparency"]["included"] is True
