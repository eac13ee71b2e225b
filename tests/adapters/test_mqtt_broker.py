"""The MQTT adapter against the real broker, run by an in-process worker: land, quarantine, ack, health, commands."""

import asyncio
import json
import threading
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from sqlmodel import Session, select

from adapters.builtin.mqtt import MqttAdapter
from adapters.builtin.mqtt_wire import MqttSubscriber
from adapters.framework import CommandRequest
from adapters.models import AdapterAttempt, AdapterHealth, CanonicalRecordRow, LandingMessage
from adapters.worker import Worker
from tests.adapters.mqtt_helpers import counters, landed, publish_all, wait_until
from tests.adapters.room_replay import room_payloads


def _create_instance(hub, admin_headers, mqtt_url: str, topic_prefix: str, **extra) -> dict:
    config = {
        "broker": mqtt_url,
        "client_id": f"qihub-test-{uuid.uuid4().hex[:12]}",
        "subscriptions": [
            {"topic": f"{topic_prefix}/env/#", "kind": "environment"},
            {"topic": f"{topic_prefix}/equipment/#", "kind": "equipment-status", "room": "R-101"},
            {
                "topic": f"{topic_prefix}/sta/#",
                "kind": "sensorthings-observation",
                "datastreams": {"1": {"sensor": "sta-t-1", "quantity": "temperature", "unit": "Cel", "room": "R-2"}},
            },
        ],
        "batch_wait_ms": 20,
        **extra,
    }
    response = hub.client.post(
        "/api/v1/adapters",
        json={"name": f"mqtt-{uuid.uuid4().hex[:8]}", "adapter": "mqtt", "config": config},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


class _BackgroundWorker:
    """A worker running in its own thread and event loop, as `qihub worker` runs it."""

    def __init__(self, hub, instance_id: str) -> None:
        settings = hub.settings.model_copy(
            update={"worker_poll_interval_s": 0.1, "adapter_retry_base_s": 0.05, "adapter_retry_max_s": 0.5}
        )
        self.worker = Worker(settings, engine=hub.engine, instance_ids={instance_id})
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop = asyncio.Event()
            await self.worker.run(self.stop)

        self.loop.run_until_complete(main())

    def __enter__(self) -> "_BackgroundWorker":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        wait_until(lambda: self.stop is not None, what="worker start")
        self.loop.call_soon_threadsafe(self.stop.set)  # type: ignore[union-attr]
        self.thread.join(30)
        assert not self.thread.is_alive()


def _connected(engine, instance_id: str) -> bool:
    with Session(engine) as session:
        health = session.get(AdapterHealth, instance_id)
        return bool(health and health.connected)


def test_room_readings_land_once_and_bad_payloads_are_quarantined_while_the_stream_continues(
    hub, admin_headers, mqtt_url, topic_prefix
):
    instance = _create_instance(hub, admin_headers, mqtt_url, topic_prefix)
    payloads = list(room_payloads())[:200]
    huge = b'{"sensor": "x", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    bad = [
        (f"{topic_prefix}/env/office-1", b'{"sensor": "uci-occupancy-1", "time": '),  # broken JSON
        (
            f"{topic_prefix}/env/office-1",
            b'{"sensor": "s9", "room": "R", "time": "2026-03-02T08:00:00Z", '
            b'"quantity": "temperature", "value": 21.5, "unit": "kg"}',
        ),  # wrong unit for a temperature
        (
            f"{topic_prefix}/env/office-1",
            b'{"room": "R", "time": "2026-03-02T08:00:00Z", "quantity": "temperature", "value": 21.5, "unit": "Cel"}',
        ),  # no sensor id
        (f"{topic_prefix}/env/office-1", huge),  # 10 MB
    ]
    stream = [(f"{topic_prefix}/env/office-1", payload) for payload in payloads[:100]]
    stream += bad
    stream += [(f"{topic_prefix}/env/office-1", payload) for payload in payloads[100:]]
    stream += [(f"{topic_prefix}/env/office-1", payloads[5])]  # a publisher's retry of one it sent before
    with _BackgroundWorker(hub, instance["id"]):
        wait_until(lambda: _connected(hub.engine, instance["id"]), what="the adapter to subscribe")
        publish_all(mqtt_url, stream)
        wait_until(lambda: counters(hub.engine, instance["id"]).received == len(stream), what="all messages landed")
        health = hub.client.get(f"/api/v1/adapters/{instance['id']}/health", headers=admin_headers).json()
    totals = hub.client.get(f"/api/v1/adapters/{instance['id']}/counters", headers=admin_headers).json()
    assert totals == {
        "received": 205,
        "accepted": 200,
        "quarantined": 4,
        "duplicates": 1,
        "reconciled": True,
    }
    assert health["healthy"] is True and health["connected"] is True
    quarantine = hub.client.get(
        f"/api/v1/adapters/{instance['id']}/messages", params={"outcome": "quarantined"}, headers=admin_headers
    ).json()
    assert [item["errorCode"] for item in quarantine["items"]] == [
        "malformed-payload",
        "unit-mismatch",
        "missing-identifier",
        "payload-too-large",
    ]
    with Session(hub.engine) as session:
        records = session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance["id"])
            .order_by(CanonicalRecordRow.id)
        ).all()
        last = session.exec(
            select(LandingMessage)
            .where(LandingMessage.instance_id == instance["id"])
            .order_by(LandingMessage.id.desc())
        ).first()
    assert len(records) == 200 * 5
    assert len({(r.natural_key) for r in records}) == 1000
    assert last is not None and last.raw == payloads[-1]  # messages after the bad ones kept flowing
    assert last.source == f"{mqtt_url}/{topic_prefix}/env/office-1"
    first_co2 = next(r for r in records if r.record["quantity"] == "co2")
    assert (first_co2.record["value"], first_co2.record["unit"]) == ("749.2", "[ppm]")


