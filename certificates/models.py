"""Certificate registry table and the API schemas around it."""

import os
import time
import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import Field as PydanticField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from certificates.findings import Finding
from storage.models import utc_now
from storage.schemas import ApiSchema


class CertificateKind(StrEnum):
    """What sort of document a registry entry holds."""

    calibration_certificate = "calibration-certificate"
    test_report = "test-report"


class CertificateStatus(StrEnum):
    """Lifecycle: draft → issued → revoked, or → superseded by an amendment."""

    draft = "draft"
    issued = "issued"
    revoked = "revoked"
    superseded = "superseded"


def new_certificate_id() -> str:
    """A UUIDv7-style id: time-ordered, so ids sort by creation and serve as pagination cursors."""
    milliseconds = time.time_ns() // 1_000_000
    value = (milliseconds & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


class Certificate(SQLModel, table=True):
    """One registered certificate: its index fields, status and the hash of its exact bytes."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("organization_id", "sha256"),)

    id: str = Field(default_factory=new_certificate_id, primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=36)
    kind: str = Field(default=CertificateKind.calibration_certificate, max_length=40)
    schema_version: str | None = Field(default=None, max_length=20)
    unique_identifier: str | None = Field(default=None, index=True, max_length=500)
    item_name: str | None = Field(default=None, max_length=500)
    item_manufacturer: str | None = Field(default=None, index=True, max_length=500)
    item_model: str | None = Field(default=None, index=True, max_length=500)
    item_serial: str | None = Field(default=None, index=True, max_length=500)
    performance_begin: date | None = None
    performance_end: date | None = Field(default=None, index=True)
    issue_date: date | None = Field(default=None, index=True)
    status: str = Field(default=CertificateStatus.draft, index=True, max_length=20)
    status_reason: str | None = None
    public: bool = False
    sha256: str = Field(foreign_key="stored_documents.sha256", index=True, max_length=64)
    content_type: str = Field(max_length=100)
    size: int
    supersedes_id: str | None = Field(default=None, max_length=36)
    superseded_by_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class ValidationReport(ApiSchema):
    """The outcome of validating a document: schema verdict plus rule findings."""

    valid: bool = PydanticField(description="Schema-valid and no error-level finding.")
    schema_valid: bool
    schema_version: str | None
    findings: list[Finding]


class CertificateRead(ApiSchema):
    """A registry entry as the API shows it."""

    id: str
    organization_id: str
    kind: CertificateKind
    schema_version: str | None
    unique_identifier: str | None
    item_name: str | None
    item_manufacturer: str | None
    item_model: str | None
    item_serial: str | None
    performance_begin: date | None
    performance_end: date | None
    issue_date: date | None
    status: CertificateStatus
    status_reason: str | None
    public: bool
    sha256: str
    size: int
    supersedes_id: str | None
    superseded_by_id: str | None
    created_at: datetime
    updated_at: datetime


class CertificateCreated(CertificateRead):
    """Answer to a submission: the entry plus the validation findings (warnings and info)."""

    findings: list[Finding]


class BatchItemStatus(StrEnum):
    """What became of one entry of a batch submission."""

    registered = "registered"
    refused = "refused"


class BatchItemProblem(ApiSchema):
    """Why one entry of a batch was refused: a problem `code`, a human `detail`, validation findings if any."""

    code: str
    detail: str
    findings: list[Finding] | None = None


class BatchItemOutcome(ApiSchema):
    """One entry of a batch: registered (with its certificate id) or refused (with its problem)."""

    name: str = PydanticField(description="The entry's name in the ZIP archive")
    status: BatchItemStatus
    id: str | None = PydanticField(default=None, description="The registered certificate's id")
    sha256: str | None = PydanticField(default=None, description="SHA-256 of the entry's bytes")
    problem: BatchItemProblem | None = None


class BatchSubmissionResult(ApiSchema):
    """Answer to a batch submission: counts and one outcome per archive entry, in archive order."""

    registered: int
    refused: int
    items: list[BatchItemOutcome]


class CertificateWithContent(CertificateRead):
    """A registry entry with its document exported as JSON."""

    content: dict[str, object]


class CertificatePage(ApiSchema):
    """One page of a certificate listing; pass `next_cursor` as `cursor` for the next page."""

    items: list[CertificateRead]
    next_cursor: str | None


class CertificateFilter(ApiSchema):
    """Search criteria for the registry listing."""

    organization_id: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    status: CertificateStatus | None = None
    unique_identifier: str | None = None
    calibrated_from: date | None = None
    calibrated_to: date | None = None
    issued_from: date | None = None
    issued_to: date | None = None


class RevokeRequest(ApiSchema):
    """Why a certificate is revoked."""

    reason: str = PydanticField(min_length=3, max_length=2000)


class SupersedeRequest(ApiSchema):
    """Which registered certificate amends this one, and why."""

    replacement_id: str = PydanticField(min_length=1, max_length=36)
    reason: str = PydanticField(min_length=3, max_length=2000)


class IssueRequest(ApiSchema):
    """Optional remark when a draft is issued."""

    reason: str | None = PydanticField(default=None, max_length=2000)


class CertificateEventRead(ApiSchema):
    """One entry of a certificate's audit trail."""

    id: int
    action: str
    actor_organization_id: str | None
    actor_key_id: str | None
    reason: str | None
    details: dict[str, object]
    at: datetime
