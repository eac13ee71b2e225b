"""Cross-domain rules on fused data (L4.3), driven by a controllable clock.

* Environment excursion: a reading outside its room's `EnvironmentLimit` raises an `environment-excursion`
  flag (the events deriver turns it into `env.excursion`) and flags, as `test-during-excursion`, every test
  result measured in that room while it happened, including results that arrive later for that window.
  A test's window is [started_at, measured_at]; without a start it is the `DEFAULT_TEST_DURATION` before
  measured_at, and without an end it is still running (open).
* Expired calibration: issuing a report (a SENAITE `publish` transition, a platform report push) is blocked
  when a result of the sample was measured with an instrument whose calibration was not valid at that
  moment, or whose latest calibration has expired by now (`command_blockers`). As the clock passes a
  calibration's `valid_until` without a newer calibration, `apply_due_rules` raises `calibration-expired`
  (the `calibration.expired` event is the events deriver's, from the same record).
* Unavailable instrument: a test result measured on an instrument whose status at that moment (the latest
  `EquipmentStatus` observed at or before it) was fault, maintenance or offline is flagged
  `test-on-unavailable-instrument`, whichever of the two records lands first; a status that lands later and
  turns out to be in effect at the measurement instead clears the flag. Issuing a report on a flagged result
  is blocked like one measured out of calibration.

`apply_record_rules` runs in every landing transaction, so it stays cheap: the limits are cached per engine
(a few seconds, cleared when the API changes them), readings inside their limits cost two dict look-ups, and
only test results, equipment statuses, calibrations and excursions touch the database (small indexed tables
`rule_test_results`, `rule_equipment_states`, `rule_calibrations`; a few indexed look-ups each). An instrument
the hub knows no calibration of does not block: the hub cannot tell it expired.
"""

import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import Field as PydanticField
from sqlalchemy.engine import Engine
from sqlmodel import Session, and_, col, or_, select

from adapters.canonical import CalibrationEvent, CanonicalRecord, EnvironmentReading, EquipmentStatus, TestResult
from adapters.codelists import ENVIRONMENT_QUANTITY
from adapters.framework import Clock, QuarantineError
from adapters.models import (
    AdapterInstance,
    EnvironmentLimit,
    RuleCalibration,
    RuleEquipmentState,
    RuleFlag,
    RuleTestResult,
)
from adapters.units import normalise_unit, parse_decimal
from graph.iris import instrument_iri
from storage.errors import InvalidInputError, NotFoundError
from storage.schemas import ApiSchema

if TYPE_CHECKING:  # the pipeline imports this module
    from adapters.pipeline import RecordRow

EXCURSION_RULE = "environment-excursion"
TEST_EXCURSION_RULE = "test-during-excursion"
CALIBRATION_EXPIRED_RULE = "calibration-expired"
UNAVAILABLE_INSTRUMENT_RULE = "test-on-unavailable-instrument"
# Statuses (hub vocabulary) in which an instrument must not produce results.
UNAVAILABLE_STATUSES = frozenset({"fault", "maintenance", "offline"})
DEFAULT_TEST_DURATION = timedelta(hours=1)
LIMITS_CACHE_S = 5.0
# Commands that issue a report: (command kind, transition or None for any).
REPORT_ISSUING_COMMANDS: dict[str, frozenset[str] | None] = {
    "senaite.transition": frozenset({"publish", "republish"}),
    "platform.push-report": None,
    "report.issue": None,
}


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; the hub stores UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


# --- environment limits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """An environment limit as the rules apply it."""

    room: str
    quantity: str
    unit: str
    minimum: Decimal | None
    maximum: Decimal | None
    method: str | None

    def excursion(self, value: Decimal, unit: str) -> bool:
        """Whether a reading breaks the limit (readings in another unit are not compared, never guessed)."""
        if unit != self.unit:
            return False
        return (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        )

    def describe(self) -> str:
        """The allowed range as text, e.g. "[18, 26] Cel"."""
        low = "-∞" if self.minimum is None else str(self.minimum)
        high = "+∞" if self.maximum is None else str(self.maximum)
        return f"[{low}, {high}] {self.unit}"


_limits_lock = threading.Lock()
_limits_cache: "weakref.WeakKeyDictionary[Engine, tuple[float, dict[tuple[str, str], Limit]]]" = (
    weakref.WeakKeyDictionary()
)


