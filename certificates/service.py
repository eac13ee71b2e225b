"""The certificate registry: submit, find, issue, revoke, supersede, and the audit trail of each."""

import base64
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lxml import etree
from sqlalchemy import Connection, Executable, bindparam, exists, insert, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm.attributes import instance_dict
from sqlmodel import Session, SQLModel, col, select

from certificates.findings import Severity
from certificates.models import (
    Certificate,
    CertificateFilter,
    CertificateKind,
    CertificatePage,
    CertificateRead,
    CertificateStatus,
    ValidationReport,
    new_certificate_id,
)
from certificates.summary import CertificateSummary, summarize_certificate
from certificates.validation import check_root, validate_root
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
from storage.events import dispatch_in_transaction
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


def _already_registered(certificate_id: str) -> ConflictError:
    return ConflictError(
        f"This document is already registered as certificate {certificate_id}.",
        extra={"certificateId": certificate_id},
    )


ModelT = TypeVar("ModelT", bound=SQLModel)

# Registration writes its rows with Core INSERTs (one multi-row statement per table for a batch): building
# SQLModel objects and flushing them through the unit of work cost more than validating the documents.
_DOCUMENTS_TABLE = SQLModel.metadata.tables["stored_documents"]
_CERTIFICATES_TABLE = SQLModel.metadata.tables["certificates"]
_EVENTS_TABLE = SQLModel.metadata.tables["audit_events"]
# Built once: constructing a statement (and its cache key) per submission cost more than running it.
_INSERT_DOCUMENTS = insert(_DOCUMENTS_TABLE)
_INSERT_CERTIFICATES = insert(_CERTIFICATES_TABLE)
_INSERT_EVENTS = insert(_EVENTS_TABLE).returning(_EVENTS_TABLE.c.subject_id, _EVENTS_TABLE.c.id)
# Whether this lab registered the bytes (its certificate's id) and whether they are stored (by anyone).
_REGISTERED_AND_STORED = select(
    select(_CERTIFICATES_TABLE.c.id)
    .where(
        _CERTIFICATES_TABLE.c.organization_id == bindparam("organization_id"),
        _CERTIFICATES_TABLE.c.sha256 == bindparam("sha256"),
    )
    .scalar_subquery(),
    exists().where(_DOCUMENTS_TABLE.c.sha256 == bindparam("sha256")),
)


def _execute_rows(connection: Connection, statement: Executable, rows: list[dict[str, Any]]) -> Any:
    """Run an INSERT for some rows: one plain execution for a single row, one multi-row statement for more."""
    # A one-element list would take the executemany path, whose setup costs more than the insert itself.
    return connection.execute(statement, rows[0] if len(rows) == 1 else rows)


def _as_loaded(model: type[ModelT], values: dict[str, Any]) -> ModelT:
    """An instance of `model` holding `values` as if loaded from its row (written by a Core INSERT), in no session."""
    # Callers and event listeners read it like the object the ORM would have made; the model's constructor
    # (defaults, SQLModel's per-field instrumentation) costs 45-140 µs, this 3 µs.
    instance = sa_inspect(model).class_manager.new_instance()
    instance_dict(instance).update(values)
    return instance


def _certificate_row(
    actor: Actor,
    *,
    summary: CertificateSummary,
    schema_version: str | None,
    digest: str,
    size: int,
    content_type: str,
    status: CertificateStatus,
    public: bool,
) -> dict[str, Any]:
    """The `certificates` row of a validated document, with the values the model's defaults would give."""
    now = utc_now()
    return {
        "id": new_certificate_id(),
        "organization_id": actor.organization.id,
        "kind": CertificateKind.calibration_certificate,
        "schema_version": schema_version,
        "unique_identifier": summary.unique_identifier,
        "item_name": summary.item_name,
        "item_manufacturer": summary.item_manufacturer,
        "item_model": summary.item_model,
        "item_serial": summary.item_serial,
        "performance_begin": summary.performance_begin,
        "performance_end": summary.performance_end,
        "issue_date": summary.issue_date,
        "status": status,
        "status_reason": None,
        "public": public,
        "sha256": digest,
        "content_type": content_type,
        "size": size,
        "supersedes_id": None,
        "superseded_by_id": None,
        "created_at": now,
        "updated_at": now,
    }


