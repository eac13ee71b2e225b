"""The hub's certificate authority: its root CA, certificate profiles, CSR enrolment and CRLs.

The hub CA issues three kinds of end-entity certificates: lab signing certificates ("signer"), the hub TSA's
certificate ("tsa") and the transparency log's signing certificate ("log"). A signer certificate carries the
lab's accreditation number in the subject's organizationIdentifier (2.5.4.97): that attribute, not what a
CSR asks for, binds the certificate to the lab, so a valid certificate of lab A cannot sign for lab B.
"""

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.hsm import Pkcs11KeyStore, Pkcs11UnavailableError
from signing.keys import PrivateKey, derive_master_key, master_secret, write_private_file
from storage.errors import DomainError, InvalidInputError
from storage.settings import Settings

CertificateProfile = Literal["signer", "tsa", "log"]
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# id-kp-documentSigning (RFC 9336): the EKU for signing documents other than code and e-mail.
DOCUMENT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
MIN_RSA_BITS = 2048
ALLOWED_CURVES = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}
WEAK_SIGNATURE_HASHES = {"md5", "sha1", "sha224"}

CA_CERT_FILENAME = "hub-ca.pem"
CA_KEY_FILENAME = "hub-ca.key.pem"
CA_VALIDITY = timedelta(days=20 * 365)
HSM_CA_KEY_LABEL = "qihub-hub-ca"
PROFILE_VALIDITY: dict[CertificateProfile, timedelta] = {
    "signer": timedelta(days=2 * 365),
    "tsa": timedelta(days=5 * 365),
    "log": timedelta(days=5 * 365),
}
# Certificates start a little in the past so a verifier whose clock lags does not reject a fresh one.
BACKDATE = timedelta(minutes=5)


class InvalidCsrError(InvalidInputError):
    """A certificate signing request cannot be read or its self-signature does not verify."""

    code = "invalid-csr"
    title = "Invalid certificate signing request"


class WeakKeyError(InvalidInputError):
    """A public key (or the signature hash of a request) is below the hub's cryptographic policy."""

    code = "weak-key"
    title = "Key below the cryptographic policy"


class CertificateAuthorityError(DomainError):
    """The configured hub CA cannot be loaded or used (missing key, key does not match, not a CA)."""

    code = "ca-unavailable"
    title = "Hub CA unavailable"


# Verification meets the same few certificates (signers, CAs, TSAs) over and over: each is loaded once per DER
# and what is derived from it is computed once. cryptography's certificates are immutable and hash by DER.
CERTIFICATE_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def certificate_from_der(der: bytes) -> x509.Certificate:
    """The certificate of these DER bytes (one shared object per DER; ValueError when malformed)."""
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of a certificate's DER (the fingerprint registered and compared everywhere)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def certificate_pem(certificate: x509.Certificate) -> str:
    """A certificate as PEM text."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse one certificate given as PEM or DER; unreadable input raises InvalidInputError."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as error:
        raise InvalidInputError("The certificate is neither a readable PEM nor DER X.509 certificate.") from error


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def organization_identifier_of(certificate: x509.Certificate) -> str | None:
    """The subject's organizationIdentifier (2.5.4.97), where labs' accreditation numbers live."""
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)
    return str(values[0].value) if values else None


def check_public_key_strength(public_key: object) -> PublicKey:
    """Refuse keys below policy: RSA under 2048 bits, curves other than P-256/P-384/P-521, DSA, EdDSA."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise WeakKeyError(f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {public_key.key_size}.")
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_CURVES:
            raise WeakKeyError(f"The curve {public_key.curve.name} is not accepted; use P-256, P-384 or P-521.")
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        # XAdES signing and verification (signxml) support no EdDSA: a certificate for one could never sign.
        raise WeakKeyError("EdDSA keys cannot sign XAdES DCCs; use ECDSA P-256 or RSA.")
    if isinstance(public_key, dsa.DSAPublicKey):
        raise WeakKeyError("DSA keys are not accepted; use ECDSA P-256 or RSA.")
    raise WeakKeyError("This kind of public key is not accepted; use ECDSA P-256 or RSA.")


