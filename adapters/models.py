"""Tables of the adapter framework and their API schemas.

The landing zone is append-only: a `LandingMessage` keeps the exact bytes a source sent with their provenance
envelope and the outcome decided when it arrived (accepted or quarantined). Duplicates are not stored again;
`AdapterCounters` counts them so that received = accepted + quarantined + duplicates always reconciles.
Canonical records point back to the raw message they came from.
"""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field as PydanticField
from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import utc_now
from storage.schemas import ApiSchema


def new_id() -> str:
    """A fresh random identifier."""
    return str(uuid.uuid4())


class LandingOutcome(StrEnum):
    """What became of an inbound message when it arrived."""

    accepted = "accepted"
    quarantined = "quarantined"


class CommandStatus(StrEnum):
    """Life of a write-back command: pending → sent → acknowledged, or failed (retried) → dead-lettered."""

    pending = "pending"
    sent = "sent"
    acknowledged = "acknowledged"
    failed = "failed"
    dead_lettered = "dead-lettered"
    compensated = "compensated"
    blocked = "blocked"


class DeliveryStatus(StrEnum):
    """Delivery of one event to one webhook subscriber."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    dead = "dead"


# --- configuration and health -----------------------------------------------------------------------------


class AdapterInstance(SQLModel, table=True):
    """An adapter as deployed: which plug-in, its version when last run, and its configuration."""

    __tablename__ = "adapter_instances"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    adapter: str = Field(max_length=100, index=True)  # entry-point name of the plug-in
    adapter_version: str = Field(max_length=50)
    organization_id: str | None = Field(default=None, foreign_key="organizations.id", max_length=36, index=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class AdapterHealth(SQLModel, table=True):
    """The latest health of an adapter instance as its runtime last reported it."""

    __tablename__ = "adapter_health"

    instance_id: str = Field(primary_key=True, foreign_key="adapter_instances.id", max_length=36)
    connected: bool = False
    last_seen: datetime | None = None  # last message or successful poll
    lag_s: float | None = None  # how far behind the source the adapter is
    last_error: str | None = None
    checked_at: datetime = Field(default_factory=utc_now)


class AdapterCounters(SQLModel, table=True):
    """Running totals of one instance's landing zone (updated in the landing transaction)."""

    __tablename__ = "adapter_counters"

    instance_id: str = Field(primary_key=True, foreign_key="adapter_instances.id", max_length=36)
    received: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    accepted: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    quarantined: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    duplicates: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    updated_at: datetime = Field(default_factory=utc_now)


class AdapterCheckpoint(SQLModel, table=True):
    """Where an instance resumes reading one stream of its source (committed with the landed messages)."""

    __tablename__ = "adapter_checkpoints"

    instance_id: str = Field(primary_key=True, foreign_key="adapter_instances.id", max_length=36)
    stream: str = Field(primary_key=True, max_length=300)
    cursor: str = Field(max_length=1000)
    updated_at: datetime = Field(default_factory=utc_now)


# --- landing zone ------------------------------------------------------------------------------------------


class LandingMessage(SQLModel, table=True):
    """One inbound message, raw and immutable, with its provenance envelope and landing outcome."""

    __tablename__ = "landing_messages"
    __table_args__ = (UniqueConstraint("instance_id", "dedup_key"),)

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    adapter: str = Field(max_length=100)
    adapter_version: str = Field(max_length=50)
    source: str = Field(max_length=1000)  # where it came from: topic URL, endpoint URL, node id, file name
    transport: str = Field(max_length=30)
    stream: str = Field(default="default", max_length=300)
    received_at: datetime = Field(default_factory=utc_now)
    source_time: datetime | None = None
    content_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64, index=True)
    cursor: str | None = Field(default=None, max_length=1000)
    dedup_key: str = Field(max_length=300)  # the source's own message identity, else the sha256
    outcome: str = Field(max_length=20)  # LandingOutcome
    error_code: str | None = Field(default=None, max_length=60)
    error_detail: str | None = None
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CanonicalRecordRow(SQLModel, table=True):
    """A canonical record parsed from a landed message (JSON as its schema defines), and its fusion state."""

    __tablename__ = "canonical_records"
    __table_args__ = (Index("ix_canonical_records_kind_key", "kind", "natural_key"),)

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    message_id: int = Field(foreign_key="landing_messages.id", index=True)
    kind: str = Field(max_length=40)  # RecordKind
    schema_version: str = Field(max_length=20)
    natural_key: str = Field(max_length=300)  # authoritative identity of the thing described
    record: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source_time: datetime | None = None
    recorded_at: datetime = Field(default_factory=utc_now)
    fused_at: datetime | None = Field(default=None, index=True)  # None until it is in the knowledge graph
    graph_iri: str | None = Field(default=None, max_length=500)


