"""Write-back commands: idempotent creation, dispatch to the SENAITE fake, retries, dead letters, compensation."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from sqlmodel import select

from adapters import commands
from adapters.builtin.senaite import TRANSITION_COMMAND, SenaiteAdapter
from adapters.canonical import CalibrationEvent, CanonicalRecord, RecordKind
from adapters.commands import COMMAND_LEASE_S, IdempotencyKeyReusedError, UnsupportedCommandError, dispatch_pending
from adapters.framework import (
    Adapter,
    AdapterContext,
    AdapterManifest,
    InboundMessage,
    ManualClock,
    SourceKind,
    Transport,
)
from adapters.landing import land_messages
from adapters.models import (
    AdapterAttempt,
    AdapterCommand,
    AdapterEvidence,
    AdapterInstance,
    CommandStatus,
    OutboxEvent,
)
from storage.database import session_scope
from tests.adapters.senaite_fake import FakeSenaite, load_saved

SAMPLE_UID = "99afa09663054c18b1ae7a1cd2cd7693"
ANALYSIS_UID = "043bcbb7f3234e99acc99de7f992100c"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeSenaite]:
    server = FakeSenaite.with_saved_responses().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def _settings(hub, **changes: Any):
    return hub.settings.model_copy(
        update={"adapter_retry_base_s": 10.0, "adapter_retry_max_s": 60.0, "command_max_attempts": 3, **changes}
    )


def _instance(hub, fake: FakeSenaite, *, organization_id: str | None = None, **config: Any) -> AdapterInstance:
    with session_scope(hub.engine) as session:
        instance = AdapterInstance(
            name=f"senaite-{uuid.uuid4().hex[:8]}",
            adapter="senaite",
            adapter_version=SenaiteAdapter.manifest.version,
            organization_id=organization_id,
            config={"base_url": fake.site_url, "lab_id": "CNAS L0001", "units": {"LAB-047": "10^12/L"}, **config},
        )
        session.add(instance)
    return instance


def _create(hub, instance: AdapterInstance, clock, *, key: str = "k-1", transition: str = "receive", **extra):
    with session_scope(hub.engine) as session:
        return commands.create_command(
            session,
            instance=instance,
            kind=TRANSITION_COMMAND,
            target=SAMPLE_UID,
            payload={"uid": SAMPLE_UID, "transition": transition},
            idempotency_key=key,
            requested_by=None,
            clock=clock,
            **extra,
        )


def _dispatch(hub, instance: AdapterInstance, clock, **settings: Any) -> int:
    adapter = SenaiteAdapter(instance.config)
    return asyncio.run(
        dispatch_pending(hub.engine, adapters={instance.id: adapter}, settings=_settings(hub, **settings), clock=clock)
    )


def _command(hub, command_id: str) -> AdapterCommand:
    with session_scope(hub.engine) as session:
        command = session.get(AdapterCommand, command_id)
        assert command is not None
        return command


def _events(hub, instance: AdapterInstance) -> list[OutboxEvent]:
    with session_scope(hub.engine) as session:
        query = select(OutboxEvent).where(OutboxEvent.instance_id == instance.id).order_by(OutboxEvent.seq)
        return [event for event in session.exec(query) if event.type.startswith("command.")]


def _posts(fake: FakeSenaite) -> int:
    return sum(1 for request in fake.requests if request.method == "POST")


# --- creating -----------------------------------------------------------------------------------------------


def test_the_same_key_and_command_returns_the_stored_command(hub, fake, clock):
    instance = _instance(hub, fake)
    first = _create(hub, instance, clock)
    again = _create(hub, instance, clock)
    assert again.id == first.id
    with session_scope(hub.engine) as session:
        stored = session.exec(select(AdapterCommand).where(AdapterCommand.instance_id == instance.id)).all()
    assert [(c.status, c.attempts, c.next_attempt_at) for c in stored] == [("pending", 0, START)]


def test_the_same_key_with_another_command_is_refused(hub, fake, clock):
    instance = _instance(hub, fake)
    _create(hub, instance, clock)
    with pytest.raises(IdempotencyKeyReusedError):
        _create(hub, instance, clock, transition="cancel")
    assert _command(hub, _create(hub, instance, clock).id).payload["transition"] == "receive"


def test_a_kind_the_plugin_does_not_declare_is_refused(hub, fake, clock):
    instance = _instance(hub, fake)
    with session_scope(hub.engine) as session, pytest.raises(UnsupportedCommandError):
        commands.create_command(
            session,
            instance=instance,
            kind="opcua.call",
            target="x",
            payload={},
            idempotency_key="k",
            requested_by=None,
            clock=clock,
        )


# --- dispatching --------------------------------------------------------------------------------------------


def test_a_command_is_written_back_once_and_acknowledged(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock)
    assert _dispatch(hub, instance, clock) == 1
    command = _command(hub, created.id)
    assert (command.status, command.attempts, command.acknowledged_at) == ("acknowledged", 1, START)
    assert command.ack is not None
    assert (command.ack["review_state"], command.ack["already_applied"]) == ("sample_received", False)
    assert [w["transition"] for w in fake.writes_for(SAMPLE_UID)] == ["receive"]
    [event] = _events(hub, instance)
    assert (event.type, event.subject, event.source) == (
        "command.acknowledged",
        f"command/{created.id}",
        f"/api/v1/adapters/{instance.id}",
    )
    assert event.data["ack"]["review_state"] == "sample_received"
    assert event.data["idempotencyKey"] == "k-1"
    # Nothing more to send, and the same request again changes nothing.
    clock.advance(hours=1)
    assert _dispatch(hub, instance, clock) == 0
    assert _create(hub, instance, clock).id == created.id
    assert _dispatch(hub, instance, clock) == 0
    assert _posts(fake) == 1
    with session_scope(hub.engine) as session:
        evidence = session.exec(select(AdapterEvidence).where(AdapterEvidence.instance_id == instance.id)).all()
    assert [(e.criterion, e.passed) for e in evidence] == [("L4.2", True)]


def test_a_failing_source_is_retried_with_backoff_until_it_acknowledges(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock)
    fake.fail_next(2, status=503, method="POST")
    assert _dispatch(hub, instance, clock) == 1
    command = _command(hub, created.id)
    assert (command.status, command.attempts) == ("failed", 1)
    assert command.next_attempt_at == START + timedelta(seconds=10)
    assert "HTTP 503" in (command.last_error or "")
    assert _dispatch(hub, instance, clock) == 0  # not due yet
    clock.advance(seconds=10)
    assert _dispatch(hub, instance, clock) == 1
    assert _command(hub, created.id).next_attempt_at == START + timedelta(seconds=10 + 20)
    clock.advance(seconds=20)
    assert _dispatch(hub, instance, clock) == 1
    command = _command(hub, created.id)
    assert (command.status, command.attempts, command.last_error) == ("acknowledged", 3, None)
    assert len(fake.writes_for(SAMPLE_UID)) == 1
    with session_scope(hub.engine) as session:
        attempts = session.exec(
            select(AdapterAttempt).where(AdapterAttempt.instance_id == instance.id).order_by(AdapterAttempt.id)
        ).all()
    assert [(a.attempt, a.succeeded, a.delay_s) for a in attempts] == [
        (1, False, 10.0),
        (2, False, 20.0),
        (3, True, None),
    ]


def test_a_source_that_always_fails_dead_letters_the_command_without_writing(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock)
    fake.fail_next(100, status=500, method="POST")
    for _ in range(3):
        assert _dispatch(hub, instance, clock) == 1
        clock.advance(minutes=5)
    command = _command(hub, created.id)
    assert (command.status, command.attempts) == ("dead-lettered", 3)
    assert command.reasons and "gave up after 3 attempts" in command.reasons[0]
    assert [e.type for e in _events(hub, instance)] == ["command.dead-lettered"]
    clock.advance(days=1)
    assert _dispatch(hub, instance, clock) == 0
    assert fake.writes == []
    assert _posts(fake) == 3


def test_a_lost_acknowledgement_is_retried_without_a_second_write(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock)
    fake.fail_next(1, status=502, method="POST", after_apply=True)
    _dispatch(hub, instance, clock)
    assert _command(hub, created.id).status == "failed"
    clock.advance(minutes=1)
    _dispatch(hub, instance, clock)
    command = _command(hub, created.id)
    assert command.status == "acknowledged"
    assert command.ack is not None and command.ack["already_applied"] is True
    assert len(fake.writes_for(SAMPLE_UID)) == 1


def test_a_refusal_runs_the_compensation_instead_of_retrying(hub, fake, clock):
    instance = _instance(hub, fake)
    compensation = {
        "kind": TRANSITION_COMMAND,
        "target": SAMPLE_UID,
        "payload": {"uid": SAMPLE_UID, "transition": "cancel"},
    }
    created = _create(hub, instance, clock, transition="publish", compensation=compensation)
    assert _dispatch(hub, instance, clock) == 1
    command = _command(hub, created.id)
    assert (command.status, command.attempts) == ("compensated", 1)
    assert command.reasons and "not allowed" in command.reasons[0]
    with session_scope(hub.engine) as session:
        compensating = session.exec(select(AdapterCommand).where(AdapterCommand.compensates_id == created.id)).one()
    assert (compensating.idempotency_key, compensating.status) == ("k-1:compensation", "pending")
    assert _dispatch(hub, instance, clock) == 1
    assert [w["transition"] for w in fake.writes_for(SAMPLE_UID)] == ["cancel"]
    assert _command(hub, compensating.id).status == "acknowledged"


def test_a_refusal_without_compensation_is_dead_lettered_at_once(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock, transition="publish")
    _dispatch(hub, instance, clock)
    command = _command(hub, created.id)
    assert (command.status, command.attempts) == ("dead-lettered", 1)
    assert command.reasons and command.reasons[0].startswith("refused by the source")


def test_concurrent_dispatchers_send_each_command_once(hub, fake, clock):
    instance = _instance(hub, fake)
    uids = [f"{n}" * 32 for n in range(1, 5)]
    created = []
    for number, uid in enumerate(uids):
        fake.derive(SAMPLE_UID, new_uid=uid, modified=START, id=f"URI-10{number}")
        with session_scope(hub.engine) as session:
            created.append(
                commands.create_command(
                    session,
                    instance=instance,
                    kind=TRANSITION_COMMAND,
                    target=uid,
                    payload={"uid": uid, "transition": "receive"},
                    idempotency_key=f"k-{uid}",
                    requested_by=None,
                    clock=clock,
                )
            )
    fake.delay_s = 0.05  # each answer takes a while, so the dispatchers overlap
    settings = _settings(hub)

    async def three_dispatchers() -> list[int]:
        return await asyncio.gather(
            *(
                dispatch_pending(
                    hub.engine, adapters={instance.id: SenaiteAdapter(instance.config)}, settings=settings, clock=clock
                )
                for _ in range(3)
            )
        )

    assert sum(asyncio.run(three_dispatchers())) == 4
    assert [_command(hub, command.id).status for command in created] == ["acknowledged"] * 4
    assert [len(fake.writes_for(uid)) for uid in uids] == [1, 1, 1, 1]
    assert _posts(fake) == 4


def test_a_command_left_sent_by_a_dead_dispatcher_is_resent_after_its_lease_without_a_second_write(hub, fake, clock):
    instance = _instance(hub, fake)
    created = _create(hub, instance, clock)
    # A dispatcher claims it, writes to the source, and dies before recording the outcome.
    [claim] = commands._claim_due(hub.engine, instance_ids=[instance.id], now=clock.now(), limit=10)
    asyncio.run(commands._execute(SenaiteAdapter(instance.config), claim))
    assert _command(hub, created.id).status == "sent"
    assert _dispatch(hub, instance, clock) == 0  # its claim still holds
    clock.advance(seconds=COMMAND_LEASE_S)
    assert _dispatch(hub, instance, clock) == 1
    command = _command(hub, created.id)
    assert (command.status, command.attempts) == ("acknowledged", 2)
    assert len(fake.writes_for(SAMPLE_UID)) == 1


# --- blocked by the rules ---------------------------------------------------------------------------------------


class CalibrationFeed(Adapter):
    """Calibration events as JSON, for the report-blocking scenario."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="calibration-feed-test",
        version="0.1.0",
        title="Calibrations (tests)",
        source_kind=SourceKind.file,
        transports=[Transport.file_drop],
        emits=[RecordKind.calibration_event],
        counterpart="the tests themselves",
    )

    async def run(self, context: AdapterContext) -> None:
        await context.stopping.wait()

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        return [CalibrationEvent.model_validate_json(message.payload)]


