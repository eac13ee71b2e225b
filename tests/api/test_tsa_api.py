"""POST /api/v1/tsa: the hub's public RFC 3161 Time-Stamping Authority over HTTP."""

import hashlib
import shutil
import subprocess

import httpx
import pytest
from asn1crypto import algos, tsp

from signing.pki import load_or_create_hub_ca
from signing.timestamps import (
    TimeStampResp,
    TimestampUnavailableError,
    build_timestamp_request,
    request_timestamp,
    timestamper_for,
    token_info,
    verify_timestamp_token,
)
from signing.trust import TrustContext

QUERY = {"Content-Type": "application/timestamp-query"}
OPENSSL = shutil.which("openssl")


def _openssl_or_asn1crypto_query(tmp_path) -> bytes:
    data = tmp_path / "data.bin"
    data.write_bytes(b"calibration certificate")
    if OPENSSL is not None:
        command = [OPENSSL, "ts", "-query", "-data", str(data), "-sha256", "-cert"]
        return subprocess.run(command, capture_output=True, check=True).stdout
    return build_timestamp_request(data.read_bytes())[0]


def test_tsa_grants_a_request_made_with_openssl(hub, tmp_path):
    response = hub.client.post("/api/v1/tsa", content=_openssl_or_asn1crypto_query(tmp_path), headers=QUERY)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    reply = TimeStampResp.load(response.content)
    assert reply["status"]["status"].native == "granted"
    info = reply["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(b"calibration certificate").digest()


def test_tsa_answers_garbage_with_a_rejection(hub):
    response = hub.client.post("/api/v1/tsa", content=b"not a timestamp request", headers=QUERY)

    assert response.status_code == 200
    status = TimeStampResp.load(response.content)["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {"bad_data_format"}


def test_tsa_rejects_sha1_imprints(hub):
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha1"}),
                "hashed_message": hashlib.sha1(b"x").digest(),
            },
        }
    ).dump()

    response = hub.client.post("/api/v1/tsa", content=request, headers=QUERY)

    assert TimeStampResp.load(response.content)["status"]["fail_info"].native == {"bad_alg"}


def test_wrong_media_type_is_a_415_problem(hub):
    response = hub.client.post("/api/v1/tsa", content=b"x", headers={"Content-Type": "application/octet-stream"})

    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unsupported-media-type"


def test_body_over_64_kb_is_a_413_problem(hub):
    response = hub.client.post("/api/v1/tsa", content=b"\x30" * (64 * 1024 + 1), headers=QUERY)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_client_obtains_a_verifiable_token_from_a_tsa_url(hub, monkeypatch):
    # The external-TSA path of the client, pointed at this hub's own endpoint.
    def post(url, *, content, headers, timeout):
        return hub.client.post(url, content=content, headers=headers)

    monkeypatch.setattr("signing.timestamps.httpx.post", post)

    token = request_timestamp(b"signature value", url="/api/v1/tsa")

    anchors = [load_or_create_hub_ca(hub.settings).certificate]
    verdict = verify_timestamp_token(token, signed_data=b"signature value", trust=TrustContext(anchors=anchors))
    assert verdict.valid, verdict.reason


def test_configured_tsa_url_is_used_instead_of_the_hub_tsa(hub, monkeypatch):
    calls: list[str] = []

    def post(url, *, content, headers, timeout):
        calls.append(url)
        return hub.client.post("/api/v1/tsa", content=content, headers=headers)

    monkeypatch.setattr("signing.timestamps.httpx.post", post)
    monkeypatch.setattr(hub.settings, "tsa_url", "https://tsa.example/rfc3161")

    token = timestamper_for(hub.settings)(b"data")

    assert calls == ["https://tsa.example/rfc3161"]
    assert token_info(token)["message_imprint"]["hashed_message"].native == hashlib.sha256(b"data").digest()


def test_failing_external_tsa_is_a_timestamp_unavailable_error(monkeypatch):
    monkeypatch.setattr(
        "signing.timestamps.httpx.post", lambda url, **_: httpx.Response(500, request=httpx.Request("POST", url))
    )

    with pytest.raises(TimestampUnavailableError, match="HTTP 500"):
        request_timestamp(b"data", url="https://tsa.example/rfc3161")