@dataclass
class HubCertificateAuthority:
    """The hub's root CA: its certificate, its private key, and where its CRL is published."""

    certificate: x509.Certificate
    private_key: PrivateKey
    crl_url: str | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the CA certificate."""
        return fingerprint_sha256(self.certificate)

    def _signature_hash(self) -> hashes.SHA256 | hashes.SHA384:
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey) and self.private_key.curve.key_size > 256:
            return hashes.SHA384()
        return hashes.SHA256()

    def issue_certificate(
        self,
        *,
        subject: x509.Name,
        public_key: PublicKey,
        profile: CertificateProfile,
        organization_identifier: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> x509.Certificate:
        """Issue an end-entity certificate of one profile; `organization_identifier` replaces any in `subject`."""
        check_public_key_strength(public_key)
        if organization_identifier is not None:
            subject = with_organization_identifier(subject, organization_identifier)
        start = not_before or datetime.now(UTC) - BACKDATE
        end = not_after or start + PROFILE_VALIDITY[profile]
        end = min(end, self.certificate.not_valid_after_utc)  # never outlive the issuer
        if end <= start:
            raise InvalidInputError("The certificate's validity ends before it starts.")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(profile), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.certificate.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if profile == "tsa":
            # RFC 3161 §2.3: a TSA certificate has exactly one EKU, timeStamping, and it is critical.
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        elif profile == "signer":
            builder = builder.add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING_EKU]), critical=False)
        if self.crl_url:
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [x509.DistributionPoint([x509.UniformResourceIdentifier(self.crl_url)], None, None, None)]
                ),
                critical=False,
            )
        return builder.sign(self.private_key, self._signature_hash())


def _key_usage(profile: CertificateProfile) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=profile == "signer",  # nonRepudiation: the lab stands behind what it signs
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def with_organization_identifier(subject: x509.Name, organization_identifier: str) -> x509.Name:
    """The subject with every organizationIdentifier replaced by the given one."""
    attributes = [attribute for attribute in subject if attribute.oid != NameOID.ORGANIZATION_IDENTIFIER]
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organization_identifier))
    return x509.Name(attributes)


def _with_organization_name(subject: x509.Name, organization_name: str) -> x509.Name:
    attributes = [attribute for attribute in subject if attribute.oid != NameOID.ORGANIZATION_NAME]
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization_name[:64]))
    return x509.Name(attributes)


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR (PEM or DER) and verify its self-signature and signature hash."""
    try:
        if csr_pem.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(csr_pem)
        else:
            csr = x509.load_der_x509_csr(csr_pem)
    except ValueError as error:
        raise InvalidCsrError("The CSR is neither a readable PEM nor DER PKCS#10 request.") from error
    try:
        hash_algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as error:
        raise InvalidCsrError(f"The CSR's signature algorithm is not supported: {error}") from error
    # Checked before the signature itself: a weak hash is refused for what it is, not as "unverifiable".
    if hash_algorithm is not None and hash_algorithm.name in WEAK_SIGNATURE_HASHES:
        raise WeakKeyError(f"The CSR is signed with {hash_algorithm.name.upper()}; use SHA-256 or stronger.")
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, UnsupportedAlgorithm) as error:
        raise InvalidCsrError(f"The CSR's signature cannot be checked: {error}") from error
    if not valid:
        raise InvalidCsrError("The CSR's signature does not verify: it was not signed by the key it carries.")
    return csr