def _document_row(content: bytes, *, digest: str, content_type: str) -> dict[str, Any]:
    """The `stored_documents` row of some bytes (what `store_document` would write)."""
    return {
        "sha256": digest,
        "content_type": content_type,
        "size": len(content),
        "content": content,
        "created_at": utc_now(),
    }


def _insert_registered(
    session: Session,
    *,
    actor: Actor,
    documents: list[dict[str, Any]],
    certificates: list[dict[str, Any]],
    source: str,
) -> None:
    """Insert new documents and certificates, then their "submitted" events, each dispatched to the listeners."""
    # The session's connection (its transaction), without the ORM's execution layer: these are plain Core rows.
    connection = session.connection()
    # Documents first: the certificates' foreign keys need them.
    if documents:
        _execute_rows(connection, _INSERT_DOCUMENTS, documents)
    _execute_rows(connection, _INSERT_CERTIFICATES, certificates)
    events = [
        {
            "subject_kind": SUBJECT,
            "subject_id": row["id"],
            "action": "submitted",
            "actor_organization_id": actor.organization.id,
            "actor_key_id": actor.key_id,
            "reason": None,
            "details": {"sha256": row["sha256"], "source": source, "status": row["status"]},
            "at": utc_now(),
        }
        for row in certificates
    ]
    # The listeners get each event with its row's id and time, as after a flush. The ids are matched by subject
    # (one new certificate each), not by position: asking for them in row order makes SQLite insert row by row.
    ids: dict[str, int] = {subject_id: id_ for subject_id, id_ in _execute_rows(connection, _INSERT_EVENTS, events)}
    for values in events:
        dispatch_in_transaction(session, _as_loaded(AuditEvent, {"id": ids[values["subject_id"]], **values}))


def _new_document_rows(
    session: Session, rows: Sequence[tuple[bytes, str]], *, content_type: str
) -> list[dict[str, Any]]:
    """Rows for the (content, digest) pairs not stored yet (documents are stored once, whoever sent them)."""
    stored: set[str] = set()
    digests = [digest for _, digest in rows]
    for chunk in _chunks(digests):
        column = _DOCUMENTS_TABLE.c.sha256
        # `IN` binds expand (the SQL is re-rendered per call); one digest needs none.
        statement = select(column).where(column == chunk[0] if len(chunk) == 1 else column.in_(chunk))
        stored.update(session.execute(statement).scalars())
    return [
        _document_row(content, digest=digest, content_type=content_type)
        for content, digest in rows
        if digest not in stored
    ]


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
    # Core statements on the tables: the ORM's compilation of entity queries costs more than the query.
    parameters = {"organization_id": actor.organization.id, "sha256": digest}
    existing, stored = session.connection().execute(_REGISTERED_AND_STORED, parameters).one()
    if existing is not None:
        raise _already_registered(existing)
    row = _certificate_row(
        actor,
        summary=summarize_certificate(root),
        schema_version=report.schema_version,
        digest=digest,
        size=len(content),
        content_type=content_type,
        status=CertificateStatus.issued if issue else CertificateStatus.draft,
        public=public,
    )
    documents = [] if stored else [_document_row(content, digest=digest, content_type=content_type)]
    _insert_registered(session, actor=actor, documents=documents, certificates=[row], source=source)
    return _as_loaded(Certificate, row), report


DocumentCheck = Callable[[bytes, etree._Element], object]
"""An extra per-document check before registering (e.g. signature verification); raises a DomainError."""

_IN_CHUNK = 500  # digests per IN (...) query: well under every database's bound-parameter limit


@dataclass
class Examination:
    """What registering a document needs from its bytes alone: digest, verdict and index facts, or its refusal.

    Made without the database, so a batch's documents can be examined in other processes (it pickles).
    """

    sha256: str
    schema_version: str | None = None
    summary: CertificateSummary | None = None
    error: XmlRejected | DomainError | None = None