def invalidate_limits_cache() -> None:
    """Forget the cached limits (after they change), so the next landing reads them again."""
    with _limits_lock:
        _limits_cache.clear()


def _engine(session: Session) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def environment_limits(session: Session) -> dict[tuple[str, str], Limit]:
    """The limits by (room, quantity), cached per database for `LIMITS_CACHE_S` seconds."""
    engine = _engine(session)
    now = time.monotonic()
    with _limits_lock:
        cached = _limits_cache.get(engine)
    if cached is not None and now - cached[0] < LIMITS_CACHE_S:
        return cached[1]
    limits = {
        (row.room, row.quantity): Limit(
            room=row.room,
            quantity=row.quantity,
            unit=row.unit,
            minimum=Decimal(row.minimum) if row.minimum is not None else None,
            maximum=Decimal(row.maximum) if row.maximum is not None else None,
            method=row.method,
        )
        for row in session.exec(select(EnvironmentLimit)).all()
    }
    with _limits_lock:
        _limits_cache[engine] = (now, limits)
    return limits


# --- rules on landed records --------------------------------------------------------------------------------


def apply_record_rules(
    session: Session,
    *,
    instance: AdapterInstance,
    records: Sequence[tuple["RecordRow", CanonicalRecord]],
    clock: Clock,
) -> None:
    """Apply the cross-domain rules to newly landed records (in the landing transaction)."""
    limits: dict[tuple[str, str], Limit] | None = None
    for row, record in records:
        if isinstance(record, EnvironmentReading):
            if limits is None:
                limits = environment_limits(session)
            if not limits:
                continue
            limit = limits.get((record.room, record.quantity))
            if limit is not None and limit.excursion(record.value, record.unit):
                _raise_excursion(session, instance=instance, row=row, reading=record, limit=limit, clock=clock)
        elif isinstance(record, TestResult):
            _index_test_result(session, instance=instance, row=row, result=record, clock=clock)
        elif isinstance(record, CalibrationEvent):
            _index_calibration(session, instance=instance, row=row, calibration=record)
        elif isinstance(record, EquipmentStatus):
            _index_equipment_status(session, instance=instance, row=row, status=record, clock=clock)


def _raise_excursion(
    session: Session,
    *,
    instance: AdapterInstance,
    row: "RecordRow",
    reading: EnvironmentReading,
    limit: Limit,
    clock: Clock,
) -> RuleFlag:
    at = _utc(reading.observed_at)
    details: dict[str, Any] = {
        "room": reading.room,
        "quantity": reading.quantity,
        "value": str(reading.value),
        "unit": reading.unit,
        "minimum": None if limit.minimum is None else str(limit.minimum),
        "maximum": None if limit.maximum is None else str(limit.maximum),
        "method": limit.method,
        "sensorId": reading.sensor_id,
        "observedAt": _iso(at),
        "instanceId": instance.id,
        "recordId": row.id,
    }
    flag = RuleFlag(
        rule=EXCURSION_RULE,
        subject_kind="environment-reading",
        subject_key=row.natural_key,
        reason=f"{reading.quantity} {reading.value} {reading.unit} in {reading.room} at {_iso(at)} is outside "
        f"{limit.describe()}" + (f" required by {limit.method}" if limit.method else ""),
        details=details,
        raised_at=clock.now(),
        room=reading.room,
        occurred_at=at,
        organization_id=instance.organization_id,
    )
    session.add(flag)
    tests = session.exec(
        select(RuleTestResult).where(
            RuleTestResult.room == reading.room,
            col(RuleTestResult.started_at) <= at,
            or_(col(RuleTestResult.measured_at).is_(None), col(RuleTestResult.measured_at) >= at),
        )
    ).all()
    for test in tests:
        _flag_test(session, test=test, excursion=details, clock=clock)
    return flag