def test_publishing_a_report_measured_with_an_expired_instrument_is_blocked(hub, fake, clock):
    instrument = {"manufacturer": "Sysmex", "model": "XN-1000", "serial": "SN-77"}
    instance = _instance(hub, fake, instruments={"ins-1": instrument})
    analysis = {**load_saved("get-analyses.json")["items"][0], "Instrument": {"uid": "ins-1"}}
    calibration = {
        "instrument": instrument,
        "certificate_number": "CAL-2024-001",
        "calibrated_on": "2023-09-01T00:00:00+00:00",
        "valid_until": "2024-09-01T00:00:00+00:00",
        "result": "pass",
    }
    with session_scope(hub.engine) as session:
        feed = AdapterInstance(
            name=f"cal-{uuid.uuid4().hex[:8]}", adapter="calibration-feed-test", adapter_version="0.1.0"
        )
        session.add(feed)
        session.flush()
        for owner, adapter, payload in (
            (instance, SenaiteAdapter(instance.config), json.dumps({"count": 1, "items": [analysis]})),
            (feed, CalibrationFeed({}), json.dumps(calibration)),
        ):
            land_messages(
                session,
                instance=owner,
                adapter=adapter,
                messages=[InboundMessage(payload.encode(), "application/json", "test", Transport.http_poll)],
                clock=clock,
                max_message_bytes=1 << 20,
            )
    with session_scope(hub.engine) as session:
        blocked = commands.create_command(
            session,
            instance=instance,
            kind=TRANSITION_COMMAND,
            target="cbb1d9a225f94f139a8632e81d2d893b",
            payload={"uid": "cbb1d9a225f94f139a8632e81d2d893b", "transition": "publish", "sample_id": "BLD-0109-P01"},
            idempotency_key="publish-1",
            requested_by=None,
            clock=clock,
        )
    assert blocked.status == CommandStatus.blocked
    assert blocked.reasons and any("CAL-2024-001" in reason for reason in blocked.reasons)
    assert _dispatch(hub, instance, clock) == 0
    assert _posts(fake) == 0


