"""Signing a registered draft with the lab's hub-held key: (migrate,) sign, store, repoint, issue, audit."""

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlmodel import Session

from certificates.migrate import migrate_with_report
from certificates.models import Certificate, CertificateStatus
from certificates.schema import declared_schema_version
from certificates.service import (
    Actor,
    DocumentRejectedError,
    get_certificate_content,
    get_certificate_or_raise,
    issue_certificate,
    record_certificate_event,
    replace_draft_content,
)
from certificates.validation import validate_root
from certificates.xml import parse_xml
from signing.pki import fingerprint_sha256
from signing.service import get_hub_signing_key_or_raise
from signing.timestamps import timestamper_for, token_info
from signing.xades import SignatureSlotMissingError, has_signature_slot, sign_dcc
from storage.errors import ConflictError, InvalidTransitionError, NotFoundError
from storage.settings import Settings


class SignatureLevel(StrEnum):
    """XAdES baseline levels the hub produces."""

    b_b = "B-B"
    b_t = "B-T"


class NoSigningKeyError(ConflictError):
    """The lab has no active hub-held signing key to sign with."""

    code = "no-signing-key"
    title = "No hub-held signing key"


@dataclass(frozen=True)
class SignedDraft:
    """What signing a draft did: the issued certificate and the facts of its signature."""

    certificate: Certificate
    level: SignatureLevel
    signer_fingerprint: str
    signing_time: datetime
    timestamp_time: datetime | None
    migrated_from: str | None


def sign_draft(
    session: Session,
    *,
    actor: Actor,
    settings: Settings,
    certificate_id: str,
    level: SignatureLevel = SignatureLevel.b_t,
    migrate: bool = False,
) -> SignedDraft:
    """Sign one of the actor's drafts with its lab's hub-held key, store the signed bytes and issue it."""
    certificate = get_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    if certificate.organization_id != actor.organization.id:
        # Public or admin-visible certificates of other labs are not the caller's to sign: stay undiscoverable.
        raise NotFoundError(f"No certificate {certificate_id}.")
    if certificate.status != CertificateStatus.draft:
        raise InvalidTransitionError(
            f"The certificate is {certificate.status}; only drafts can be signed.",
            extra={"currentStatus": certificate.status},
        )
    content = get_certificate_content(session, certificate=certificate)
    root = parse_xml(content, max_bytes=settings.max_document_bytes)
    migrated_from: str | None = None
    migration_changes: list[str] = []
    if not has_signature_slot(root):
        declared = declared_schema_version(root) or "no version"
        if not migrate:
            raise SignatureSlotMissingError(
                f"The document declares DCC {declared}; only DCC 3.2.0 and later have a slot for ds:Signature. "
                "Sign with ?migrate=true to move it to DCC 3.3.0 first (the migration is recorded).",
                extra={"schemaVersion": declared, "hint": "?migrate=true"},
            )
        migration = migrate_with_report(root)
        content, migrated_from, migration_changes = migration.content, migration.from_version, migration.changes

    try:
        private_key, chain = get_hub_signing_key_or_raise(
            session, settings=settings, organization_id=actor.organization.id
        )
    except NotFoundError as error:
        raise NoSigningKeyError(
            f"Your lab has no active hub-held signing key: create one (POST /api/v1/labs/{actor.organization.id}"
            "/hub-keys), or sign on your own machine with `qihub sign` and submit the signed document.",
        ) from error
    signing_time = datetime.now(UTC).replace(microsecond=0)
    timestamps: list[bytes] = []

    def timestamper(data: bytes) -> bytes:
        token = timestamper_for(settings)(data)
        timestamps.append(token)
        return token

    signed = sign_dcc(
        content,
        private_key=private_key,
        certificate_chain=chain,
        signing_time=signing_time,
        timestamper=timestamper if level == SignatureLevel.b_t else None,
    )
    # The stored document must stay a valid certificate: the signature sits in the slot the schema allows.
    report = validate_root(parse_xml(signed, max_bytes=max(settings.max_document_bytes, len(signed))))
    if not report.valid:
        raise DocumentRejectedError(report)
    previous_sha256 = certificate.sha256

    if migrated_from is not None:
        record_certificate_event(
            session,
            actor,
            certificate,
            "migrated",
            details={
                "fromVersion": migrated_from,
                "toVersion": report.schema_version,
                "changes": migration_changes,
                "previousSha256": previous_sha256,
            },
        )
    replace_draft_content(
        session, certificate=certificate, content=signed, schema_version=report.schema_version or "unknown"
    )
    signer_fingerprint = fingerprint_sha256(chain[0])
    timestamp_time = token_info(timestamps[0])["gen_time"].native if timestamps else None
    record_certificate_event(
        session,
        actor,
        certificate,
        "signed",
        details={
            "level": str(level),
            "signerFingerprint": signer_fingerprint,
            "signingTime": signing_time.isoformat(),
            "timestampTime": timestamp_time.isoformat() if timestamp_time else None,
            "sha256": certificate.sha256,
            "previousSha256": previous_sha256,
        },
    )
    issued = issue_certificate(session, actor=actor, certificate_id=certificate.id)
    return SignedDraft(
        certificate=issued,
        level=level,
        signer_fingerprint=signer_fingerprint,
        signing_time=signing_time,
        timestamp_time=timestamp_time,
        migrated_from=migrated_from,
    )