def _flag_test(session: Session, *, test: RuleTestResult, excursion: dict[str, Any], clock: Clock) -> None:
    existing = session.exec(
        select(RuleFlag.id).where(
            RuleFlag.rule == TEST_EXCURSION_RULE,
            RuleFlag.subject_key == test.natural_key,
            col(RuleFlag.cleared_at).is_(None),
        )
    ).first()
    if existing is not None:
        return  # one flag per test result; the excursion's own flags keep every reading
    start = _iso(test.started_at) if test.started_at else "?"
    window = f"{start} – {_iso(test.measured_at) if test.measured_at else 'running'}"
    session.add(
        RuleFlag(
            rule=TEST_EXCURSION_RULE,
            subject_kind="test-result",
            subject_key=test.natural_key,
            reason=f"Test result {test.natural_key} (sample {test.sample_id}) ran in {test.room} during {window} "
            f"while {excursion['quantity']} was {excursion['value']} {excursion['unit']} at {excursion['observedAt']}, "
            "outside the room's limit.",
            details={
                "sampleId": test.sample_id,
                "labId": test.lab_id,
                "room": test.room,
                "startedAt": _iso(test.started_at) if test.started_at else None,
                "measuredAt": _iso(test.measured_at) if test.measured_at else None,
                "resultRecordId": test.record_id,
                "resultInstanceId": test.instance_id,
                "excursion": excursion,
            },
            raised_at=clock.now(),
            room=test.room,
            occurred_at=_utc(datetime.fromisoformat(excursion["observedAt"])),
            organization_id=_owner_of(session, test.instance_id),
        )
    )


def _owner_of(session: Session, instance_id: str) -> str | None:
    """The organization owning an adapter instance (None for hub-wide instances): a flag's reader."""
    instance = session.get(AdapterInstance, instance_id)
    return None if instance is None else instance.organization_id


def _instrument_iri(result: TestResult | CalibrationEvent) -> str | None:
    ref = result.instrument
    return None if ref is None else instrument_iri(ref.manufacturer, ref.model, ref.serial)


def _index_test_result(
    session: Session, *, instance: AdapterInstance, row: "RecordRow", result: TestResult, clock: Clock
) -> None:
    assert row.id is not None
    measured_at = _utc(result.measured_at) if result.measured_at else None
    started_at = _utc(result.started_at) if result.started_at else None
    if started_at is None and measured_at is not None:
        started_at = measured_at - DEFAULT_TEST_DURATION
    values: dict[str, Any] = {
        "record_id": row.id,
        "instance_id": instance.id,
        "lab_id": result.lab_id,
        "sample_id": result.sample_id,
        "room": result.room,
        "instrument_iri": _instrument_iri(result),
        "started_at": started_at,
        "measured_at": measured_at,
    }
    test = session.get(RuleTestResult, row.natural_key)
    relanded = test is not None
    if test is None:
        test = RuleTestResult(natural_key=row.natural_key, **values)
        session.add(test)
    else:
        for key, value in values.items():
            setattr(test, key, value)
    if test.instrument_iri is not None and (measured_at or started_at) is not None:
        _check_instrument_state(session, test=test, relanded=relanded, clock=clock)
    if result.room is None or started_at is None:
        return
    # A result arriving after the excursion it ran through is flagged too.
    end = measured_at or clock.now()
    excursion = session.exec(
        select(RuleFlag)
        .where(
            RuleFlag.rule == EXCURSION_RULE,
            RuleFlag.room == result.room,
            col(RuleFlag.occurred_at) >= started_at,
            col(RuleFlag.occurred_at) <= end,
            col(RuleFlag.cleared_at).is_(None),
        )
        .order_by(col(RuleFlag.occurred_at))
        .limit(1)
    ).first()
    if excursion is not None:
        _flag_test(session, test=test, excursion=excursion.details, clock=clock)


def _index_calibration(
    session: Session, *, instance: AdapterInstance, row: "RecordRow", calibration: CalibrationEvent
) -> None:
    assert row.id is not None
    iri = _instrument_iri(calibration)
    assert iri is not None
    valid_until = _utc(calibration.valid_until)
    existing = session.get(RuleCalibration, calibration.certificate_number)
    if existing is None:
        session.add(
            RuleCalibration(
                certificate_number=calibration.certificate_number,
                instrument_iri=iri,
                calibrated_on=_utc(calibration.calibrated_on),
                valid_until=valid_until,
                result=calibration.result,
                record_id=row.id,
                instance_id=instance.id,
            )
        )
        return
    if _utc(existing.valid_until) != valid_until:
        existing.expiry_checked_at = None  # a corrected validity is watched again
    existing.instrument_iri = iri
    existing.calibrated_on = _utc(calibration.calibrated_on)
    existing.valid_until = valid_until
    existing.result = calibration.result
    existing.record_id = row.id


# --- instrument availability --------------------------------------------------------------------------------


