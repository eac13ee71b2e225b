"""`qihub sign`: a lab signs on its own machine with its own key; the hub accepts what comes out."""

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from typer.testing import CliRunner

from api.cli import app
from certificates.service import Actor
from organizations.models import Organization
from signing.pki import load_or_create_hub_ca
from signing.service import enrol_signing_certificate
from signing.timestamps import verify_timestamp_token
from signing.trust import TrustContext
from signing.xades import signature_value_c14n
from storage.database import session_scope
from tests.paths import DCC_CORPUS, REPO_ROOT
from tests.signing.signing_helpers import pem, verify_with_signxml, verify_with_xmlsec

DCC_330 = REPO_ROOT / "demo" / "certificates" / "dcclib-valid.xml"
DCC_311 = DCC_CORPUS / "siemens-pydcc" / "examples" / "dcc_gp_temperature_typical_v12.xml"
NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "xades": "http://uri.etsi.org/01903/v1.3.2#"}
runner = CliRunner()


def _enrolled_lab_files(hub, tmp_path) -> tuple[dict[str, str], list[str]]:
    """A lab whose own key got a hub-CA certificate through a CSR; returns its headers and the CLI options."""
    organization_id, headers = hub.make_org("CLI Lab")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "CLI Lab signer")]))
        .sign(key, hashes.SHA256())
    )
    with session_scope(hub.engine) as session:
        organization = session.get(Organization, organization_id)
        organization.accreditation_number = "D-K-99999-01-00"
        session.add(organization)
        session.flush()
        row = enrol_signing_certificate(
            session,
            actor=Actor(organization=organization),
            organization_id=organization_id,
            csr_pem=csr.public_bytes(serialization.Encoding.PEM),
            settings=hub.settings,
        )
        certificate_pem = row.certificate_pem
    key_file, cert_file, chain_file = tmp_path / "lab.key", tmp_path / "lab.pem", tmp_path / "chain.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_file.write_text(certificate_pem)
    chain_file.write_bytes(pem(load_or_create_hub_ca(hub.settings).certificate))
    return headers, ["--key", str(key_file), "--cert", str(cert_file), "--chain", str(chain_file)]


def test_cli_signs_b_b_and_the_hub_accepts_the_file(hub, tmp_path):
    headers, options = _enrolled_lab_files(hub, tmp_path)
    out = tmp_path / "signed.xml"

    result = runner.invoke(app, ["sign", str(DCC_330), *options, "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "B-B" in result.output
    signed = out.read_bytes()
    anchor = load_or_create_hub_ca(hub.settings).certificate
    verify_with_signxml(signed, anchor=anchor, tmp_path=tmp_path)
    verify_with_xmlsec(signed, anchor=anchor)
    response = hub.client.post(
        "/api/v1/certificates", content=signed, headers={**headers, "Content-Type": "application/xml"}
    )
    assert response.status_code == 201, response.text


def test_cli_with_tsa_signs_b_t(hub, tmp_path, monkeypatch):
    _, options = _enrolled_lab_files(hub, tmp_path)

    def post(url, *, content, headers, timeout):
        return hub.client.post("/api/v1/tsa", content=content, headers=headers)

    monkeypatch.setattr("signing.timestamps.httpx.post", post)
    out = tmp_path / "signed.xml"

    result = runner.invoke(
        app, ["sign", str(DCC_330), *options, "--tsa", "https://hub.example/api/v1/tsa", "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    signature = etree.fromstring(out.read_bytes()).find("ds:Signature", NS)
    token = base64.b64decode(signature.findtext(".//xades:EncapsulatedTimeStamp", namespaces=NS))
    anchors = [load_or_create_hub_ca(hub.settings).certificate]
    verdict = verify_timestamp_token(token, signed_data=signature_value_c14n(signature), trust=TrustContext(anchors))
    assert verdict.valid, verdict.reason


def test_cli_writes_beside_the_input_by_default(hub, tmp_path):
    _, options = _enrolled_lab_files(hub, tmp_path)
    document = tmp_path / "certificate.xml"
    document.write_bytes(DCC_330.read_bytes())

    result = runner.invoke(app, ["sign", str(document), *options])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "certificate.signed.xml").is_file()


def test_cli_refuses_a_dcc_without_signature_slot(hub, tmp_path):
    _, options = _enrolled_lab_files(hub, tmp_path)

    result = runner.invoke(app, ["sign", str(DCC_311), *options, "--out", str(tmp_path / "x.xml")])

    assert result.exit_code == 1
    assert "3.1.1" in result.output
    assert not (tmp_path / "x.xml").exists()


def test_cli_reports_an_unreadable_key(hub, tmp_path):
    _, options = _enrolled_lab_files(hub, tmp_path)
    (tmp_path / "lab.key").write_text("not a key")

    result = runner.invoke(app, ["sign", str(DCC_330), *options])

    assert result.exit_code == 2
    assert "private key" in result.output
