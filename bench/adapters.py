"""Adapter benchmark: MQTT messages per second into the landing zone and fully fused into the graph.

Run from the repository root:

    .venv/bin/python bench/adapters.py                      # 20 000 messages per shape, SQLite
    .venv/bin/python bench/adapters.py --shape reading --messages 5000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

Two message shapes, both from the real UCI room series (numbers copied as written), each run on its own:

* **reading** — one MQTT message per sensor reading (`{"sensor", "room", "time", "quantity", "value", "unit"}`,
  ~150 bytes, one canonical record), the plain-JSON / SensorThings-Observation shape most IoT feeds publish.
  **The targets are judged on this shape**: for an environment feed a "message" is a reading.
* **row** — one message per CSV row carrying its five readings (temperature, humidity, light, CO2, humidity
  ratio; ~330 bytes, five canonical records). Reported beside it: five times the records per message.

The series is repeated under distinct sensor ids up to `--messages`. For each shape the bench measures three
consumers of the same backlog, in the same run and on the same broker:

1. **raw**: an `aiomqtt` subscriber (QoS 1, persistent session) that only counts messages — the ceiling.
2. **landing**: `qihub`'s worker running the MQTT adapter: raw bytes + envelope, dedup, parse into canonical
   records, checkpoint, counters, rules and outbox events, PUBACK after commit.
3. **fused**: the same with the worker also fusing the records into an embedded Oxigraph store (SOSA/QUDT/PROV
   named graphs), timed until the last record is in the graph.

Every consumer speaks the same MQTT version (`--protocol`, default 5 as the hub's adapter). The raw subscriber is
aiomqtt on paho, which decodes an MQTT 5 PUBLISH's properties into an object per message (3.1.1 has none); the
hub's adapter receives through its own subscriber (adapters/builtin/mqtt_wire.py), which parses whole reads.
Each consumer drains a backlog queued for its persistent session while it was offline (published beforehand,
so publisher speed does not enter the figure). Raw rate = messages / (its connection → last message); landing
and fused rate = messages / (worker start → last message landed, or fused), so the worker's start and connection
count against it. (A broker resuming a session pushes the backlog before it answers the SUBSCRIBE: counting the
raw subscriber from the first message its loop consumes, as this bench once did, times an in-memory queue that
paho had already filled, not a subscriber; that figure is printed beside the rate for comparison.)
Zero loss is checked (accepted == messages, every dedup key distinct, the expected number of records, every
record fused). The broker is a private Mosquitto started by the bench with an unlimited offline queue
(`max_queued_messages 0`); without the binary, `--mqtt-url` names one (its default queue limit of 1000 would drop
a larger backlog).

Targets (2 cores, reading shape): landing ≥ 3,000 msg/s, fused ≥ 1,000 msg/s, landing ≥ 0.3× the raw
subscriber. Figures are printed, never asserted; the load average is printed with them (a shared machine's
load moves every figure).
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
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from sqlalchemy import func, update  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from adapters.models import AdapterCounters, AdapterHealth, AdapterInstance, CanonicalRecordRow, LandingMessage  # noqa: E402
from adapters.worker import Worker  # noqa: E402
from api.logging import configure_logging  # noqa: E402
from storage.database import make_engine, session_scope  # noqa: E402
from storage.migrate import upgrade_database  # noqa: E402
from storage.settings import Settings  # noqa: E402
from tests.adapters.room_replay import COLUMNS, ROOM, room_rows, row_payload  # noqa: E402

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


SHAPES = {"reading": 1, "row": len(COLUMNS)}  # shape → canonical records per message


def reading_payload(row: dict[str, str], name: str, *, sensor: str, room: str = ROOM) -> bytes:
    """One reading of a CSV row as the plain JSON a sensor publishes per reading (number verbatim)."""
    moment = row["Date"].replace(" ", "T") + "+01:00"
    return (
        f'{{"sensor": "{sensor}", "room": "{room}", "time": "{moment}", "quantity": "{name}", '
        f'"value": {row[name]}, "unit": "{COLUMNS[name]}"}}'
    ).encode()


def payloads(count: int, shape: str = "reading") -> list[bytes]:
    """`count` room-sensor messages of a shape: the UCI series repeated under distinct sensor ids."""
    rows = room_rows()
    if shape == "row":
        return [row_payload(rows[i % len(rows)], sensor=f"uci-{i // len(rows)}") for i in range(count)]
    names = list(COLUMNS)
    per_pass = len(rows) * len(names)
    return [
        reading_payload(rows[(i // len(names)) % len(rows)], names[i % len(names)], sensor=f"uci-{i // per_pass}")
        for i in range(count)
    ]


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


async def _raw_session(url: str, client_id: str, topic: str, count: int | None, protocol: str) -> tuple[float, float]:
    host, port = url.removeprefix("mqtt://").split(":")
    if protocol == "5":
        # A persistent MQTT 5 session, as the hub's adapter opens it: clean_start=False with a session expiry.
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client = aiomqtt.Client(
            host,
            int(port),
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
        )
    else:
        client = aiomqtt.Client(
            host, int(port), identifier=client_id, protocol=aiomqtt.ProtocolVersion.V311, clean_session=False
        )
    async with client:
        # The clock starts at the connection: the broker pushes the queued backlog right after CONNACK, before it
        # answers the SUBSCRIBE, so by the time `subscribe` returns paho has already decoded most of it.
        connected = time.perf_counter()
        await client.subscribe(topic, qos=1)
        if count is None:
            return 0.0, 0.0
        seen = 0
        first: float | None = None
        async for _message in client.messages:
            first = first or time.perf_counter()
            seen += 1
            if seen == count:
                break
        done = time.perf_counter()
        return done - connected, done - (first or done)


def raw_rate(url: str, prefix: str, messages: list[bytes], protocol: str) -> tuple[float, float]:
    """Messages/s of an aiomqtt subscriber that only counts, draining a queued backlog.

    Two figures: from its connection to the last message (the rate), and from the first message its loop
    consumed (after the SUBACK, when most of the backlog is already decoded and queued in memory).
    """
    client_id = f"bench-raw-{uuid.uuid4().hex[:8]}"
    asyncio.run(_raw_session(url, client_id, f"{prefix}/raw/#", None, protocol))  # create the persistent session
    publish(url, f"{prefix}/raw/office-1", messages)
    total, draining = asyncio.run(_raw_session(url, client_id, f"{prefix}/raw/#", len(messages), protocol))
    return len(messages) / total, len(messages) / draining


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


def hub_rate(
    settings: Settings, engine, url: str, prefix: str, name: str, messages: list[bytes], store, protocol: str
) -> dict:
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
                "protocol": protocol,
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


def _line(label: str, result: dict, per_message: int) -> str:
    return (
        f"{label:28s} {result['rate']:10,.0f} msg/s  {result['rate'] * per_message:10,.0f} records/s  "
        f"({result['seconds']:.2f} s; {result['records']} records; lost {result['lost']}, "
        f"duplicates {result['duplicates']}, quarantined {result['quarantined']}"
        + (f", unfused left {result['unfused']})" if "store" in result else ")")
    )


def run_shape(settings: Settings, engine, url: str, shape: str, count: int, *, fuse: bool, protocol: str) -> dict:
    """Raw, landing and (optionally) fused rates of one message shape; prints one line each."""
    prefix = f"qihub-bench/{uuid.uuid4().hex[:8]}"
    messages = payloads(count, shape)
    per_message = SHAPES[shape]
    size = sum(map(len, messages)) / len(messages)
    print(f"\n[{shape}] {len(messages)} messages of ~{size:.0f} bytes, {per_message} reading(s) each   {_load()}")
    raw, draining = raw_rate(url, prefix, messages, protocol)
    print(
        f"{'raw aiomqtt subscriber':28s} {raw:10,.0f} msg/s  (connection → last message; {draining:,.0f} msg/s "
        "counted from the first message consumed after its SUBACK)"
    )
    landing = hub_rate(settings, engine, url, prefix, "landing", messages, None, protocol)
    print(_line("landing (qihub worker)", landing, per_message))
    fused = None
    if fuse:
        from graph.store import open_graph_store

        # The fused run's worker fuses every pending record of the database: the landing consumer's records
        # (never meant for the graph) are marked done first, so the fused rate counts this consumer's work only.
        with session_scope(engine) as session:
            session.execute(
                update(CanonicalRecordRow).where(col(CanonicalRecordRow.fused_at).is_(None)).values(fused_at=func.now())
            )
        store = open_graph_store(settings)
        try:
            fused = hub_rate(settings, engine, url, prefix, "fused", messages, store, protocol)
        finally:
            store.close()
        fused["store"] = True
        print(_line("fused into the graph", fused, per_message))
    expected = len(messages) * per_message
    zero_loss = landing["lost"] == 0 and landing["distinct"] == len(messages) and landing["records"] == expected
    if fused is not None:
        zero_loss = zero_loss and fused["lost"] == 0 and fused["unfused"] == 0 and fused["records"] == expected
    print(f"{'landing / raw':28s} {landing['rate'] / raw:10.2f}×    zero loss: {'yes' if zero_loss else 'NO'}")
    return {"raw": raw, "landing": landing, "fused": fused, "zero_loss": zero_loss}


def _load() -> str:
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return ""


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per consumer and shape")
    parser.add_argument("--shape", choices=["reading", "row", "both"], default="both", help="message shape(s)")
    parser.add_argument("--mqtt-url", default=None, help="broker to use when no mosquitto binary is available")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--skip-fused", action="store_true", help="only raw and landing")
    parser.add_argument(
        "--protocol", choices=["5", "3.1.1"], default="5", help="MQTT version of every consumer (the hub's default: 5)"
    )
    args = parser.parse_args()
    shapes = ["reading", "row"] if args.shape == "both" else [args.shape]

    with tempfile.TemporaryDirectory(prefix="qihub-bench-adapters-") as temp, private_broker(Path(temp)) as own:
        url = own or args.mqtt_url or "mqtt://127.0.0.1:1883"
        settings = Settings(
            data_dir=Path(temp) / "data",
            database_url=args.database_url,
            worker_poll_interval_s=0.25,  # idle loops poll 4x as often as the default (1 s), busy ones never wait
            log_level="WARNING",
        )
        configure_logging("WARNING")
        engine = make_engine(settings)
        upgrade_database(engine)
        print(
            f"broker {url} ({'private mosquitto' if own else 'given'}), database {engine.dialect.name}, "
            f"MQTT {args.protocol} for every consumer, cores {os.cpu_count()}, {_load()}"
        )
        results = {
            shape: run_shape(
                settings, engine, url, shape, args.messages, fuse=not args.skip_fused, protocol=args.protocol
            )
            for shape in shapes
        }
        print()
        for shape, result in results.items():
            judged = "  ← targets judged on this shape" if shape == "reading" else "  (reported, not judged)"
            landing, fused, raw = result["landing"], result["fused"], result["raw"]
            ratio = landing["rate"] / raw
            print(f"[{shape}]{judged}")
            print(
                f"  landing / raw   {ratio:10.2f}×       target ≥ {TARGET_RATIO}×          "
                f"{_verdict(ratio, TARGET_RATIO)}"
            )
            print(
                f"  landing         {landing['rate']:10,.0f} msg/s   target ≥ {TARGET_LANDING:,.0f} msg/s   "
                f"{_verdict(landing['rate'], TARGET_LANDING)}"
            )
            if fused is not None:
                print(
                    f"  fused           {fused['rate']:10,.0f} msg/s   target ≥ {TARGET_FUSED:,.0f} msg/s   "
                    f"{_verdict(fused['rate'], TARGET_FUSED)}"
                )
            print(f"  zero loss       {'yes' if result['zero_loss'] else 'NO'}")
        print(_load())
        engine.dispose()


if __name__ == "__main__":
    main()
