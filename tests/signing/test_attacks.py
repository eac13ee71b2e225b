"""Attacks on signed DCCs, generated with T3's `sign_dcc` (and signxml for shapes the profile never signs).

Keys and certificates are made here with `cryptography`; the timestamps come from the hub's own TSA.
"""

import base64
import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import SignatureMethod

from signing.policy import Constraint, load_policy
from signing.report import CheckResult, Indication, SignatureScope, SubIndication, VerificationReport
from signing.timestamps import load_or_create_hub_tsa, timestamper_for
from signing.trust import LabIdentity, TrustContext
from signing.verification import verify_document
from signing.xades import sign_dcc
from storage.settings import Settings
from tests.paths import REPO_ROOT

DCC = (REPO_ROOT / "demo" / "certificates" / "dcclib-valid.xml").read_bytes()
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
DCC_NS = "https://ptb.de/dcc"
NOW = datetime.now(UTC)


@dataclass
class Authority:
    """A CA made for one test."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def _name(common_name: str, organization: str = "qihub attack tests", identifier: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if identifier:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, identifier))
    return x509.Name(attributes)


def make_ca(common_name: str = "Attack Test Root CA") -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=3650))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


def issue_signer(
    ca: Authority,
    *,
    common_name: str = "Lab signer",
    identifier: str | None = None,
    key=None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[object, x509.Certificate]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, identifier=identifier))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return key, certificate


def verify(data: bytes, trust: TrustContext, **kwargs) -> VerificationReport:
    return verify_document(data, trust=trust, policy=load_policy(), **kwargs)


def result(report: VerificationReport, constraint: Constraint) -> CheckResult:
    return report.check(constraint).result


@pytest.fixture(scope="module")
def pki():
    ca = make_ca()
    key, certificate = issue_signer(ca)
    return ca, key, certificate, TrustContext(anchors=[ca.certificate])


def test_a_genuine_signature_passes(pki):
    ca, key, certificate, trust = pki
    report = verify(sign_dcc(DCC, private_key=key, certificate_chain=[certificate, ca.certificate]), trust)
    assert report.indication == Indication.TOTAL_PASSED
    assert report.signature_format == "XAdES-B-B"


def test_lab_a_certificate_signing_for_lab_b_is_refused(pki):
    ca, key, certificate, _ = pki
    lab_a = LabIdentity(organization_id="lab-a", name="Lab A", accreditation_number="D-K-1")
    lab_b = LabIdentity(organization_id="lab-b", name="Lab B", accreditation_number="D-K-2")
    trust = TrustContext(anchors=[ca.certificate], lab_of_certificate=lambda c: lab_a if c == certificate else None)
    signed = sign_dcc(DCC, private_key=key, certificate_chain=[certificate])
    report = verify(signed, trust, expected_lab=lab_b)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.SIG_CONSTRAINTS_FAILURE,
    )
    assert "Lab A" in report.check(Constraint.lab_binding).message
    assert verify(signed, trust, expected_lab=lab_a).indication == Indication.TOTAL_PASSED


def test_a_signer_carrying_the_labs_accreditation_number_is_bound_to_it():
    ca = make_ca()
    key, certificate = issue_signer(ca, identifier="D-K-15000-01-00")
    lab = LabIdentity(organization_id="lab", name="Lab", accreditation_number="D-K-15000-01-00")
    report = verify(
        sign_dcc(DCC, private_key=key, certificate_chain=[certificate]),
        TrustContext([ca.certificate]),
        expected_lab=lab,
    )
    assert result(report, Constraint.lab_binding_known) == CheckResult.PASSED


def test_an_attacker_root_inside_keyinfo_is_not_a_trust_anchor(pki):
    *_, trust = pki
    attacker = make_ca("Attacker Root CA")
    key, certificate = issue_signer(attacker)
    report = verify(sign_dcc(DCC, private_key=key, certificate_chain=[certificate, attacker.certificate]), trust)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
    assert result(report, Constraint.crypto) == CheckResult.PASSED


def test_a_same_name_attacker_ca_does_not_chain_to_the_real_one(pki):
    ca, *_, trust = pki
    impostor = make_ca(ca.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    assert impostor.certificate.subject == ca.certificate.subject
    key, certificate = issue_signer(impostor)
    report = verify(sign_dcc(DCC, private_key=key, certificate_chain=[certificate, impostor.certificate]), trust)
    assert report.sub_indication == SubIndication.NO_CERTIFICATE_CHAIN_FOUND


def test_a_back_dated_signing_time_without_timestamp_proves_nothing(pki):
    ca, *_, trust = pki
    key, certificate = issue_signer(
        ca, not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2021, 1, 1, tzinfo=UTC)
    )
    signed = sign_dcc(
        DCC, private_key=key, certificate_chain=[certificate], signing_time=datetime(2020, 6, 1, tzinfo=UTC)
    )
    report = verify(signed, trust)
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.OUT_OF_BOUNDS_NO_POE,
    )
    assert report.claimed_signing_time == datetime(2020, 6, 1, tzinfo=UTC)
    assert report.best_signature_time == report.validation_time  # the claim is not a proof
    # Asked explicitly about a time inside the validity, the same signature passes.
    assert verify(signed, trust, at=datetime(2020, 7, 1, tzinfo=UTC)).indication == Indication.TOTAL_PASSED


@pytest.fixture(scope="module")
def tsa(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("tsa"))
    authority = load_or_create_hub_tsa(settings)
    return timestamper_for(settings), authority.chain[0]


def test_a_valid_timestamp_is_the_proof_that_keeps_an_expired_signature_valid(pki, tsa):
    ca, *_ = pki
    timestamper, tsa_root = tsa
    key, certificate = issue_signer(ca, not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(hours=1))
    signed = sign_dcc(DCC, private_key=key, certificate_chain=[certificate], timestamper=timestamper)
    trust = TrustContext(anchors=[ca.certificate, tsa_root])
    later = NOW + timedelta(hours=3)  # the signing certificate has expired by then
    report = verify(signed, trust, at=later)
    assert report.signature_format == "XAdES-B-T"
    assert report.indication == Indication.TOTAL_PASSED, [c.message for c in report.checks if c.result == "FAILED"]
    assert report.timestamp.valid and report.best_signature_time < certificate.not_valid_after_utc


def test_a_transplanted_timestamp_is_no_proof_of_time(pki, tsa):
    ca, *_ = pki
    timestamper, tsa_root = tsa
    key, certificate = issue_signer(ca, not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(hours=1))
    donor = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=[certificate], timestamper=timestamper))
    victim = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=[certificate]))
    stamp = donor.find(f".//{{{XADES}}}UnsignedProperties")
    victim.find(f".//{{{XADES}}}QualifyingProperties").append(copy.deepcopy(stamp))
    trust = TrustContext(anchors=[ca.certificate, tsa_root])
    report = verify(etree.tostring(victim), trust, at=NOW + timedelta(hours=3))
    assert report.timestamp is not None and not report.timestamp.valid
    assert result(report, Constraint.timestamp) == CheckResult.WARNING
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.OUT_OF_BOUNDS_NO_POE,
    )


def test_a_parallel_forged_signature_is_refused(pki):
    _ca, key, certificate, trust = pki
    root = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=[certificate]))
    forged = copy.deepcopy(root[-1])
    value = forged.find(f"{{{DS}}}SignatureValue")
    value.text = base64.b64encode(b"\0" * 64).decode()
    root.insert(len(root) - 1, forged)
    report = verify(etree.tostring(root), trust)
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert "2 ds:Signature" in report.check(Constraint.format).message


def test_a_signature_that_is_not_the_last_child_of_a_dcc_is_refused(pki):
    _ca, key, certificate, trust = pki
    root = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=[certificate]))
    root.insert(0, root[-1])  # moves the signature to the front
    report = verify(etree.tostring(root), trust)
    assert report.sub_indication == SubIndication.FORMAT_FAILURE


def _sign_id_reference(key, certificate) -> etree._Element:
    """A plain XMLDSig over one Id-carrying element only (signxml accepts this shape)."""
    root = etree.fromstring(DCC)
    administrative = root.find(f"{{{DCC_NS}}}administrativeData")
    administrative.set("Id", "signed-part")
    signer = XMLSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256)
    return signer.sign(root, key=key, cert=[certificate], reference_uri="#signed-part")


def test_id_based_wrapping_is_partial_even_though_the_crypto_holds(pki):
    _ca, key, certificate, trust = pki
    root = _sign_id_reference(key, certificate)
    # The attacker keeps the signed element (so every digest still matches) and rewrites the rest.
    original = root.find(f"{{{DCC_NS}}}administrativeData")
    wrapper = etree.Element(f"{{{DCC_NS}}}hidden")
    wrapper.append(copy.deepcopy(original))
    root.insert(len(root) - 1, wrapper)  # same namespace context: its canonical form, and digest, do not change
    original.attrib.pop("Id")
    original.find(f".//{{{DCC_NS}}}uniqueIdentifier").text = "FORGED-0001"
    report = verify(etree.tostring(root), trust)
    assert result(report, Constraint.crypto) == CheckResult.PASSED  # signxml alone would accept it
    assert report.indication != Indication.TOTAL_PASSED
    assert report.signature_scope == SignatureScope.PARTIAL
    assert report.sub_indication == SubIndication.SIGNED_DATA_NOT_FOUND


def test_a_comment_split_inside_a_value_is_refused(pki):
    _ca, key, certificate, trust = pki
    signed = sign_dcc(DCC, private_key=key, certificate_chain=[certificate])
    root = etree.fromstring(signed)
    identifier = root.find(f".//{{{DCC_NS}}}uniqueIdentifier")
    text = identifier.text
    identifier.text = text[:3]
    comment = etree.Comment(" split ")
    comment.tail = text[3:]
    identifier.append(comment)
    tampered = etree.tostring(root)
    report = verify(tampered, trust)
    assert result(report, Constraint.crypto) == CheckResult.PASSED  # comments are outside C14N: crypto holds
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
    assert "comment splits" in report.check(Constraint.unsigned_content).message


def test_reformatting_after_signing_breaks_the_digest(pki):
    _ca, key, certificate, trust = pki
    root = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=[certificate]))
    etree.indent(root, space="    ")
    report = verify(etree.tostring(root), trust)
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


def test_a_1024_bit_rsa_signer_is_refused_by_the_policy():
    ca = make_ca()
    key, certificate = issue_signer(ca, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    root = etree.fromstring(DCC)
    signed = XMLSigner(signature_algorithm=SignatureMethod.RSA_SHA256).sign(root, key=key, cert=[certificate])
    report = verify(etree.tostring(signed), TrustContext([ca.certificate]))
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
    )
    assert "1024 bits" in report.check(Constraint.algorithms).message
