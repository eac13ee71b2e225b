"""Cross-domain rule on equipment status (L4.3), with a controllable clock: a result measured while its
instrument was in fault, maintenance or offline is flagged, whichever record lands first, and blocks the report."""

from datetime import UTC, datetime

from sqlmodel import Session, select

from adapters.canonical import EquipmentStatus, InstrumentRef
from adapters.framework import ManualClock
from adapters.models import AdapterInstance, RuleFlag
from adapters.rules import UNAVAILABLE_INSTRUMENT_RULE, apply_record_rules, command_blockers, report_blockers
from graph.iris import instrument_iri
from storage.database import session_scope
from tests.adapters.semantics_support import BALANCE, at, land_records, make_instance, result

BALANCE_IRI = instrument_iri(BALANCE.manufacturer, BALANCE.model, BALANCE.serial)
OTHER = InstrumentRef(manufacturer="Agilent", model="7900", serial="JP1234")


def _status(status: str, moment: datetime, *, instrument: InstrumentRef = BALANCE) -> EquipmentStatus:
    return EquipmentStatus(instrument=instrument, status=status, source_status=status.upper(), observed_at=moment)


def _land(session: Session, instance: AdapterInstance, records: list, clock: ManualClock) -> None:  # type: ignore[type-arg]
    apply_record_rules(
        session, instance=instance, records=land_records(session, instance=instance, records=records), clock=clock
    )


def _open_flags(session: Session) -> dict[str, RuleFlag]:
    flags = session.exec(
        select(RuleFlag).where(RuleFlag.rule == UNAVAILABLE_INSTRUMENT_RULE, RuleFlag.cleared_at.is_(None))  # type: ignore[union-attr]
    ).all()
    return {flag.subject_key: flag for flag in flags}


def test_a_result_measured_while_its_instrument_was_in_fault_is_flagged_once(hub) -> None:
    clock = ManualClock(at(12))
    with session_scope(hub.engine) as session:
        lims, opcua = make_instance(session), make_instance(session, adapter="opcua")
        _land(session, opcua, [_status("running", at(8)), _status("fault", at(10)), _status("idle", at(11))], clock)
        _land(
            session,
            lims,
            [
                result("T-before", start=None, end=at(9, 30)),
                result("T-fault", start=None, end=at(10, 30)),
                result("T-repaired", start=None, end=at(11, 30)),
                result("T-other", start=None, end=at(10, 30)).model_copy(update={"instrument": OTHER}),
            ],
            clock,
        )
        # The same result landing again (a re-sync) does not raise a second flag.
        _land(session, lims, [result("T-fault", start=None, end=at(10, 30))], clock)
        flags = _open_flags(session)
        all_flags = session.exec(select(RuleFlag).where(RuleFlag.rule == UNAVAILABLE_INSTRUMENT_RULE)).all()

    assert set(flags) == {"CNAS L0001/T-fault"} and len(all_flags) == 1
    flag = flags["CNAS L0001/T-fault"]
    assert flag.subject_kind == "test-result"
    assert flag.occurred_at is not None and flag.occurred_at.replace(tzinfo=UTC) == at(10, 30)
    assert flag.raised_at.replace(tzinfo=UTC) == at(12)
    assert flag.details["status"] == "fault" and flag.details["statusObservedAt"] == "2026-03-02T10:00:00Z"
    assert flag.details["instrument"] == BALANCE_IRI
    assert flag.details["statusInstanceId"] == opcua.id and flag.details["resultInstanceId"] == lims.id
    assert "whose status was fault since 2026-03-02T10:00:00Z" in flag.reason


def test_a_status_landing_after_the_results_flags_those_measured_while_it_held(hub) -> None:
    clock = ManualClock(at(18))
    with session_scope(hub.engine) as session:
        lims, opcua = make_instance(session), make_instance(session, adapter="opcua")
        _land(session, opcua, [_status("running", at(8)), _status("running", at(16))], clock)
        _land(
            session,
            lims,
            [
                result("T-1", start=None, end=at(13, 30)),
                result("T-2", start=None, end=at(14, 30)),
                result("T-3", start=None, end=at(16, 30)),  # after the next known status: not covered
                result("T-running", start=at(15), end=None),  # still running: judged at its start
            ],
            clock,
        )
        assert _open_flags(session) == {}
        # The instrument's maintenance window reaches the hub late (the OPC UA link was down meanwhile).
        _land(session, opcua, [_status("maintenance", at(13))], clock)
        flags = _open_flags(session)

    assert set(flags) == {"CNAS L0001/T-1", "CNAS L0001/T-2", "CNAS L0001/T-running"}
    assert {flag.details["status"] for flag in flags.values()} == {"maintenance"}


