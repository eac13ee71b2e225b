"""The signed DCCs of the shared corpus, each with the test PKI it was signed under, at a time inside validity."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from signing.policy import Constraint, load_policy
from signing.report import CheckResult, Indication, SignatureScope, SubIndication, VerificationReport
from signing.verification import trust_from_pem, verify_document
from tests.paths import DCC_CORPUS

PYDCC = DCC_CORPUS / "siemens-pydcc"
DCCLIB = DCC_CORPUS / "lutaml-dcc" / "fixtures" / "dcclib"
PYDCC_TRUST = trust_from_pem((PYDCC / "trusted_certs" / name).read_bytes() for name in ("root.crt", "sub.crt"))
DCCLIB_TRUST = trust_from_pem([(DCCLIB / "certs" / "ca.pem").read_bytes()])
# The dcclib test certificates are valid 2026-01-06 to 2027-01-06.
DCCLIB_TIME = datetime(2026, 6, 1, tzinfo=UTC)


def _claimed_signing_time(path: Path) -> datetime:
    text = etree.parse(str(path)).findtext(".//{http://uri.etsi.org/01903/v1.3.2#}SigningTime")
    assert text, f"{path.name} has no SigningTime"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _verify_pydcc(name: str, *, at: datetime | None = None) -> VerificationReport:
    path = PYDCC / "examples" / name
    moment = at or _claimed_signing_time(path) + timedelta(minutes=1)
    return verify_document(path.read_bytes(), trust=PYDCC_TRUST, policy=load_policy(), at=moment)


def _result(report: VerificationReport, constraint: Constraint) -> CheckResult:
    check = report.check(constraint)
    assert check is not None
    return check.result


def test_the_corpus_holds_the_signed_examples():
    assert len(sorted((PYDCC / "examples").glob("*signed*.xml"))) == 7
    assert len(sorted(DCCLIB.glob("*signature*.xml"))) == 2


@pytest.mark.parametrize(
    "name",
    ["dcc_gp_temperature_typical_v12_v3.2.0_signed.xml", "dcc_gp_temperature_typical_v12_v3.2.0_signed_lt.xml"],
)
def test_valid_pydcc_signatures_pass_inside_validity(name):
    report = _verify_pydcc(name)
    assert report.indication == Indication.TOTAL_PASSED, [c.message for c in report.checks if c.result == "FAILED"]
    assert report.signature_scope == SignatureScope.FULL
    assert report.signer is not None and report.signer.subject.startswith("CN=Calibration Lab")
    assert _result(report, Constraint.dcc_schema) == CheckResult.PASSED


def test_the_lt_signature_is_checked_against_its_embedded_revocation_data():
    report = _verify_pydcc("dcc_gp_temperature_typical_v12_v3.2.0_signed_lt.xml")
    assert report.signature_format == "XAdES-B-LT"
    assert _result(report, Constraint.revocation_data) == CheckResult.PASSED
    # The DFN timestamp chains to T-TeleSec, which these trust anchors do not hold: no proof of time.
    assert _result(report, Constraint.timestamp) == CheckResult.WARNING
    assert report.best_signature_time == report.validation_time


def test_the_revoked_signer_is_caught_in_the_embedded_crl():
    report = _verify_pydcc("dcc_gp_temperature_typical_v12_v3.2.0_signed_lt_revoked.xml")
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.REVOKED)
    assert _result(report, Constraint.crypto) == CheckResult.PASSED  # intact, yet revoked
    assert "revoked" in report.check(Constraint.revocation).message


@pytest.mark.parametrize(
    "name",
    [
        "dcc_gp_temperature_typical_v12_signed_manipulated.xml",
        "dcc_gp_temperature_typical_v12_v3.2.0_signed_manipulated.xml",
    ],
)
def test_manipulated_pydcc_documents_fail_with_hash_failure(name):
    report = _verify_pydcc(name)
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


def test_a_signed_dcc_311_passes_but_the_schema_check_warns_that_311_forbids_signatures():
    # Decision: the signature is intact and trusted, so the signature verdict is TOTAL_PASSED; the DCC 3.1.1
    # schema has no place for ds:Signature, which the `dcc-schema` check reports (WARN in the default
    # policy; a stricter policy sets it to FAIL). The registry refuses such a document on submission anyway.
    report = _verify_pydcc("dcc_gp_temperature_typical_v12_signed.xml")
    assert report.indication == Indication.TOTAL_PASSED
    schema = report.check(Constraint.dcc_schema)
    assert schema.result == CheckResult.WARNING
    assert "3.1.1 does not allow a ds:Signature" in schema.message


def test_the_reformatted_siliziumkugel_signature_fails():
    report = _verify_pydcc("signed_siliziumkugel.xml")
    assert report.indication != Indication.TOTAL_PASSED
    assert report.signature_scope == SignatureScope.PARTIAL
    assert "XPath Filter 2.0" in report.check(Constraint.signature_scope).message


def test_without_a_validation_time_the_expired_test_certificates_have_no_proof_of_existence():
    report = _verify_pydcc("dcc_gp_temperature_typical_v12_v3.2.0_signed.xml", at=datetime.now(UTC))
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.OUT_OF_BOUNDS_NO_POE,
    )


def test_dcclib_valid_signature_passes():
    report = verify_document(
        (DCCLIB / "valid_signature.xml").read_bytes(), trust=DCCLIB_TRUST, policy=load_policy(), at=DCCLIB_TIME
    )
    assert report.indication == Indication.TOTAL_PASSED
    assert report.signature_format == "XMLDSig"
    # Its certificate names only TLS client authentication: reported, not fatal under the default policy.
    assert _result(report, Constraint.extended_key_usage) == CheckResult.WARNING


def test_dcclib_invalid_signature_fails_with_hash_failure():
    report = verify_document(
        (DCCLIB / "invalid_signature.xml").read_bytes(), trust=DCCLIB_TRUST, policy=load_policy(), at=DCCLIB_TIME
    )
    assert (report.indication, report.sub_indication) == (Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


def test_a_signature_verifies_only_against_the_given_anchors():
    report = verify_document(
        (DCCLIB / "valid_signature.xml").read_bytes(), trust=PYDCC_TRUST, policy=load_policy(), at=DCCLIB_TIME
    )
    assert (report.indication, report.sub_indication) == (
        Indication.INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )
