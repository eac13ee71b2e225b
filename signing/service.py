"""Trust registry: trust anchors, labs' signing certificates (enrolled, registered, hub-held), revocation, CRL.

A lab's signing certificate is bound to the lab in two ways: the hub CA writes the lab's accreditation number
into the subject's organizationIdentifier, and every certificate the hub knows is registered to one lab by
its SHA-256 fingerprint. `trust_context_for` hands both to verification.
"""

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from certificates.service import Actor
from organizations.models import Organization, new_id
from organizations.service import get_organization_or_raise
from signing.keys import (
    KeyAlgorithm,
    PrivateKey,
    generate_private_key,
    open_private_key,
    require_master_key,
    seal_private_key,
)
from signing.models import (
    HubSigningKey,
    RevocationReason,
    SigningCertificate,
    SigningCertificateSource,
    SigningCertificateStatus,
    TrustAnchor,
    TrustAnchorKind,
)
from signing.pki import (
    HubCertificateAuthority,
    build_crl,
    certificate_pem,
    check_public_key_strength,
    fingerprint_sha256,
    issue_from_csr,
    load_or_create_hub_ca,
    organization_identifier_of,
)
from signing.trust import LabIdentity, TrustContext
from storage.errors import (
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
)
from storage.service import record_event
from storage.settings import Settings

CERTIFICATE_SUBJECT = "signing-certificate"
ANCHOR_SUBJECT = "trust-anchor"
CRL_VALIDITY = timedelta(days=1)

T = TypeVar("T")


class NotAccreditedError(ConflictError):
    """The lab has no accreditation number, so no certificate can be bound to it."""

    code = "no-accreditation-number"
    title = "Lab has no accreditation number"


class UntrustedCertificateError(InvalidInputError):
    """An external certificate chains to no trust anchor, or does not carry the lab's accreditation number."""

    code = "untrusted-certificate"
    title = "Certificate not trusted for this lab"


# --- helpers ---------------------------------------------------------------------------------------------------


def _record(session: Session, actor: Actor | None, *, kind: str, subject_id: str, action: str, **details: Any) -> None:
    record_event(
        session,
        subject_kind=kind,
        subject_id=subject_id,
        action=action,
        actor_organization_id=actor.organization.id if actor else None,
        actor_key_id=actor.key_id if actor else None,
        reason=details.pop("reason", None),
        details=details,
    )


def _lab_for_actor_or_raise(session: Session, *, actor: Actor, organization_id: str) -> Organization:
    """The lab the actor may act for (itself; admins any), else NotFoundError so others' labs stay unseen."""
    if not actor.is_admin and actor.organization.id != organization_id:
        raise NotFoundError(f"No organization {organization_id}.")
    return get_organization_or_raise(session, organization_id=organization_id)


def _accreditation_number_or_raise(organization: Organization) -> str:
    if not organization.accreditation_number:
        raise NotAccreditedError(
            f"Organization {organization.id} has no accreditation number; an admin must record it before "
            "a signing certificate can be bound to it."
        )
    return organization.accreditation_number


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _load_pem_chain(data: str) -> list[x509.Certificate]:
    raw = data.encode()
    if b"-----BEGIN" not in raw:
        raise InvalidInputError("Give the certificate as PEM text ('-----BEGIN CERTIFICATE-----').")
    try:
        chain = x509.load_pem_x509_certificates(raw)
    except ValueError as error:
        raise InvalidInputError("The PEM text holds no readable X.509 certificate.") from error
    if len(chain) > 10:
        raise InvalidInputError("Give the certificate and at most 9 intermediate CA certificates.")
    return chain


def _load_crl(data: str) -> x509.CertificateRevocationList:
    raw = data.encode()
    try:
        return x509.load_pem_x509_crl(raw)
    except ValueError as error:
        raise InvalidInputError("The CRL is not a readable PEM X.509 CRL.") from error


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# --- trust anchors ---------------------------------------------------------------------------------------------