def test_a_later_status_showing_the_instrument_available_then_clears_the_flag(hub) -> None:
    clock = ManualClock(at(12))
    with session_scope(hub.engine) as session:
        lims, opcua = make_instance(session), make_instance(session, adapter="opcua")
        _land(session, opcua, [_status("offline", at(10))], clock)
        _land(session, lims, [result("T-1", start=None, end=at(10, 30))], clock)
        assert set(_open_flags(session)) == {"CNAS L0001/T-1"}
        clock.set(at(13))
        # The instrument came back at 10:15; that status arrives out of order.
        _land(session, opcua, [_status("running", at(10, 15))], clock)
        assert _open_flags(session) == {}
        cleared = session.exec(select(RuleFlag).where(RuleFlag.rule == UNAVAILABLE_INSTRUMENT_RULE)).one()

    assert cleared.cleared_at is not None and cleared.cleared_at.replace(tzinfo=UTC) == at(13)
    assert cleared.details["clearedBy"]["status"] == "running"


def test_issuing_a_report_on_a_result_from_an_unavailable_instrument_is_blocked(hub) -> None:
    clock = ManualClock(at(12))
    with session_scope(hub.engine) as session:
        lims, opcua = make_instance(session), make_instance(session, adapter="opcua")
        _land(session, opcua, [_status("running", at(8)), _status("fault", at(10))], clock)
        _land(
            session,
            lims,
            [
                result("T-ok", sample="S-OK", start=None, end=at(9)),
                result("T-bad", sample="S-BAD", start=None, end=at(10, 30)),
            ],
            clock,
        )
        publish_bad = command_blockers(
            session,
            instance=lims,
            kind="senaite.transition",
            target="uid-1",
            payload={"transition": "publish", "sample_id": "S-BAD"},
            clock=clock,
        )
        publish_ok = command_blockers(
            session,
            instance=lims,
            kind="senaite.transition",
            target="uid-2",
            payload={"transition": "publish", "sample_id": "S-OK"},
            clock=clock,
        )
        verify_bad = command_blockers(
            session,
            instance=lims,
            kind="senaite.transition",
            target="uid-1",
            payload={"transition": "verify", "sample_id": "S-BAD"},
            clock=clock,
        )
        # Once the hub learns the instrument was back before the measurement, the report may go out.
        _land(session, opcua, [_status("running", at(10, 20))], clock)
        after = report_blockers(session, samples=["S-BAD"], now=clock.now())

    assert len(publish_bad) == 1 and "S-BAD" in publish_bad[0] and "fault" in publish_bad[0]
    assert publish_ok == [] and verify_bad == []
    assert after == []


def test_the_rules_endpoint_lists_the_flag_and_the_report_check_refuses(hub, admin_headers) -> None:
    clock = ManualClock(at(12))
    with session_scope(hub.engine) as session:
        lims, opcua = make_instance(session), make_instance(session, adapter="opcua")
        _land(session, opcua, [_status("maintenance", at(10))], clock)
        _land(session, lims, [result("T-1", sample="S-9", start=None, end=at(10, 5))], clock)

    flags = hub.client.get(
        "/api/v1/rules/flags", params={"rule": UNAVAILABLE_INSTRUMENT_RULE}, headers=admin_headers
    ).json()
    check = hub.client.post("/api/v1/rules/report-issue-check", json={"sampleIds": ["S-9"]}, headers=admin_headers)

    assert [item["subjectKey"] for item in flags] == ["CNAS L0001/T-1"]
    assert check.status_code == 200, check.text
    assert check.json()["allowed"] is False and "maintenance" in check.json()["blockers"][0]
