"""The hub's RFC 3161 TSA, its client and token verification."""

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import algos, tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from signing.pki import build_crl, load_or_create_hub_ca
from signing.timestamps import (
    HUB_TSA_POLICY_OID,
    TSA_CERT_FILENAME,
    TSA_KEY_FILENAME,
    TimeStampResp,
    TimestampUnavailableError,
    build_timestamp_request,
    forget_cached_hub_tsas,
    load_or_create_hub_tsa,
    request_timestamp,
    token_info,
    verify_timestamp_token,
)
from signing.trust import TrustContext
from storage.settings import Settings
from tests.signing.signing_helpers import make_ca

OPENSSL = shutil.which("openssl")


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def tsa(settings):
    return load_or_create_hub_tsa(settings)


@pytest.fixture
def hub_trust(settings):
    return TrustContext(anchors=[load_or_create_hub_ca(settings).certificate])


def _request(*, algorithm: str = "sha256", digest: bytes | None = None, **fields: object) -> bytes:
    imprint = digest if digest is not None else hashlib.new(algorithm, b"data").digest()
    return tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
                "hashed_message": imprint,
            },
            **fields,
        }
    ).dump()


def _status(response_der: bytes) -> tuple[str, set[str]]:
    status = TimeStampResp.load(response_der)["status"]
    return status["status"].native, status["fail_info"].native or set()


def test_tsa_certificate_is_issued_by_the_hub_ca_with_critical_timestamping_eku(settings, tsa):
    ca = load_or_create_hub_ca(settings)
    tsa.certificate.verify_directly_issued_by(ca.certificate)
    eku = tsa.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert (settings.resolved_pki_dir / TSA_CERT_FILENAME).is_file()


def test_tsa_key_and_certificate_persist_across_restarts(settings, tsa):
    forget_cached_hub_tsas()

    reloaded = load_or_create_hub_tsa(settings)

    assert reloaded.certificate == tsa.certificate


