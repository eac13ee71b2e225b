"""Helpers of the MQTT tests: publish with QoS 1 to the real broker, wait for landed rows."""

import time
import uuid
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from sqlalchemy import func
from sqlmodel import Session, select

from adapters.models import AdapterCounters, LandingMessage


def publish_all(mqtt_url: str, messages: Iterable[tuple[str, bytes]]) -> int:
    """Publish (topic, payload) pairs at QoS 1 and wait until the broker acknowledged every one."""
    parts = urlsplit(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:10]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published()
    client.disconnect()
    client.loop_stop()
    return len(infos)


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll until `condition()` holds; fail the test with `what` when it does not in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def counters(engine, instance_id: str) -> AdapterCounters:
    """The instance's landing counters (zeros before anything landed)."""
    with Session(engine) as session:
        row = session.get(AdapterCounters, instance_id)
        return row or AdapterCounters(instance_id=instance_id)


def landed(engine, instance_id: str, outcome: str | None = None) -> int:
    """How many messages the instance has stored."""
    with Session(engine) as session:
        query = select(func.count()).select_from(LandingMessage).where(LandingMessage.instance_id == instance_id)
        if outcome is not None:
            query = query.where(LandingMessage.outcome == outcome)
        return int(session.exec(query).one())