class AdapterAttempt(SQLModel, table=True):
    """One try of an operation against a source (connect, poll, command), kept as retry evidence."""

    __tablename__ = "adapter_attempts"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    operation: str = Field(max_length=60)
    attempt: int
    succeeded: bool
    error: str | None = None
    delay_s: float | None = None  # backoff waited before the next try
    at: datetime = Field(default_factory=utc_now)


class AdapterEvidence(SQLModel, table=True):
    """An observation the hub made itself about an instance, used to decide a maturity criterion."""

    __tablename__ = "adapter_evidence"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    adapter_version: str = Field(max_length=50)
    criterion: str = Field(max_length=10, index=True)  # e.g. "L1.3"
    passed: bool
    summary: str = Field(max_length=1000)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utc_now)


class AdapterAssessment(SQLModel, table=True):
    """One maturity assessment of an instance as deployed (adapter version + configuration), kept for its trend."""

    __tablename__ = "adapter_assessments"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    adapter: str = Field(max_length=100)
    adapter_version: str = Field(max_length=50)
    config_sha256: str = Field(max_length=64)  # the configuration assessed (a level belongs to a deployment)
    achieved_level: int  # 0 when not even every L1 criterion passes
    passed: int
    total: int
    criteria: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    service_levels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    assessed_at: datetime = Field(default_factory=utc_now)


# --- events, webhooks and commands -------------------------------------------------------------------------


class OutboxEvent(SQLModel, table=True):
    """A domain event as a CloudEvents 1.0 envelope, written in the transaction of the change it reports."""

    __tablename__ = "outbox_events"

    seq: int | None = Field(default=None, primary_key=True)  # delivery order
    id: str = Field(default_factory=new_id, max_length=36, unique=True)  # CloudEvents `id`
    source: str = Field(max_length=500)  # CloudEvents `source` (URI-reference)
    type: str = Field(max_length=100, index=True)  # e.g. "sample.received"
    subject: str | None = Field(default=None, max_length=500)
    time: datetime = Field(default_factory=utc_now)
    datacontenttype: str = Field(default="application/json", max_length=100)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    instance_id: str | None = Field(default=None, max_length=36, index=True)
    organization_id: str | None = Field(default=None, max_length=36, index=True)  # tenant who may read it
    # Indexed: the MQTT publisher looks for the unpublished events without scanning the published history.
    mqtt_published_at: datetime | None = Field(default=None, index=True)


class EventSubjectState(SQLModel, table=True):
    """What the event deriver last knew of one subject (sample, result, instrument, complaint), so that each
    change is reported once; `due_at` is the deadline a time-driven event watches (complaint due, calibration
    valid until)."""

    __tablename__ = "event_subject_states"

    key: str = Field(primary_key=True, max_length=400)  # "{organization}|{topic}|{natural key}"
    topic: str = Field(max_length=40)  # sample, result, report, equipment, calibration, complaint
    state: str | None = Field(default=None, max_length=60)
    observed_at: datetime | None = None  # time of the record that set the state (older records never win)
    due_at: datetime | None = Field(default=None, index=True)
    due_fired_at: datetime | None = None
    subject: str | None = Field(default=None, max_length=500)  # CloudEvents subject of its events
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    instance_id: str | None = Field(default=None, max_length=36)
    organization_id: str | None = Field(default=None, max_length=36)
    updated_at: datetime = Field(default_factory=utc_now)


