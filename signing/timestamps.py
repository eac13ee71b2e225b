"""RFC 3161 timestamps: the hub's own TSA, a client for it or an external TSA, and token verification.

The hub TSA signs with an ECDSA P-256 key whose certificate (profile "tsa": critical EKU timeStamping) is
issued by the hub CA; both live under the pki dir. Requests are parsed and responses assembled with
asn1crypto's `tsp`/`cms` structures and signed with `cryptography`; tokens are verified with `rfc3161-client`
(CMS signature, chain to the trust anchors at genTime, critical timeStamping EKU, message imprint).
"""

import functools
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Final

import httpx
from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from signing.keys import master_secret, write_private_file
from signing.pki import CERTIFICATE_CACHE_SIZE, certificate_from_der, load_or_create_hub_ca
from signing.trust import TrustContext
from storage.errors import DomainError
from storage.settings import Settings

TIMESTAMP_QUERY_MEDIA_TYPE: Final = "application/timestamp-query"
TIMESTAMP_REPLY_MEDIA_TYPE: Final = "application/timestamp-reply"
# A UUID-based OID (ITU-T X.667, arc 2.25) naming the hub TSA's policy; no registration needed.
HUB_TSA_POLICY_OID: Final = "2.25.301022293796926716651970670961249650889"
TSA_CERT_FILENAME: Final = "hub-tsa.pem"
TSA_KEY_FILENAME: Final = "hub-tsa.key.pem"
# Imprint algorithms the TSA accepts, with their digest sizes (SHA-1 and MD5 are refused).
ACCEPTED_IMPRINTS: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
MAX_REQUEST_BYTES: Final = 64 * 1024
# The TSA certificate is renewed this long before it expires, so a token is never signed at the edge.
RENEW_BEFORE: Final = timedelta(days=30)
HTTP_TIMEOUT_S: Final = 10.0


class TimestampUnavailableError(DomainError):
    """No timestamp could be obtained: the TSA refused the request, was unreachable, or answered wrongly."""

    code = "timestamp-unavailable"
    title = "Timestamp unavailable"


@dataclass(frozen=True)
class TimestampVerdict:
    """Outcome of checking one RFC 3161 timestamp token against the data it claims to cover."""

    valid: bool
    time: datetime | None = None
    tsa_name: str | None = None
    reason: str | None = None


class TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp; asn1crypto's own omits OPTIONAL on the token, which rejections leave out."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


# --- the hub's own TSA -------------------------------------------------------------------------------------


class _Rejected(Exception):  # noqa: N818 - internal control flow: becomes a `rejection` response
    def __init__(self, failure: str, text: str) -> None:
        super().__init__(text)
        self.failure = failure
        self.text = text


