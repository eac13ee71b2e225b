"""Primitive tables every domain builds on: stored documents, the audit trail and idempotency records."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utc_now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


class StoredDocument(SQLModel, table=True):
    """The exact bytes someone submitted, addressed by their SHA-256; never changed once written."""

    __tablename__ = "stored_documents"

    sha256: str = Field(primary_key=True, max_length=64)
    content_type: str = Field(max_length=100)
    size: int
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)


class AuditEvent(SQLModel, table=True):
    """One append-only entry of the audit trail: who did what to which subject, when and why."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    subject_kind: str = Field(max_length=40, index=True)
    subject_id: str = Field(max_length=64, index=True)
    action: str = Field(max_length=40)
    actor_organization_id: str | None = Field(default=None, max_length=36)
    actor_key_id: str | None = Field(default=None, max_length=36)
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utc_now)


class IdempotencyRecord(SQLModel, table=True):
    """The answer once given to a request with an `Idempotency-Key`, replayed for retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(max_length=36)
    key: str = Field(max_length=255)
    request_sha256: str = Field(max_length=64)
    status_code: int
    response_body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)
