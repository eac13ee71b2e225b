"""The certificate registry: submit, find, issue, revoke, supersede, and the audit trail of each."""

import base64
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from lxml import etree
from sqlalchemy import or_
from sqlmodel import Session, col, select

from certificates.findings import Severity
from certificates.models import (
    Certificate,
    CertificateFilter,
    CertificateKind,
    CertificatePage,
    CertificateRead,
    CertificateStatus,
    ValidationReport,
)
from certificates.summary import summarize_certificate
from certificates.validation import validate_root
from certificates.xml import XmlRejected, parse_xml
from organizations.models import ApiKey, Organization, OrganizationKind
from storage.errors import (
    ConflictError,
    DomainError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
)
from storage.models import AuditEvent, StoredDocument, utc_now
from storage.service import list_events, record_event, sha256_hex, store_document

SUBJECT = "certificate"
MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class Actor:
    """Who is acting: the organization and the key it used (None for the CLI's own actions)."""

    organization: Organization
    key: ApiKey | None = None

    @property
    def is_admin(self) -> bool:
        """Admins see and manage every organization's certificates."""
        return self.organization.kind == OrganizationKind.admin

    @property
    def key_id(self) -> str | None:
        """The id of the key used, for the audit trail."""
        return self.key.id if self.key else None


class DocumentRejectedError(InvalidInputError):
    """A submitted document failed validation; its findings say why."""

    code = "invalid-document"
    title = "The document is not a valid certificate"

    def __init__(self, report: ValidationReport) -> None:
        errors = [finding for finding in report.findings if finding.severity == Severity.error]
        super().__init__(
            f"{len(errors)} error(s) found; nothing was stored.",
            extra={
                "schemaVersion": report.schema_version,
                "schemaValid": report.schema_valid,
                "findings": [finding.model_dump(mode="json") for finding in report.findings],
            },
        )
        self.report = report


def record_certificate_event(
    session: Session,
    actor: Actor,
    certificate: Certificate,
    action: str,
    *,
    reason: str | None = None,
    details: dict[str, object] | None = None,
    flush: bool = True,
) -> None:
    """Append an event about a certificate to the audit trail, as `actor`."""
    record_event(
        session,
        subject_kind=SUBJECT,
        subject_id=certificate.id,
        action=action,
        actor_organization_id=actor.organization.id,
        actor_key_id=actor.key_id,
        reason=reason,
        details=details or {},
        flush=flush,
    )


def replace_draft_content(session: Session, *, certificate: Certificate, content: bytes, schema_version: str) -> None:
    """Point a draft at new bytes (e.g. once signed); the old bytes stay stored for the audit trail."""
    if certificate.status != CertificateStatus.draft:
        raise InvalidTransitionError(f"The certificate is {certificate.status}; only a draft's content may change.")
    document = store_document(session, content=content, content_type="application/xml")
    certificate.sha256 = document.sha256
    certificate.size = document.size
    certificate.content_type = document.content_type
    certificate.schema_version = schema_version
    certificate.updated_at = utc_now()
    session.add(certificate)
    session.flush()


def _valid_report(root: etree._Element) -> ValidationReport:
    """Schema + rules; an invalid document is refused with its findings."""
    report = validate_root(root)
    if not report.valid:
        raise DocumentRejectedError(report)
    return report


def _new_certificate(
    actor: Actor,
    *,
    root: etree._Element,
    report: ValidationReport,
    digest: str,
    size: int,
    content_type: str,
    issue: bool,
    public: bool,
) -> Certificate:
    """The registry row of a validated document (not yet added to the session)."""
    summary = summarize_certificate(root)
    return Certificate(
        organization_id=actor.organization.id,
        kind=CertificateKind.calibration_certificate,
        schema_version=report.schema_version,
        unique_identifier=summary.unique_identifier,
        item_name=summary.item_name,
        item_manufacturer=summary.item_manufacturer,
        item_model=summary.item_model,
        item_serial=summary.item_serial,
        performance_begin=summary.performance_begin,
        performance_end=summary.performance_end,
        issue_date=summary.issue_date,
        status=CertificateStatus.issued if issue else CertificateStatus.draft,
        public=public,
        sha256=digest,
        content_type=content_type,
        size=size,
    )


