"""Domain events derived from landed records (L4.1): the replay of a lab's day gives the expected sequence."""

from sqlmodel import select

from adapters import events, rules
from adapters.events import emit_due_events, to_cloudevent
from adapters.models import AdapterCommand, OutboxEvent, RuleFlag
from storage.database import session_scope
from tests.adapters.events_support import (
    calibration,
    complaint,
    equipment,
    land,
    make_instance,
    result,
    sample,
)


def _events(engine, *, after: int = 0) -> list[OutboxEvent]:
    with session_scope(engine) as session:
        return list(session.exec(select(OutboxEvent).where(OutboxEvent.seq > after).order_by(OutboxEvent.seq)))


def _types(engine, after: int = 0) -> list[str]:
    return [event.type for event in _events(engine, after=after)]


def test_replay_of_a_lab_day_emits_the_expected_event_sequence(hub, manual_clock):
    org, _ = hub.make_org("Replay lab")
    instance = make_instance(hub.engine, organization_id=org)
    engine = hub.engine

    land(engine, instance, manual_clock, sample("registered"))
    land(engine, instance, manual_clock, sample("received", received_at="2026-03-02T08:05:00+00:00"))
    land(engine, instance, manual_clock, equipment("idle", "2026-03-02T08:00:00+00:00"), result("unverified"))
    land(engine, instance, manual_clock, equipment("running", "2026-03-02T08:10:00+00:00"))
    land(engine, instance, manual_clock, result("verified"))
    land(engine, instance, manual_clock, sample("published", received_at="2026-03-02T08:05:00+00:00"))
    land(
        engine,
        instance,
        manual_clock,
        calibration("CAL-2025-17", "2026-03-02T09:00:00+00:00"),
        complaint("accepted", "2026-03-03T12:00:00+00:00"),
    )
    with session_scope(engine) as session:
        assert emit_due_events(session, clock=manual_clock, settings=hub.settings) == 0
    manual_clock.advance(hours=1)  # calibration lapses at 09:00
    with session_scope(engine) as session:
        assert emit_due_events(session, clock=manual_clock, settings=hub.settings) == 1
    manual_clock.advance(hours=4)  # 13:00: the complaint is due within 24 h
    with session_scope(engine) as session:
        assert emit_due_events(session, clock=manual_clock, settings=hub.settings) == 1
    land(engine, instance, manual_clock, result("verified", value="0.61"))
    land(engine, instance, manual_clock, sample("invalid", received_at="2026-03-02T08:05:00+00:00"))

    assert _types(engine) == [
        "sample.received",
        "equipment.status.changed",
        "result.verified",
        "report.issued",
        "calibration.expired",
        "complaint.deadline.near",
        "report.modified",
        "report.modified",
    ]
    replayed = _events(engine)
    assert {event.organization_id for event in replayed} == {org}
    assert replayed[1].data["previousStatus"] == "idle" and replayed[1].data["status"] == "running"
    assert replayed[4].data["certificateNumber"] == "CAL-2025-17"
    assert replayed[5].data["complaintId"] == "C-1" and replayed[5].data["hoursLeft"] == 23.0
    assert replayed[6].data["change"] == "result-changed" and replayed[6].data["result"]["value"] == "0.61"
    assert replayed[7].data == replayed[7].data | {"change": "status-changed", "previousStatus": "published"}


