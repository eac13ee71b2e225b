"""OPC UA instruments: a data-change subscription against a real asyncua server started in the test."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from adapters.builtin.opcua import CONTENT_TYPE, OpcUaAdapter
from adapters.framework import InboundMessage, QuarantineError, Transport
from adapters.models import AdapterAttempt, AdapterHealth, CanonicalRecordRow, LandingMessage
from storage.errors import InvalidInputError
from tests.adapters.maturity_scenario import create_instance, run_until, runtime_for, write_back
from tests.adapters.opcua_server import OpcUaTestServer, free_port


@pytest.fixture
def server():
    running = OpcUaTestServer().start()
    yield running
    running.stop()


def _message(**document: object) -> InboundMessage:
    base = {
        "nodeId": "ns=2;s=X.Status",
        "value": 2,
        "statusCode": "Good",
        "sourceTimestamp": "2026-03-02T08:00:00+00:00",
        "instrument": {"manufacturer": "Agilent", "model": "7890B", "serial": "CN1234"},
    }
    return InboundMessage(
        payload=json.dumps({**base, **document}).encode(),
        content_type=CONTENT_TYPE,
        source="opc.tcp://x#ns=2;s=X.Status",
        transport=Transport.opcua,
    )


def _adapter(**config: object) -> OpcUaAdapter:
    return OpcUaAdapter(
        {
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "variables": [
                {"node_id": "ns=2;s=X.Status", "instrument": {"manufacturer": "A", "model": "B", "serial": "C"}}
            ],
            **config,
        }
    )


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (0, "offline"),
        (1, "idle"),
        (2, "running"),
        (3, "fault"),
        (4, "maintenance"),
        ("Running", "running"),
        ("待机", "idle"),
    ],
)
def test_status_codes_map_to_the_hub_equipment_vocabulary(value, status):
    (record,) = _adapter().parse(_message(value=value))
    assert record.status == status
    assert record.source_status == str(value)


def test_a_configured_code_list_overrides_and_unknown_codes_are_quarantined():
    adapter = _adapter(status_codes={"7": "maintenance"})
    assert adapter.parse(_message(value=7))[0].status == "maintenance"
    with pytest.raises(QuarantineError) as caught:
        adapter.parse(_message(value=99))
    assert caught.value.code == "unknown-code"
    with pytest.raises(InvalidInputError):
        _adapter(status_codes={"7": "broken-ish"})


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "malformed-payload"),
        (
            json.dumps({"nodeId": "n", "value": 1, "sourceTimestamp": "2026-03-02T08:00:00+00:00"}).encode(),
            "missing-identifier",
        ),
    ],
)
def test_unreadable_changes_are_quarantined_with_a_code(payload, code):
    message = InboundMessage(payload=payload, content_type=CONTENT_TYPE, source="s", transport=Transport.opcua)
    with pytest.raises(QuarantineError) as caught:
        _adapter().parse(message)
    assert caught.value.code == code


def test_a_time_without_offset_is_quarantined():
    with pytest.raises(QuarantineError) as caught:
        _adapter().parse(_message(sourceTimestamp="2026-03-02T08:00:00"))
    assert caught.value.code == "invalid-value"


def test_status_changes_land_once_each_and_a_reconnect_does_not_duplicate(hub, server):
    _lab, headers = hub.make_org("Instrument lab")
    instance_id = create_instance(
        hub, headers, name=f"opcua-{hub.backend}", adapter="opcua", config=server.adapter_config()
    )
    adapter = OpcUaAdapter(server.adapter_config())
    runtime = runtime_for(hub, instance_id, adapter)
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def stored() -> int:
        with Session(hub.engine) as session:
            return len(session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance_id)).all())

    async def first() -> None:
        server.set_status(1, start)
        task = asyncio.create_task(run_until(runtime, adapter, lambda: stored() >= 3))
        # Each change is made once the one before it has landed, not after a fixed pause: a change made before
        # the subscription exists is never seen (subscribing delivers only the current value), and a loaded
        # machine can take longer than any pause to connect.
        for landed, status in ((1, 2), (2, 3)):
            while stored() < landed and not task.done():
                await asyncio.sleep(0.05)
            server.set_status(status, start + timedelta(minutes=landed))
        await task

    asyncio.run(first())
    # Reconnecting: the server sends the current value again (same source timestamp) — counted, not stored.
    asyncio.run(
        run_until(
            runtime,
            adapter,
            lambda: (
                hub.client.get(f"/api/v1/adapters/{instance_id}/counters", headers=headers).json()["duplicates"] >= 1
            ),
        )
    )

    with Session(hub.engine) as session:
        records = session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance_id)
            .order_by(CanonicalRecordRow.id)
        ).all()
        health = session.get(AdapterHealth, instance_id)
        messages = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance_id)).all()
    assert [r.record["status"] for r in records] == ["idle", "running", "fault"]
    assert records[0].record["instrument"] == {
        "manufacturer": "Mettler Toledo",
        "model": "XPR205",
        "serial": "B123456789",
    }
    assert {m.dedup_key for m in messages} == {
        f"{server.status_node_id}@{(start + timedelta(minutes=n)).isoformat()}" for n in range(3)
    }
    assert all(m.transport == "opcua" and m.source_time is not None for m in messages)
    assert health is not None and health.connected
    counters = hub.client.get(f"/api/v1/adapters/{instance_id}/counters", headers=headers).json()
    assert counters["accepted"] == 3 and counters["duplicates"] >= 1 and counters["reconciled"]


def test_an_unreachable_server_is_retried_with_growing_backoff_and_reported_unhealthy(hub):
    _lab, headers = hub.make_org("Instrument lab")
    config = OpcUaTestServer(port=free_port()).adapter_config()  # nobody listens there
    instance_id = create_instance(hub, headers, name=f"opcua-down-{hub.backend}", adapter="opcua", config=config)
    adapter = OpcUaAdapter(config)
    runtime = runtime_for(hub, instance_id, adapter, adapter_retry_max_attempts=3)

    async def run() -> None:
        await runtime.start()
        with pytest.raises(Exception, match="connect"):
            await asyncio.wait_for(adapter.run(runtime), 60)

    asyncio.run(run())

    with Session(hub.engine) as session:
        attempts = session.exec(select(AdapterAttempt).where(AdapterAttempt.instance_id == instance_id)).all()
        health = session.get(AdapterHealth, instance_id)
    assert [(a.operation, a.attempt, a.succeeded) for a in attempts] == [("connect", n, False) for n in (1, 2, 3)]
    assert attempts[0].delay_s <= attempts[1].delay_s  # backoff grows
    assert health is not None and not health.connected and health.last_error
    assert asyncio.run(adapter.check_health()) is False


def test_a_method_call_write_back_runs_once_per_idempotency_key_even_after_a_failure(hub, server):
    _lab, headers = hub.make_org("Instrument lab")
    instance_id = create_instance(
        hub, headers, name=f"opcua-cmd-{hub.backend}", adapter="opcua", config=server.adapter_config()
    )
    adapter = OpcUaAdapter(server.adapter_config())
    server.fail_calls = 1  # the first call fails on the server side

    command = write_back(
        hub, instance_id, adapter, kind="opcua.call", target="balance", payload={"arguments": ["tare"]}, key="tare-1"
    )

    assert command.status == "acknowledged"
    assert command.attempts == 2
    assert command.ack["outputs"] == ["accepted"]
    assert server.calls == {"tare-1": "tare"}  # executed once
    events = hub.client.get("/api/v1/events?type=command.acknowledged", headers=headers).json()["events"]
    assert [event["data"]["commandId"] for event in events] == [command.id]