def _test_moment(test: RuleTestResult) -> datetime | None:
    # The measurement moment; a result that has no end yet is judged at its start.
    moment = test.measured_at or test.started_at
    return None if moment is None else _utc(moment)


def _state_at(session: Session, *, instrument_iri: str, moment: datetime) -> RuleEquipmentState | None:
    """The status in effect at `moment`: the latest observed at or before it (one composite-index look-up)."""
    return session.exec(
        select(RuleEquipmentState)
        .where(RuleEquipmentState.instrument_iri == instrument_iri, col(RuleEquipmentState.observed_at) <= moment)
        .order_by(col(RuleEquipmentState.observed_at).desc())
        .limit(1)
    ).first()


def _open_unavailable_flag(session: Session, natural_key: str) -> RuleFlag | None:
    return session.exec(
        select(RuleFlag).where(
            RuleFlag.rule == UNAVAILABLE_INSTRUMENT_RULE,
            RuleFlag.subject_key == natural_key,
            col(RuleFlag.cleared_at).is_(None),
        )
    ).first()


def _check_instrument_state(session: Session, *, test: RuleTestResult, relanded: bool, clock: Clock) -> None:
    """Flag a newly landed (or corrected) result whose instrument was unavailable when it was measured."""
    moment = _test_moment(test)
    assert moment is not None and test.instrument_iri is not None
    state = _state_at(session, instrument_iri=test.instrument_iri, moment=moment)
    if state is not None and state.status in UNAVAILABLE_STATUSES:
        _flag_unavailable(session, test=test, state=state, clock=clock)
    elif relanded:
        # A corrected result (another time or instrument) may no longer fall in an unavailable period.
        _clear_unavailable(session, test=test, state=state, clock=clock)


def _index_equipment_status(
    session: Session, *, instance: AdapterInstance, row: "RecordRow", status: EquipmentStatus, clock: Clock
) -> None:
    assert row.id is not None
    ref = status.instrument
    iri = instrument_iri(ref.manufacturer, ref.model, ref.serial)
    observed_at = _utc(status.observed_at)
    state = session.get(RuleEquipmentState, row.natural_key)
    if state is None:
        state = RuleEquipmentState(
            natural_key=row.natural_key,
            instrument_iri=iri,
            observed_at=observed_at,
            status=status.status,
            record_id=row.id,
            instance_id=instance.id,
        )
        session.add(state)
    else:
        state.status, state.record_id, state.instance_id = status.status, row.id, instance.id
    session.flush()  # the look-ups below must see it
    # This status is in effect from its time until the instrument's next known status: the results measured
    # then (already landed, perhaps long before this status arrived) take it.
    following = session.exec(
        select(RuleEquipmentState.observed_at)
        .where(RuleEquipmentState.instrument_iri == iri, col(RuleEquipmentState.observed_at) > observed_at)
        .order_by(col(RuleEquipmentState.observed_at))
        .limit(1)
    ).first()
    measured_in = [col(RuleTestResult.measured_at) >= observed_at]
    started_in = [col(RuleTestResult.measured_at).is_(None), col(RuleTestResult.started_at) >= observed_at]
    if following is not None:
        measured_in.append(col(RuleTestResult.measured_at) < following)
        started_in.append(col(RuleTestResult.started_at) < following)
    tests = session.exec(
        select(RuleTestResult)
        .where(RuleTestResult.instrument_iri == iri)
        .where(or_(and_(*measured_in), and_(*started_in)))
        .order_by(col(RuleTestResult.natural_key))
    ).all()
    for test in tests:
        if state.status in UNAVAILABLE_STATUSES:
            _flag_unavailable(session, test=test, state=state, clock=clock)
        else:
            _clear_unavailable(session, test=test, state=state, clock=clock)


def _flag_unavailable(session: Session, *, test: RuleTestResult, state: RuleEquipmentState, clock: Clock) -> None:
    if _open_unavailable_flag(session, test.natural_key) is not None:
        return  # one open flag per result
    moment = _test_moment(test)
    assert moment is not None
    session.add(
        RuleFlag(
            rule=UNAVAILABLE_INSTRUMENT_RULE,
            subject_kind="test-result",
            subject_key=test.natural_key,
            reason=f"Test result {test.natural_key} (sample {test.sample_id}) was measured at {_iso(moment)} with "
            f"instrument {test.instrument_iri}, whose status was {state.status} since {_iso(state.observed_at)}.",
            details={
                "sampleId": test.sample_id,
                "labId": test.lab_id,
                "instrument": test.instrument_iri,
                "measuredAt": _iso(moment),
                "resultRecordId": test.record_id,
                "resultInstanceId": test.instance_id,
                "status": state.status,
                "statusObservedAt": _iso(state.observed_at),
                "statusKey": state.natural_key,
                "statusRecordId": state.record_id,
                "statusInstanceId": state.instance_id,
            },
            raised_at=clock.now(),
            room=test.room,
            occurred_at=moment,
            organization_id=_owner_of(session, test.instance_id),
        )
    )
    session.flush()  # a later record of the same batch sees the open flag