class WebhookSubscription(SQLModel, table=True):
    """A subscriber's endpoint for events, with the secret its deliveries are signed with."""

    __tablename__ = "webhook_subscriptions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", max_length=36, index=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)  # Standard Webhooks "whsec_<base64>"
    event_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # empty: all
    enabled: bool = True
    created_at: datetime = Field(default_factory=utc_now)


class WebhookDelivery(SQLModel, table=True):
    """Delivery state of one event to one subscription (retried with backoff, then dead)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(foreign_key="webhook_subscriptions.id", max_length=36, index=True)
    event_id: str = Field(max_length=36, index=True)
    status: str = Field(default=DeliveryStatus.pending, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utc_now)
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class AdapterCommand(SQLModel, table=True):
    """A write-back to a source (LIMS transition, OPC UA method call, MQTT command, platform push)."""

    __tablename__ = "adapter_commands"
    __table_args__ = (UniqueConstraint("instance_id", "idempotency_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    instance_id: str = Field(foreign_key="adapter_instances.id", max_length=36, index=True)
    kind: str = Field(max_length=60)
    target: str = Field(max_length=500)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    idempotency_key: str = Field(max_length=255)
    status: str = Field(default=CommandStatus.pending, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utc_now)
    last_error: str | None = None
    ack: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    requested_by: str | None = Field(default=None, max_length=36)  # organization id
    created_at: datetime = Field(default_factory=utc_now)
    acknowledged_at: datetime | None = None
    # Why it is blocked (rule findings) or was compensated; the command to run if the source refuses it for good.
    reasons: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    compensation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    compensates_id: str | None = Field(default=None, max_length=36)  # the refused command this one compensates


# --- cross-domain rules ------------------------------------------------------------------------------------


class EnvironmentLimit(SQLModel, table=True):
    """The range a test method allows for one environmental quantity in one room."""

    __tablename__ = "environment_limits"
    __table_args__ = (UniqueConstraint("room", "quantity"),)

    id: int | None = Field(default=None, primary_key=True)
    room: str = Field(max_length=200)
    quantity: str = Field(max_length=60)  # canonical quantity name, e.g. "temperature"
    unit: str = Field(max_length=40)  # UCUM
    minimum: str | None = Field(default=None, max_length=40)  # decimal text, digits kept
    maximum: str | None = Field(default=None, max_length=40)
    method: str | None = Field(default=None, max_length=100)  # the standard/method requiring it


class RuleFlag(SQLModel, table=True):
    """A finding of a cross-domain rule on fused data (e.g. a test run during an environment excursion)."""

    __tablename__ = "rule_flags"

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=60, index=True)  # "environment-excursion", "calibration-expired", …
    subject_kind: str = Field(max_length=40)  # canonical record kind or "report"
    subject_key: str = Field(max_length=300, index=True)
    reason: str
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    raised_at: datetime = Field(default_factory=utc_now)
    cleared_at: datetime | None = None
    # Where and when the finding happened (an excursion's room and reading time): lets later records find it.
    room: str | None = Field(default=None, max_length=200, index=True)
    occurred_at: datetime | None = Field(default=None, index=True)
    # The organization owning the adapter instance that landed the flagged record: it (and admins) may read it.
    organization_id: str | None = Field(default=None, foreign_key="organizations.id", max_length=36, index=True)


class RuleTestResult(SQLModel, table=True):
    """What the rules need of a landed test result: its room, time window, sample and instrument (indexed)."""

    __tablename__ = "rule_test_results"

    natural_key: str = Field(primary_key=True, max_length=300)  # the canonical record's natural key
    record_id: int
    instance_id: str = Field(max_length=36)
    lab_id: str | None = Field(default=None, max_length=300)
    sample_id: str = Field(max_length=300, index=True)
    room: str | None = Field(default=None, max_length=300, index=True)
    instrument_iri: str | None = Field(default=None, max_length=300, index=True)
    started_at: datetime | None = None  # window start (measured_at - default duration when the source gave none)
    measured_at: datetime | None = Field(default=None, index=True)


class RuleCalibration(SQLModel, table=True):
    """A calibration's validity for one instrument, as the rules check it (indexed by instrument and expiry)."""

    __tablename__ = "rule_calibrations"

    certificate_number: str = Field(primary_key=True, max_length=300)
    instrument_iri: str = Field(max_length=300, index=True)
    calibrated_on: datetime
    valid_until: datetime = Field(index=True)
    result: str = Field(max_length=40)
    record_id: int
    instance_id: str = Field(max_length=36)
    expiry_checked_at: datetime | None = None  # when apply_due_rules handled its expiry (flagged or superseded)


