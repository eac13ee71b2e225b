"""Cross-domain rules (L4.3) with a controllable clock: environment excursions flag the tests running in that
room then; an expired instrument calibration blocks issuing a report that used it."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from adapters import rules
from adapters.framework import ManualClock
from adapters.models import AdapterInstance, RuleFlag, RuleTestResult
from adapters.rules import (
    CALIBRATION_EXPIRED_RULE,
    EXCURSION_RULE,
    TEST_EXCURSION_RULE,
    EnvironmentLimitWrite,
    apply_due_rules,
    apply_record_rules,
    command_blockers,
    upsert_environment_limit,
)
from graph.iris import instrument_iri
from storage.database import session_scope
from tests.adapters.semantics_support import (
    BALANCE,
    ROOM,
    at,
    calibration,
    land_records,
    make_instance,
    reading,
    result,
)
from tests.conftest import ADMIN_KEY

BALANCE_IRI = instrument_iri(BALANCE.manufacturer, BALANCE.model, BALANCE.serial)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _land(session: Session, instance: AdapterInstance, records: list, clock: ManualClock) -> None:  # type: ignore[type-arg]
    apply_record_rules(
        session, instance=instance, records=land_records(session, instance=instance, records=records), clock=clock
    )


def _flags(session: Session, rule: str) -> list[RuleFlag]:
    return list(session.exec(select(RuleFlag).where(RuleFlag.rule == rule).order_by(RuleFlag.id)).all())


def _limit(session: Session) -> None:
    upsert_environment_limit(
        session,
        data=EnvironmentLimitWrite(
            room=ROOM, quantity="temperature", unit="°C", minimum="18.0", maximum="26.0", method=None
        ),
    )


def test_an_excursion_flags_the_tests_running_in_that_room_then_and_later_arrivals(hub) -> None:
    clock = ManualClock(at(8))
    with session_scope(hub.engine) as session:
        _limit(session)
        lims, iot = make_instance(session), make_instance(session, adapter="mqtt")
        running = result("T-running", start=at(11), end=None)
        elsewhere = result("T-elsewhere", start=at(11), end=at(12)).model_copy(update={"room": "LAB-B/202"})
        _land(
            session,
            lims,
            [
                result("T-morning", start=at(9), end=at(10)),
                result("T-noon", start=at(11), end=at(12)),
                running,
                elsewhere,
            ],
            clock,
        )
        clock.set(at(11, 31))
        _land(
            session, iot, [reading("22.0", at(11, 29)), reading("30.0", at(11, 30)), reading("30.4", at(11, 31))], clock
        )
        _land(
            session, iot, [reading("300.2", at(11, 32)).model_copy(update={"unit": "K"})], clock
        )  # another unit: not compared
        excursions = _flags(session, EXCURSION_RULE)
        flagged = {flag.subject_key: flag for flag in _flags(session, TEST_EXCURSION_RULE)}
        assert [flag.details["value"] for flag in excursions] == ["30.0", "30.4"]
        assert excursions[0].room == ROOM and excursions[0].occurred_at is not None
        assert "outside [18.0, 26.0] Cel" in excursions[0].reason
        assert set(flagged) == {"CNAS L0001/T-noon", "CNAS L0001/T-running"}  # one flag each, not per reading
        assert flagged["CNAS L0001/T-noon"].details["excursion"]["observedAt"] == "2026-03-02T11:30:00Z"
        assert flagged["CNAS L0001/T-noon"].raised_at.replace(tzinfo=UTC) == at(11, 31)
        # Results arriving after the excursion are flagged when their window covers it.
        clock.set(at(15))
        _land(
            session,
            lims,
            [result("T-late", start=at(11, 20), end=at(11, 50)), result("T-after", start=at(13), end=at(14))],
            clock,
        )
        _land(session, lims, [result("T-no-start", start=None, end=at(12, 15))], clock)  # default window 11:15–12:15
        later = {flag.subject_key for flag in _flags(session, TEST_EXCURSION_RULE)}
    assert later == {"CNAS L0001/T-noon", "CNAS L0001/T-running", "CNAS L0001/T-late", "CNAS L0001/T-no-start"}


def test_readings_within_limits_cost_no_database_work(hub) -> None:
    clock = ManualClock(at(8))
    with session_scope(hub.engine) as session:
        _limit(session)
        iot = make_instance(session, adapter="mqtt")
        landed = land_records(session, instance=iot, records=[reading(f"2{i}.5", at(9, i)) for i in range(5)])
        rules.environment_limits(session)  # warm the cache
        statements: list[str] = []

        @contextmanager
        def counting() -> Iterator[None]:
            def count(*args: object) -> None:
                statements.append(str(args[2]))

            event.listen(hub.engine, "before_cursor_execute", count)
            try:
                yield
            finally:
                event.remove(hub.engine, "before_cursor_execute", count)

        with counting():
            apply_record_rules(session, instance=iot, records=landed, clock=clock)
        assert statements == []
        assert _flags(session, EXCURSION_RULE) == []


def test_an_expired_calibration_blocks_issuing_a_report_that_used_the_instrument(hub) -> None:
    clock = ManualClock(at(8, day=10))
    with session_scope(hub.engine) as session:
        lims, equipment = make_instance(session), make_instance(session)
        _land(session, equipment, [calibration("CAL-1", start=at(0, day=1), until=at(0, day=20))], clock)
        _land(
            session,
            lims,
            [
                result("R1", sample="S1", start=at(9), end=at(10)),
                result("R2", sample="S2", start=at(9, day=21), end=at(10, day=21)),
            ],
            clock,
        )

        def blockers(sample: str, kind: str = "senaite.transition", transition: str = "publish") -> list[str]:
            payload = {"uid": "f3a1", "transition": transition, "sample_id": sample}
            return command_blockers(session, instance=lims, kind=kind, target="f3a1", payload=payload, clock=clock)

        assert blockers("S1") == []
        measured_late = blockers("S2")
        assert len(measured_late) == 1
        assert "had no valid calibration then" in measured_late[0] and "CAL-1" in measured_late[0]
        assert blockers("S2", transition="submit") == []  # not a report issue
        assert (
            command_blockers(
                session,
                instance=lims,
                kind="platform.push-report",
                target="RPT-2",
                payload={"sampleId": "S2"},
                clock=clock,
            )
            == measured_late
        )
        # As the clock moves past the calibration's end, issuing S1's report is blocked too.
        clock.set(at(8, day=25))
        expired_now = blockers("S1")
        assert len(expired_now) == 1 and "has an expired calibration" in expired_now[0]
        # A recalibration from day 20 covers S2's measurement and today: both may be issued.
        _land(
            session,
            equipment,
            [calibration("CAL-2", start=at(0, day=20), until=at(0, day=20) + timedelta(days=365))],
            clock,
        )
        assert blockers("S1") == []
        assert blockers("S2") == []


def test_instruments_without_known_calibrations_and_results_without_instrument_do_not_block(hub) -> None:
    clock = ManualClock(at(8))
    with session_scope(hub.engine) as session:
        lims = make_instance(session)
        _land(
            session,
            lims,
            [
                result("R1", sample="S9", start=at(9), end=at(10)),
                result("R2", sample="S9", start=at(9), end=at(10)).model_copy(update={"instrument": None}),
            ],
            clock,
        )
        assert (
            command_blockers(
                session,
                instance=lims,
                kind="senaite.transition",
                target="x",
                payload={"transition": "publish", "sample_id": "S9"},
                clock=clock,
            )
            == []
        )


def test_calibrations_expiring_as_the_clock_moves_raise_one_flag_unless_recalibrated(hub) -> None:
    clock = ManualClock(at(8, day=1))
    other = BALANCE.model_copy(update={"serial": "B-OTHER"})
    with session_scope(hub.engine) as session:
        equipment = make_instance(session)
        _land(
            session,
            equipment,
            [
                calibration("CAL-A", start=at(0, day=1), until=at(0, day=10)),
                calibration("CAL-B", start=at(0, day=1), until=at(0, day=10), instrument=other),
                calibration("CAL-B2", start=at(0, day=9), until=at(0, day=30), instrument=other),
            ],
            clock,
        )
        assert apply_due_rules(session, clock=clock) == 0
        clock.set(at(0, day=10) + timedelta(seconds=1))
        assert apply_due_rules(session, clock=clock) == 1
        assert apply_due_rules(session, clock=clock) == 0  # raised once
        flags = _flags(session, CALIBRATION_EXPIRED_RULE)
        assert [(flag.subject_kind, flag.subject_key, flag.details["certificateNumber"]) for flag in flags] == [
            ("instrument", BALANCE_IRI, "CAL-A")
        ]
        clock.advance(days=30)
        assert apply_due_rules(session, clock=clock) == 1  # now CAL-B2 ran out as well
        assert [flag.details["certificateNumber"] for flag in _flags(session, CALIBRATION_EXPIRED_RULE)] == [
            "CAL-A",
            "CAL-B2",
        ]


def test_environment_limits_are_managed_by_admins_with_ucum_units(hub) -> None:
    body = {"room": "LAB-C/301", "quantity": "relative-humidity", "unit": "%RH", "minimum": "30", "maximum": "70.0"}
    created = hub.client.put("/api/v1/rules/environment-limits", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["unit"] == "%" and created.json()["maximum"] == "70.0"
    replaced = hub.client.put("/api/v1/rules/environment-limits", json={**body, "maximum": "65"}, headers=ADMIN)
    assert replaced.status_code == 200 and replaced.json()["id"] == created.json()["id"]
    _org, lab_headers = hub.make_org("Lab C")
    listed = hub.client.get("/api/v1/rules/environment-limits", params={"room": "LAB-C/301"}, headers=lab_headers)
    assert [(item["quantity"], item["maximum"]) for item in listed.json()] == [("relative-humidity", "65")]
    assert hub.client.put("/api/v1/rules/environment-limits", json=body, headers=lab_headers).status_code == 403
    for bad in (
        {"unit": "furlongs"},
        {"quantity": "mood"},
        {"minimum": "80"},
        {"minimum": "abc"},
        {"minimum": None, "maximum": None},
    ):
        answer = hub.client.put("/api/v1/rules/environment-limits", json={**body, **bad}, headers=ADMIN)
        assert answer.status_code == 422, bad
        assert answer.headers["content-type"].startswith("application/problem+json")
    after = hub.client.get("/api/v1/rules/environment-limits", params={"room": "LAB-C/301"}, headers=ADMIN).json()
    assert after[0]["maximum"] == "65"  # the rejected requests changed nothing
    assert (
        hub.client.delete(f"/api/v1/rules/environment-limits/{created.json()['id']}", headers=ADMIN).status_code == 204
    )
    assert (
        hub.client.delete(f"/api/v1/rules/environment-limits/{created.json()['id']}", headers=ADMIN).status_code == 404
    )


def test_the_report_issue_check_and_the_flags_listing(hub) -> None:
    now = datetime.now(UTC)
    clock = ManualClock(now)
    lab_id, lab_headers = hub.make_org("Lab API")
    with session_scope(hub.engine) as session:
        lims = make_instance(session, organization_id=lab_id)
        _land(
            session,
            lims,
            [calibration("CAL-OLD", start=now - timedelta(days=400), until=now - timedelta(days=35))],
            clock,
        )
        _land(
            session,
            lims,
            [result("R1", sample="S-API", start=now - timedelta(days=30, hours=1), end=now - timedelta(days=30))],
            clock,
        )
        _limit(session)
        _land(
            session,
            lims,
            [
                result("R2", sample="S-ROOM", start=now - timedelta(hours=2), end=now - timedelta(hours=1)).model_copy(
                    update={"instrument": None}
                )
            ],
            clock,
        )
        _land(session, make_instance(session, adapter="mqtt"), [reading("27.5", now - timedelta(minutes=90))], clock)
    answer = hub.client.post("/api/v1/rules/report-issue-check", json={"sampleIds": ["S-API"]}, headers=lab_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is False
    assert len(answer.json()["blockers"]) == 2  # invalid when measured, and expired now
    by_command = hub.client.post(
        "/api/v1/rules/report-issue-check",
        json={
            "kind": "senaite.transition",
            "target": "uid-1",
            "payload": {"transition": "publish", "sample_id": "S-ROOM"},
        },
        headers=lab_headers,
    )
    assert by_command.json()["allowed"] is True and by_command.json()["samples"] == ["S-ROOM"]
    not_a_report = hub.client.post(
        "/api/v1/rules/report-issue-check",
        json={"kind": "senaite.transition", "target": "uid-1", "payload": {"transition": "submit"}},
        headers=lab_headers,
    )
    assert not_a_report.status_code == 422
    flags = hub.client.get("/api/v1/rules/flags", params={"rule": TEST_EXCURSION_RULE}, headers=ADMIN)
    assert [flag["subjectKey"] for flag in flags.json()] == ["CNAS L0001/R2"]
    assert flags.json()[0]["details"]["excursion"]["value"] == "27.5"
    assert flags.json()[0]["organizationId"] == lab_id


def test_an_organization_reads_only_the_flags_of_records_its_own_instances_landed(hub) -> None:
    now = datetime.now(UTC)
    clock = ManualClock(now)
    lab_id, lab_headers = hub.make_org("Lab with a LIMS")
    _other_id, other_headers = hub.make_org("Another lab")
    with session_scope(hub.engine) as session:
        _limit(session)
        _land(
            session,
            make_instance(session, organization_id=lab_id),
            [result("R9", sample="S-OWN", start=now - timedelta(hours=2), end=now - timedelta(hours=1))],
            clock,
        )
        # The room's sensors are the hub's (no owner): the excursion flag itself is for admins only.
        _land(session, make_instance(session, adapter="mqtt"), [reading("27.5", now - timedelta(minutes=90))], clock)

    def listed(headers: dict[str, str]) -> list[tuple[str, str]]:
        answer = hub.client.get("/api/v1/rules/flags", headers=headers)
        assert answer.status_code == 200, answer.text
        return sorted((flag["rule"], flag["subjectKey"]) for flag in answer.json())

    everything = listed(ADMIN)
    assert (TEST_EXCURSION_RULE, "CNAS L0001/R9") in everything
    assert any(rule == EXCURSION_RULE for rule, _ in everything)
    assert listed(lab_headers) == [(TEST_EXCURSION_RULE, "CNAS L0001/R9")]
    assert listed(other_headers) == []
    assert hub.client.get("/api/v1/rules/flags").status_code == 401


def test_limit_decimals_keep_their_digits(hub) -> None:
    with session_scope(hub.engine) as session:
        limit, created = upsert_environment_limit(
            session,
            data=EnvironmentLimitWrite(room="R", quantity="temperature", unit="C", minimum="20.0", maximum="22.50"),
        )
        assert created and (limit.minimum, limit.maximum, limit.unit) == ("20.0", "22.50", "Cel")
        assert rules.environment_limits(session)[("R", "temperature")].maximum == Decimal("22.50")


@pytest.mark.parametrize(
    ("kind", "payload", "issues"),
    [
        ("senaite.transition", {"transition": "publish"}, True),
        ("senaite.transition", {"transition": "verify"}, False),
        ("platform.push-report", {"reportNumber": "R-1"}, True),
        ("platform.push-activity", {}, False),
        ("opcua.call", {}, False),
    ],
)
def test_which_commands_issue_a_report(kind: str, payload: dict, issues: bool) -> None:  # type: ignore[type-arg]
    assert rules.issues_report(kind, payload) is issues


def test_a_result_landed_twice_in_one_batch_is_indexed_once_with_its_latest_window(hub) -> None:
    clock = ManualClock(at(8))
    with session_scope(hub.engine) as session:
        lims = make_instance(session)
        first = result("R1", start=at(9), end=at(10)).model_copy(update={"status": "unverified"})
        _land(session, lims, [first, result("R1", start=at(9), end=at(10, 30))], clock)
        test = session.get(RuleTestResult, "CNAS L0001/R1")
        assert test is not None and test.measured_at is not None
        assert test.measured_at.replace(tzinfo=UTC) == at(10, 30)
