"""The hub CA: certificate profiles, CSR enrolment bound to a lab, weak keys, CRLs, trust context."""

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

from certificates.service import Actor
from organizations.models import Organization
from signing import service
from signing.models import RevocationReason
from signing.pki import (
    DOCUMENT_SIGNING_EKU,
    CertificateAuthorityError,
    HubCertificateAuthority,
    InvalidCsrError,
    WeakKeyError,
    build_crl,
    create_root_ca,
    fingerprint_sha256,
    forget_cached_hub_cas,
    issue_from_csr,
    load_or_create_hub_ca,
    organization_identifier_of,
)
from storage.database import session_scope
from storage.settings import Settings
from tests.signing.pki_helpers import MASTER_KEY, make_csr, make_lab


@pytest.fixture(scope="module")
def ca() -> HubCertificateAuthority:
    return create_root_ca(common_name="Test Hub Root CA")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage:
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


# --- profiles and CSR enrolment -------------------------------------------------------------------------------


def test_csr_enrolment_binds_the_labs_accreditation_number(ca):
    csr_pem, key = make_csr(common_name="Signer of Lab A")
    certificate = issue_from_csr(
        ca, csr_pem=csr_pem, organization_identifier="D-K-12345-01-00", organization_name="Lab A"
    )
    assert organization_identifier_of(certificate) == "D-K-12345-01-00"
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Lab A"
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Signer of Lab A"
    assert certificate.public_key() == key.public_key()
    certificate.verify_directly_issued_by(ca.certificate)
    usage = _key_usage(certificate)
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [DOCUMENT_SIGNING_EKU]
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_csr_claiming_another_labs_organization_identifier_is_overridden(ca):
    csr_pem, _ = make_csr(organization_identifier="D-K-99999-01-00", organization="Lab B (the victim)")
    certificate = issue_from_csr(
        ca, csr_pem=csr_pem, organization_identifier="D-K-12345-01-00", organization_name="Lab A"
    )
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == "D-K-12345-01-00"
    assert len(certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)) == 1
    assert [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["Lab A"]


def test_csr_requested_extensions_are_ignored(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("wants to be a CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate = issue_from_csr(
        ca, csr_pem=csr.public_bytes(serialization.Encoding.PEM), organization_identifier="D-K-1"
    )
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize(
    "key_factory",
    [
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), id="rsa-1024"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP192R1()), id="p-192"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP224R1()), id="p-224"),
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
    ],
)
def test_weak_or_unusable_keys_are_refused(ca, key_factory):
    key = key_factory()
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name("weak")).sign(key, algorithm)
    with pytest.raises(WeakKeyError):
        issue_from_csr(ca, csr_pem=csr.public_bytes(serialization.Encoding.PEM), organization_identifier="D-K-1")


def test_rsa_2048_and_p384_keys_are_accepted(ca):
    for key in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        csr_pem, _ = make_csr(key=key)
        certificate = issue_from_csr(ca, csr_pem=csr_pem, organization_identifier="D-K-1")
        assert certificate.public_key() == key.public_key()


def _sha1_signed_csr() -> bytes:
    # cryptography refuses to create SHA-1 signatures in X.509 objects, so the request is assembled by hand.
    key = ec.generate_private_key(ec.SECP256R1())
    template = asn1_csr.CertificationRequest.load(
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("old"))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    info = template["certification_request_info"]
    signature = key.sign(info.dump(), ec.ECDSA(hashes.SHA1()))
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": "sha1_ecdsa"},
            "signature": signature,
        }
    )
    return request.dump()


def test_csr_signed_with_sha1_is_refused(ca):
    with pytest.raises(WeakKeyError, match="SHA1"):
        issue_from_csr(ca, csr_pem=_sha1_signed_csr(), organization_identifier="D-K-1")


def test_csr_whose_signature_does_not_verify_is_refused(ca):
    csr_pem, _ = make_csr()
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit inside the signature value
    with pytest.raises(InvalidCsrError, match="does not verify"):
        issue_from_csr(ca, csr_pem=bytes(der), organization_identifier="D-K-1")


def test_unreadable_csr_is_refused(ca):
    with pytest.raises(InvalidCsrError):
        issue_from_csr(
            ca,
            csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            organization_identifier="D-K-1",
        )


