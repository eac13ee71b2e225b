"""SENAITE end to end in the hub's worker: configured through the API, polled, written back, acknowledged."""

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from sqlmodel import select

from adapters.builtin.senaite import SenaiteAdapter
from adapters.models import CanonicalRecordRow, OutboxEvent
from adapters.worker import Worker
from storage.database import session_scope
from tests.adapters.senaite_fake import FakeSenaite

SAMPLE_UID = "99afa09663054c18b1ae7a1cd2cd7693"


@pytest.fixture
def fake() -> Iterator[FakeSenaite]:
    server = FakeSenaite.with_saved_responses().start()
    try:
        yield server
    finally:
        server.stop()


def _records(hub, instance_id: str) -> list[CanonicalRecordRow]:
    with session_scope(hub.engine) as session:
        query = select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance_id)
        return list(session.exec(query.order_by(CanonicalRecordRow.id)))


def _event_types(hub, instance_id: str) -> list[str]:
    with session_scope(hub.engine) as session:
        query = select(OutboxEvent).where(OutboxEvent.instance_id == instance_id).order_by(OutboxEvent.seq)
        return [event.type for event in session.exec(query)]


async def _until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not get there in time")
        await asyncio.sleep(0.05)


def test_the_worker_polls_senaite_and_writes_a_transition_back_once(hub, fake):
    _, headers = hub.make_org("Lab A")
    config = {
        **SenaiteAdapter.manifest.config_schema["examples"][0],
        "base_url": fake.site_url,
        "lab_id": "CNAS L0001",
        "poll_interval_s": 0.1,
    }
    created = hub.client.post(
        "/api/v1/adapters", json={"name": "senaite-e2e", "adapter": "senaite", "config": config}, headers=headers
    )
    assert created.status_code == 201, created.text
    instance_id = created.json()["id"]
    settings = hub.settings.model_copy(update={"worker_poll_interval_s": 0.05})
    worker = Worker(settings, engine=hub.engine, instance_ids={instance_id})
    command: dict = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await _until(lambda: len(_records(hub, instance_id)) == 2)
            answer = await asyncio.to_thread(
                hub.client.post,
                "/api/v1/commands",
                json={
                    "instanceId": instance_id,
                    "kind": "senaite.transition",
                    "target": SAMPLE_UID,
                    "payload": {"uid": SAMPLE_UID, "transition": "receive"},
                },
                headers={**headers, "Idempotency-Key": "receive-URI-0001"},
            )
            assert answer.status_code == 201, answer.text
            command.update(answer.json())

            def acknowledged() -> bool:
                read = hub.client.get(f"/api/v1/commands/{command['id']}", headers=headers)
                command.update(read.json())
                return command["status"] == "acknowledged"

            await _until(acknowledged)
            # The transition changed the sample in SENAITE: the next poll brings its new version.
            await _until(lambda: any(r.record.get("status") == "received" for r in _records(hub, instance_id)))
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)

    asyncio.run(scenario())
    assert command["ack"]["review_state"] == "sample_received"  # the source's answer, as it gave it
    assert [w["transition"] for w in fake.writes_for(SAMPLE_UID)] == ["receive"]
    samples = [r.record["status"] for r in _records(hub, instance_id) if r.kind == "sample"]
    assert samples == ["due", "received"]
    types = _event_types(hub, instance_id)
    assert "command.acknowledged" in types
    assert "sample.received" in types
    # Asking again with the same key is answered from the stored command; SENAITE is not called again.
    again = hub.client.post(
        "/api/v1/commands",
        json={
            "instanceId": instance_id,
            "kind": "senaite.transition",
            "target": SAMPLE_UID,
            "payload": {"uid": SAMPLE_UID, "transition": "receive"},
        },
        headers={**headers, "Idempotency-Key": "receive-URI-0001"},
    )
    assert (again.status_code, again.json()["id"], again.json()["status"]) == (200, command["id"], "acknowledged")
    assert len(fake.writes_for(SAMPLE_UID)) == 1
