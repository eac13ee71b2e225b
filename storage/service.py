"""Writing and reading the storage primitives: documents by hash, audit events, idempotency records."""

import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.errors import ConflictError
from storage.events import dispatch_in_transaction
from storage.models import AuditEvent, IdempotencyRecord, StoredDocument


def sha256_hex(content: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(content).hexdigest()


def store_document(session: Session, *, content: bytes, content_type: str) -> StoredDocument:
    """Store bytes once under their hash (content-addressed, so re-storing is a no-op)."""
    digest = sha256_hex(content)
    existing = session.get(StoredDocument, digest)
    if existing is not None:
        return existing
    document = StoredDocument(sha256=digest, content_type=content_type, size=len(content), content=content)
    session.add(document)
    session.flush()  # no ORM relationship orders the inserts: the row must exist before FKs point at it
    return document


def record_event(
    session: Session,
    *,
    subject_kind: str,
    subject_id: str,
    action: str,
    actor_organization_id: str | None = None,
    actor_key_id: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    flush: bool = True,
) -> AuditEvent:
    """Append one event to the audit trail and dispatch it to the in-transaction listeners.

    `flush=False` is for callers recording many events at once (batch submission): they flush once
    afterwards, so the listeners see the event before the database gave it its id (its time is set).
    """
    event = AuditEvent(
        subject_kind=subject_kind,
        subject_id=subject_id,
        action=action,
        actor_organization_id=actor_organization_id,
        actor_key_id=actor_key_id,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    if flush:
        session.flush()  # listeners (transparency log, graph) need the event's id and time
    dispatch_in_transaction(session, event)
    return event


def list_events(session: Session, *, subject_kind: str, subject_id: str) -> list[AuditEvent]:
    """All events of one subject, oldest first."""
    statement = (
        select(AuditEvent)
        .where(AuditEvent.subject_kind == subject_kind, AuditEvent.subject_id == subject_id)
        .order_by(col(AuditEvent.id))
    )
    return list(session.exec(statement))


def find_idempotent_response(
    session: Session, *, organization_id: str, key: str, request_sha256: str
) -> IdempotencyRecord | None:
    """The stored answer for a retried request, or None; a reused key with another body is a conflict."""
    record = session.exec(
        select(IdempotencyRecord).where(
            IdempotencyRecord.organization_id == organization_id, IdempotencyRecord.key == key
        )
    ).first()
    if record is None:
        return None
    if record.request_sha256 != request_sha256:
        raise ConflictError("This Idempotency-Key was already used with a different request body.")
    return record


def save_idempotent_response(
    session: Session,
    *,
    organization_id: str,
    key: str,
    request_sha256: str,
    status_code: int,
    response_body: dict[str, Any],
) -> None:
    """Remember the answer given to a request carrying an Idempotency-Key."""
    session.add(
        IdempotencyRecord(
            organization_id=organization_id,
            key=key,
            request_sha256=request_sha256,
            status_code=status_code,
            response_body=response_body,
        )
    )
    try:
        session.flush()
    except IntegrityError as error:  # a concurrent retry won the race: the caller's transaction is void
        raise ConflictError("A request with this Idempotency-Key is being processed.") from error
