"""The provincial platform adapter against the platform simulator (qihub contract v1): pulls and pushes."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from adapters.builtin.platform import (
    NOTIFY_REPORT_MODIFIED,
    PUSH_ACTIVITY,
    PUSH_REPORT,
    PlatformAdapter,
    directory_items,
)
from adapters.builtin.platform_contract import LabEntry, PlatformComplaint, StandardEntry
from adapters.events import emit_due_events
from adapters.framework import CommandFailedError, CommandRequest, InboundMessage, QuarantineError, Transport
from adapters.models import AdapterCheckpoint, AdapterCommand, CanonicalRecordRow, LandingMessage, OutboxEvent
from adapters.runtime import InstanceRuntime
from adapters.simulators.platform import PlatformSimulator, create_simulator_app
from storage.database import session_scope
from tests.adapters.events_support import ServedApp, land, make_instance, sample

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _lab(number: str, minute: int) -> LabEntry:
    return LabEntry(
        labId=f"CNAS {number}",
        body="CNAS",
        number=number,
        name=f"Lab {number}",
        status="active",
        updatedAt=START + timedelta(minutes=minute),
    )


def _complaint(complaint_id: str, status: str = "accepted", minute: int = 0) -> PlatformComplaint:
    return PlatformComplaint(
        complaintId=complaint_id,
        againstLabId="CNAS L0001",
        subject="report later than promised",
        channel="platform-web",
        receivedAt=START,
        dueAt=START + timedelta(hours=20),
        status=status,
        updatedAt=START + timedelta(minutes=minute),
    )


@pytest.fixture
def simulator():
    state = PlatformSimulator(token="sim-token")
    for index in range(5):
        state.upsert_lab(_lab(f"L000{index}", index))
    state.upsert_standard(
        StandardEntry(code="GB/T 27025-2019", title="Testing and calibration labs", status="current", updatedAt=START)
    )
    state.upsert_complaint(_complaint("ZJ-C-1"))
    served = ServedApp(create_simulator_app(state))
    yield state, served.url
    served.close()


def _runtime(hub, instance, config, clock):
    adapter = PlatformAdapter(config)
    return adapter, InstanceRuntime(
        engine=hub.engine, instance=instance, adapter=adapter, settings=hub.settings, clock=clock
    )


def _config(url: str, **extra) -> dict:
    return {"base_url": url, "token": "sim-token", "lab_id": "CNAS L0001", "page_size": 2, **extra}


def _poll(adapter, runtime) -> int:
    async def once() -> int:
        async with adapter._client() as client:
            return await adapter.poll_once(runtime, client)

    return asyncio.run(once())


def test_adapter_pulls_complaints_and_directories_from_the_simulator_and_resumes(hub, simulator, manual_clock):
    state, url = simulator
    org, _ = hub.make_org("Platform-connected lab")
    config = _config(url)
    instance = make_instance(hub.engine, organization_id=org, adapter="platform", config=config)
    adapter, runtime = _runtime(hub, instance, config, manual_clock)

    pages = _poll(adapter, runtime)
    assert pages == 1 + 3 + 1  # complaints: 1 page; labs: 5 in pages of 2; standards: 1 page
    with session_scope(hub.engine) as session:
        messages = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).all()
        records = session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance.id)).all()
        cursors = {row.stream for row in session.exec(select(AdapterCheckpoint))}
    assert {m.outcome for m in messages} == {"accepted"}
    assert all(m.transport == "http-poll" and "/platform/v1/" in m.source for m in messages)
    labs = [item for m in messages if m.stream == "directory/labs" for item in directory_items(m.raw, m.stream)]
    assert sorted(lab.lab_id for lab in labs) == [f"CNAS L000{i}" for i in range(5)]
    (record,) = records
    assert record.kind == "complaint" and record.record["status"] == "accepted"
    assert cursors == {"complaints", "directory/labs", "directory/standards"}

    assert _poll(adapter, runtime) == 0  # nothing new after the checkpoints
    state.upsert_complaint(_complaint("ZJ-C-1", status="resolved", minute=30))
    state.upsert_lab(_lab("L0009", 60))
    assert _poll(adapter, runtime) == 2
    with session_scope(hub.engine) as session:
        statuses = [
            r.record["status"] for r in session.exec(select(CanonicalRecordRow).order_by(CanonicalRecordRow.id))
        ]
    assert statuses == ["accepted", "closed"]


def test_pulled_complaint_raises_its_deadline_event_once(hub, simulator, manual_clock):
    _, url = simulator
    org, _ = hub.make_org("Complained-about lab")
    config = _config(url, streams=["complaints"])
    instance = make_instance(hub.engine, organization_id=org, adapter="platform", config=config)
    adapter, runtime = _runtime(hub, instance, config, manual_clock)
    _poll(adapter, runtime)
    for _ in range(2):
        with session_scope(hub.engine) as session:
            emit_due_events(session, clock=manual_clock, settings=hub.settings)
    with session_scope(hub.engine) as session:
        (event,) = session.exec(select(OutboxEvent)).all()
    assert event.type == "complaint.deadline.near" and event.data["complaintId"] == "ZJ-C-1"
    assert event.organization_id == org


def test_unreachable_platform_is_retried_with_backoff_and_reported_unhealthy(hub, manual_clock):
    org, _ = hub.make_org("Cut-off lab")
    config = _config("http://127.0.0.1:9", streams=["complaints"])
    instance = make_instance(hub.engine, organization_id=org, adapter="platform", config=config)
    settings = hub.settings.model_copy(update={"adapter_retry_max_attempts": 2, "adapter_retry_base_s": 0.01})
    adapter = PlatformAdapter(config)
    runtime = InstanceRuntime(
        engine=hub.engine, instance=instance, adapter=adapter, settings=settings, clock=manual_clock
    )
    with pytest.raises(Exception, match="complaints"):
        _poll(adapter, runtime)
    from adapters.models import AdapterAttempt, AdapterHealth

    with session_scope(hub.engine) as session:
        attempts = session.exec(select(AdapterAttempt).where(AdapterAttempt.instance_id == instance.id)).all()
        health = session.get(AdapterHealth, instance.id)
    assert [a.attempt for a in attempts] == [1, 2] and not any(a.succeeded for a in attempts)
    assert health is not None and health.connected is False


def test_report_is_pushed_once_whatever_the_retries(hub, simulator):
    state, url = simulator
    adapter = PlatformAdapter(_config(url))
    command = CommandRequest(
        id="c1",
        kind=PUSH_REPORT,
        target="S-1",
        payload={
            "reportNumber": "S-1",
            "kind": "test-report",
            "issuedAt": "2026-03-02T09:00:00+00:00",
            "sampleId": "S-1",
        },
        idempotency_key="report.issued:e1",
    )
    first = asyncio.run(adapter.execute_command(command))
    again = asyncio.run(adapter.execute_command(command))
    assert first["status"] == 201 and first["duplicate"] is False and first["simulator"] is True
    assert again["receiptId"] == first["receiptId"] and again["duplicate"] is True
    assert len(state.pushes("report")) == 1 and state.push_calls == 2
    assert state.pushes("report")[0].body["labId"] == "CNAS L0001"

    modification = CommandRequest(
        id="c2",
        kind=NOTIFY_REPORT_MODIFIED,
        target="S-1",
        payload={
            "reportNumber": "S-1",
            "change": "status-changed",
            "modifiedAt": "2026-03-02T10:00:00+00:00",
            "status": "invalid",
        },
        idempotency_key="report.modified:e2",
    )
    assert asyncio.run(adapter.execute_command(modification))["duplicate"] is False
    assert state.reports["S-1"]["modifications"][0]["status"] == "invalid"

    activity = CommandRequest(
        id="c3",
        kind=PUSH_ACTIVITY,
        target="CNAS L0001",
        payload={"items": [{"kind": "sample", "id": "S-1", "occurredAt": "2026-03-02T08:00:00+00:00", "data": {}}]},
        idempotency_key="activity:1",
    )
    assert asyncio.run(adapter.execute_command(activity))["status"] == 202
    assert len(state.received) == 3


def test_push_failures_are_classified_for_retry_or_dead_letter(hub, simulator):
    state, url = simulator
    adapter = PlatformAdapter(_config(url))
    push = CommandRequest(
        id="c1",
        kind=PUSH_REPORT,
        target="S-2",
        payload={"reportNumber": "S-2", "kind": "test-report", "issuedAt": "2026-03-02T09:00:00+00:00"},
        idempotency_key="k-1",
    )
    state.faults.append(503)
    with pytest.raises(CommandFailedError) as unavailable:
        asyncio.run(adapter.execute_command(push))
    assert unavailable.value.retryable is True and state.received == []
    reused = CommandRequest(
        id="c2", kind=PUSH_REPORT, target="S-3", payload={**push.payload, "reportNumber": "S-3"}, idempotency_key="k-1"
    )
    asyncio.run(adapter.execute_command(push))
    with pytest.raises(CommandFailedError) as conflict:
        asyncio.run(adapter.execute_command(reused))
    assert conflict.value.retryable is False and len(state.received) == 1
    unknown = CommandRequest(
        id="c3",
        kind=NOTIFY_REPORT_MODIFIED,
        target="nope",
        payload={"reportNumber": "nope", "change": "amended", "modifiedAt": "2026-03-02T10:00:00+00:00"},
        idempotency_key="k-2",
    )
    with pytest.raises(CommandFailedError) as missing:
        asyncio.run(adapter.execute_command(unknown))
    assert missing.value.retryable is False
    bad = CommandRequest(id="c4", kind=PUSH_REPORT, target="x", payload={"reportNumber": "x"}, idempotency_key="k-3")
    with pytest.raises(CommandFailedError) as invalid:
        asyncio.run(adapter.execute_command(bad))
    assert invalid.value.retryable is False


def test_published_sample_reaches_the_platform_through_the_command_queue_once(hub, simulator, manual_clock):
    state, url = simulator
    org, _ = hub.make_org("End-to-end lab")
    lims = make_instance(hub.engine, organization_id=org)
    platform = make_instance(hub.engine, organization_id=org, adapter="platform", config=_config(url))
    land(hub.engine, lims, manual_clock, sample("published"))
    land(hub.engine, lims, manual_clock, sample("published"))  # re-delivered: no second command
    with session_scope(hub.engine) as session:
        (command,) = session.exec(select(AdapterCommand).where(AdapterCommand.instance_id == platform.id)).all()
    request = CommandRequest(
        id=command.id,
        kind=command.kind,
        target=command.target,
        payload=command.payload,
        idempotency_key=command.idempotency_key,
    )
    adapter = PlatformAdapter(_config(url))
    for _ in range(2):  # a dispatcher that died after sending sends again with the same key
        asyncio.run(adapter.execute_command(request))
    (push,) = state.pushes("report")
    assert push.body["reportNumber"] == "S-2026-0001" and push.body["sampleId"] == "S-2026-0001"


def test_parse_quarantines_pages_that_break_the_contract():
    adapter = PlatformAdapter({"base_url": "http://127.0.0.1:9"})

    def message(payload: bytes, stream: str = "complaints") -> InboundMessage:
        return InboundMessage(
            payload=payload, content_type="application/json", source="x", transport=Transport.http_poll, stream=stream
        )

    with pytest.raises(QuarantineError) as broken:
        adapter.parse(message(b"{not json"))
    assert broken.value.code == "malformed-payload"
    item = {
        "complaintId": "C",
        "subject": "s",
        "receivedAt": "2026-03-01T00:00:00Z",
        "dueAt": "2026-03-02T00:00:00Z",
        "status": "lost",
        "updatedAt": "2026-03-01T00:00:00Z",
    }
    page = json.dumps({"items": [item], "cursor": None, "more": False}).encode()
    with pytest.raises(QuarantineError) as unknown:
        adapter.parse(message(page))
    assert unknown.value.code == "unknown-code"
    with pytest.raises(QuarantineError) as missing:
        adapter.parse(message(b'{"items": [{"labId": "x"}], "cursor": null, "more": false}', "directory/labs"))
    assert missing.value.code == "schema-violation"
    (fixture,) = PlatformAdapter.golden_fixtures()
    from adapters.canonical import record_json

    assert [record_json(r) for r in adapter.parse(fixture.message)] == fixture.expected


def test_simulator_labels_itself_and_requires_its_token(simulator):
    import httpx

    _, url = simulator
    response = httpx.get(f"{url}/platform/v1/directory/standards")
    assert response.status_code == 401 and response.headers["content-type"].startswith("application/problem+json")
    assert "simulator" in response.headers["x-simulator"]
    ok = httpx.get(f"{url}/platform/v1/directory/standards", headers={"Authorization": "Bearer sim-token"})
    assert ok.json()["simulator"] is True
    assert "SIMULATOR" in httpx.get(f"{url}/openapi.json").json()["info"]["title"]
    manifest = PlatformAdapter.manifest
    assert manifest.simulator is True and "simulator" in manifest.counterpart