def test_time_driven_events_fire_once(hub, manual_clock):
    org, _ = hub.make_org("Once lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, manual_clock, complaint("received", "2026-03-02T10:00:00+00:00", complaint_id="C-9"))
    land(hub.engine, instance, manual_clock, calibration("CAL-1", "2026-03-02T07:00:00+00:00"))
    for _ in range(3):
        with session_scope(hub.engine) as session:
            emit_due_events(session, clock=manual_clock, settings=hub.settings)
        manual_clock.advance(hours=1)
    assert sorted(_types(hub.engine)) == ["calibration.expired", "complaint.deadline.near"]


def test_closed_complaint_and_renewed_calibration_fire_nothing(hub, manual_clock):
    org, _ = hub.make_org("Tidy lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, manual_clock, complaint("accepted", "2026-03-02T10:00:00+00:00", complaint_id="C-2"))
    land(hub.engine, instance, manual_clock, complaint("closed", "2026-03-02T10:00:00+00:00", complaint_id="C-2"))
    land(hub.engine, instance, manual_clock, calibration("CAL-OLD", "2026-03-02T09:00:00+00:00"))
    land(hub.engine, instance, manual_clock, calibration("CAL-NEW", "2027-03-02T09:00:00+00:00"))
    land(hub.engine, instance, manual_clock, calibration("CAL-OLDER", "2025-03-02T09:00:00+00:00"))
    manual_clock.advance(days=2)
    with session_scope(hub.engine) as session:
        assert emit_due_events(session, clock=manual_clock, settings=hub.settings) == 0
    assert _types(hub.engine) == []


def test_redelivered_and_out_of_order_records_emit_nothing_new(hub, manual_clock):
    org, _ = hub.make_org("Noisy lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, manual_clock, equipment("idle", "2026-03-02T08:00:00+00:00"))
    land(hub.engine, instance, manual_clock, equipment("fault", "2026-03-02T08:30:00+00:00"))
    report = land(hub.engine, instance, manual_clock, equipment("fault", "2026-03-02T08:30:00+00:00"))
    assert report.duplicates == 1
    # Older than what is known: the instrument did not go back to idle.
    land(hub.engine, instance, manual_clock, equipment("idle", "2026-03-02T08:15:00+00:00"))
    land(hub.engine, instance, manual_clock, sample("received"), sample("received", client="same sample again"))
    land(hub.engine, instance, manual_clock, result("verified"), result("verified", analyst="someone"))
    assert _types(hub.engine) == ["equipment.status.changed", "sample.received", "result.verified"]


def test_events_of_one_organization_do_not_drive_anothers_state(hub, manual_clock):
    first, _ = hub.make_org("Lab A")
    second, _ = hub.make_org("Lab B")
    a = make_instance(hub.engine, organization_id=first)
    b = make_instance(hub.engine, organization_id=second)
    land(hub.engine, a, manual_clock, equipment("idle", "2026-03-02T08:00:00+00:00"))
    land(hub.engine, b, manual_clock, equipment("running", "2026-03-02T08:10:00+00:00"))
    assert _types(hub.engine) == []


def test_an_excursion_flag_raised_by_the_rules_becomes_an_env_excursion_event(hub, manual_clock, monkeypatch):
    org, _ = hub.make_org("Warm lab")
    instance = make_instance(hub.engine, organization_id=org)
    raised = []

    def flag_excursions(session, *, instance, records, clock):
        for row, record in records:
            if record.kind == "equipment-status":
                flag = RuleFlag(
                    rule="environment-excursion",
                    subject_kind="environment-reading",
                    subject_key=f"Lab-101/temperature/{row.id}",
                    reason="temperature 27.5 Cel above the limit 26 Cel",
                    details={"room": "Lab-101", "quantity": "temperature", "value": "27.5", "maximum": "26"},
                    raised_at=clock.now(),
                )
                session.add(flag)
                session.flush()  # the rules may flush (or autoflush) before the deriver runs
                raised.append(flag)

    monkeypatch.setattr(rules, "apply_record_rules", flag_excursions)
    land(hub.engine, instance, manual_clock, equipment("idle", "2026-03-02T08:00:00+00:00"))
    (event,) = _events(hub.engine)
    assert event.type == "env.excursion"
    assert event.subject == f"environment-reading/{raised[0].subject_key}"
    assert event.data["details"]["maximum"] == "26" and event.data["rule"] == "environment-excursion"


def test_cloudevent_envelope_has_the_required_attributes(hub, manual_clock):
    org, _ = hub.make_org("Envelope lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, manual_clock, sample("received"))
    (event,) = _events(hub.engine)
    envelope = to_cloudevent(event)
    assert envelope["specversion"] == "1.0"
    assert envelope["type"] == "sample.received"
    assert envelope["source"] == f"/api/v1/adapters/{instance.id}"
    assert envelope["id"] == event.id and envelope["qihubseq"] == event.seq
    assert envelope["time"] == "2026-03-02T08:00:00Z"
    assert envelope["subject"] == "sample/CNAS L0001/S-2026-0001"
    assert envelope["qihubinstance"] == instance.id and envelope["qihuborganization"] == org
    assert envelope["data"]["sample"]["sample_id"] == "S-2026-0001"


def test_a_report_change_queues_one_notification_per_platform_instance(hub, manual_clock):
    org, _ = hub.make_org("Platform lab")
    other, _ = hub.make_org("Other lab")
    lims = make_instance(hub.engine, organization_id=org)
    mine = make_instance(hub.engine, organization_id=org, adapter="platform", config={"base_url": "http://127.0.0.1:9"})
    make_instance(hub.engine, organization_id=other, adapter="platform", config={"base_url": "http://127.0.0.1:9"})
    land(hub.engine, lims, manual_clock, sample("published"))
    land(hub.engine, lims, manual_clock, sample("invalid"))
    with session_scope(hub.engine) as session:
        commands = list(session.exec(select(AdapterCommand).order_by(AdapterCommand.created_at)))
    assert [(c.instance_id, c.kind) for c in commands] == [
        (mine.id, "platform.push-report"),
        (mine.id, "platform.notify-report-modified"),
    ]
    assert commands[0].payload["reportNumber"] == "S-2026-0001"
    assert commands[1].payload["change"] == "status-changed" and commands[1].payload["status"] == "invalid"
    assert len({c.idempotency_key for c in commands}) == 2


def test_events_module_declares_every_level_event_type():
    assert set(events.DOMAIN_EVENT_TYPES) == {
        "sample.received",
        "result.verified",
        "env.excursion",
        "equipment.status.changed",
        "calibration.expired",
        "report.issued",
        "report.modified",
        "complaint.deadline.near",
    }


def test_registry_certificate_audit_events_become_report_events(hub, manual_clock):
    from storage.models import AuditEvent

    org, _ = hub.make_org("Calibration lab")
    platform = make_instance(hub.engine, organization_id=org, adapter="platform", config={"base_url": "http://x"})
    with session_scope(hub.engine) as session:
        for action in ("submitted", "issued", "superseded"):
            audit = AuditEvent(
                subject_kind="certificate",
                subject_id="cert-1",
                action=action,
                actor_organization_id=org,
                reason="amended by cert-2" if action == "superseded" else None,
                at=manual_clock.now(),
            )
            events.on_certificate_audit_event(session, audit)
    published = _events(hub.engine)
    assert [(e.type, e.source, e.subject) for e in published] == [
        ("report.issued", "/api/v1/certificates", "certificate/cert-1"),
        ("report.modified", "/api/v1/certificates", "certificate/cert-1"),
    ]
    assert published[1].data["change"] == "superseded" and published[1].organization_id == org
    with session_scope(hub.engine) as session:
        kinds = [c.kind for c in session.exec(select(AdapterCommand).where(AdapterCommand.instance_id == platform.id))]
    assert sorted(kinds) == ["platform.notify-report-modified", "platform.push-report"]
