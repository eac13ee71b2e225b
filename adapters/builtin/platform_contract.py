"""Payloads of the hub's provincial-platform contract v1 (`openapi/platform-contract.yaml`).

No provincial inspection/testing public-service platform (浙里检, 泰检易, …) publishes an API, so the hub
defines the exchange it offers them: labs' activity, reports and certificates pushed to the platform;
directories of accredited labs and standards, and complaints filed with the platform, pulled from it. These
models are what the adapter sends and reads and what the simulator serves; a contract test checks the
simulator's real answers against the YAML document.
"""

from datetime import date
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

CONTRACT_VERSION = "1.0.0"
BASE_PATH = "/platform/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeEntry(_Model):
    """One line of an accreditation scope."""

    standard: str = Field(min_length=1, max_length=100)
    test_item: str | None = Field(default=None, alias="testItem", max_length=300)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LabEntry(_Model):
    """An accredited lab in the platform's directory."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lab_id: str = Field(alias="labId", min_length=1, max_length=100, description="CNAS/CMA number")
    body: Literal["CNAS", "CMA"]
    number: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=300)
    credit_code: str | None = Field(
        default=None, alias="creditCode", pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"
    )
    status: Literal["active", "suspended", "withdrawn"]
    valid_from: date | None = Field(default=None, alias="validFrom")
    valid_to: date | None = Field(default=None, alias="validTo")
    scope: list[ScopeEntry] = Field(default_factory=list)
    updated_at: AwareDatetime = Field(alias="updatedAt")


class StandardEntry(_Model):
    """A standard in the platform's directory."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    code: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=500)
    title_zh: str | None = Field(default=None, alias="titleZh", max_length=500)
    status: Literal["draft", "current", "replaced", "withdrawn"]
    published_on: date | None = Field(default=None, alias="publishedOn")
    implemented_on: date | None = Field(default=None, alias="implementedOn")
    replaces: list[str] = Field(default_factory=list)
    replaced_by: list[str] = Field(default_factory=list, alias="replacedBy")
    updated_at: AwareDatetime = Field(alias="updatedAt")


PlatformComplaintStatus = Literal["submitted", "accepted", "processing", "resolved", "rejected"]


class PlatformComplaint(_Model):
    """A complaint the public filed with the platform about a lab's testing service."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    complaint_id: str = Field(alias="complaintId", min_length=1, max_length=100)
    against_lab_id: str | None = Field(default=None, alias="againstLabId", max_length=100)
    subject: str = Field(min_length=1, max_length=2000)
    channel: str | None = Field(default=None, max_length=100)
    received_at: AwareDatetime = Field(alias="receivedAt")
    due_at: AwareDatetime = Field(alias="dueAt")
    status: PlatformComplaintStatus
    updated_at: AwareDatetime = Field(alias="updatedAt")


Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a directory or feed, ordered by (updatedAt, id); resume with `cursor`."""

    items: list[Item]
    cursor: str | None = Field(description="Pass back as `cursor` to continue after this page")
    more: bool = Field(description="Whether another page follows now")
    simulator: bool = Field(default=False, description="True when a simulator answered")


ActivityKind = Literal["order", "sample", "equipment", "environment", "report-change"]


class ActivityItem(_Model):
    """One thing that happened in the lab."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: ActivityKind
    id: str = Field(min_length=1, max_length=300)
    occurred_at: AwareDatetime = Field(alias="occurredAt")
    data: dict[str, Any] = Field(default_factory=dict)


class ActivityPush(_Model):
    """A batch of a lab's activity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lab_id: str = Field(alias="labId", min_length=1, max_length=100)
    items: list[ActivityItem] = Field(min_length=1, max_length=1000)


class ReportPush(_Model):
    """An issued test report or calibration certificate, by reference (number, hash, where to verify it)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lab_id: str = Field(alias="labId", min_length=1, max_length=100)
    report_number: str = Field(alias="reportNumber", min_length=1, max_length=300)
    kind: Literal["test-report", "calibration-certificate"]
    sample_id: str | None = Field(default=None, alias="sampleId", max_length=300)
    issued_at: AwareDatetime = Field(alias="issuedAt")
    title: str | None = Field(default=None, max_length=500)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    verification_url: str | None = Field(default=None, alias="verificationUrl", max_length=2000)


class ReportModification(_Model):
    """A change to a report the platform already holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    change: Literal["status-changed", "republished", "result-changed", "revoked", "superseded", "amended"]
    modified_at: AwareDatetime = Field(alias="modifiedAt")
    reason: str | None = Field(default=None, max_length=2000)
    status: str | None = Field(default=None, max_length=60)
    replacement_report_number: str | None = Field(default=None, alias="replacementReportNumber", max_length=300)


class Receipt(BaseModel):
    """The platform's acknowledgement of a push; a replay with the same Idempotency-Key returns the first one."""

    model_config = ConfigDict(populate_by_name=True)

    receipt_id: str = Field(alias="receiptId")
    received_at: AwareDatetime = Field(alias="receivedAt")
    duplicate: bool = Field(description="True when this key was seen before and nothing new was recorded")
    simulator: bool = Field(default=False, description="True when a simulator answered")


def dump(model: BaseModel) -> dict[str, Any]:
    """Wire JSON of a contract model (camelCase aliases, no nulls)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