def test_tsa_key_is_encrypted_with_the_master_key_when_one_is_set(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", master_key="a master key of some length")
    tsa = load_or_create_hub_tsa(settings)
    forget_cached_hub_tsas()

    reloaded = load_or_create_hub_tsa(settings)

    key_file = settings.resolved_pki_dir / TSA_KEY_FILENAME
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o077 == 0
    assert reloaded.certificate == tsa.certificate


def test_local_token_verifies_against_the_hub_ca(tsa, hub_trust):
    before = datetime.now(UTC) - timedelta(seconds=2)

    token = request_timestamp(b"signature value", tsa=tsa)
    verdict = verify_timestamp_token(token, signed_data=b"signature value", trust=hub_trust)

    assert verdict.valid, verdict.reason
    assert before <= verdict.time <= datetime.now(UTC) + timedelta(seconds=2)
    assert "Time-Stamping Authority" in verdict.tsa_name


def test_token_does_not_verify_for_other_data(tsa, hub_trust):
    token = request_timestamp(b"signature value", tsa=tsa)

    verdict = verify_timestamp_token(token, signed_data=b"another value", trust=hub_trust)

    assert not verdict.valid
    assert verdict.reason


def test_token_does_not_verify_against_another_anchor(tsa):
    token = request_timestamp(b"signature value", tsa=tsa)

    verdict = verify_timestamp_token(
        token, signed_data=b"signature value", trust=TrustContext(anchors=[make_ca().certificate])
    )

    assert not verdict.valid


def test_token_without_trust_anchors_is_not_valid(tsa):
    token = request_timestamp(b"x", tsa=tsa)

    assert not verify_timestamp_token(token, signed_data=b"x", trust=TrustContext()).valid


def test_token_of_a_revoked_tsa_certificate_is_not_valid(settings, tsa, hub_trust):
    token = request_timestamp(b"x", tsa=tsa)
    ca = load_or_create_hub_ca(settings)
    now = datetime.now(UTC)
    crl = build_crl(ca, revoked=[(tsa.certificate.serial_number, now, "keyCompromise")], next_update=now + timedelta(1))

    verdict = verify_timestamp_token(token, signed_data=b"x", trust=TrustContext(anchors=hub_trust.anchors, crls=[crl]))

    assert not verdict.valid
    assert "revoked" in verdict.reason


def test_corrupted_token_is_reported_not_raised(tsa, hub_trust):
    token = bytearray(request_timestamp(b"x", tsa=tsa))
    token[len(token) // 2] ^= 0xFF

    verdict = verify_timestamp_token(bytes(token), signed_data=b"x", trust=hub_trust)

    assert not verdict.valid
    assert not verify_timestamp_token(b"garbage", signed_data=b"x", trust=hub_trust).valid


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_tsa_answers_an_openssl_request_that_openssl_verifies(tmp_path, settings, tsa):
    data = tmp_path / "data.bin"
    data.write_bytes(b"calibration certificate")
    query = subprocess.run(
        [OPENSSL, "ts", "-query", "-data", str(data), "-sha256", "-cert"], capture_output=True, check=True
    ).stdout
    reply = tmp_path / "reply.tsr"

    reply.write_bytes(tsa.issue_timestamp_response(query))

    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(load_or_create_hub_ca(settings).certificate.public_bytes(serialization.Encoding.PEM))
    verified = subprocess.run(
        [OPENSSL, "ts", "-verify", "-data", str(data), "-in", str(reply), "-CAfile", str(ca_file)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert "Verification: OK" in verified.stdout


def test_tsa_grants_asn1crypto_request_echoing_nonce_policy_and_imprint(tsa):
    digest = hashlib.sha384(b"data").digest()

    response = TimeStampResp.load(tsa.issue_timestamp_response(_request(algorithm="sha384", nonce=424242)))

    assert response["status"]["status"].native == "granted"
    info = token_info(response["time_stamp_token"].dump())
    assert info["nonce"].native == 424242
    assert info["policy"].native == HUB_TSA_POLICY_OID
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha384"
    assert info["message_imprint"]["hashed_message"].native == digest


def test_tsa_serial_numbers_are_unique(tsa):
    serials = {token_info(request_timestamp(f"data {n}".encode(), tsa=tsa))["serial_number"].native for n in range(20)}

    assert len(serials) == 20


def test_tsa_includes_its_certificate_only_when_asked(tsa):
    without = TimeStampResp.load(tsa.issue_timestamp_response(_request(cert_req=False)))
    with_cert = TimeStampResp.load(tsa.issue_timestamp_response(_request(cert_req=True)))

    assert len(without["time_stamp_token"]["content"]["certificates"]) == 0
    assert len(with_cert["time_stamp_token"]["content"]["certificates"]) == 1


@pytest.mark.parametrize(
    ("request_der", "failure"),
    [
        (b"garbage", "bad_data_format"),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (_request(algorithm="sha1"), "bad_alg"),
        (_request(algorithm="md5"), "bad_alg"),
        (_request(digest=b"\x00" * 20), "bad_data_format"),
        (_request(req_policy="1.2.3.4"), "unaccepted_policy"),
        (_request(version="v2"), "bad_request"),
    ],
    ids=["garbage", "truncated", "sha1", "md5", "short-imprint", "foreign-policy", "version-2"],
)
def test_tsa_rejects_bad_requests_with_a_rejection_status(tsa, request_der, failure):
    status, fail_info = _status(tsa.issue_timestamp_response(request_der))

    assert status == "rejection"
    assert fail_info == {failure}


def test_client_refuses_a_rejected_request(tsa, monkeypatch):
    monkeypatch.setattr(
        "signing.timestamps.build_timestamp_request",
        lambda data: (_request(algorithm="sha1"), 1),
    )

    with pytest.raises(TimestampUnavailableError, match="rejection"):
        request_timestamp(b"x", tsa=tsa)


def test_client_refuses_a_reply_for_another_request(tsa, monkeypatch):
    other_request, _ = build_timestamp_request(b"other data", nonce=7)
    monkeypatch.setattr("signing.timestamps.build_timestamp_request", lambda data: (other_request, 7))

    with pytest.raises(TimestampUnavailableError, match="other data"):
        request_timestamp(b"x", tsa=tsa)


def test_client_without_any_tsa_is_refused():
    with pytest.raises(TimestampUnavailableError):
        request_timestamp(b"x")