def ensure_hub_root_anchor(session: Session, *, settings: Settings) -> TrustAnchor:
    """The trust-anchor row of the hub's own root CA, created on first use (the CA too)."""
    ca = load_or_create_hub_ca(settings)
    fingerprint = ca.fingerprint
    existing = session.exec(select(TrustAnchor).where(TrustAnchor.fingerprint_sha256 == fingerprint)).first()
    if existing is not None:
        return existing
    anchor = TrustAnchor(
        name=ca.certificate.subject.rfc4514_string()[:300],
        kind=TrustAnchorKind.hub_root,
        certificate_pem=certificate_pem(ca.certificate),
        fingerprint_sha256=fingerprint,
        crl_url=ca.crl_url,
    )
    try:
        # A savepoint: a concurrent request inserting the same row must not roll back the caller's work.
        with session.begin_nested():
            session.add(anchor)
            session.flush()
    except IntegrityError:
        found = session.exec(select(TrustAnchor).where(TrustAnchor.fingerprint_sha256 == fingerprint)).one()
        return found
    _record(session, None, kind=ANCHOR_SUBJECT, subject_id=anchor.id, action="added", fingerprint=fingerprint)
    return anchor


def add_trust_anchor(
    session: Session,
    *,
    actor: Actor,
    name: str,
    certificate_pem_text: str,
    crl_url: str | None = None,
    crl_pem: str | None = None,
) -> TrustAnchor:
    """Trust an external CA (admins only); its CRL, when given, must be signed by it."""
    if not actor.is_admin:
        raise PermissionDeniedError("Only admins manage trust anchors.")
    chain = _load_pem_chain(certificate_pem_text)
    if len(chain) != 1:
        raise InvalidInputError("Give exactly one CA certificate per trust anchor.")
    certificate = chain[0]
    if not _is_ca(certificate):
        raise InvalidInputError("A trust anchor must be a CA certificate (basicConstraints cA=TRUE).")
    check_public_key_strength(certificate.public_key())
    fingerprint = fingerprint_sha256(certificate)
    if session.exec(select(TrustAnchor).where(TrustAnchor.fingerprint_sha256 == fingerprint)).first() is not None:
        raise ConflictError(f"The trust anchor {fingerprint} is already registered.")
    if crl_pem is not None:
        _check_crl_of(certificate, _load_crl(crl_pem))
    anchor = TrustAnchor(
        name=name,
        kind=TrustAnchorKind.external,
        certificate_pem=certificate_pem(certificate),
        fingerprint_sha256=fingerprint,
        crl_url=crl_url,
        crl_pem=crl_pem,
        added_by_organization_id=actor.organization.id,
    )
    session.add(anchor)
    session.flush()
    _record(session, actor, kind=ANCHOR_SUBJECT, subject_id=anchor.id, action="added", fingerprint=fingerprint)
    return anchor


def _check_crl_of(certificate: x509.Certificate, crl: x509.CertificateRevocationList) -> None:
    if crl.issuer != certificate.subject or not crl.is_signature_valid(certificate.public_key()):  # type: ignore[arg-type]
        raise InvalidInputError("The CRL was not issued and signed by this CA.")


def update_trust_anchor_crl(session: Session, *, actor: Actor, anchor_id: str, crl_pem: str) -> TrustAnchor:
    """Replace an external anchor's stored CRL with a newer one signed by it (admins only)."""
    if not actor.is_admin:
        raise PermissionDeniedError("Only admins manage trust anchors.")
    anchor = get_trust_anchor_or_raise(session, anchor_id=anchor_id)
    if anchor.kind != TrustAnchorKind.external:
        raise InvalidInputError("The hub root's CRL is built by the hub itself.")
    crl = _load_crl(crl_pem)
    _check_crl_of(x509.load_pem_x509_certificate(anchor.certificate_pem.encode()), crl)
    anchor.crl_pem = crl_pem
    session.add(anchor)
    session.flush()
    _record(session, actor, kind=ANCHOR_SUBJECT, subject_id=anchor.id, action="crl-updated")
    return anchor