def examine_document(
    content: bytes, *, max_bytes: int, check: DocumentCheck | None = None, sha256: str | None = None
) -> Examination:
    """Parse, validate (the verdict only), check and summarise one document of a batch."""
    examination = Examination(sha256=sha256 or sha256_hex(content))
    try:
        root = parse_xml(content, max_bytes=max_bytes)
        # Only the verdict: the findings of an accepted document are not part of the batch's answer.
        validation = check_root(root, verdict_only=True)
        if not validation.valid:
            raise DocumentRejectedError(validation.report())
        if check is not None:
            check(content, root)
    except (XmlRejected, DomainError) as error:
        examination.error = error
        return examination
    examination.schema_version = validation.schema_version
    examination.summary = summarize_certificate(root)
    return examination


@dataclass
class BatchOutcome:
    """One document of a batch: the id of its certificate once registered, or the error that refused it."""

    name: str
    sha256: str
    certificate_id: str | None = None
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
    examinations: Sequence[Examination] | None = None,
) -> list[BatchOutcome]:
    """Register many documents in the caller's transaction, each on its own merits.

    Every document is parsed and validated like `submit_certificate`; a malformed, invalid or duplicate one
    (same bytes earlier in the batch, or already registered by this organization) is reported in its
    outcome and the others still register. The valid ones are inserted together (one existence query, one
    multi-row INSERT per table) and each gets its "submitted" audit event, dispatched to the listeners as
    single submissions' events are. Outcomes come back in the order of `documents`.
    `examinations`, one per document in order (made elsewhere, e.g. in other processes), replaces parsing,
    validating and `check` here; without them a copy of an earlier entry is refused without being parsed.
    """
    if examinations is not None and len(examinations) != len(documents):
        raise ValueError(f"{len(examinations)} examinations for {len(documents)} documents")
    outcomes: list[BatchOutcome] = []
    # Only each document's row is kept (the parsed trees are dropped): a large batch never holds them all.
    prepared: list[tuple[BatchOutcome, dict[str, Any], bytes]] = []
    accepted: dict[str, str] = {}  # digest -> name of the entry that brought it
    status = CertificateStatus.issued if issue else CertificateStatus.draft
    for index, (name, content) in enumerate(documents):
        given = examinations[index] if examinations is not None else None
        outcome = BatchOutcome(name=name, sha256=given.sha256 if given is not None else sha256_hex(content))
        outcomes.append(outcome)
        first = accepted.get(outcome.sha256)
        if first is not None:
            outcome.error = ConflictError(f"The same bytes as entry {first!r} of this batch.")
            continue
        examination = given or examine_document(content, max_bytes=max_bytes, check=check, sha256=outcome.sha256)
        if examination.error is not None:
            outcome.error = examination.error
            continue
        assert examination.summary is not None  # an accepted document always has its index facts
        accepted[outcome.sha256] = name
        row = _certificate_row(
            actor,
            summary=examination.summary,
            schema_version=examination.schema_version,
            digest=outcome.sha256,
            size=len(content),
            content_type=content_type,
            status=status,
            public=public,
        )
        prepared.append((outcome, row, content))
    if not prepared:
        return outcomes

    registered: dict[str, str] = {}
    table = _CERTIFICATES_TABLE
    for chunk in _chunks([outcome.sha256 for outcome, _, _ in prepared]):
        statement = select(table.c.sha256, table.c.id).where(
            table.c.organization_id == actor.organization.id, table.c.sha256.in_(chunk)
        )
        registered.update((sha256, id_) for sha256, id_ in session.execute(statement))
    rows: list[dict[str, Any]] = []
    contents: list[tuple[bytes, str]] = []
    for outcome, row, content in prepared:
        if outcome.sha256 in registered:
            outcome.error = _already_registered(registered[outcome.sha256])
            continue
        outcome.certificate_id = row["id"]
        rows.append(row)
        contents.append((content, outcome.sha256))
    if rows:
        new_documents = _new_document_rows(session, contents, content_type=content_type)
        _insert_registered(session, actor=actor, documents=new_documents, certificates=rows, source=source)
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