def _already_registered(certificate_id: str) -> ConflictError:
    return ConflictError(
        f"This document is already registered as certificate {certificate_id}.",
        extra={"certificateId": certificate_id},
    )


def submit_certificate(
    session: Session,
    *,
    actor: Actor,
    content: bytes,
    root: etree._Element,
    content_type: str = "application/xml",
    issue: bool = False,
    public: bool = False,
    source: str = "xml",
) -> tuple[Certificate, ValidationReport]:
    """Validate and register a parsed document; an invalid one is refused and nothing is stored."""
    report = _valid_report(root)
    digest = sha256_hex(content)
    existing = session.exec(
        select(Certificate).where(Certificate.organization_id == actor.organization.id, Certificate.sha256 == digest)
    ).first()
    if existing is not None:
        raise _already_registered(existing.id)
    store_document(session, content=content, content_type=content_type)
    certificate = _new_certificate(
        actor,
        root=root,
        report=report,
        digest=digest,
        size=len(content),
        content_type=content_type,
        issue=issue,
        public=public,
    )
    session.add(certificate)
    session.flush()
    record_certificate_event(
        session,
        actor,
        certificate,
        "submitted",
        details={"sha256": digest, "source": source, "status": certificate.status},
    )
    return certificate, report


DocumentCheck = Callable[[bytes, etree._Element], object]
"""An extra per-document check before registering (e.g. signature verification); raises a DomainError."""

_IN_CHUNK = 500  # digests per IN (...) query: well under every database's bound-parameter limit


@dataclass
class BatchOutcome:
    """One document of a batch: its certificate once registered, or the error that refused it."""

    name: str
    sha256: str
    certificate: Certificate | None = None
    error: XmlRejected | DomainError | None = None


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def submit_certificates(
    session: Session,
    *,
    actor: Actor,
    documents: Sequence[tuple[str, bytes]],
    max_bytes: int,
    content_type: str = "application/xml",
    issue: bool = False,
    public: bool = False,
    source: str = "zip",
    check: DocumentCheck | None = None,
) -> list[BatchOutcome]:
    """Register many documents in the caller's transaction, each on its own merits.

    Every document is parsed and validated like `submit_certificate`; a malformed, invalid or duplicate one
    (same bytes earlier in the batch, or already registered by this organization) is reported in its
    outcome and the others still register. The valid ones are inserted together (one existence query, one
    flush per table) and each gets its "submitted" audit event, so event listeners see them as single
    submissions. Outcomes come back in the order of `documents`.
    """
    outcomes: list[BatchOutcome] = []
    # The parsed trees are dropped as soon as each row is built: a large batch never holds them all.
    prepared: list[tuple[BatchOutcome, Certificate, bytes]] = []
    accepted: dict[str, str] = {}  # digest -> name of the entry that brought it
    for name, content in documents:
        outcome = BatchOutcome(name=name, sha256=sha256_hex(content))
        outcomes.append(outcome)
        first = accepted.get(outcome.sha256)
        if first is not None:
            outcome.error = ConflictError(f"The same bytes as entry {first!r} of this batch.")
            continue
        try:
            root = parse_xml(content, max_bytes=max_bytes)
            report = _valid_report(root)
            if check is not None:
                check(content, root)
        except (XmlRejected, DomainError) as error:
            outcome.error = error
            continue
        accepted[outcome.sha256] = name
        certificate = _new_certificate(
            actor,
            root=root,
            report=report,
            digest=outcome.sha256,
            size=len(content),
            content_type=content_type,
            issue=issue,
            public=public,
        )
        prepared.append((outcome, certificate, content))
    if not prepared:
        return outcomes

    digests = [outcome.sha256 for outcome, _, _ in prepared]
    registered: dict[str, str] = {}
    stored: set[str] = set()
    for chunk in _chunks(digests):
        registered.update(
            session.exec(
                select(Certificate.sha256, Certificate.id).where(
                    Certificate.organization_id == actor.organization.id, col(Certificate.sha256).in_(chunk)
                )
            ).all()
        )
        stored.update(session.exec(select(StoredDocument.sha256).where(col(StoredDocument.sha256).in_(chunk))).all())
    new_documents: list[StoredDocument] = []
    certificates: list[Certificate] = []
    for outcome, certificate, content in prepared:
        if outcome.sha256 in registered:
            outcome.error = _already_registered(registered[outcome.sha256])
            continue
        if outcome.sha256 not in stored:
            new_documents.append(
                StoredDocument(sha256=outcome.sha256, content_type=content_type, size=len(content), content=content)
            )
        outcome.certificate = certificate
        certificates.append(certificate)
    if not certificates:
        return outcomes
    # Documents first: no ORM relationship orders the inserts, and the certificates' foreign keys need them.
    session.add_all(new_documents)
    session.flush()
    session.add_all(certificates)
    session.flush()
    for certificate in certificates:
        details: dict[str, object] = {"sha256": certificate.sha256, "source": source, "status": certificate.status}
        record_certificate_event(session, actor, certificate, "submitted", details=details, flush=False)
    session.flush()  # one flush for every event of the batch
    return outcomes