@dataclass
class HubTimestampAuthority:
    """The hub's RFC 3161 TSA: its key, its certificate and the chain up to the hub CA."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)  # issuers above the TSA certificate
    policy_oid: str = HUB_TSA_POLICY_OID

    def issue_timestamp_response(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp: a granted token, or a `rejection` status."""
        try:
            request = _parse_request(request_der, policy_oid=self.policy_oid)
            token = self._token_for(request)
        except _Rejected as rejected:
            return _rejection(rejected.failure, rejected.text)
        response = TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return response.dump()

    @cached_property
    def _certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @cached_property
    def _signing_certificate_attribute(self) -> bytes:
        # Built once: asn1crypto takes ~10 ms to encode this attribute (ESSCertIDv2 defaults), the rest ~1 ms.
        return cms.CMSAttribute(
            {
                "type": "signing_certificate_v2",
                "values": [{"certs": [{"cert_hash": hashlib.sha256(self._certificate_der).digest()}]}],
            }
        ).dump()

    def _token_for(self, request: tsp.TimeStampReq) -> cms.ContentInfo:
        asn1_certificate = asn1_x509.Certificate.load(self._certificate_der)
        info: dict[str, object] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": tsp.MessageImprint.load(request["message_imprint"].dump()),
            # 127 random bits: unique per token without a shared counter (RFC 3161 allows up to 160 bits).
            "serial_number": secrets.randbits(127) | 1,
            "gen_time": datetime.now(UTC).replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "ordering": False,
            "tsa": asn1_x509.GeneralName(name="directory_name", value=asn1_certificate.subject),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"].native
        tst_info = tsp.TSTInfo(info)
        signed_attributes = _sorted_attributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_info.dump()).digest()]}),
                cms.CMSAttribute.load(self._signing_certificate_attribute),
            ]
        )
        signature, signature_algorithm = self._sign(signed_attributes.dump())
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": asn1_certificate.issuer, "serial_number": asn1_certificate.serial_number},
                ),
                "digest_algorithm": {"algorithm": "sha256"},
                "signed_attrs": signed_attributes,
                "signature_algorithm": {"algorithm": signature_algorithm},
                "signature": signature,
            }
        )
        certificates = [asn1_certificate] if request["cert_req"].native else []
        signed_data = cms.SignedData(
            {
                "version": "v3",  # eContentType is not id-data (RFC 5652 §5.1)
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {"content_type": "tst_info", "content": tst_info},
                "certificates": certificates or None,
                "signer_infos": [signer_info],
            }
        )
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})

    def _sign(self, data: bytes) -> tuple[bytes, str]:
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return self.private_key.sign(data, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"


def _sorted_attributes(attributes: list[cms.CMSAttribute]) -> cms.CMSAttributes:
    # DER orders a SET OF by the encodings of its members; verifiers re-encode before checking the signature.
    return cms.CMSAttributes(sorted(attributes, key=lambda attribute: attribute.dump()))


def _parse_request(request_der: bytes, *, policy_oid: str) -> tsp.TimeStampReq:
    """A TimeStampReq the TSA can honour, or _Rejected with the matching PKIFailureInfo."""
    if len(request_der) > MAX_REQUEST_BYTES:
        raise _Rejected("bad_request", "The request is too large.")
    try:
        request = tsp.TimeStampReq.load(request_der, strict=True)
        fields = request.native  # asn1crypto parses lazily: this reads every field once
    except Exception as error:  # hostile DER trips asn1crypto in many ways; all of them mean "malformed"
        raise _Rejected("bad_data_format", f"The request is not a DER TimeStampReq: {error}") from None
    if fields["version"] != "v1":
        raise _Rejected("bad_request", "Only version 1 requests are accepted.")
    algorithm = fields["message_imprint"]["hash_algorithm"]["algorithm"]
    if algorithm not in ACCEPTED_IMPRINTS:
        raise _Rejected("bad_alg", f"The hash algorithm {algorithm} is not accepted; use SHA-256, -384 or -512.")
    if fields["message_imprint"]["hash_algorithm"]["parameters"] is not None:
        raise _Rejected("bad_alg", "Hash algorithm parameters must be absent or NULL.")
    if len(fields["message_imprint"]["hashed_message"]) != ACCEPTED_IMPRINTS[algorithm]:
        raise _Rejected("bad_data_format", f"The {algorithm} imprint has the wrong length.")
    if fields["req_policy"] is not None and fields["req_policy"] != policy_oid:
        raise _Rejected("unaccepted_policy", f"This TSA issues timestamps under policy {policy_oid} only.")
    if fields["extensions"]:
        raise _Rejected("unaccepted_extensions", "This TSA accepts no request extensions.")
    return request


def _rejection(failure: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text], "fail_info": {failure}})
    return TimeStampResp({"status": status}).dump()


_TSA_CACHE: dict[str, HubTimestampAuthority] = {}
_TSA_LOCK = threading.Lock()


def load_or_create_hub_tsa(settings: Settings) -> HubTimestampAuthority:
    """The hub TSA under the pki dir, created (key and CA-issued certificate) on first use, renewed near expiry."""
    ca = load_or_create_hub_ca(settings)
    pki_dir = settings.resolved_pki_dir.resolve()
    cache_key = f"{pki_dir}|{ca.fingerprint}"
    with _TSA_LOCK:
        cached = _TSA_CACHE.get(cache_key)
        if cached is not None and _fresh(cached.certificate):
            return cached
        pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path, cert_path = pki_dir / TSA_KEY_FILENAME, pki_dir / TSA_CERT_FILENAME
        private_key = _read_tsa_key(key_path, settings) if key_path.is_file() else _create_tsa_key(key_path, settings)
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes()) if cert_path.is_file() else None
        if certificate is None or not _usable(certificate, ca.certificate) or not _certifies(certificate, private_key):
            certificate = ca.issue_certificate(
                subject=x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "qihub Hub Time-Stamping Authority"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qihub"),
                    ]
                ),
                public_key=private_key.public_key(),
                profile="tsa",
            )
            cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        tsa = HubTimestampAuthority(certificate=certificate, private_key=private_key, chain=[ca.certificate])
        _TSA_CACHE[cache_key] = tsa
        return tsa


