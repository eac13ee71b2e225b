"""Events published to MQTT topics `{prefix}/{type}` on the real broker, each once, in outbox order."""

import asyncio
import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiomqtt
from sqlmodel import select

from adapters.delivery import deliver_pending, publish_mqtt
from adapters.framework import ManualClock
from adapters.models import OutboxEvent
from storage.database import session_scope
from tests.adapters.events_support import equipment, land, make_instance, sample


async def _publish_and_collect(hub, settings, clock, mqtt_url, topic_prefix, expected: int) -> list[tuple[str, dict]]:
    url = urlsplit(mqtt_url)
    received: list[tuple[str, dict]] = []
    async with aiomqtt.Client(hostname=url.hostname, port=url.port) as subscriber:
        await subscriber.subscribe(f"{topic_prefix}/#", qos=1)
        assert await deliver_pending(hub.engine, settings=settings, clock=clock) == expected

        async def collect() -> None:
            async for message in subscriber.messages:
                received.append((str(message.topic), json.loads(message.payload)))
                if len(received) == expected:
                    return

        await asyncio.wait_for(collect(), timeout=10)
    return received


def test_events_reach_an_mqtt_subscriber_once_in_order(hub, mqtt_url, topic_prefix):
    clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    org, _ = hub.make_org("Broadcast lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, clock, sample("received"))
    land(hub.engine, instance, clock, equipment("idle", "2026-03-02T08:00:00+00:00"))
    land(hub.engine, instance, clock, equipment("running", "2026-03-02T08:05:00+00:00"))
    land(hub.engine, instance, clock, sample("published"))
    settings = hub.settings.model_copy(update={"events_mqtt_url": mqtt_url, "events_mqtt_topic_prefix": topic_prefix})

    received = asyncio.run(_publish_and_collect(hub, settings, clock, mqtt_url, topic_prefix, expected=3))

    assert [topic for topic, _ in received] == [
        f"{topic_prefix}/sample.received",
        f"{topic_prefix}/equipment.status.changed",
        f"{topic_prefix}/report.issued",
    ]
    assert all(envelope["specversion"] == "1.0" for _, envelope in received)
    assert [envelope["qihubseq"] for _, envelope in received] == sorted(e["qihubseq"] for _, e in received)
    with session_scope(hub.engine) as session:
        marks = session.exec(select(OutboxEvent.mqtt_published_at)).all()
    assert len(marks) == 3 and all(mark is not None for mark in marks)
    assert asyncio.run(publish_mqtt(hub.engine, settings=settings, clock=clock)) == 0


def test_unreachable_broker_leaves_events_for_the_next_tick(hub, manual_clock, topic_prefix):
    org, _ = hub.make_org("Offline lab")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, manual_clock, sample("received"))
    settings = hub.settings.model_copy(
        update={"events_mqtt_url": "mqtt://127.0.0.1:9", "events_mqtt_topic_prefix": topic_prefix}
    )
    assert asyncio.run(publish_mqtt(hub.engine, settings=settings, clock=manual_clock)) == 0
    with session_scope(hub.engine) as session:
        (event,) = session.exec(select(OutboxEvent)).all()
    assert event.mqtt_published_at is None