def test_messages_landed_but_not_acknowledged_are_redelivered_and_counted_as_duplicates(
    hub, admin_headers, mqtt_url, topic_prefix
):
    """Acks go out only after commit: a worker stopped before acking gets the batch again from the broker."""
    instance = _create_instance(hub, admin_headers, mqtt_url, topic_prefix)
    topic = f"{topic_prefix}/env/office-1"
    payloads = list(room_payloads())[:50]
    original_ack = MqttSubscriber.ack
    MqttSubscriber.ack = lambda self, messages: None  # type: ignore[method-assign]  # the process "dies" before acking
    try:
        with _BackgroundWorker(hub, instance["id"]):
            wait_until(lambda: _connected(hub.engine, instance["id"]), what="the adapter to subscribe")
            publish_all(mqtt_url, [(topic, payload) for payload in payloads])
            wait_until(lambda: landed(hub.engine, instance["id"]) == 50, what="the first landing")
    finally:
        MqttSubscriber.ack = original_ack  # type: ignore[method-assign]
    with _BackgroundWorker(hub, instance["id"]):
        wait_until(lambda: counters(hub.engine, instance["id"]).duplicates >= 50, what="the redelivery")
    totals = counters(hub.engine, instance["id"])
    # At least once: the broker may redeliver an unacknowledged message more than once (e.g. across a reconnect);
    # every copy is counted as a duplicate and nothing is stored twice.
    assert totals.accepted == 50 and totals.duplicates >= 50
    assert totals.received == totals.accepted + totals.duplicates
    assert landed(hub.engine, instance["id"]) == 50
    # A third run: the new publication lands as a duplicate too; still nothing stored twice, counts reconcile.
    # (A worker stopped right after landing may leave PUBACKs unsent, so the broker can hand the batch over once
    # more: at-least-once, counted, never stored twice — see the README's "What is left".)
    with _BackgroundWorker(hub, instance["id"]):
        wait_until(lambda: _connected(hub.engine, instance["id"]), what="the adapter to subscribe")
        publish_all(mqtt_url, [(topic, payloads[0])])
        wait_until(
            lambda: counters(hub.engine, instance["id"]).received >= totals.received + 1,
            what=f"the last message (counters: {counters(hub.engine, instance['id'])})",
        )
    final = counters(hub.engine, instance["id"])
    assert final.accepted == 50 and final.received == final.accepted + final.duplicates, final
    assert landed(hub.engine, instance["id"]) == 50