def get_trust_anchor_or_raise(session: Session, *, anchor_id: str) -> TrustAnchor:
    """The trust anchor with this id, or NotFoundError."""
    anchor = session.get(TrustAnchor, anchor_id)
    if anchor is None:
        raise NotFoundError(f"No trust anchor {anchor_id}.")
    return anchor


def list_trust_anchors(session: Session) -> list[TrustAnchor]:
    """Every trust anchor, oldest first."""
    return list(session.exec(select(TrustAnchor).order_by(col(TrustAnchor.created_at), col(TrustAnchor.id))))


# --- signing certificates --------------------------------------------------------------------------------------


def _store_signing_certificate(
    session: Session,
    *,
    actor: Actor | None,
    organization_id: str,
    certificate: x509.Certificate,
    source: SigningCertificateSource,
    trust_anchor_id: str | None,
    action: str,
    **details: Any,
) -> SigningCertificate:
    fingerprint = fingerprint_sha256(certificate)
    clash = session.exec(select(SigningCertificate).where(SigningCertificate.fingerprint_sha256 == fingerprint)).first()
    if clash is not None:
        raise ConflictError(f"The certificate {fingerprint} is already registered.")
    row = SigningCertificate(
        organization_id=organization_id,
        certificate_pem=certificate_pem(certificate),
        fingerprint_sha256=fingerprint,
        serial=format(certificate.serial_number, "x"),
        subject=certificate.subject.rfc4514_string()[:2000],
        issuer=certificate.issuer.rfc4514_string()[:2000],
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        source=source,
        trust_anchor_id=trust_anchor_id,
    )
    session.add(row)
    session.flush()
    _record(
        session,
        actor,
        kind=CERTIFICATE_SUBJECT,
        subject_id=row.id,
        action=action,
        organizationId=organization_id,
        fingerprint=fingerprint,
        serial=row.serial,
        **details,
    )
    return row


def enrol_signing_certificate(
    session: Session, *, actor: Actor, organization_id: str, csr_pem: str | bytes, settings: Settings
) -> SigningCertificate:
    """Issue a hub-CA certificate for a lab's CSR, bound to the lab's accreditation number, and register it."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    accreditation_number = _accreditation_number_or_raise(lab)
    anchor = ensure_hub_root_anchor(session, settings=settings)
    raw = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    certificate = issue_from_csr(
        load_or_create_hub_ca(settings),
        csr_pem=raw,
        organization_identifier=accreditation_number,
        organization_name=lab.name,
    )
    return _store_signing_certificate(
        session,
        actor=actor,
        organization_id=lab.id,
        certificate=certificate,
        source=SigningCertificateSource.enrolled,
        trust_anchor_id=anchor.id,
        action="enrolled",
    )


def register_external_certificate(
    session: Session,
    *,
    actor: Actor,
    organization_id: str,
    certificate_pem: str,
    pinned_fingerprint: str | None = None,
) -> SigningCertificate:
    """Register a certificate issued elsewhere: it must chain to an external trust anchor and carry the lab's
    accreditation number, or be pinned by an admin who gives its exact fingerprint."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    chain = _load_pem_chain(certificate_pem)
    leaf, intermediates = chain[0], chain[1:]
    check_public_key_strength(leaf.public_key())
    fingerprint = fingerprint_sha256(leaf)
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise UntrustedCertificateError("The certificate is not valid now (expired or not yet valid).")
    if pinned_fingerprint is not None:
        if not actor.is_admin:
            raise PermissionDeniedError("Only admins may pin a certificate without a trusted chain.")
        if pinned_fingerprint.lower() != fingerprint:
            raise UntrustedCertificateError(
                f"The pinned fingerprint does not match the certificate (its SHA-256 is {fingerprint})."
            )
        return _store_signing_certificate(
            session,
            actor=actor,
            organization_id=lab.id,
            certificate=leaf,
            source=SigningCertificateSource.registered,
            trust_anchor_id=None,
            action="registered",
            pinned=True,
        )
    accreditation_number = _accreditation_number_or_raise(lab)
    if organization_identifier_of(leaf) != accreditation_number:
        raise UntrustedCertificateError(
            f"The certificate's organizationIdentifier is not the lab's accreditation number "
            f"({accreditation_number}): it cannot be bound to this lab."
        )
    anchor = _validate_external_chain(session, leaf=leaf, intermediates=intermediates)
    return _store_signing_certificate(
        session,
        actor=actor,
        organization_id=lab.id,
        certificate=leaf,
        source=SigningCertificateSource.registered,
        trust_anchor_id=anchor.id,
        action="registered",
        pinned=False,
    )