class RuleEquipmentState(SQLModel, table=True):
    """An instrument's status from a given moment on, as the rules look it up (by instrument and time)."""

    __tablename__ = "rule_equipment_states"
    # The rules ask "the latest status of instrument X at or before t": one composite index answers it.
    __table_args__ = (Index("ix_rule_equipment_states_instrument_time", "instrument_iri", "observed_at"),)

    natural_key: str = Field(primary_key=True, max_length=300)  # the equipment-status record's natural key
    instrument_iri: str = Field(max_length=300)
    observed_at: datetime
    status: str = Field(max_length=40)  # hub vocabulary: idle, running, fault, maintenance, offline
    record_id: int
    instance_id: str = Field(max_length=36)


# --- API schemas -------------------------------------------------------------------------------------------


class AdapterInstanceCreate(ApiSchema):
    """Configure an instance of a discovered adapter plug-in."""

    name: str = PydanticField(min_length=1, max_length=200)
    adapter: str = PydanticField(min_length=1, max_length=100, description="Entry-point name of the plug-in")
    config: dict[str, Any] = PydanticField(default_factory=dict, description="Validated by the plug-in's schema")
    enabled: bool = True
    organization_id: str | None = PydanticField(default=None, max_length=36)


class AdapterInstanceUpdate(ApiSchema):
    """Change an instance's configuration or switch it on/off."""

    config: dict[str, Any] | None = None
    enabled: bool | None = None


class AdapterHealthRead(ApiSchema):
    """Health as the runtime last reported it, judged against the health timeout."""

    connected: bool
    healthy: bool
    last_seen: datetime | None
    lag_s: float | None
    last_error: str | None
    checked_at: datetime | None


class AdapterCountersRead(ApiSchema):
    """Landing totals; `reconciled` is received == accepted + quarantined + duplicates."""

    received: int
    accepted: int
    quarantined: int
    duplicates: int
    reconciled: bool


class AdapterInstanceRead(ApiSchema):
    """A configured adapter instance."""

    id: str
    name: str
    adapter: str
    adapter_version: str
    organization_id: str | None
    config: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class LandingMessageRead(ApiSchema):
    """A landed message's provenance envelope (the raw bytes are at `…/messages/{id}/raw`)."""

    id: int
    instance_id: str
    adapter: str
    adapter_version: str
    source: str
    transport: str
    stream: str
    received_at: datetime
    source_time: datetime | None
    content_type: str
    size: int
    sha256: str
    cursor: str | None
    dedup_key: str
    outcome: str
    error_code: str | None
    error_detail: str | None


class CanonicalRecordRead(ApiSchema):
    """A canonical record with its link to the raw envelope and its schema version."""

    id: int
    instance_id: str
    message_id: int
    kind: str
    schema_version: str
    natural_key: str
    record: dict[str, Any]
    source_time: datetime | None
    recorded_at: datetime
    fused_at: datetime | None
    graph_iri: str | None