def test_sensorthings_observations_and_equipment_states_become_canonical_records(
    hub, admin_headers, mqtt_url, topic_prefix
):
    instance = _create_instance(hub, admin_headers, mqtt_url, topic_prefix)
    observation = {
        "@iot.id": 1,
        "@iot.selfLink": "http://example.org/v1.1/Observations(1)",
        "phenomenonTime": "2014-12-31T11:59:59.00+08:00",
        "resultTime": "2014-12-31T11:59:59.00+08:00",
        "result": 70.4,
    }
    status = {
        "instrument": {"manufacturer": "Agilent", "model": "7890B", "serial": "CN1"},
        "status": "Error",
        "time": "2026-03-02T08:00:00Z",
    }
    with _BackgroundWorker(hub, instance["id"]):
        wait_until(lambda: _connected(hub.engine, instance["id"]), what="the adapter to subscribe")
        publish_all(
            mqtt_url,
            [
                (f"{topic_prefix}/sta/v1.1/Datastreams(1)/Observations", json.dumps(observation).encode()),
                (f"{topic_prefix}/sta/v1.1/Datastreams(1)/Observations", json.dumps(observation).encode()),
                (f"{topic_prefix}/equipment/gc-1", json.dumps(status).encode()),
            ],
        )
        wait_until(lambda: counters(hub.engine, instance["id"]).received == 3, what="three messages")
    records = hub.client.get(f"/api/v1/adapters/{instance['id']}/records", headers=admin_headers).json()["items"]
    by_kind = {item["kind"]: item["record"] for item in records}
    assert by_kind["environment-reading"] == {
        "schema_version": "1.0",
        "envelope_id": by_kind["environment-reading"]["envelope_id"],
        "source_time": "2014-12-31T03:59:59Z",
        "record_type": "environment-reading",
        "room": "R-2",
        "sensor_id": "sta-t-1",
        "quantity": "temperature",
        "value": "70.4",
        "unit": "Cel",
        "observed_at": "2014-12-31T03:59:59Z",
    }
    assert (by_kind["equipment-status"]["status"], by_kind["equipment-status"]["room"]) == ("fault", "R-101")
    assert counters(hub.engine, instance["id"]).duplicates == 1  # same @iot.id twice


def test_an_unreachable_broker_makes_the_instance_unhealthy_with_recorded_backoff(hub, admin_headers, topic_prefix):
    instance = _create_instance(hub, admin_headers, "mqtt://127.0.0.1:1", topic_prefix, connect_timeout_s=1)
    with _BackgroundWorker(hub, instance["id"]):
        wait_until(lambda: len(_attempts(hub.engine, instance["id"])) >= 3, what="three recorded connection attempts")
        health = hub.client.get(f"/api/v1/adapters/{instance['id']}/health", headers=admin_headers).json()
    attempts = _attempts(hub.engine, instance["id"])
    assert health["healthy"] is False and health["connected"] is False
    assert "Connection refused" in (health["lastError"] or "") or "Errno" in (health["lastError"] or "")
    assert [a.attempt for a in attempts[:3]] == [1, 2, 3]
    assert all(not a.succeeded and a.delay_s is not None and 0.05 <= a.delay_s <= 0.5 for a in attempts[:3])
    assert {a.operation for a in attempts} == {"connect"}


def _attempts(engine, instance_id: str) -> list[AdapterAttempt]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AdapterAttempt).where(AdapterAttempt.instance_id == instance_id).order_by(AdapterAttempt.id)
            ).all()
        )


def test_a_command_is_published_once_at_qos_1_with_its_idempotency_key(mqtt_url, topic_prefix):
    adapter = MqttAdapter(
        {
            "broker": mqtt_url,
            "subscriptions": [{"topic": f"{topic_prefix}/env/#", "kind": "environment"}],
            "command_topic": f"{topic_prefix}/commands/{{target}}",
        }
    )
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    parts = urlsplit(mqtt_url)
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = lambda client, userdata, message: received.append(message)
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect(parts.hostname, parts.port)
    listener.subscribe(f"{topic_prefix}/commands/#", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        command = CommandRequest(
            id="cmd-1", kind="mqtt.command", target="hvac-1", payload={"setpoint": "21.0"}, idempotency_key="k-1"
        )
        ack = asyncio.run(adapter.execute_command(command))
        wait_until(lambda: len(received) == 1, what="the command on the broker")
    finally:
        listener.disconnect()
        listener.loop_stop()
    message = received[0]
    assert message.topic == f"{topic_prefix}/commands/hvac-1"
    assert json.loads(message.payload) == {
        "id": "cmd-1",
        "idempotencyKey": "k-1",
        "kind": "mqtt.command",
        "payload": {"setpoint": "21.0"},
        "target": "hvac-1",
    }
    assert ("idempotency-key", "k-1") in message.properties.UserProperty
    assert ack["topic"] == message.topic and ack["idempotencyKey"] == "k-1"