def _validate_external_chain(
    session: Session, *, leaf: x509.Certificate, intermediates: list[x509.Certificate]
) -> TrustAnchor:
    """Path-validate against the external anchors (with their stored CRLs); the anchor the path ends at."""
    anchors = list(session.exec(select(TrustAnchor).where(TrustAnchor.kind == TrustAnchorKind.external)))
    if not anchors:
        raise UntrustedCertificateError("The hub trusts no external CA yet; an admin must add a trust anchor first.")
    by_fingerprint = {anchor.fingerprint_sha256: anchor for anchor in anchors}
    roots = [x509.load_pem_x509_certificate(anchor.certificate_pem.encode()) for anchor in anchors]
    crls = [_load_crl(anchor.crl_pem).public_bytes(serialization.Encoding.DER) for anchor in anchors if anchor.crl_pem]
    context = ValidationContext(
        trust_roots=[_asn1(root) for root in roots],
        other_certs=[_asn1(cert) for cert in intermediates],
        crls=crls,
        allow_fetching=False,
        revocation_mode="soft-fail",  # revocation data is optional for registration; a listed serial still fails
    )
    validator = CertificateValidator(_asn1(leaf), validation_context=context)
    try:
        path = _run(validator.async_validate_path())
    except (PathBuildingError, PathValidationError, ValidationError) as error:
        raise UntrustedCertificateError(f"The certificate does not chain to a trusted CA: {error}") from error
    return by_fingerprint[fingerprint_sha256(x509.load_der_x509_certificate(path.first.dump()))]


def list_signing_certificates(session: Session, *, actor: Actor, organization_id: str) -> list[SigningCertificate]:
    """A lab's signing certificates, newest first."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    statement = (
        select(SigningCertificate)
        .where(SigningCertificate.organization_id == lab.id)
        .order_by(col(SigningCertificate.created_at).desc(), col(SigningCertificate.id))
    )
    return list(session.exec(statement))


def get_signing_certificate_or_raise(
    session: Session, *, actor: Actor, organization_id: str, certificate_id: str
) -> SigningCertificate:
    """One of a lab's signing certificates, or NotFoundError."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    row = session.get(SigningCertificate, certificate_id)
    if row is None or row.organization_id != lab.id:
        raise NotFoundError(f"No signing certificate {certificate_id} for organization {organization_id}.")
    return row


def revoke_signing_certificate(
    session: Session,
    *,
    actor: Actor,
    organization_id: str,
    certificate_id: str,
    reason: RevocationReason = RevocationReason.unspecified,
    comment: str | None = None,
) -> SigningCertificate:
    """Revoke a signing certificate: it is listed on the hub CRL (hub-issued) and in the registry (all)."""
    row = get_signing_certificate_or_raise(
        session, actor=actor, organization_id=organization_id, certificate_id=certificate_id
    )
    if row.status == SigningCertificateStatus.revoked:
        raise InvalidTransitionError(f"The signing certificate {certificate_id} is already revoked.")
    row.status = SigningCertificateStatus.revoked
    row.revoked_at = datetime.now(UTC)
    row.revocation_reason = RevocationReason(reason).value
    session.add(row)
    session.flush()
    _record(
        session,
        actor,
        kind=CERTIFICATE_SUBJECT,
        subject_id=row.id,
        action="revoked",
        reason=comment or row.revocation_reason,
        organizationId=row.organization_id,
        fingerprint=row.fingerprint_sha256,
        revocationReason=row.revocation_reason,
    )
    return row