def get_certificate_or_raise(session: Session, *, actor: Actor, certificate_id: str) -> Certificate:
    """A certificate the actor may see (its own, a public one, or any for admins), else NotFoundError."""
    certificate = session.get(Certificate, certificate_id)
    if certificate is None or not (
        actor.is_admin or certificate.public or certificate.organization_id == actor.organization.id
    ):
        # Same answer for "absent" and "not yours": other labs' certificates stay undiscoverable.
        raise NotFoundError(f"No certificate {certificate_id}.")
    return certificate


def _get_own_certificate_or_raise(session: Session, *, actor: Actor, certificate_id: str) -> Certificate:
    certificate = get_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    if not actor.is_admin and certificate.organization_id != actor.organization.id:
        raise PermissionDeniedError("Only the issuing organization may change this certificate.")
    return certificate


def get_certificate_content(session: Session, *, certificate: Certificate) -> bytes:
    """The exact bytes that were submitted."""
    document = session.get(StoredDocument, certificate.sha256)
    if document is None:  # cannot happen with the foreign key; guard against manual database edits
        raise NotFoundError(f"The document of certificate {certificate.id} is missing.")
    return document.content


def _encode_cursor(certificate_id: str) -> str:
    return base64.urlsafe_b64encode(certificate_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        return str(uuid.UUID(decoded))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("The cursor is not one this API gave out.") from error


def list_certificates(
    session: Session, *, actor: Actor, filters: CertificateFilter, limit: int = 50, cursor: str | None = None
) -> CertificatePage:
    """A page of the certificates the actor may see, newest first."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    statement = select(Certificate)
    if not actor.is_admin:
        statement = statement.where(
            or_(col(Certificate.organization_id) == actor.organization.id, col(Certificate.public).is_(True))
        )
    conditions = {
        "organization_id": Certificate.organization_id,
        "manufacturer": Certificate.item_manufacturer,
        "model": Certificate.item_model,
        "serial": Certificate.item_serial,
        "status": Certificate.status,
        "unique_identifier": Certificate.unique_identifier,
    }
    for name, column in conditions.items():
        value = getattr(filters, name)
        if value is not None:
            statement = statement.where(column == str(value))
    if filters.calibrated_from:
        statement = statement.where(col(Certificate.performance_end) >= filters.calibrated_from)
    if filters.calibrated_to:
        statement = statement.where(col(Certificate.performance_end) <= filters.calibrated_to)
    if filters.issued_from:
        statement = statement.where(col(Certificate.issue_date) >= filters.issued_from)
    if filters.issued_to:
        statement = statement.where(col(Certificate.issue_date) <= filters.issued_to)
    if cursor:
        statement = statement.where(col(Certificate.id) < _decode_cursor(cursor))
    rows = list(session.exec(statement.order_by(col(Certificate.id).desc()).limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return CertificatePage(items=[CertificateRead.model_validate(row) for row in rows[:limit]], next_cursor=next_cursor)


def _transition(
    session: Session,
    *,
    actor: Actor,
    certificate: Certificate,
    allowed_from: set[CertificateStatus],
    to: CertificateStatus,
    action: str,
    reason: str | None,
    **details: object,
) -> Certificate:
    if certificate.status not in allowed_from:
        raise InvalidTransitionError(
            f"The certificate is {certificate.status}; it cannot become {to}.",
            extra={"currentStatus": certificate.status},
        )
    previous = certificate.status
    certificate.status = to
    certificate.status_reason = reason
    certificate.updated_at = utc_now()
    session.add(certificate)
    record_certificate_event(
        session, actor, certificate, action, reason=reason, details={"previous": previous, **details}
    )
    return certificate


def issue_certificate(session: Session, *, actor: Actor, certificate_id: str, reason: str | None = None) -> Certificate:
    """Issue a draft."""
    certificate = _get_own_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    return _transition(
        session,
        actor=actor,
        certificate=certificate,
        allowed_from={CertificateStatus.draft},
        to=CertificateStatus.issued,
        action="issued",
        reason=reason,
    )


def revoke_certificate(session: Session, *, actor: Actor, certificate_id: str, reason: str) -> Certificate:
    """Revoke an issued certificate, with a reason."""
    certificate = _get_own_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    return _transition(
        session,
        actor=actor,
        certificate=certificate,
        allowed_from={CertificateStatus.issued},
        to=CertificateStatus.revoked,
        action="revoked",
        reason=reason,
    )


def supersede_certificate(
    session: Session, *, actor: Actor, certificate_id: str, replacement_id: str, reason: str
) -> Certificate:
    """Replace an issued certificate by an amendment of the same lab (issued if still a draft)."""
    if replacement_id == certificate_id:
        raise InvalidInputError("A certificate cannot supersede itself.")
    certificate = _get_own_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    replacement = _get_own_certificate_or_raise(session, actor=actor, certificate_id=replacement_id)
    if replacement.organization_id != certificate.organization_id:
        raise PermissionDeniedError("An amendment must come from the lab that issued the original.")
    if replacement.status not in {CertificateStatus.draft, CertificateStatus.issued}:
        raise InvalidTransitionError(f"The replacement is {replacement.status}; it cannot amend anything.")
    if replacement.supersedes_id is not None:
        raise ConflictError(f"Certificate {replacement.id} already amends {replacement.supersedes_id}.")
    _transition(
        session,
        actor=actor,
        certificate=certificate,
        allowed_from={CertificateStatus.issued},
        to=CertificateStatus.superseded,
        action="superseded",
        reason=reason,
        supersededBy=replacement.id,
    )
    certificate.superseded_by_id = replacement.id
    replacement.supersedes_id = certificate.id
    replacement.updated_at = utc_now()
    if replacement.status == CertificateStatus.draft:
        replacement.status = CertificateStatus.issued
    session.add(replacement)
    record_certificate_event(
        session, actor, replacement, "amends", reason=reason, details={"supersedes": certificate.id}
    )
    return certificate


def certificate_history(session: Session, *, actor: Actor, certificate_id: str) -> list[AuditEvent]:
    """The audit trail of a certificate the actor may see."""
    certificate = get_certificate_or_raise(session, actor=actor, certificate_id=certificate_id)
    return list_events(session, subject_kind=SUBJECT, subject_id=certificate.id)
