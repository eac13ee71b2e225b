"""Fixtures of the adapter tests: a real MQTT broker (Mosquitto, or in-process amqtt on a bare laptop)."""

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from adapters.framework import ManualClock

MOSQUITTO_HOST = os.environ.get("QIHUB_TEST_MQTT_HOST", "127.0.0.1")
MOSQUITTO_PORT = int(os.environ.get("QIHUB_TEST_MQTT_PORT", "1883"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """`mqtt://host:port` of the Mosquitto broker; an in-process amqtt broker when none runs (not in CI)."""
    if _reachable(MOSQUITTO_HOST, MOSQUITTO_PORT):
        yield f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}"
        return
    if IN_CI:
        pytest.fail(f"The MQTT broker is required in CI but not reachable at {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    from amqtt.broker import Broker

    port = _free_port()
    loop = asyncio.new_event_loop()
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}, "sys_interval": 0}
    broker_box: dict[str, Broker] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            broker_box["broker"] = Broker(config)
            await broker_box["broker"].start()
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
    thread.start()
    if not started.wait(10):
        pytest.fail("The in-process amqtt broker did not start")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(broker_box["broker"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test run uses (the broker is shared)."""
    return f"qihub-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def manual_clock() -> ManualClock:
    """A controllable clock starting at a fixed moment."""
    return ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))


@pytest.fixture
def landed_records(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every (row, record) pair landing hands to the pipeline, while the pipeline still runs as usual."""
    from adapters import landing

    seen: list = []
    real = landing.pipeline.after_landing

    def spy(session, *, instance, records, clock):  # type: ignore[no-untyped-def]
        seen.extend(records)
        real(session, instance=instance, records=records, clock=clock)

    monkeypatch.setattr(landing.pipeline, "after_landing", spy)
    return seen