def _clear_unavailable(
    session: Session, *, test: RuleTestResult, state: RuleEquipmentState | None, clock: Clock
) -> None:
    flag = _open_unavailable_flag(session, test.natural_key)
    if flag is None:
        return
    flag.cleared_at = clock.now()
    flag.details = {
        **flag.details,
        "clearedBy": None
        if state is None
        else {"status": state.status, "statusObservedAt": _iso(state.observed_at), "statusKey": state.natural_key},
    }


# --- report issue blockers ----------------------------------------------------------------------------------


def issues_report(kind: str, payload: dict[str, Any]) -> bool:
    """Whether a command of this kind (and payload) issues a report."""
    if kind not in REPORT_ISSUING_COMMANDS:
        return False
    transitions = REPORT_ISSUING_COMMANDS[kind]
    return transitions is None or payload.get("transition") in transitions


def report_samples(kind: str, target: str, payload: dict[str, Any]) -> list[str]:
    """The sample codes a report-issuing command covers (payload `sample_id(s)`/`sampleId(s)`, else the target)."""
    for key in ("sample_ids", "sampleIds"):
        if isinstance(payload.get(key), list):
            return [str(code) for code in payload[key] if code]
    for key in ("sample_id", "sampleId"):
        if payload.get(key):
            return [str(payload[key])]
    return [target] if target else []


def command_blockers(
    session: Session,
    *,
    instance: AdapterInstance | None,
    kind: str,
    target: str,
    payload: dict[str, Any],
    clock: Clock,
) -> list[str]:
    """Why a command may not run now (empty: it may): a report on results of an unusable instrument."""
    if not issues_report(kind, payload):
        return []
    return report_blockers(session, samples=report_samples(kind, target, payload), now=clock.now())


def report_blockers(session: Session, *, samples: Iterable[str], now: datetime) -> list[str]:
    """Reasons a report on these samples may not be issued at `now` (instrument calibrations and availability)."""
    codes = sorted(set(samples))
    if not codes:
        return []
    tests = session.exec(
        select(RuleTestResult)
        .where(col(RuleTestResult.sample_id).in_(codes), col(RuleTestResult.instrument_iri).is_not(None))
        .order_by(col(RuleTestResult.natural_key))
    ).all()
    instruments = sorted({test.instrument_iri for test in tests if test.instrument_iri})
    calibrations: dict[str, list[RuleCalibration]] = {}
    for calibration in session.exec(
        select(RuleCalibration).where(col(RuleCalibration.instrument_iri).in_(instruments))
    ).all():
        calibrations.setdefault(calibration.instrument_iri, []).append(calibration)
    blockers: list[str] = []
    expired_now: set[str] = set()
    for test in tests:
        assert test.instrument_iri is not None
        known = calibrations.get(test.instrument_iri)
        if not known:
            continue
        at = test.measured_at or test.started_at
        if at is not None:
            at = _utc(at)
            valid_then = [c for c in known if _utc(c.calibrated_on) <= at <= _utc(c.valid_until) and c.result != "fail"]
            if not valid_then:
                before = [c for c in known if _utc(c.calibrated_on) <= at]
                last = max(before, key=lambda c: _utc(c.valid_until)) if before else None
                since = (
                    f"; its calibration {last.certificate_number} was valid until {_iso(last.valid_until)}"
                    if last
                    else ""
                )
                blockers.append(
                    f"Result {test.natural_key} of sample {test.sample_id} was measured at {_iso(at)} with instrument "
                    f"{test.instrument_iri}, which had no valid calibration then{since}."
                )
        latest = max(known, key=lambda c: _utc(c.valid_until))
        if _utc(latest.valid_until) < now and test.instrument_iri not in expired_now:
            expired_now.add(test.instrument_iri)
            blockers.append(
                f"Instrument {test.instrument_iri}, used for sample {test.sample_id}, has an expired calibration: "
                f"{latest.certificate_number} was valid until {_iso(latest.valid_until)}."
            )
    keys = [test.natural_key for test in tests]
    if keys:
        for flag in session.exec(
            select(RuleFlag)
            .where(
                RuleFlag.rule == UNAVAILABLE_INSTRUMENT_RULE,
                col(RuleFlag.subject_key).in_(keys),
                col(RuleFlag.cleared_at).is_(None),
            )
            .order_by(col(RuleFlag.id))
        ).all():
            blockers.append(flag.reason)
    return blockers