# --- hub-held signing keys -------------------------------------------------------------------------------------


def _hub_key_context(key_id: str) -> bytes:
    # Bound into the AES-GCM tag: a sealed key copied to another row cannot be opened there.
    return f"qihub hub-signing-key {key_id}".encode()


def create_hub_signing_key(
    session: Session,
    *,
    actor: Actor,
    organization_id: str,
    settings: Settings,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> tuple[HubSigningKey, SigningCertificate]:
    """Generate a key the hub holds for a lab (sealed with the master key) and issue its certificate."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    accreditation_number = _accreditation_number_or_raise(lab)
    master = require_master_key(settings)  # refuse before generating anything
    anchor = ensure_hub_root_anchor(session, settings=settings)
    ca = load_or_create_hub_ca(settings)
    private_key = generate_private_key(algorithm)
    subject = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{lab.name} (hub-held signing key)"[:64]),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, lab.name[:64]),
        ]
    )
    certificate = ca.issue_certificate(
        subject=subject,
        public_key=private_key.public_key(),
        profile="signer",
        organization_identifier=accreditation_number,
    )
    row = _store_signing_certificate(
        session,
        actor=actor,
        organization_id=lab.id,
        certificate=certificate,
        source=SigningCertificateSource.hub_key,
        trust_anchor_id=anchor.id,
        action="hub-key-created",
        algorithm=algorithm,
    )
    key_id = new_id()  # known before sealing: the id is bound into the ciphertext
    key = HubSigningKey(
        id=key_id,
        organization_id=lab.id,
        signing_certificate_id=row.id,
        algorithm=algorithm,
        encrypted_private_key=seal_private_key(master, private_key, context=_hub_key_context(key_id)),
    )
    session.add(key)
    session.flush()
    return key, row


def list_hub_signing_keys(session: Session, *, actor: Actor, organization_id: str) -> list[HubSigningKey]:
    """A lab's hub-held keys, newest first (metadata only)."""
    lab = _lab_for_actor_or_raise(session, actor=actor, organization_id=organization_id)
    statement = (
        select(HubSigningKey)
        .where(HubSigningKey.organization_id == lab.id)
        .order_by(col(HubSigningKey.created_at).desc(), col(HubSigningKey.id))
    )
    return list(session.exec(statement))


def get_hub_signing_key_or_raise(
    session: Session, *, settings: Settings, organization_id: str
) -> tuple[PrivateKey, list[x509.Certificate]]:
    """The lab's newest usable hub-held key and its chain (signing certificate first, then the hub CA)."""
    now = datetime.now(UTC)
    statement = (
        select(HubSigningKey, SigningCertificate)
        .join(SigningCertificate, col(SigningCertificate.id) == col(HubSigningKey.signing_certificate_id))
        .where(
            HubSigningKey.organization_id == organization_id,
            SigningCertificate.status == SigningCertificateStatus.active,
        )
        .order_by(col(HubSigningKey.created_at).desc(), col(HubSigningKey.id))
    )
    for key, row in session.exec(statement):
        certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            continue
        master = require_master_key(settings)
        private_key = open_private_key(master, key.encrypted_private_key, context=_hub_key_context(key.id))
        return private_key, [certificate, load_or_create_hub_ca(settings).certificate]
    raise NotFoundError(f"Organization {organization_id} has no active hub-held signing key.")


# --- CRL and the verification trust context ---------------------------------------------------------------------


def _hub_revocations(session: Session, *, ca: HubCertificateAuthority) -> list[SigningCertificate]:
    statement = (
        select(SigningCertificate)
        .join(TrustAnchor, col(TrustAnchor.id) == col(SigningCertificate.trust_anchor_id))
        .where(
            TrustAnchor.fingerprint_sha256 == ca.fingerprint,
            SigningCertificate.status == SigningCertificateStatus.revoked,
        )
        .order_by(col(SigningCertificate.revoked_at), col(SigningCertificate.id))
    )
    return list(session.exec(statement))


def current_crl_object(session: Session, *, settings: Settings) -> x509.CertificateRevocationList:
    """The hub CA's CRL now: every revoked certificate it issued, valid for one day."""
    ca = load_or_create_hub_ca(settings)
    now = datetime.now(UTC)
    revoked = [
        (int(row.serial, 16), row.revoked_at or now, row.revocation_reason) for row in _hub_revocations(session, ca=ca)
    ]
    return build_crl(ca, revoked=revoked, last_update=now, next_update=now + CRL_VALIDITY)


def current_crl(session: Session, *, settings: Settings) -> bytes:
    """The hub CA's current CRL, DER-encoded (as served at /api/v1/pki/crl)."""
    return current_crl_object(session, settings=settings).public_bytes(serialization.Encoding.DER)


def trust_context_for(session: Session, *, settings: Settings) -> TrustContext:
    """What verification trusts: hub root and external anchors, their CRLs, and certificate-to-lab bindings."""
    ca = load_or_create_hub_ca(settings)
    anchors: dict[str, x509.Certificate] = {ca.fingerprint: ca.certificate}
    crls = [current_crl_object(session, settings=settings)]
    for anchor in session.exec(select(TrustAnchor).where(TrustAnchor.kind == TrustAnchorKind.external)):
        anchors.setdefault(anchor.fingerprint_sha256, x509.load_pem_x509_certificate(anchor.certificate_pem.encode()))
        if anchor.crl_pem:
            crls.append(x509.load_pem_x509_crl(anchor.crl_pem.encode()))

    labs: dict[str, Organization] = {}
    fingerprints_by_lab: dict[str, set[str]] = {}
    lab_by_fingerprint: dict[str, str] = {}
    revoked: dict[str, datetime] = {}
    for row, organization in session.exec(
        select(SigningCertificate, Organization).join(
            Organization, col(Organization.id) == col(SigningCertificate.organization_id)
        )
    ):
        labs[organization.id] = organization
        fingerprints_by_lab.setdefault(organization.id, set()).add(row.fingerprint_sha256)
        lab_by_fingerprint[row.fingerprint_sha256] = organization.id
        if row.status == SigningCertificateStatus.revoked and row.revoked_at is not None:
            revoked[row.fingerprint_sha256] = row.revoked_at
    by_accreditation: dict[str, list[Organization]] = {}
    for organization in session.exec(select(Organization).where(col(Organization.accreditation_number).is_not(None))):
        assert organization.accreditation_number is not None
        by_accreditation.setdefault(organization.accreditation_number, []).append(organization)
        labs.setdefault(organization.id, organization)

    identities = {
        organization.id: LabIdentity(
            organization_id=organization.id,
            name=organization.name,
            accreditation_number=organization.accreditation_number,
            registered_fingerprints=frozenset(fingerprints_by_lab.get(organization.id, ())),
        )
        for organization in labs.values()
    }

    def lab_of_certificate(certificate: x509.Certificate) -> LabIdentity | None:
        """The lab a certificate is registered to, else the one lab whose accreditation number it carries."""
        registered = lab_by_fingerprint.get(fingerprint_sha256(certificate))
        if registered is not None:
            return identities[registered]
        claimed = organization_identifier_of(certificate)
        candidates = by_accreditation.get(claimed, []) if claimed else []
        # Two labs sharing one accreditation number make the claim ambiguous: bind to neither.
        return identities[candidates[0].id] if len(candidates) == 1 else None

    return TrustContext(
        anchors=list(anchors.values()),
        crls=crls,
        lab_of_certificate=lab_of_certificate,
        revoked_fingerprints=revoked,
    )