def test_tsa_profile_has_only_a_critical_time_stamping_eku(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca.issue_certificate(subject=_name("qihub TSA"), public_key=key.public_key(), profile="tsa")
    extension = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert extension.critical is True
    assert list(extension.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert _key_usage(certificate).digital_signature and not _key_usage(certificate).content_commitment


def test_log_profile_signs_without_eku(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca.issue_certificate(subject=_name("qihub log"), public_key=key.public_key(), profile="log")
    assert _key_usage(certificate).digital_signature
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_issued_certificates_never_outlive_the_ca(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca.issue_certificate(
        subject=_name("long"),
        public_key=key.public_key(),
        profile="signer",
        not_after=ca.certificate.not_valid_after_utc + timedelta(days=365),
    )
    assert certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


# --- CRL ------------------------------------------------------------------------------------------------------


def test_revoked_certificate_appears_in_the_crl_with_its_reason(ca):
    csr_pem, _ = make_csr()
    revoked = issue_from_csr(ca, csr_pem=csr_pem, organization_identifier="D-K-1")
    kept = issue_from_csr(ca, csr_pem=make_csr()[0], organization_identifier="D-K-1")
    now = datetime.now(UTC).replace(microsecond=0)
    crl_der = build_crl(
        ca, revoked=[(revoked.serial_number, now, "keyCompromise")], next_update=now + timedelta(days=1)
    ).public_bytes(serialization.Encoding.DER)

    crl = x509.load_der_x509_crl(crl_der)
    assert crl.is_signature_valid(ca.certificate.public_key())
    assert crl.issuer == ca.certificate.subject
    entry = crl.get_revoked_certificate_by_serial_number(revoked.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == now
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None


# --- the hub's own CA -----------------------------------------------------------------------------------------


def test_hub_ca_is_created_under_the_pki_dir_with_an_encrypted_0600_key(tmp_path):
    settings = Settings(data_dir=tmp_path, master_key=MASTER_KEY)
    ca = load_or_create_hub_ca(settings)
    key_file = tmp_path / "pki" / "hub-ca.key.pem"
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey) and ca.private_key.curve.key_size >= 256
    usage = _key_usage(ca.certificate)
    assert usage.key_cert_sign and usage.crl_sign
    assert load_or_create_hub_ca(settings) is ca  # cached per pki dir

    forget_cached_hub_cas()
    reloaded = load_or_create_hub_ca(settings)
    assert reloaded.fingerprint == ca.fingerprint

    forget_cached_hub_cas()
    with pytest.raises(CertificateAuthorityError, match="master key"):
        load_or_create_hub_ca(Settings(data_dir=tmp_path, master_key="another-master-key-0123456789"))


def test_hub_ca_without_master_key_is_plain_but_owner_only(tmp_path):
    ca = load_or_create_hub_ca(Settings(data_dir=tmp_path))
    key_file = tmp_path / "pki" / "hub-ca.key.pem"
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ca.crl_url == "http://127.0.0.1:8000/api/v1/pki/crl"


def test_configured_ca_files_are_used(tmp_path):
    external = create_root_ca(common_name="Operator CA")
    cert_file, key_file = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert_file.write_bytes(external.certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        external.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    settings = Settings(data_dir=tmp_path / "data", ca_cert_file=cert_file, ca_key_file=key_file)
    assert load_or_create_hub_ca(settings).fingerprint == external.fingerprint
    assert not (tmp_path / "data" / "pki" / "hub-ca.pem").exists()


def test_configured_ca_with_a_key_of_another_ca_is_refused(tmp_path):
    external, other = create_root_ca(common_name="Operator CA"), create_root_ca(common_name="Other CA")
    cert_file, key_file = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert_file.write_bytes(external.certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        other.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(CertificateAuthorityError, match="does not belong"):
        load_or_create_hub_ca(Settings(data_dir=tmp_path, ca_cert_file=cert_file, ca_key_file=key_file))


# --- registry and trust context (on SQLite and PostgreSQL) ------------------------------------------------------


def _actor(hub, organization_id: str) -> Actor:
    with session_scope(hub.engine) as session:
        organization = session.get(Organization, organization_id)
        assert organization is not None
        return Actor(organization=organization)


def _pyhanko_validate(context, certificate: x509.Certificate):
    def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))

    validation_context = ValidationContext(
        trust_roots=[asn1(anchor) for anchor in context.anchors],
        crls=[crl.public_bytes(serialization.Encoding.DER) for crl in context.crls],
        revocation_mode="hard-fail",  # a missing CRL would fail too: the context must carry it
        allow_fetching=False,
    )
    validator = CertificateValidator(asn1(certificate), validation_context=validation_context)
    return asyncio.run(validator.async_validate_usage({"digital_signature", "non_repudiation"}))


def test_trust_context_lets_pyhanko_validate_an_enrolled_certificate_until_it_is_revoked(hub):
    lab_id, _ = make_lab(hub, "Lab A", "D-K-12345-01-00")
    other_id, _ = make_lab(hub, "Lab B", "D-K-99999-01-00")
    actor = _actor(hub, lab_id)
    with session_scope(hub.engine) as session:
        row = service.enrol_signing_certificate(
            session, actor=actor, organization_id=lab_id, csr_pem=make_csr()[0], settings=hub.settings
        )
    certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())

    with session_scope(hub.engine) as session:
        context = service.trust_context_for(session, settings=hub.settings)
    path = _pyhanko_validate(context, certificate)
    assert path.leaf.sha256_fingerprint.replace(" ", "").lower() == fingerprint_sha256(certificate)
    lab = context.lab_of_certificate(certificate)
    assert lab is not None and lab.organization_id == lab_id
    assert lab.accreditation_number == "D-K-12345-01-00"
    assert fingerprint_sha256(certificate) in lab.registered_fingerprints
    assert context.revoked_fingerprints == {}

    # An unregistered certificate claiming lab B's number is bound to lab B, never to lab A.
    claimed = load_or_create_hub_ca(hub.settings).issue_certificate(
        subject=_name("stray"),
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        profile="signer",
        organization_identifier="D-K-99999-01-00",
    )
    assert context.lab_of_certificate(claimed).organization_id == other_id
    assert context.lab_of_certificate(create_root_ca(common_name="nobody").certificate) is None

    with session_scope(hub.engine) as session:
        service.revoke_signing_certificate(
            session,
            actor=actor,
            organization_id=lab_id,
            certificate_id=row.id,
            reason=RevocationReason.key_compromise,
        )
        context = service.trust_context_for(session, settings=hub.settings)
    with pytest.raises(RevokedError):
        _pyhanko_validate(context, certificate)
    assert fingerprint_sha256(certificate) in context.revoked_fingerprints


def test_trust_context_includes_external_anchors_and_their_crls(hub, admin_headers):
    external = create_root_ca(common_name="Accreditation Body Seal CA")
    external.crl_url = "http://accreditation-body.example/seal.crl"  # in the seal: what it is checked against
    lab_id, _ = make_lab(hub, "Lab A", "D-K-12345-01-00")
    seal = external.issue_certificate(
        subject=_name("Lab A seal"),
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        profile="signer",
        organization_identifier="D-K-12345-01-00",
    )
    now = datetime.now(UTC)
    crl_pem = build_crl(
        external, revoked=[(seal.serial_number, now, None)], next_update=now + timedelta(days=7)
    ).public_bytes(serialization.Encoding.PEM)
    admin = _actor(hub, _admin_id(hub))
    with session_scope(hub.engine) as session:
        service.add_trust_anchor(
            session,
            actor=admin,
            name="Accreditation body",
            certificate_pem_text=external.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            crl_pem=crl_pem.decode(),
        )
        context = service.trust_context_for(session, settings=hub.settings)
    assert external.fingerprint in {fingerprint_sha256(anchor) for anchor in context.anchors}
    assert load_or_create_hub_ca(hub.settings).fingerprint in {fingerprint_sha256(a) for a in context.anchors}
    assert any(crl.issuer == external.certificate.subject for crl in context.crls)
    with pytest.raises(RevokedError):
        _pyhanko_validate(context, seal)  # the external CRL lists it
    assert context.lab_of_certificate(seal).organization_id == lab_id


def _admin_id(hub) -> str:
    from sqlmodel import select

    from organizations.models import OrganizationKind

    with session_scope(hub.engine) as session:
        return session.exec(select(Organization).where(Organization.kind == OrganizationKind.admin)).one().id
