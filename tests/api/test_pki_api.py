"""PKI over HTTP: trust anchors, signing certificates, revocation, hub-held keys, the public CA and CRL."""

import base64
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from organizations.models import Scope
from organizations.service import create_api_key
from signing import service
from signing.keys import private_key_der
from signing.pki import build_crl, create_root_ca, fingerprint_sha256
from storage.database import session_scope
from tests.signing.pki_helpers import MASTER_KEY, make_csr, make_lab

PROBLEM = "application/problem+json"


@pytest.fixture
def seen(hub) -> list[httpx.Response]:
    """Every response the hub's test client returns during the test (to scan them for secrets)."""
    responses: list[httpx.Response] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        responses.append(response)

    hub.client.event_hooks["response"].append(keep)
    yield responses
    hub.client.event_hooks["response"].remove(keep)
    for response in responses:
        assert b"PRIVATE KEY" not in response.content, response.url


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def _external_ca():
    external = create_root_ca(common_name="Accreditation Body Seal CA")
    external.crl_url = "http://accreditation-body.example/seal.crl"
    return external


def _seal(external, accreditation_number: str) -> x509.Certificate:
    return external.issue_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Digital accreditation symbol")]),
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        profile="signer",
        organization_identifier=accreditation_number,
    )


# --- public CA and CRL ----------------------------------------------------------------------------------------


