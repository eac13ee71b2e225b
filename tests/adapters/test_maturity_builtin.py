"""Built-in adapters against their counterparts reach at least L4 on the maturity endpoint (evidence only)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from adapters.builtin.opcua import OpcUaAdapter
from adapters.models import CanonicalRecordRow
from tests.adapters.maturity_scenario import create_instance, fuse_all, run_until, runtime_for, write_back
from tests.adapters.opcua_server import OpcUaTestServer


@pytest.fixture
def server():
    running = OpcUaTestServer().start()
    yield running
    running.stop()


def test_opcua_against_the_test_server_reaches_level_4(hub, server):
    _lab, headers = hub.make_org("Instrument lab")
    config = server.adapter_config()
    instance_id = create_instance(hub, headers, name=f"opcua-l4-{hub.backend}", adapter="opcua", config=config)
    adapter = OpcUaAdapter(config)
    runtime = runtime_for(hub, instance_id, adapter)
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def records() -> int:
        with Session(hub.engine) as session:
            return len(
                session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance_id)).all()
            )

    def counted(field: str, at_least: int) -> bool:
        counters = hub.client.get(f"/api/v1/adapters/{instance_id}/counters", headers=headers).json()
        return bool(counters[field] >= at_least)

    async def scenario() -> None:
        server.set_status(1, start)  # idle
        run = asyncio.create_task(run_until(runtime, adapter, lambda: records() >= 3 and counted("quarantined", 1)))
        await asyncio.sleep(1.0)
        server.set_status(2, start + timedelta(minutes=1))  # running
        await asyncio.sleep(0.3)
        server.set_status(42, start + timedelta(minutes=2))  # a code nobody mapped: quarantined
        await asyncio.sleep(0.3)
        server.set_status(3, start + timedelta(minutes=3))  # fault: the stream went on
        await run

    asyncio.run(scenario())
    # A restart re-subscribes: the server re-sends the current value, which lands as a duplicate.
    asyncio.run(run_until(runtime, adapter, lambda: counted("duplicates", 1)))
    server.stop()  # the server goes away: connection attempts back off and are recorded
    down = runtime_for(hub, instance_id, adapter, adapter_retry_max_attempts=3)

    async def outage() -> None:
        await down.start()
        with pytest.raises(Exception, match="connect"):
            await asyncio.wait_for(adapter.run(down), 60)

    asyncio.run(outage())
    restarted = OpcUaTestServer(port=server.port).start()
    try:
        restarted.set_status(1, start + timedelta(minutes=4))
        asyncio.run(run_until(runtime_for(hub, instance_id, adapter), adapter, lambda: records() >= 4))
        # A second source describes the same balance: the lab's LIMS pushes a result measured on it.
        lims_id = create_instance(
            hub,
            headers,
            name=f"lims-{hub.backend}",
            adapter="lims-push",
            config={"record_kind": "test-result", "lab_id": "CNAS L0001"},
        )
        pushed = hub.client.post(
            f"/api/v1/adapters/{lims_id}/push",
            json=[
                {
                    "sample_id": "S-1",
                    "test_item": "mass",
                    "value": "12.3450",
                    "unit": "g",
                    "status": "verified",
                    "measured_at": "2026-03-02T08:01:30+00:00",
                    "instrument": {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B123456789"},
                },
                {  # weighed at 08:03:30, while the OPC UA server reported the balance in fault since 08:03
                    "sample_id": "S-2",
                    "test_item": "mass",
                    "value": "7.0010",
                    "unit": "g",
                    "status": "verified",
                    "measured_at": "2026-03-02T08:03:30+00:00",
                    "instrument": {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B123456789"},
                },
            ],
            headers=headers,
        )
        assert pushed.status_code == 200, pushed.text
        fuse_all(hub)
        restarted.fail_calls = 1
        command = write_back(
            hub, instance_id, adapter, kind="opcua.call", target="balance", payload={"arguments": ["tare"]}, key="k-1"
        )
        assert command.status == "acknowledged" and restarted.calls == {"k-1": "tare"}

        report = hub.client.get(f"/api/v1/adapters/{instance_id}/maturity", headers=headers).json()
    finally:
        restarted.stop()

    criteria = {item["id"]: item for item in report["criteria"]}
    failing = {key: item["evidence"] for key, item in criteria.items() if not item["passed"] and item["level"] <= 4}
    assert failing == {}, failing
    assert report["achievedLevel"] >= 4
    assert "test-on-unavailable-instrument ×1" in criteria["L4.3"]["evidence"]
    # The finding acts: a report on the sample weighed on the faulty balance may not be issued.
    check = hub.client.post("/api/v1/rules/report-issue-check", json={"sampleIds": ["S-2", "S-1"]}, headers=headers)
    assert check.status_code == 200, check.text
    assert check.json()["allowed"] is False and "fault" in " ".join(check.json()["blockers"])