# --- API ------------------------------------------------------------------------------------------------------


def _body(instance_id: str, transition: str = "receive", **extra: Any) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "kind": TRANSITION_COMMAND,
        "target": SAMPLE_UID,
        "payload": {"uid": SAMPLE_UID, "transition": transition},
        **extra,
    }


def test_commands_api_is_idempotent_per_key(hub, fake):
    org_id, headers = hub.make_org("Lab A")
    instance = _instance(hub, fake, organization_id=org_id)
    keyed = {**headers, "Idempotency-Key": "api-1"}
    created = hub.client.post("/api/v1/commands", json=_body(instance.id), headers=keyed)
    assert created.status_code == 201, created.text
    command = created.json()
    assert (command["status"], command["idempotencyKey"], command["attempts"]) == ("pending", "api-1", 0)
    assert created.headers["location"] == f"/api/v1/commands/{command['id']}"
    replay = hub.client.post("/api/v1/commands", json=_body(instance.id), headers=keyed)
    assert (replay.status_code, replay.headers.get("idempotent-replayed"), replay.json()["id"]) == (
        200,
        "true",
        command["id"],
    )
    reused = hub.client.post("/api/v1/commands", json=_body(instance.id, "cancel"), headers=keyed)
    assert reused.status_code == 409
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["code"] == "idempotency-key-reused"
    in_body = hub.client.post("/api/v1/commands", json=_body(instance.id, idempotencyKey="api-1"), headers=headers)
    assert (in_body.status_code, in_body.json()["id"]) == (200, command["id"])
    missing = hub.client.post("/api/v1/commands", json=_body(instance.id), headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (422, "idempotency-key-required")
    unsupported = hub.client.post(
        "/api/v1/commands",
        json={**_body(instance.id), "kind": "opcua.call"},
        headers={**headers, "Idempotency-Key": "x"},
    )
    assert (unsupported.status_code, unsupported.json()["code"]) == (422, "unsupported-command")
    read = hub.client.get(f"/api/v1/commands/{command['id']}", headers=headers)
    assert (read.status_code, read.json()["payload"]) == (200, {"uid": SAMPLE_UID, "transition": "receive"})
    listed = hub.client.get("/api/v1/commands", params={"instance": instance.id, "status": "pending"}, headers=headers)
    assert [item["id"] for item in listed.json()["items"]] == [command["id"]]
    assert hub.client.get("/api/v1/commands", params={"status": "acknowledged"}, headers=headers).json()["total"] == 0


def test_commands_are_isolated_per_tenant(hub, fake, admin_headers):
    owner_id, owner = hub.make_org("Lab A")
    _, other = hub.make_org("Lab B")
    instance = _instance(hub, fake, organization_id=owner_id)
    created = hub.client.post("/api/v1/commands", json=_body(instance.id), headers={**owner, "Idempotency-Key": "t-1"})
    command_id = created.json()["id"]
    assert hub.client.get(f"/api/v1/commands/{command_id}", headers=other).status_code == 404
    assert hub.client.get("/api/v1/commands", headers=other).json()["total"] == 0
    intruding = hub.client.post(
        "/api/v1/commands", json=_body(instance.id), headers={**other, "Idempotency-Key": "t-2"}
    )
    assert intruding.status_code == 404
    assert hub.client.get(f"/api/v1/commands/{command_id}", headers=admin_headers).status_code == 200
    assert command_id in [
        item["id"] for item in hub.client.get("/api/v1/commands", headers=admin_headers).json()["items"]
    ]
