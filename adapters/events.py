"""Domain events as CloudEvents 1.0 in the outbox (written in the transaction of the change they report).

`emit_event` is the one way any code adds an event to the outbox. `emit_record_events` derives the domain
events of levels.md L4.1 from newly landed canonical records, inside the landing transaction, and
`emit_due_events` fires the time-driven ones (the worker calls it on every tick). Delivery (webhooks, MQTT)
happens after commit, in `adapters.delivery`.

Event types are the names of levels.md verbatim (`sample.received`, `result.verified`, …): the CloudEvents
spec only recommends a reverse-DNS prefix, and the hub is already named by `source`
(`/api/v1/adapters/{instance id}` for adapter-derived events, `/api/v1/certificates` for the registry's), so
`source` + `id` is globally unique. Extension attributes: `qihubseq` (outbox order, the events feed cursor),
`qihubinstance` (adapter instance) and `qihuborganization` (tenant). The payload (`data`) of every type is
described in `openapi/asyncapi.yaml`.

What each event means (each is derived once per change, from what the deriver last knew of its subject,
kept in `EventSubjectState` per organization):

* `sample.received` — the first time a sample is seen received (status received or later, or a
  `received_at`).
* `result.verified` — a test result's status becomes `verified`.
* `env.excursion` — the rules (`adapters.rules`) raised an `environment-excursion` flag: a reading left the
  range an `EnvironmentLimit` allows.
* `equipment.status.changed` — an instrument's status differs from its previous (newer-than-known) status.
* `calibration.expired` — time-driven: the latest calibration of an instrument reached its `valid_until`.
* `report.issued` — a sample's report is published (status `published`), or the registry issues a certificate.
* `report.modified` — an issued report changes: the sample leaves `published` or is republished with other
  content, one of its results changes, or a registry certificate is revoked or superseded.
* `complaint.deadline.near` — time-driven, once per complaint: its `due_at` is within
  `settings.complaint_warning_hours` and it is not closed.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field as PydanticField
from sqlalchemy import event as sa_event
from sqlmodel import Session, col, select

from adapters import webhooks
from adapters.canonical import (
    CalibrationEvent,
    CanonicalRecord,
    Complaint,
    EquipmentStatus,
    InstrumentRef,
    Sample,
    TestResult,
    record_json,
)
from adapters.framework import Clock
from adapters.models import AdapterInstance, EventSubjectState, OutboxEvent, RuleFlag
from certificates.service import Actor
from storage.errors import NotFoundError
from storage.models import AuditEvent
from storage.schemas import ApiSchema
from storage.settings import Settings

if TYPE_CHECKING:  # the pipeline imports this module
    from adapters.pipeline import RecordRow

SPEC_VERSION = "1.0"

SAMPLE_RECEIVED = "sample.received"
RESULT_VERIFIED = "result.verified"
ENV_EXCURSION = "env.excursion"
EQUIPMENT_STATUS_CHANGED = "equipment.status.changed"
CALIBRATION_EXPIRED = "calibration.expired"
REPORT_ISSUED = "report.issued"
REPORT_MODIFIED = "report.modified"
COMPLAINT_DEADLINE_NEAR = "complaint.deadline.near"
DOMAIN_EVENT_TYPES = (
    SAMPLE_RECEIVED,
    RESULT_VERIFIED,
    ENV_EXCURSION,
    EQUIPMENT_STATUS_CHANGED,
    CALIBRATION_EXPIRED,
    REPORT_ISSUED,
    REPORT_MODIFIED,
    COMPLAINT_DEADLINE_NEAR,
)

# Events other modules emit through `emit_event` (write-back commands' acknowledgements and failures).
COMMAND_ACKNOWLEDGED = "command.acknowledged"
COMMAND_DEAD_LETTERED = "command.dead-lettered"
EXTRA_EVENT_TYPES = (COMMAND_ACKNOWLEDGED, COMMAND_DEAD_LETTERED)

EXCURSION_RULE = "environment-excursion"
# Sample statuses (hub vocabulary) that mean the lab has the sample in hand.
RECEIVED_STATUSES = frozenset({"received", "in-testing", "to-be-verified", "verified", "published"})
PUBLISHED = "published"
VERIFIED = "verified"
CLOSED_COMPLAINT_STATUSES = frozenset({"closed", "rejected"})
_FLAGS_KEY = "qihub.events.new_rule_flags"
_EVENTED_FLAGS_KEY = "qihub.events.evented_rule_flags"
_STATE_QUERY_CHUNK = 500


def emit_event(
    session: Session,
    *,
    type: str,
    source: str,
    subject: str | None,
    data: dict[str, Any],
    time: datetime,
    instance_id: str | None = None,
    organization_id: str | None = None,
) -> OutboxEvent:
    """Add one event to the outbox; it is delivered (webhooks, MQTT) after the transaction commits."""
    event = OutboxEvent(
        type=type,
        source=source,
        subject=subject,
        data=data,
        time=time,
        instance_id=instance_id,
        organization_id=organization_id,
    )
    session.add(event)
    _react(session, event)
    return event


def instance_source(instance_id: str) -> str:
    """The CloudEvents `source` of events an adapter instance causes."""
    return f"/api/v1/adapters/{instance_id}"


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:  # SQLite hands back naive UTC when a column lost its type
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_cloudevent(event: OutboxEvent) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 structured-mode JSON object (what webhooks and MQTT carry)."""
    envelope: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": _rfc3339(event.time),
        "datacontenttype": event.datacontenttype,
    }
    if event.subject is not None:
        envelope["subject"] = event.subject
    if event.seq is not None:
        envelope["qihubseq"] = event.seq
    if event.instance_id is not None:
        envelope["qihubinstance"] = event.instance_id
    if event.organization_id is not None:
        envelope["qihuborganization"] = event.organization_id
    envelope["data"] = event.data
    return envelope


