"""Adapter benchmark: MQTT messages per second into the landing zone and fully fused into the graph.

Run from the repository root:

    .venv/bin/python bench/adapters.py                      # 20 000 messages, SQLite
    .venv/bin/python bench/adapters.py --messages 5000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

Each message is one row of the real UCI room series (five readings: temperature, humidity, light, CO2,
humidity ratio; ~330 bytes), the series repeated under distinct sensor ids up to `--messages`. Every run measures
three consumers of the same backlog, in the same run and on the same broker:

1. **raw**: an `aiomqtt` subscriber (QoS 1, persistent session) that only counts messages — the ceiling.
2. **landing**: `qihub`'s worker running the MQTT adapter: raw bytes + envelope, dedup, parse into canonical
   records, checkpoint, counters, rules and outbox events, PUBACK after commit.
3. **fused**: the same with the worker also fusing the records into an embedded Oxigraph store (SOSA/QUDT/PROV
   named graphs), timed until the last record is in the graph.

Each consumer drains a backlog queued for its persistent session while it was offline (published beforehand,
so publisher speed does not enter the figure): rate = messages / (first message received → last one done).
Zero loss is checked (accepted == messages, every dedup key distinct, every record fused). The broker is a
private Mosquitto started by the bench with an unlimited offline queue (`max_queued_messages 0`); without the
binary, `--mqtt-url` names one (its default queue limit of 1000 would drop a larger backlog).

Targets (2 cores): landing ≥ 3,000 msg/s, fused ≥ 1,000 msg/s, landing ≥ 0.3× the raw subscriber. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import aiomqtt  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from sqlalchemy import func  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from adapters.models import AdapterCounters, AdapterHealth, AdapterInstance, CanonicalRecordRow, LandingMessage  # noqa: E402
from adapters.worker import Worker  # noqa: E402
from api.logging import configure_logging  # noqa: E402
from storage.database import make_engine, session_scope  # noqa: E402
from storage.migrate import upgrade_database  # noqa: E402
from storage.settings import Settings  # noqa: E402
from tests.adapters.room_replay import room_rows, row_payload  # noqa: E402

TARGET_LANDING = 3000.0
TARGET_FUSED = 1000.0
TARGET_RATIO = 0.3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_broker(directory: Path) -> Iterator[str | None]:
    """A Mosquitto with an unlimited offline queue on a free port, or None when the binary is missing."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        yield None
        return
    port = _free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def payloads(count: int) -> list[bytes]:
    """`count` room-sensor messages: the UCI series repeated under distinct sensor ids."""
    rows = room_rows()
    return [row_payload(rows[i % len(rows)], sensor=f"uci-{i // len(rows)}") for i in range(count)]


def publish(url: str, topic: str, messages: list[bytes]) -> float:
    """Publish at QoS 1, wait for every PUBACK; returns seconds taken."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    started = time.perf_counter()
    infos = [client.publish(topic, payload, qos=1) for payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=120)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


async def _raw_session(url: str, client_id: str, topic: str, count: int | None) -> float:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=client_id, clean_session=False) as client:
        await client.subscribe(topic, qos=1)
        if count is None:
            return 0.0
        seen = 0
        started: float | None = None
        async for _message in client.messages:
            started = started or time.perf_counter()
            seen += 1
            if seen == count:
                break
        return time.perf_counter() - (started or time.perf_counter())


def raw_rate(url: str, prefix: str, messages: list[bytes]) -> float:
    """Messages/s of an aiomqtt subscriber that only counts, draining a queued backlog."""
    client_id = f"bench-raw-{uuid.uuid4().hex[:8]}"
    asyncio.run(_raw_session(url, client_id, f"{prefix}/raw/#", None))  # create the persistent session
    publish(url, f"{prefix}/raw/office-1", messages)
    return len(messages) / asyncio.run(_raw_session(url, client_id, f"{prefix}/raw/#", len(messages)))


def _counters(engine, instance_id: str) -> AdapterCounters:
    with Session(engine) as session:
        return session.get(AdapterCounters, instance_id) or AdapterCounters(instance_id=instance_id)


def _unfused(engine, instance_id: str) -> int:
    with Session(engine) as session:
        query = (
            select(func.count())
            .select_from(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance_id, col(CanonicalRecordRow.fused_at).is_(None))
        )
        return int(session.exec(query).one())


def _first_received(engine, instance_id: str):
    with Session(engine) as session:
        return session.exec(
            select(func.min(LandingMessage.received_at)).where(LandingMessage.instance_id == instance_id)
        ).one()


async def _run_worker_until(settings: Settings, engine, instance_id: str, store, done) -> float:
    stop = asyncio.Event()
    worker = Worker(settings, engine=engine, graph_store=store, instance_ids={instance_id})
    task = asyncio.create_task(worker.run(stop))
    started = time.perf_counter()
    while not await asyncio.to_thread(done):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


def hub_rate(settings: Settings, engine, url: str, prefix: str, name: str, messages: list[bytes], store) -> dict:
    """Messages/s of the worker's MQTT adapter draining a backlog, landing (and fusing when given a store)."""
    with session_scope(engine) as session:
        instance = AdapterInstance(
            name=f"bench-{name}-{uuid.uuid4().hex[:6]}",
            adapter="mqtt",
            adapter_version="bench",
            config={
                "broker": url,
                "client_id": f"bench-{name}-{uuid.uuid4().hex[:8]}",
                "subscriptions": [{"topic": f"{prefix}/{name}/#", "kind": "environment"}],
                "batch_size": 500,
                "batch_wait_ms": 50,
            },
        )
        session.add(instance)
    # A first short run creates the broker session; the backlog is then published while no worker runs.
    asyncio.run(_run_worker_until(settings, engine, instance.id, None, lambda: _connected(engine, instance.id)))
    publish(url, f"{prefix}/{name}/office-1", messages)
    count = len(messages)

    def finished() -> bool:
        if _counters(engine, instance.id).received < count:
            return False
        return store is None or _unfused(engine, instance.id) == 0

    elapsed = asyncio.run(_run_worker_until(settings, engine, instance.id, store, finished))
    totals = _counters(engine, instance.id)
    with Session(engine) as session:
        distinct = session.exec(
            select(func.count(func.distinct(LandingMessage.dedup_key))).where(LandingMessage.instance_id == instance.id)
        ).one()
        records = session.exec(
            select(func.count()).select_from(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance.id)
        ).one()
    lost = count - totals.accepted
    return {
        "rate": count / elapsed,
        "seconds": elapsed,
        "accepted": totals.accepted,
        "duplicates": totals.duplicates,
        "quarantined": totals.quarantined,
        "distinct": distinct,
        "records": records,
        "unfused": _unfused(engine, instance.id),
        "lost": lost,
    }