# --- time-driven rules --------------------------------------------------------------------------------------


def apply_due_rules(session: Session, *, clock: Clock, limit: int = 500) -> int:
    """Raise `calibration-expired` for calibrations the clock has passed without a newer one; returns how many."""
    now = clock.now()
    due = session.exec(
        select(RuleCalibration)
        .where(col(RuleCalibration.valid_until) <= now, col(RuleCalibration.expiry_checked_at).is_(None))
        .order_by(col(RuleCalibration.valid_until))
        .limit(limit)
    ).all()
    raised = 0
    for calibration in due:
        calibration.expiry_checked_at = now
        successor = session.exec(
            select(RuleCalibration.certificate_number).where(
                RuleCalibration.instrument_iri == calibration.instrument_iri,
                col(RuleCalibration.valid_until) > now,
                col(RuleCalibration.calibrated_on) <= now,
            )
        ).first()
        if successor is not None:
            continue  # recalibrated in time: nothing expired
        session.add(
            RuleFlag(
                rule=CALIBRATION_EXPIRED_RULE,
                subject_kind="instrument",
                subject_key=calibration.instrument_iri,
                reason=f"The calibration {calibration.certificate_number} of instrument {calibration.instrument_iri} "
                f"expired at {_iso(calibration.valid_until)} and no newer calibration is known.",
                details={
                    "certificateNumber": calibration.certificate_number,
                    "instrument": calibration.instrument_iri,
                    "validUntil": _iso(calibration.valid_until),
                    "instanceId": calibration.instance_id,
                },
                raised_at=now,
                occurred_at=_utc(calibration.valid_until),
                organization_id=_owner_of(session, calibration.instance_id),
            )
        )
        raised += 1
    session.flush()
    return raised


# --- managing limits and reading flags (the API's service functions) ---------------------------------------


class EnvironmentLimitWrite(ApiSchema):
    """The range a method allows for one environmental quantity in one room (upserted by room + quantity)."""

    room: str = PydanticField(min_length=1, max_length=200, description="Hub-wide room code")
    quantity: str = PydanticField(description="Environmental quantity of the hub vocabulary, e.g. 'temperature'")
    unit: str = PydanticField(min_length=1, max_length=40, description="Unit (normalised to UCUM, e.g. '°C' → 'Cel')")
    minimum: str | None = PydanticField(default=None, max_length=40, description="Decimal, digits kept")
    maximum: str | None = PydanticField(default=None, max_length=40, description="Decimal, digits kept")
    method: str | None = PydanticField(default=None, max_length=100, description="Standard requiring it")


class EnvironmentLimitRead(ApiSchema):
    """A stored environment limit."""

    id: int
    room: str
    quantity: str
    unit: str
    minimum: str | None
    maximum: str | None
    method: str | None


class RuleFlagRead(ApiSchema):
    """A finding of a cross-domain rule."""

    id: int
    rule: str
    subject_kind: str
    subject_key: str
    reason: str
    details: dict[str, Any]
    room: str | None
    occurred_at: datetime | None
    raised_at: datetime
    cleared_at: datetime | None
    organization_id: str | None = None


class ReportIssueCheck(ApiSchema):
    """A report about to be issued: its samples, or the command that would issue it."""

    sample_ids: list[str] = PydanticField(default_factory=list, max_length=1000)
    kind: str | None = PydanticField(default=None, max_length=60, description="Command kind, e.g. 'senaite.transition'")
    target: str | None = PydanticField(default=None, max_length=500)
    payload: dict[str, Any] = PydanticField(default_factory=dict)


class ReportIssueAnswer(ApiSchema):
    """Whether the report may be issued now, and if not, why."""

    allowed: bool
    samples: list[str]
    blockers: list[str]
    checked_at: datetime