def cloudevent_bytes(event: OutboxEvent) -> bytes:
    """The structured-mode JSON body, compact and with stable key order (what gets signed)."""
    return json.dumps(to_cloudevent(event), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


# --- derivation from landed records ------------------------------------------------------------------------


def _instrument_key(instrument: InstrumentRef) -> str:
    return f"{instrument.manufacturer}/{instrument.model}/{instrument.serial}"


def _digest(record: CanonicalRecord) -> str:
    # The content of a record without where it came from: a re-delivery with the same content is no change.
    content = record_json(record)
    content.pop("envelope_id", None)
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _state_key(organization_id: str | None, topic: str, natural_key: str) -> str:
    return f"{organization_id or '-'}|{topic}|{natural_key}"[:400]


def _sample_key(lab_id: str | None, sample_id: str) -> str:
    return f"{lab_id or ''}/{sample_id}"


@dataclass
class _Deriver:
    """Derives the events of one landing batch, against the subject states it loaded once."""

    session: Session
    instance: AdapterInstance
    now: datetime
    states: dict[str, EventSubjectState]

    @property
    def organization_id(self) -> str | None:
        return self.instance.organization_id

    def state(self, topic: str, natural_key: str) -> EventSubjectState:
        key = _state_key(self.organization_id, topic, natural_key)
        state = self.states.get(key)
        if state is None:
            state = EventSubjectState(
                key=key, topic=topic, data={}, instance_id=self.instance.id, organization_id=self.organization_id
            )
            self.session.add(state)
            self.states[key] = state
        return state

    def touch(self, target: EventSubjectState, /, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(target, name, value)
        target.instance_id = self.instance.id
        target.updated_at = self.now

    def emit(self, type: str, *, subject: str, row: "RecordRow", data: dict[str, Any]) -> None:
        payload = {"recordId": row.id, "messageId": row.message_id, **data}
        emit_event(
            self.session,
            type=type,
            source=instance_source(self.instance.id),
            subject=subject,
            data=payload,
            time=self.now,
            instance_id=self.instance.id,
            organization_id=self.organization_id,
        )

    # One handler per record kind that has events.

    def sample(self, row: "RecordRow", record: Sample) -> None:
        state = self.state("sample", record.natural_key)
        if _stale(state, record.source_time):
            return
        previous, digest = state.state, _digest(record)
        subject = f"sample/{record.natural_key}"
        facts = dict(state.data)
        received = record.status in RECEIVED_STATUSES or record.received_at is not None
        if received and not facts.get("received"):
            facts["received"] = True
            self.emit(SAMPLE_RECEIVED, subject=subject, row=row, data={"sample": record_json(record)})
        report = {"kind": "sample-report", "sampleId": record.sample_id, "labId": record.lab_id}
        if record.status == PUBLISHED and not facts.get("report_issued"):
            facts["report_issued"] = True
            self.emit(
                REPORT_ISSUED,
                subject=f"report/{record.natural_key}",
                row=row,
                data={"report": report, "sample": record_json(record)},
            )
        elif facts.get("report_issued") and (
            record.status != previous or (record.status == PUBLISHED and digest != facts.get("digest"))
        ):
            change = "republished" if record.status == PUBLISHED else "status-changed"
            self.emit(
                REPORT_MODIFIED,
                subject=f"report/{record.natural_key}",
                row=row,
                data={
                    "report": report,
                    "change": change,
                    "previousStatus": previous,
                    "status": record.status,
                    "sample": record_json(record),
                },
            )
        facts["digest"] = digest
        self.touch(state, state=record.status[:60], observed_at=record.source_time or state.observed_at, data=facts)
        state.subject = subject

    def result(self, row: "RecordRow", record: TestResult) -> None:
        state = self.state("result", record.natural_key)
        if _stale(state, record.source_time):
            return
        previous, digest = state.state, _digest(record)
        subject = f"result/{record.natural_key}"
        if record.status == VERIFIED and previous != VERIFIED:
            self.emit(
                RESULT_VERIFIED,
                subject=subject,
                row=row,
                data={"previousStatus": previous, "result": record_json(record)},
            )
        changed = state.data.get("digest") is not None and state.data.get("digest") != digest
        sample_key = _sample_key(record.lab_id, record.sample_id)
        sample_state = self.states.get(_state_key(self.organization_id, "sample", sample_key))
        if changed and sample_state is not None and sample_state.data.get("report_issued"):
            report = {"kind": "sample-report", "sampleId": record.sample_id, "labId": record.lab_id}
            self.emit(
                REPORT_MODIFIED,
                subject=f"report/{sample_key}",
                row=row,
                data={"report": report, "change": "result-changed", "result": record_json(record)},
            )
        self.touch(
            state,
            state=record.status[:60],
            observed_at=record.source_time or state.observed_at,
            data={"digest": digest},
        )
        state.subject = subject

    def equipment(self, row: "RecordRow", record: EquipmentStatus) -> None:
        identity = _instrument_key(record.instrument)
        state = self.state("equipment", identity)
        if _stale(state, record.observed_at):
            return
        previous = state.state
        subject = f"instrument/{identity}"
        if previous is not None and previous != record.status:
            self.emit(
                EQUIPMENT_STATUS_CHANGED,
                subject=subject,
                row=row,
                data={
                    "instrument": record.instrument.model_dump(mode="json", exclude_none=True),
                    "previousStatus": previous,
                    "status": record.status,
                    "room": record.room,
                    "observedAt": _rfc3339(record.observed_at),
                },
            )
        self.touch(state, state=record.status[:60], observed_at=record.observed_at, subject=subject)

    def calibration(self, row: "RecordRow", record: CalibrationEvent) -> None:
        # Watches the instrument's latest validity: a newer calibration re-arms the expiry, an older one is history.
        identity = _instrument_key(record.instrument)
        state = self.state("calibration", identity)
        if state.due_at is not None and record.valid_until <= state.due_at:
            return
        self.touch(
            state,
            state=record.result[:60],
            observed_at=record.calibrated_on,
            due_at=record.valid_until,
            due_fired_at=None,
            subject=f"instrument/{identity}",
            data={
                "instrument": record.instrument.model_dump(mode="json", exclude_none=True),
                "certificateNumber": record.certificate_number,
                "calibrationLab": record.calibration_lab,
                "calibratedOn": _rfc3339(record.calibrated_on),
                "validUntil": _rfc3339(record.valid_until),
                "recordId": row.id,
                "messageId": row.message_id,
            },
        )

    def complaint(self, row: "RecordRow", record: Complaint) -> None:
        state = self.state("complaint", record.natural_key)
        if _stale(state, record.source_time):
            return
        open_ = record.status not in CLOSED_COMPLAINT_STATUSES
        self.touch(
            state,
            state=record.status[:60],
            observed_at=record.source_time or state.observed_at,
            due_at=record.due_at if open_ else None,
            subject=f"complaint/{record.natural_key}",
            data={
                "complaintId": record.complaint_id,
                "againstLabId": record.against_lab_id,
                "status": record.status,
                "receivedAt": _rfc3339(record.received_at),
                "dueAt": _rfc3339(record.due_at),
                "recordId": row.id,
                "messageId": row.message_id,
            },
        )


def _stale(state: EventSubjectState, moment: datetime | None) -> bool:
    """A record older than what is already known about its subject changes nothing (out-of-order delivery)."""
    return moment is not None and state.observed_at is not None and moment < state.observed_at


def _state_keys(organization_id: str | None, records: Sequence[tuple["RecordRow", CanonicalRecord]]) -> set[str]:
    keys: set[str] = set()
    for _, record in records:
        if isinstance(record, Sample):
            keys.add(_state_key(organization_id, "sample", record.natural_key))
        elif isinstance(record, TestResult):
            keys.add(_state_key(organization_id, "result", record.natural_key))
            keys.add(_state_key(organization_id, "sample", _sample_key(record.lab_id, record.sample_id)))
        elif isinstance(record, EquipmentStatus):
            keys.add(_state_key(organization_id, "equipment", _instrument_key(record.instrument)))
        elif isinstance(record, CalibrationEvent):
            keys.add(_state_key(organization_id, "calibration", _instrument_key(record.instrument)))
        elif isinstance(record, Complaint):
            keys.add(_state_key(organization_id, "complaint", record.natural_key))
    return keys


def _load_states(session: Session, keys: set[str]) -> dict[str, EventSubjectState]:
    ordered = sorted(keys)
    states: dict[str, EventSubjectState] = {}
    for start in range(0, len(ordered), _STATE_QUERY_CHUNK):
        chunk = ordered[start : start + _STATE_QUERY_CHUNK]
        for state in session.exec(select(EventSubjectState).where(col(EventSubjectState.key).in_(chunk))):
            states[state.key] = state
    return states


def emit_record_events(session: Session, *, instance: AdapterInstance, records: Sequence[Any], clock: Clock) -> None:
    """Write the domain events that newly landed records cause into the outbox."""
    now = clock.now()
    _emit_flag_events(session, instance=instance, now=now)
    keys = _state_keys(instance.organization_id, records)
    if not keys:  # environment readings, video events: nothing stateful, no query at all
        return
    deriver = _Deriver(session=session, instance=instance, now=now, states=_load_states(session, keys))
    for row, record in records:
        if isinstance(record, Sample):
            deriver.sample(row, record)
        elif isinstance(record, TestResult):
            deriver.result(row, record)
        elif isinstance(record, EquipmentStatus):
            deriver.equipment(row, record)
        elif isinstance(record, CalibrationEvent):
            deriver.calibration(row, record)
        elif isinstance(record, Complaint):
            deriver.complaint(row, record)


# --- rule flags → env.excursion ----------------------------------------------------------------------------


def _collect_new_flags(session: Session, _context: Any, _instances: Any) -> None:
    # Rules may flush their flags before the deriver runs (a query autoflushes): remember them at flush time.
    new = [item for item in session.new if isinstance(item, RuleFlag)]
    if new:
        session.info.setdefault(_FLAGS_KEY, []).extend(new)


sa_event.listen(Session, "before_flush", _collect_new_flags)


def _emit_flag_events(session: Session, *, instance: AdapterInstance, now: datetime) -> None:
    flags = [*session.info.pop(_FLAGS_KEY, []), *(item for item in session.new if isinstance(item, RuleFlag))]
    if not flags:
        return
    evented: set[int] = session.info.setdefault(_EVENTED_FLAGS_KEY, set())
    for flag in flags:
        if flag.rule != EXCURSION_RULE or id(flag) in evented:
            continue
        evented.add(id(flag))
        emit_flag_event(session, flag=flag, instance=instance, now=now)


def emit_flag_event(session: Session, *, flag: RuleFlag, instance: AdapterInstance, now: datetime) -> OutboxEvent:
    """The `env.excursion` event of one environment-excursion flag (the flag's details become the data)."""
    details = dict(flag.details or {})
    return emit_event(
        session,
        type=ENV_EXCURSION,
        source=instance_source(instance.id),
        subject=f"{flag.subject_kind}/{flag.subject_key}",
        data={
            "rule": flag.rule,
            "subjectKind": flag.subject_kind,
            "subjectKey": flag.subject_key,
            "reason": flag.reason,
            "raisedAt": _rfc3339(flag.raised_at or now),
            "details": json.loads(json.dumps(details, default=str)),
        },
        time=now,
        instance_id=instance.id,
        organization_id=instance.organization_id,
    )


# --- time-driven events ------------------------------------------------------------------------------------


def emit_due_events(session: Session, *, clock: Clock, settings: Settings | None = None, limit: int = 1000) -> int:
    """Fire the time-driven events now due (calibration.expired, complaint.deadline.near); returns how many."""
    now = clock.now()
    warning_hours = (
        settings.complaint_warning_hours
        if settings is not None
        else float(Settings.model_fields["complaint_warning_hours"].default)
    )
    horizons = {"calibration": now, "complaint": now + timedelta(hours=warning_hours)}
    fired = 0
    for topic, horizon in horizons.items():
        query = (
            select(EventSubjectState)
            .where(
                EventSubjectState.topic == topic,
                col(EventSubjectState.due_fired_at).is_(None),
                col(EventSubjectState.due_at).is_not(None),
                col(EventSubjectState.due_at) <= horizon,
            )
            .order_by(col(EventSubjectState.due_at))
            .limit(limit)
            # Two workers never fire the same deadline: the second skips rows the first holds.
            .with_for_update(skip_locked=True)
        )
        for state in session.exec(query):
            _fire_due(session, state=state, now=now)
            fired += 1
    return fired


def _fire_due(session: Session, *, state: EventSubjectState, now: datetime) -> None:
    assert state.due_at is not None
    due_at = state.due_at if state.due_at.tzinfo else state.due_at.replace(tzinfo=UTC)
    if state.topic == "calibration":
        type_, data = CALIBRATION_EXPIRED, {**state.data, "expiredAt": _rfc3339(due_at)}
    else:
        hours_left = round((due_at - now).total_seconds() / 3600, 2)
        type_, data = COMPLAINT_DEADLINE_NEAR, {**state.data, "hoursLeft": hours_left, "overdue": hours_left < 0}
    emit_event(
        session,
        type=type_,
        source=instance_source(state.instance_id) if state.instance_id else "/api/v1/events",
        subject=state.subject,
        data=data,
        time=now,
        instance_id=state.instance_id,
        organization_id=state.organization_id,
    )
    state.due_fired_at = now
    state.updated_at = now
    session.add(state)


# --- the events feed ---------------------------------------------------------------------------------------


class EventPage(ApiSchema):
    """A page of the events feed: CloudEvents envelopes in outbox order; continue with `after=next`."""

    events: list[dict[str, Any]]
    next: int | None = PydanticField(description="Pass as `after` for the next page; null when this page is the last")


def list_events(
    session: Session, *, actor: Actor, after: int | None = None, types: Sequence[str] = (), limit: int = 100
) -> EventPage:
    """Events after a sequence number, oldest first; an organization sees its own, an admin all."""
    query = select(OutboxEvent).order_by(col(OutboxEvent.seq)).limit(limit + 1)
    if after is not None:
        query = query.where(col(OutboxEvent.seq) > after)
    if types:
        query = query.where(col(OutboxEvent.type).in_(list(types)))
    if not actor.is_admin:
        query = query.where(OutboxEvent.organization_id == actor.organization.id)
    rows = list(session.exec(query))
    page = rows[:limit]
    more = len(rows) > limit
    return EventPage(events=[to_cloudevent(row) for row in page], next=page[-1].seq if more and page else None)


def get_event_or_raise(session: Session, *, actor: Actor, event_id: str) -> OutboxEvent:
    """One event by its CloudEvents id, if the actor may see it."""
    event = session.exec(select(OutboxEvent).where(OutboxEvent.id == event_id)).first()
    if event is None or not (actor.is_admin or event.organization_id == actor.organization.id):
        raise NotFoundError(f"No event {event_id}.")
    return event


# --- the certificate registry's reports --------------------------------------------------------------------

CERTIFICATES_SOURCE = "/api/v1/certificates"
_CERTIFICATE_CHANGES = {"revoked": "revoked", "superseded": "superseded"}


def on_certificate_audit_event(session: Session, audit: AuditEvent) -> None:
    """Audit listener: a registry certificate issued is a `report.issued`; revoked or superseded, `report.modified`."""
    if audit.action != "issued" and audit.action not in _CERTIFICATE_CHANGES:
        return
    from certificates.models import Certificate  # the registry is optional for the adapters package

    certificate = session.get(Certificate, audit.subject_id)
    organization_id = getattr(certificate, "organization_id", None) or audit.actor_organization_id
    report = {"kind": "calibration-certificate", "certificateId": audit.subject_id}
    data: dict[str, Any] = {"report": report}
    if audit.action == "issued":
        type_ = REPORT_ISSUED
    else:
        type_ = REPORT_MODIFIED
        data.update(change=_CERTIFICATE_CHANGES[audit.action], reason=audit.reason, details=audit.details or {})
    emit_event(
        session,
        type=type_,
        source=CERTIFICATES_SOURCE,
        subject=f"certificate/{audit.subject_id}",
        data=json.loads(json.dumps(data, default=str)),
        time=audit.at or datetime.now(UTC),
        organization_id=organization_id,
    )


# --- reactions: events that cause work (L4.3) --------------------------------------------------------------


def _react(session: Session, event: OutboxEvent) -> None:
    """What an event causes in its transaction: webhook deliveries, and platform notifications of reports."""
    webhooks.fan_out(session, event=event)
    if event.type in (REPORT_ISSUED, REPORT_MODIFIED):
        from adapters.builtin import platform  # a built-in reaction; imported late: it imports this module

        platform.queue_report_commands(session, event=event)