def _connected(engine, instance_id: str) -> bool:
    with Session(engine) as session:
        health = session.get(AdapterHealth, instance_id)
        return bool(health and health.connected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per consumer")
    parser.add_argument("--mqtt-url", default=None, help="broker to use when no mosquitto binary is available")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--skip-fused", action="store_true", help="only raw and landing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qihub-bench-adapters-") as temp, private_broker(Path(temp)) as own:
        url = own or args.mqtt_url or "mqtt://127.0.0.1:1883"
        settings = Settings(
            data_dir=Path(temp) / "data",
            database_url=args.database_url,
            worker_poll_interval_s=0.05,
            log_level="WARNING",
        )
        configure_logging("WARNING")
        engine = make_engine(settings)
        upgrade_database(engine)
        prefix = f"qihub-bench/{uuid.uuid4().hex[:8]}"
        messages = payloads(args.messages)
        size = sum(map(len, messages)) / len(messages)
        print(
            f"broker {url} ({'private mosquitto' if own else 'given'}), database {engine.dialect.name}, "
            f"{len(messages)} messages of ~{size:.0f} bytes (5 readings each), cores {os.cpu_count()}"
        )

        raw = raw_rate(url, prefix, messages)
        print(f"raw aiomqtt subscriber   {raw:10,.0f} msg/s")
        landing = hub_rate(settings, engine, url, prefix, "landing", messages, None)
        print(
            f"landing (qihub worker)   {landing['rate']:10,.0f} msg/s  ({landing['seconds']:.2f} s; "
            f"{landing['records']} records; lost {landing['lost']}, duplicates {landing['duplicates']})"
        )
        fused = None
        if not args.skip_fused:
            from graph.store import open_graph_store

            store = open_graph_store(settings)
            try:
                fused = hub_rate(settings, engine, url, prefix, "fused", messages, store)
            finally:
                store.close()
            print(
                f"fused into the graph     {fused['rate']:10,.0f} msg/s  ({fused['seconds']:.2f} s; "
                f"unfused left {fused['unfused']}; lost {fused['lost']})"
            )
        ratio = landing["rate"] / raw
        print()
        print(
            f"landing / raw            {ratio:10.2f}×   target ≥ {TARGET_RATIO}×   "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}"
        )
        print(
            f"landing                  {landing['rate']:10,.0f}    target ≥ {TARGET_LANDING:,.0f} msg/s   "
            f"{'met' if landing['rate'] >= TARGET_LANDING else 'NOT met'}"
        )
        if fused is not None:
            print(
                f"fused                    {fused['rate']:10,.0f}    target ≥ {TARGET_FUSED:,.0f} msg/s   "
                f"{'met' if fused['rate'] >= TARGET_FUSED else 'NOT met'}"
            )
        zero_loss = landing["lost"] == 0 and landing["distinct"] == len(messages)
        if fused is not None:
            zero_loss = zero_loss and fused["lost"] == 0 and fused["unfused"] == 0
        print(f"zero loss                {'yes' if zero_loss else 'NO'}")
        engine.dispose()


if __name__ == "__main__":
    main()
