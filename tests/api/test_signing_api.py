"""POST /api/v1/certificates/{id}/sign: a draft signed with the lab's hub-held key becomes an issued certificate."""

import base64

import httpx
from lxml import etree
from sqlmodel import select

from certificates.service import Actor
from organizations.models import Organization
from signing.keys import create_dev_master_key
from signing.pki import load_or_create_hub_ca
from signing.service import create_hub_signing_key
from signing.timestamps import verify_timestamp_token
from signing.trust import TrustContext
from signing.xades import signature_value_c14n
from storage.database import session_scope
from storage.models import AuditEvent
from tests.paths import DCC_CORPUS, REPO_ROOT
from tests.signing.signing_helpers import verify_with_signxml, verify_with_xmlsec

DCC_330 = REPO_ROOT / "demo" / "certificates" / "dcclib-valid.xml"
DCC_311 = DCC_CORPUS / "siemens-pydcc" / "examples" / "dcc_gp_temperature_typical_v12.xml"
XML = {"Content-Type": "application/xml"}
NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": "http://uri.etsi.org/01903/v1.3.2#"}


def _lab_with_hub_key(hub, name: str = "Signing Lab", algorithm: str = "ecdsa-p256") -> tuple[str, dict[str, str]]:
    organization_id, headers = hub.make_org(name)
    create_dev_master_key(hub.settings)
    with session_scope(hub.engine) as session:
        organization = session.get(Organization, organization_id)
        organization.accreditation_number = f"D-K-{organization_id[:8]}"
        session.add(organization)
        session.flush()
        create_hub_signing_key(
            session,
            actor=Actor(organization=organization),
            organization_id=organization_id,
            settings=hub.settings,
            algorithm=algorithm,
        )
    return organization_id, headers


def _draft(hub, headers: dict[str, str], path=DCC_330) -> str:
    response = hub.client.post("/api/v1/certificates", content=path.read_bytes(), headers={**headers, **XML})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _actions(hub, certificate_id: str) -> list[tuple[str, dict]]:
    with session_scope(hub.engine) as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.subject_id == certificate_id).order_by(AuditEvent.id)
        ).all()
        return [(event.action, event.details) for event in events]


def _content(hub, headers: dict[str, str], certificate_id: str) -> bytes:
    response = hub.client.get(
        f"/api/v1/certificates/{certificate_id}", headers={**headers, "Accept": "application/xml"}
    )
    assert response.status_code == 200, response.text
    return response.content


def test_draft_is_signed_b_t_stored_and_issued(hub, tmp_path):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers)
    before = hub.client.get(f"/api/v1/certificates/{certificate_id}", headers=headers).json()

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "issued"
    assert body["signatureLevel"] == "B-T"
    assert body["timestampTime"] is not None
    assert body["sha256"] != before["sha256"]
    signed = _content(hub, headers, certificate_id)
    anchor = load_or_create_hub_ca(hub.settings).certificate
    verify_with_signxml(signed, anchor=anchor, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=anchor)
    signature = etree.fromstring(signed).find("ds:Signature", NS)
    token = base64.b64decode(signature.findtext(".//xades:EncapsulatedTimeStamp", namespaces=NS))
    verdict = verify_timestamp_token(token, signed_data=signature_value_c14n(signature), trust=TrustContext([anchor]))
    assert verdict.valid, verdict.reason
    actions = _actions(hub, certificate_id)
    assert [action for action, _ in actions] == ["submitted", "signed", "issued"]
    signed_event = actions[1][1]
    assert signed_event["level"] == "B-T"
    assert signed_event["signerFingerprint"] == body["signerFingerprint"]
    assert signed_event["previousSha256"] == before["sha256"]


def test_hub_signed_certificate_passes_the_hubs_own_verification(hub):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers)
    sha256 = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers).json()["sha256"]

    report = hub.client.get(f"/api/v1/verify/{sha256}").json()

    assert report["indication"] == "TOTAL_PASSED", report
    assert report["timestamp"]["valid"] is True


def test_rsa_pss_hub_key_signs_verifiably(hub, tmp_path):
    _, headers = _lab_with_hub_key(hub, algorithm="rsa-pss-3072")
    certificate_id = _draft(hub, headers)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 200, response.text
    signed = _content(hub, headers, certificate_id)
    anchor = load_or_create_hub_ca(hub.settings).certificate
    verify_with_signxml(signed, anchor=anchor, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=anchor)


def test_draft_is_signed_b_b_without_timestamp(hub, tmp_path):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign?level=B-B", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["signatureLevel"] == "B-B"
    assert response.json()["timestampTime"] is None
    signed = _content(hub, headers, certificate_id)
    assert etree.fromstring(signed).find(".//xades:UnsignedProperties", NS) is None
    verify_with_signxml(signed, anchor=load_or_create_hub_ca(hub.settings).certificate, tmp_path=tmp_path)


def test_dcc_older_than_3_2_0_is_refused_without_migrate(hub):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers, DCC_311)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "signature-slot-missing"
    assert "migrate=true" in response.json()["detail"]
    assert hub.client.get(f"/api/v1/certificates/{certificate_id}", headers=headers).json()["status"] == "draft"


def test_migrate_true_migrates_signs_and_records_the_migration(hub, tmp_path):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers, DCC_311)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign?migrate=true", headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["schemaVersion"], body["migratedFrom"]) == ("issued", "3.3.0", "3.1.1")
    signed = _content(hub, headers, certificate_id)
    assert etree.fromstring(signed).get("schemaVersion") == "3.3.0"
    verify_with_signxml(signed, anchor=load_or_create_hub_ca(hub.settings).certificate, tmp_path=tmp_path)
    actions = _actions(hub, certificate_id)
    assert [action for action, _ in actions] == ["submitted", "migrated", "signed", "issued"]
    assert actions[1][1]["fromVersion"] == "3.1.1"
    assert actions[1][1]["toVersion"] == "3.3.0"


def test_lab_without_hub_key_gets_a_no_signing_key_problem(hub):
    _, headers = hub.make_org("Keyless Lab")
    certificate_id = _draft(hub, headers)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 409
    assert response.json()["code"] == "no-signing-key"
    assert hub.client.get(f"/api/v1/certificates/{certificate_id}", headers=headers).json()["status"] == "draft"


def test_other_labs_certificate_is_not_found(hub):
    _, owner = _lab_with_hub_key(hub, "Owner Lab")
    _, intruder = _lab_with_hub_key(hub, "Intruder Lab")
    certificate_id = _draft(hub, owner)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=intruder)

    assert response.status_code == 404
    assert response.json()["code"] == "not-found"


def test_issued_certificate_cannot_be_signed_again(hub):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers)
    assert hub.client.post(f"/api/v1/certificates/{certificate_id}/sign?level=B-B", headers=headers).status_code == 200

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 409
    assert response.json()["code"] == "invalid-transition"


def test_signing_needs_an_api_key(hub):
    response = hub.client.post("/api/v1/certificates/0190a1b2-0000-7000-8000-000000000000/sign")

    assert response.status_code == 401


def test_unreachable_external_tsa_is_a_503_and_leaves_the_draft(hub, monkeypatch):
    _, headers = _lab_with_hub_key(hub)
    certificate_id = _draft(hub, headers)
    monkeypatch.setattr(hub.settings, "tsa_url", "https://tsa.example/rfc3161")

    def unreachable(url, **_):
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr("signing.timestamps.httpx.post", unreachable)

    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/sign", headers=headers)

    assert response.status_code == 503
    assert response.json()["code"] == "timestamp-unavailable"
    assert [action for action, _ in _actions(hub, certificate_id)] == ["submitted"]