def issue_from_csr(
    ca: HubCertificateAuthority,
    *,
    csr_pem: bytes,
    organization_identifier: str,
    organization_name: str | None = None,
    profile: CertificateProfile = "signer",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """Issue a certificate for a verified CSR bound to a lab: its accreditation number overrides the CSR's."""
    csr = load_csr(csr_pem)
    public_key = check_public_key_strength(csr.public_key())
    subject = csr.subject
    if not any(attribute.oid == NameOID.COMMON_NAME for attribute in subject):
        subject = x509.Name([*subject, x509.NameAttribute(NameOID.COMMON_NAME, organization_name or "signer")])
    if organization_name:
        subject = _with_organization_name(subject, organization_name)
    # The CSR's requested extensions are ignored on purpose: the profile, not the requester, decides them.
    return ca.issue_certificate(
        subject=subject,
        public_key=public_key,
        profile=profile,
        organization_identifier=organization_identifier,
        not_before=not_before,
        not_after=not_after,
    )


REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag for flag in x509.ReasonFlags if flag not in (x509.ReasonFlags.remove_from_crl,)
}


def build_crl(
    ca: HubCertificateAuthority,
    *,
    revoked: Sequence[tuple[int, datetime, x509.ReasonFlags | str | None]],
    next_update: datetime,
    last_update: datetime | None = None,
    crl_number: int | None = None,
) -> x509.CertificateRevocationList:
    """Sign a CRL listing (serial, revocation time, reason) entries."""
    now = last_update or datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number if crl_number is not None else int(now.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        flag = REVOCATION_REASONS.get(reason, x509.ReasonFlags.unspecified) if isinstance(reason, str) else reason
        # RFC 5280 §5.3.1: omit the reason code rather than say "unspecified".
        if flag is not None and flag != x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.private_key, ca._signature_hash())


# --- the hub's own root CA ---------------------------------------------------------------------------------

_CA_CACHE: dict[tuple[str, ...], HubCertificateAuthority] = {}
_CA_LOCK = threading.Lock()


def hub_crl_url(settings: Settings) -> str:
    """Where the hub publishes its CRL (written into every certificate it issues)."""
    return settings.public_base_url.rstrip("/") + "/api/v1/pki/crl"


def load_or_create_hub_ca(settings: Settings) -> HubCertificateAuthority:
    """The hub's CA: the configured one (`ca_cert_file`/`ca_key_file`), else one created under the pki dir."""
    pki_dir = settings.resolved_pki_dir.resolve()
    cache_key = (str(pki_dir), str(settings.ca_cert_file), str(settings.ca_key_file), hub_crl_url(settings))
    with _CA_LOCK:
        cached = _CA_CACHE.get(cache_key)
        if cached is not None:
            return cached
        if settings.ca_cert_file is not None:
            ca = _load_configured_ca(settings)
        else:
            ca = _load_or_create_own_ca(settings, pki_dir)
        ca.crl_url = hub_crl_url(settings)
        _CA_CACHE[cache_key] = ca
        return ca


def forget_cached_hub_cas() -> None:
    """Drop cached CAs (after the files changed on disk, e.g. in tests)."""
    with _CA_LOCK:
        _CA_CACHE.clear()


def hub_ca_exists(settings: Settings) -> bool:
    """True when a CA is configured or was already created under the pki dir."""
    return settings.ca_cert_file is not None or (settings.resolved_pki_dir / CA_CERT_FILENAME).is_file()