def test_ca_and_crl_are_public_and_the_crl_lists_revoked_certificates(hub, seen):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    ca_response = hub.client.get("/api/v1/pki/ca")
    assert ca_response.status_code == 200
    assert ca_response.headers["content-type"].startswith("application/x-pem-file")
    ca = x509.load_pem_x509_certificate(ca_response.content)

    enrolled = hub.client.post(
        f"/api/v1/labs/{lab_id}/signing-certificates", json={"csr": make_csr()[0].decode()}, headers=lab
    )
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["source"] == "enrolled" and body["status"] == "active"
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    certificate.verify_directly_issued_by(ca)
    assert body["fingerprintSha256"] == fingerprint_sha256(certificate)
    assert "2.5.4.97=D-K-12345-01-00" in body["subject"]

    crl = x509.load_der_x509_crl(hub.client.get("/api/v1/pki/crl").content)
    assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is None

    revoked = hub.client.post(
        f"/api/v1/labs/{lab_id}/signing-certificates/{body['id']}/revoke",
        json={"reason": "keyCompromise", "comment": "laptop stolen"},
        headers=lab,
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revocationReason"] == "keyCompromise"

    response = hub.client.get("/api/v1/pki/crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    assert crl.is_signature_valid(ca.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise

    again = hub.client.post(f"/api/v1/labs/{lab_id}/signing-certificates/{body['id']}/revoke", json={}, headers=lab)
    _problem(again, 409, "invalid-transition")


def test_a_csr_claiming_another_labs_number_is_bound_to_the_enrolling_lab(hub, seen):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    make_lab(hub, "Lab B", "D-K-99999-01-00")
    csr_pem, _ = make_csr(organization_identifier="D-K-99999-01-00", organization="Lab B")
    response = hub.client.post(
        f"/api/v1/labs/{lab_id}/signing-certificates", json={"csr": csr_pem.decode()}, headers=lab
    )
    assert response.status_code == 201, response.text
    certificate = x509.load_pem_x509_certificate(response.json()["certificatePem"].encode())
    assert [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)] == [
        "D-K-12345-01-00"
    ]
    assert [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["Lab A"]


def test_bad_enrolment_input_is_a_problem_and_stores_nothing(hub, seen, admin_headers):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    unaccredited_id, unaccredited = make_lab(hub, "Lab C", None)
    url = f"/api/v1/labs/{lab_id}/signing-certificates"
    _problem(hub.client.post(url, json={"csr": "not a csr"}, headers=lab), 422, "invalid-csr")
    _problem(hub.client.post(url, json={}, headers=lab), 422, "invalid-request")
    both = {"csr": make_csr()[0].decode(), "certificate": _pem(create_root_ca(common_name="x").certificate)}
    _problem(hub.client.post(url, json=both, headers=lab), 422, "invalid-request")
    weak, _ = make_csr(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    body = _problem(hub.client.post(url, json={"csr": weak.decode()}, headers=lab), 422, "weak-key")
    assert "2048" in body["detail"]
    _problem(
        hub.client.post(
            f"/api/v1/labs/{unaccredited_id}/signing-certificates",
            json={"csr": make_csr()[0].decode()},
            headers=unaccredited,
        ),
        409,
        "no-accreditation-number",
    )
    assert hub.client.get(url, headers=lab).json() == []
    with hub.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM signing_certificates")).scalar_one() == 0


# --- auth matrix ----------------------------------------------------------------------------------------------


def test_lab_routes_answer_401_403_404_and_succeed_for_the_lab_and_admins(hub, seen, admin_headers):
    hub.settings.master_key = MASTER_KEY
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    other_id, other = make_lab(hub, "Lab B", "D-K-99999-01-00")
    _, reader = hub.make_org("Read-only platform", scopes=[Scope.certificates_read])
    with session_scope(hub.engine) as session:
        lab_reader = create_api_key(session, organization_id=lab_id, name="ro", scopes=[Scope.certificates_read])
    lab_read_only = {"Authorization": f"Bearer {lab_reader.key}"}

    enrolled = hub.client.post(
        f"/api/v1/labs/{lab_id}/signing-certificates", json={"csr": make_csr()[0].decode()}, headers=lab
    ).json()
    routes = [
        ("POST", f"/api/v1/labs/{lab_id}/signing-certificates", {"csr": make_csr()[0].decode()}, 201),
        ("GET", f"/api/v1/labs/{lab_id}/signing-certificates", None, 200),
        ("POST", f"/api/v1/labs/{lab_id}/hub-keys", {"algorithm": "ecdsa-p256"}, 201),
        ("GET", f"/api/v1/labs/{lab_id}/hub-keys", None, 200),
        ("POST", f"/api/v1/labs/{lab_id}/signing-certificates/{enrolled['id']}/revoke", {"reason": "superseded"}, 200),
    ]
    for method, url, body, success in routes:
        _problem(hub.client.request(method, url, json=body), 401)
        _problem(hub.client.request(method, url, json=body, headers={"Authorization": "Bearer qh_nope_123456789"}), 401)
        _problem(hub.client.request(method, url, json=body, headers=other), 404)  # another lab's: not even seen
        _problem(hub.client.request(method, url, json=body, headers=reader), 404 if method == "GET" else 403)
        if method == "POST":
            _problem(hub.client.request(method, url, json=body, headers=lab_read_only), 403, "missing-scope")
        unknown = url.replace(lab_id, "00000000-0000-0000-0000-000000000000")
        _problem(hub.client.request(method, unknown, json=body, headers=admin_headers), 404)
        assert hub.client.request(method, url, json=body, headers=lab).status_code == success, url

    # Admins act for any lab.
    admin_enrolled = hub.client.post(
        f"/api/v1/labs/{other_id}/signing-certificates", json={"csr": make_csr()[0].decode()}, headers=admin_headers
    )
    assert admin_enrolled.status_code == 201
    assert admin_enrolled.json()["organizationId"] == other_id
    listed = hub.client.get(f"/api/v1/labs/{lab_id}/signing-certificates", headers=admin_headers)
    assert listed.status_code == 200 and len(listed.json()) == 3  # enrolled twice + the hub key's certificate
    _problem(
        hub.client.post(
            f"/api/v1/labs/{lab_id}/signing-certificates/{admin_enrolled.json()['id']}/revoke",
            json={},
            headers=admin_headers,
        ),
        404,  # the certificate belongs to lab B, not lab A
    )


def test_trust_anchor_routes_are_for_admins_only(hub, seen, admin_headers):
    _, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    external = _external_ca()
    body = {"name": "Accreditation body", "certificate": _pem(external.certificate)}
    for method, url, payload in [
        ("POST", "/api/v1/trust-anchors", body),
        ("GET", "/api/v1/trust-anchors", None),
        ("PUT", "/api/v1/trust-anchors/anything/crl", {"crl": "x"}),
    ]:
        _problem(hub.client.request(method, url, json=payload), 401)
        _problem(hub.client.request(method, url, json=payload, headers=lab), 403, "missing-scope")

    created = hub.client.post("/api/v1/trust-anchors", json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "external" and created.json()["fingerprintSha256"] == external.fingerprint
    _problem(hub.client.post("/api/v1/trust-anchors", json=body, headers=admin_headers), 409)
    leaf = _seal(external, "D-K-1")
    _problem(
        hub.client.post(
            "/api/v1/trust-anchors", json={"name": "leaf", "certificate": _pem(leaf)}, headers=admin_headers
        ),
        422,
    )

    anchors = hub.client.get("/api/v1/trust-anchors", headers=admin_headers).json()
    assert [anchor["kind"] for anchor in anchors].count("hub-root") == 1
    hub_root = next(anchor for anchor in anchors if anchor["kind"] == "hub-root")
    assert hub_root["certificatePem"] == hub.client.get("/api/v1/pki/ca").text
    assert len(hub.client.get("/api/v1/trust-anchors", headers=admin_headers).json()) == 2  # idempotent

    now = datetime.now(UTC)
    crl = build_crl(external, revoked=[], next_update=now + timedelta(days=1)).public_bytes(serialization.Encoding.PEM)
    anchor_id = created.json()["id"]
    updated = hub.client.put(
        f"/api/v1/trust-anchors/{anchor_id}/crl", json={"crl": crl.decode()}, headers=admin_headers
    )
    assert updated.status_code == 200 and updated.json()["hasCrl"] is True
    foreign = build_crl(create_root_ca(common_name="other"), revoked=[], next_update=now + timedelta(days=1))
    _problem(
        hub.client.put(
            f"/api/v1/trust-anchors/{anchor_id}/crl",
            json={"crl": foreign.public_bytes(serialization.Encoding.PEM).decode()},
            headers=admin_headers,
        ),
        422,
    )
    _problem(hub.client.put("/api/v1/trust-anchors/nope/crl", json={"crl": crl.decode()}, headers=admin_headers), 404)


# --- registering external certificates --------------------------------------------------------------------------


def test_external_certificates_must_chain_to_an_anchor_and_carry_the_labs_number(hub, seen, admin_headers):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    url = f"/api/v1/labs/{lab_id}/signing-certificates"
    external = _external_ca()
    seal = _seal(external, "D-K-12345-01-00")

    body = _problem(hub.client.post(url, json={"certificate": _pem(seal)}, headers=lab), 422, "untrusted-certificate")
    assert "trust anchor" in body["detail"]
    hub.client.post(
        "/api/v1/trust-anchors",
        json={"name": "Accreditation body", "certificate": _pem(external.certificate)},
        headers=admin_headers,
    ).raise_for_status()

    registered = hub.client.post(url, json={"certificate": _pem(seal)}, headers=lab)
    assert registered.status_code == 201, registered.text
    assert registered.json()["source"] == "registered"
    _problem(hub.client.post(url, json={"certificate": _pem(seal)}, headers=lab), 409)

    lab_b_seal = _seal(external, "D-K-99999-01-00")
    body = _problem(hub.client.post(url, json={"certificate": _pem(lab_b_seal)}, headers=lab), 422)
    assert "accreditation number" in body["detail"]
    stranger = _seal(create_root_ca(common_name="Unknown CA"), "D-K-12345-01-00")
    _problem(hub.client.post(url, json={"certificate": _pem(stranger)}, headers=lab), 422, "untrusted-certificate")

    # Pinning an unchained certificate is an admin's explicit decision, with the exact fingerprint.
    pin = {"certificate": _pem(stranger), "pinnedFingerprint": fingerprint_sha256(stranger)}
    _problem(hub.client.post(url, json=pin, headers=lab), 403)
    wrong_pin = {**pin, "pinnedFingerprint": "0" * 64}
    _problem(hub.client.post(url, json=wrong_pin, headers=admin_headers), 422, "untrusted-certificate")
    pinned = hub.client.post(url, json=pin, headers=admin_headers)
    assert pinned.status_code == 201, pinned.text

    with session_scope(hub.engine) as session:
        context = service.trust_context_for(session, settings=hub.settings)
    assert context.lab_of_certificate(stranger).organization_id == lab_id
    assert context.lab_of_certificate(seal).registered_fingerprints == {
        fingerprint_sha256(seal),
        fingerprint_sha256(stranger),
    }


# --- hub-held keys --------------------------------------------------------------------------------------------


def test_hub_keys_need_a_master_key_and_never_leave_the_hub(hub, seen):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    url = f"/api/v1/labs/{lab_id}/hub-keys"
    _problem(hub.client.post(url, headers=lab), 409, "master-key-not-configured")
    with hub.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM hub_signing_keys")).scalar_one() == 0

    hub.settings.master_key = MASTER_KEY
    created = hub.client.post(url, json={"algorithm": "rsa-pss-3072"}, headers=lab)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "organizationId", "algorithm", "signingCertificate", "caCertificatePem", "createdAt"}
    assert body["algorithm"] == "rsa-pss-3072" and body["signingCertificate"]["source"] == "hub-key"
    default = hub.client.post(url, headers=lab)
    assert default.status_code == 201 and default.json()["algorithm"] == "ecdsa-p256"
    listed = hub.client.get(url, headers=lab)
    assert [key["id"] for key in listed.json()] == [default.json()["id"], body["id"]]

    with session_scope(hub.engine) as session:
        private_key, _ = service.get_hub_signing_key_or_raise(session, settings=hub.settings, organization_id=lab_id)
    with hub.engine.connect() as connection:
        sealed = [
            bytes(row[0]) for row in connection.execute(text("SELECT encrypted_private_key FROM hub_signing_keys"))
        ]
    assert len(seen) >= 4  # the scan below covers every response of this test
    secrets = [base64.b64encode(private_key_der(private_key))[:40], *(base64.b64encode(blob)[:40] for blob in sealed)]
    for response in seen:
        for secret in secrets:
            assert secret not in response.content
        assert MASTER_KEY.encode() not in response.content


def test_invalid_hub_key_algorithm_is_refused(hub, seen):
    lab_id, lab = make_lab(hub, "Lab A", "D-K-12345-01-00")
    hub.settings.master_key = MASTER_KEY
    _problem(hub.client.post(f"/api/v1/labs/{lab_id}/hub-keys", json={"algorithm": "rsa-1024"}, headers=lab), 422)


# --- CLI ------------------------------------------------------------------------------------------------------


def test_pki_init_creates_the_hub_ca_once_and_reports_its_fingerprint(tmp_path):
    def pki_init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api", "pki", "init", *args],
            capture_output=True,
            text=True,
            env={"QIHUB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
            timeout=120,
        )

    first = pki_init("--dev-master-key")
    assert first.returncode == 0, first.stderr
    certificate = x509.load_pem_x509_certificate((tmp_path / "pki" / "hub-ca.pem").read_bytes())
    assert fingerprint_sha256(certificate) in first.stdout
    assert "created hub CA" in first.stdout and "CA key encrypted      yes" in first.stdout
    assert (tmp_path / "pki" / "master.key").exists()

    second = pki_init()
    assert second.returncode == 0, second.stderr
    assert "existing hub CA" in second.stdout and fingerprint_sha256(certificate) in second.stdout