def _fresh(certificate: x509.Certificate) -> bool:
    return certificate.not_valid_after_utc - RENEW_BEFORE > datetime.now(UTC)


def _usable(certificate: x509.Certificate, ca_certificate: x509.Certificate) -> bool:
    """Fresh and issued by the current hub CA (a replaced CA means a new TSA certificate)."""
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return _fresh(certificate)


def _certifies(certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bool:
    return certificate.public_key() == private_key.public_key()


def _create_tsa_key(path: Path, settings: Settings) -> ec.EllipticCurvePrivateKey:
    private_key = ec.generate_private_key(ec.SECP256R1())
    secret = master_secret(settings)
    # Encrypted like the CA key when a master key is configured, so the same secret opens both.
    encryption = serialization.BestAvailableEncryption(secret) if secret is not None else serialization.NoEncryption()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    try:
        write_private_file(path, pem)
    except FileExistsError:  # another process created it first: use theirs
        return _read_tsa_key(path, settings)  # type: ignore[return-value]
    return private_key


def _read_tsa_key(path: Path, settings: Settings) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted with the master secret, like the CA key
        secret = master_secret(settings)
        if secret is None:
            raise TimestampUnavailableError(
                f"The TSA key {path} is encrypted but no master key is configured."
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except ValueError as error:
            raise TimestampUnavailableError(f"The TSA key {path} cannot be opened with the master key.") from error
    except ValueError as error:
        raise TimestampUnavailableError(f"The TSA key {path} is not a readable PEM private key.") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TimestampUnavailableError(f"The TSA key {path} is neither an EC nor an RSA key.")
    return key


def forget_cached_hub_tsas() -> None:
    """Drop cached TSAs (after their files changed on disk, e.g. in tests)."""
    with _TSA_LOCK:
        _TSA_CACHE.clear()


# --- client --------------------------------------------------------------------------------------------------


def build_timestamp_request(data: bytes, *, nonce: int | None = None) -> tuple[bytes, int]:
    """A DER TimeStampReq over SHA-256(data) asking for the TSA certificate; returns it and its nonce."""
    nonce = nonce if nonce is not None else secrets.randbits(63)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return request.dump(), nonce


def request_timestamp(data: bytes, *, url: str | None = None, tsa: HubTimestampAuthority | None = None) -> bytes:
    """A TimeStampToken (DER) over `data`: from the TSA at `url` over HTTP, else from the in-process hub TSA."""
    request_der, nonce = build_timestamp_request(data)
    if url:
        response_der = _post_timestamp_query(url, request_der)
    elif tsa is not None:
        response_der = tsa.issue_timestamp_response(request_der)
    else:
        raise TimestampUnavailableError("No TSA: configure a TSA URL or use the hub's own TSA.")
    return _granted_token(response_der, data=data, nonce=nonce)


def timestamper_for(settings: Settings) -> Callable[[bytes], bytes]:
    """The hub's timestamper: the external TSA of `settings.tsa_url`, else the hub's own TSA."""
    if settings.tsa_url:
        url = settings.tsa_url
        return lambda data: request_timestamp(data, url=url)
    tsa = load_or_create_hub_tsa(settings)
    return lambda data: request_timestamp(data, tsa=tsa)


def _post_timestamp_query(url: str, request_der: bytes) -> bytes:
    try:
        reply = httpx.post(
            url,
            content=request_der,
            headers={"Content-Type": TIMESTAMP_QUERY_MEDIA_TYPE, "Accept": TIMESTAMP_REPLY_MEDIA_TYPE},
            timeout=HTTP_TIMEOUT_S,
        )
    except httpx.HTTPError as error:
        raise TimestampUnavailableError(f"The TSA at {url} cannot be reached: {error}") from error
    if reply.status_code != 200:
        raise TimestampUnavailableError(f"The TSA at {url} answered HTTP {reply.status_code}.")
    return reply.content


def _granted_token(response_der: bytes, *, data: bytes, nonce: int) -> bytes:
    """The token of a granted response, checked to answer this request (nonce and imprint)."""
    try:
        response = TimeStampResp.load(response_der, strict=True)
        status = response["status"]["status"].native
    except (ValueError, TypeError, KeyError) as error:
        raise TimestampUnavailableError(f"The TSA's answer is not a TimeStampResp: {error}") from None
    if status not in {"granted", "granted_with_mods"}:
        text = "; ".join(response["status"]["status_string"].native or []) or "no reason given"
        raise TimestampUnavailableError(f"The TSA refused the request ({status}): {text}")
    token = response["time_stamp_token"]
    try:
        info = token["content"]["encap_content_info"]["content"].parsed
        imprint = info["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        echoed_nonce = info["nonce"].native
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise TimestampUnavailableError(f"The TSA's token cannot be read: {error}") from None
    if echoed_nonce != nonce:
        raise TimestampUnavailableError("The TSA's answer does not echo the request's nonce.")
    if algorithm not in ACCEPTED_IMPRINTS or imprint["hashed_message"].native != hashlib.new(algorithm, data).digest():
        raise TimestampUnavailableError("The TSA's token covers other data than requested.")
    return token.dump()


# --- verification --------------------------------------------------------------------------------------------


def token_info(token_der: bytes) -> tsp.TSTInfo:
    """The TSTInfo inside a TimeStampToken (unverified: for display and diagnostics)."""
    token = cms.ContentInfo.load(token_der, strict=True)
    if token["content_type"].native != "signed_data":
        raise ValueError("a TimeStampToken is a CMS SignedData")
    encapsulated = token["content"]["encap_content_info"]
    if encapsulated["content_type"].native != "tst_info":
        raise ValueError("the SignedData does not encapsulate a TSTInfo")
    info = encapsulated["content"].parsed
    info.native  # noqa: B018 - force the lazy parse so malformed tokens fail here
    return info


def verify_timestamp_token(token_der: bytes, *, signed_data: bytes, trust: TrustContext) -> TimestampVerdict:
    """Check a TimeStampToken: CMS signature, imprint of `signed_data`, TSA chain and timeStamping EKU."""
    # Hostile tokens trip the parsers in many ways; every failure to read one is a verdict, not an exception.
    try:
        token_info(token_der)  # a SignedData around a TSTInfo, before the strict parser sees it
        response_der = TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token_der)}
        ).dump()
        response = decode_timestamp_response(response_der)
        # Time and TSA as read by the same parser that checks the signature (no parser differential).
        gen_time = _as_utc(response.tst_info.gen_time)
        tsa_certificate = _tsa_certificate(response)
        tsa_name = _subject_text(tsa_certificate) if tsa_certificate is not None else None
    except Exception as error:
        return TimestampVerdict(valid=False, reason=f"The timestamp token cannot be read: {error}")
    if not trust.anchors:
        return TimestampVerdict(
            valid=False, time=gen_time, tsa_name=tsa_name, reason="No trust anchors to check against."
        )
    if tsa_certificate is None:
        return TimestampVerdict(valid=False, time=gen_time, reason="The token does not carry the TSA certificate.")
    try:
        verifier = VerifierBuilder(roots=list(trust.anchors), intermediates=list(trust.intermediates)).build()
        verifier.verify_message(response, signed_data)
    except Exception as error:  # VerificationError, and ValueError from the CMS layer
        return TimestampVerdict(
            valid=False, time=gen_time, tsa_name=tsa_name, reason=str(error) or type(error).__name__
        )
    revoked = _revocation_of(tsa_certificate, trust)
    if revoked is not None:
        return TimestampVerdict(
            valid=False,
            time=gen_time,
            tsa_name=tsa_name,
            reason=f"The TSA certificate was revoked on {revoked:%Y-%m-%d}.",
        )
    return TimestampVerdict(valid=True, time=gen_time, tsa_name=tsa_name)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _tsa_certificate(response: object) -> x509.Certificate | None:
    signed = response.signed_data  # type: ignore[attr-defined]
    signer_infos = list(signed.signer_infos)
    if len(signer_infos) != 1:
        return None
    signer = signer_infos[0]
    for der in signed.certificates:
        certificate = certificate_from_der(der)
        if certificate.serial_number == signer.serial_number and _issuer(certificate) == signer.issuer:
            return certificate
    return None


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _issuer(certificate: x509.Certificate) -> x509.Name:
    return certificate.issuer


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _subject_text(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _revocation_of(certificate: x509.Certificate, trust: TrustContext) -> datetime | None:
    for crl in trust.crls:
        if crl.issuer != certificate.issuer:
            continue
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is not None:
            return entry.revocation_date_utc
    return None