def _read_private_key(path: Path, settings: Settings) -> PrivateKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # Encrypted CA keys use the master secret itself as the PKCS#8 password, so openssl can open them too.
        password = master_secret(settings)
        if password is None:
            raise CertificateAuthorityError(
                f"The CA key {path} is encrypted but no master key is configured."
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as error:
            raise CertificateAuthorityError(f"The CA key {path} cannot be opened with the master key.") from error
    except ValueError as error:
        raise CertificateAuthorityError(f"The CA key {path} is not a readable PEM private key.") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertificateAuthorityError(f"The CA key {path} is neither an EC nor an RSA key.")
    return key


def _checked_ca(certificate: x509.Certificate, private_key: PrivateKey, origin: str) -> HubCertificateAuthority:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateAuthorityError(f"The certificate {origin} is not a CA certificate (basicConstraints).")
    own = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    certified = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if own != certified:
        raise CertificateAuthorityError(f"The private key does not belong to the CA certificate {origin}.")
    return HubCertificateAuthority(certificate=certificate, private_key=private_key)


def _load_configured_ca(settings: Settings) -> HubCertificateAuthority:
    assert settings.ca_cert_file is not None
    if settings.ca_key_file is None:
        raise CertificateAuthorityError("QIHUB_CA_CERT_FILE is set but QIHUB_CA_KEY_FILE (its private key) is not.")
    try:
        certificate = x509.load_pem_x509_certificate(settings.ca_cert_file.read_bytes())
    except (OSError, ValueError) as error:
        raise CertificateAuthorityError(f"Cannot read the CA certificate {settings.ca_cert_file}.") from error
    try:
        private_key = _read_private_key(settings.ca_key_file, settings)
    except OSError as error:
        raise CertificateAuthorityError(f"Cannot read the CA key {settings.ca_key_file}.") from error
    return _checked_ca(certificate, private_key, str(settings.ca_cert_file))


def _load_or_create_own_ca(settings: Settings, pki_dir: Path) -> HubCertificateAuthority:
    if settings.pkcs11_module:
        return _load_or_create_token_ca(settings, pki_dir)
    cert_path, key_path = pki_dir / CA_CERT_FILENAME, pki_dir / CA_KEY_FILENAME
    if cert_path.is_file() and key_path.is_file():
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return _checked_ca(certificate, _read_private_key(key_path, settings), str(cert_path))
    if key_path.exists() or cert_path.exists():
        present = key_path if key_path.exists() else cert_path
        raise CertificateAuthorityError(
            f"Only half of the hub CA exists ({present}); restore the other file or remove it."
        )
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = create_root_ca(common_name=f"qihub Hub Root CA {datetime.now(UTC):%Y}")
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    secret = master_secret(settings)
    if secret is not None:
        derive_master_key(secret)  # refuses a too-short master key before it becomes the key file's password
        encryption = serialization.BestAvailableEncryption(secret)
    key_pem = ca.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # The key file is created exclusively (0600) before the certificate: a racing process fails instead of mixing.
    try:
        write_private_file(key_path, key_pem)
    except FileExistsError as error:
        raise CertificateAuthorityError("Another process is creating the hub CA; try again.") from error
    cert_path.write_text(certificate_pem(ca.certificate))
    return ca


def _load_or_create_token_ca(settings: Settings, pki_dir: Path) -> HubCertificateAuthority:
    """The hub CA with its key on the PKCS#11 token (never on disk); its certificate lives in the pki dir."""
    store = Pkcs11KeyStore.from_settings(settings)
    assert store is not None
    try:
        private_key: PrivateKey = store.ec_private_key(label=HSM_CA_KEY_LABEL)
    except Pkcs11UnavailableError:
        private_key = store.generate_ec_key(label=HSM_CA_KEY_LABEL, curve="secp384r1")
    cert_path = pki_dir / CA_CERT_FILENAME
    if cert_path.is_file():
        return _checked_ca(x509.load_pem_x509_certificate(cert_path.read_bytes()), private_key, str(cert_path))
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = create_root_ca(common_name=f"qihub Hub Root CA {datetime.now(UTC):%Y}", private_key=private_key)
    cert_path.write_text(certificate_pem(ca.certificate))
    return ca


def create_root_ca(
    *, common_name: str, organization: str = "qihub", private_key: PrivateKey | None = None
) -> HubCertificateAuthority:
    """A new self-signed root CA, by default on a new ECDSA P-384 key (for the hub, or tests' external CAs)."""
    private_key = private_key or ec.generate_private_key(ec.SECP384R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    now = datetime.now(UTC) - BACKDATE
    public_key = private_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(private_key, hashes.SHA384())
    )
    return HubCertificateAuthority(certificate=certificate, private_key=private_key)