def _limit_decimal(text: str | None, name: str) -> str | None:
    if text is None or not text.strip():
        return None
    try:
        parse_decimal(text)
    except QuarantineError as error:
        raise InvalidInputError(f"{name}: {error.detail}") from None
    return text.strip()


def upsert_environment_limit(session: Session, *, data: EnvironmentLimitWrite) -> tuple[EnvironmentLimit, bool]:
    """Create or replace the limit of a room and quantity; returns it and whether it was created."""
    if data.quantity not in ENVIRONMENT_QUANTITY.codes:
        raise InvalidInputError(
            f"quantity: {data.quantity!r} is not one of {', '.join(sorted(ENVIRONMENT_QUANTITY.codes))}."
        )
    try:
        unit = normalise_unit(data.unit)
    except QuarantineError as error:
        raise InvalidInputError(f"unit: {error.detail}") from None
    minimum = _limit_decimal(data.minimum, "minimum")
    maximum = _limit_decimal(data.maximum, "maximum")
    if minimum is None and maximum is None:
        raise InvalidInputError("Give a minimum, a maximum or both.")
    if minimum is not None and maximum is not None and Decimal(minimum) > Decimal(maximum):
        raise InvalidInputError(f"minimum {minimum} is above maximum {maximum}.")
    limit = session.exec(
        select(EnvironmentLimit).where(EnvironmentLimit.room == data.room, EnvironmentLimit.quantity == data.quantity)
    ).first()
    created = limit is None
    if limit is None:
        limit = EnvironmentLimit(room=data.room, quantity=data.quantity, unit=unit)
    limit.unit, limit.minimum, limit.maximum, limit.method = unit, minimum, maximum, data.method
    session.add(limit)
    session.flush()
    invalidate_limits_cache()
    return limit, created


def list_environment_limits(session: Session, *, room: str | None = None) -> list[EnvironmentLimit]:
    """The limits, optionally of one room, by room and quantity."""
    statement = select(EnvironmentLimit).order_by(col(EnvironmentLimit.room), col(EnvironmentLimit.quantity))
    if room is not None:
        statement = statement.where(EnvironmentLimit.room == room)
    return list(session.exec(statement).all())


def delete_environment_limit_or_raise(session: Session, *, limit_id: int) -> None:
    """Remove a limit (NotFoundError when there is none with this id)."""
    limit = session.get(EnvironmentLimit, limit_id)
    if limit is None:
        raise NotFoundError(f"No environment limit {limit_id}.")
    session.delete(limit)
    session.flush()
    invalidate_limits_cache()


def list_rule_flags(
    session: Session,
    *,
    organization_id: str | None,
    rule: str | None = None,
    room: str | None = None,
    subject_key: str | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[RuleFlag]:
    """Rule flags, newest first, filtered by rule, room, subject and whether still open.

    `organization_id` limits them to that organization's flags; None means every flag (an admin's view).
    """
    statement = select(RuleFlag)
    if organization_id is not None:
        statement = statement.where(RuleFlag.organization_id == organization_id)
    if rule is not None:
        statement = statement.where(RuleFlag.rule == rule)
    if room is not None:
        statement = statement.where(RuleFlag.room == room)
    if subject_key is not None:
        statement = statement.where(RuleFlag.subject_key == subject_key)
    if open_only:
        statement = statement.where(col(RuleFlag.cleared_at).is_(None))
    statement = statement.order_by(col(RuleFlag.id).desc()).offset(offset).limit(limit)
    return list(session.exec(statement).all())


def check_report_issue(session: Session, *, check: ReportIssueCheck, clock: Clock) -> ReportIssueAnswer:
    """Whether a report on these samples (or the one this command issues) may be issued now."""
    if check.kind is not None:
        samples = (
            report_samples(check.kind, check.target or "", check.payload)
            if issues_report(check.kind, check.payload)
            else []
        )
        if not samples and not check.sample_ids:
            raise InvalidInputError(f"A {check.kind} command with this payload does not issue a report.")
    else:
        samples = []
    samples = sorted({*samples, *check.sample_ids})
    if not samples:
        raise InvalidInputError("Give sampleIds, or a report-issuing command (kind, target, payload).")
    now = clock.now()
    blockers = report_blockers(session, samples=samples, now=now)
    return ReportIssueAnswer(allowed=not blockers, samples=samples, blockers=blockers, checked_at=now)
