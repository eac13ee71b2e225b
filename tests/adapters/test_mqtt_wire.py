"""The MQTT adapter's own subscriber (`adapters.builtin.mqtt_wire`): the codec on crafted bytes, then the real broker.

Crafted packets are encoded here independently of the module under test (MQTT 3.1.1 §2–3, MQTT 5.0 §2–3), fed
whole, byte by byte and in odd pieces. Against Mosquitto: persistent sessions in both versions (what is not
acknowledged comes back with DUP set, what is acknowledged does not), MQTT 5 properties, keep-alive pings; a
private Mosquitto adds TLS, username/password, a QoS 0 limit that fails the subscription, and a broker restart.
"""

import asyncio
import datetime
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.builtin.mqtt import MqttAdapter, _Connection
from adapters.builtin.mqtt_wire import (
    MQTT_5,
    MQTT_311,
    Message,
    MqttRefusedError,
    MqttSubscriber,
    connect_packet,
    puback_packets,
    subscribe_packet,
)
from adapters.framework import InboundMessage, LandingReport
from tests.adapters.mqtt_helpers import publish_all

# --- encoding MQTT packets by hand (independent of the module under test) ------------------------------------


def _vbi(value: int) -> bytes:
    out = b""
    while True:
        value, digit = divmod(value, 128)
        out += bytes([digit | (0x80 if value else 0)])
        if not value:
            return out


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    packet_id: int = 1,
    version: int = MQTT_5,
    properties: bytes = b"",
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    name = topic.encode() if isinstance(topic, str) else topic
    body = struct.pack("!H", len(name)) + name + (struct.pack("!H", packet_id) if qos else b"")
    if version == MQTT_5:
        body += _vbi(len(properties)) + properties
    body += payload
    return bytes([0x30 | dup << 3 | qos << 1 | retain]) + _vbi(len(body)) + body


def _connack(code: int = 0, *, session_present: bool = False, version: int = MQTT_5, properties: bytes = b"") -> bytes:
    body = bytes([int(session_present), code]) + (_vbi(len(properties)) + properties if version == MQTT_5 else b"")
    return b"\x20" + _vbi(len(body)) + body


class _FakeTransport(asyncio.Transport):
    """Records what the subscriber writes; closing it reports the connection lost, as asyncio would."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


def _offline(version: int = MQTT_5, **options: Any) -> tuple[MqttSubscriber, _FakeTransport]:
    """A subscriber on a fake transport, as if CONNECT had been sent (call inside a running loop)."""
    subscriber = MqttSubscriber(host="broker.invalid", port=1883, client_id="c-1", version=version, **options)
    transport = _FakeTransport(subscriber)
    subscriber.connection_made(transport)
    return subscriber, transport


def _feed(subscriber: MqttSubscriber, stream: bytes, pieces: list[int]) -> None:
    """Deliver `stream` cut at the given sizes (the rest in one piece)."""
    position = 0
    for size in pieces:
        subscriber.data_received(stream[position : position + size])
        position += size
    if position < len(stream):
        subscriber.data_received(stream[position:])


def _seen(subscriber: MqttSubscriber) -> list[tuple[Any, ...]]:
    return [
        (m.topic, m.payload, m.qos, m.packet_id, m.retain, m.dup, m.content_type, m.user_properties)
        for m in subscriber.take(10_000)
    ]


_PROPERTIES = (
    b"\x01\x01"  # payload format indicator: UTF-8
    + b"\x02"
    + struct.pack("!I", 3600)  # message expiry interval
    + b"\x03"
    + _utf8("application/json")  # content type
    + b"\x08"
    + _utf8("reply/here")  # response topic
    + b"\x09"
    + struct.pack("!H", 3)
    + b"abc"  # correlation data
    + b"\x26"
    + _utf8("idempotency-key")
    + _utf8("k-1")  # user property
    + b"\x26"
    + _utf8("房间")
    + _utf8("实验室-1")  # another, not ASCII
    + b"\x0b\x81\x01"  # subscription identifier 129 (two-byte variable byte integer)
)


def _stream(version: int) -> tuple[bytes, list[tuple[Any, ...]]]:
    big = b'{"pad": "' + b"x" * 300_000 + b'"}'  # a remaining length of three bytes, across many chunks
    properties = _PROPERTIES if version == MQTT_5 else b""
    packets = [
        (_publish("lab/R-1/env", b'{"a": 1}', packet_id=1, version=version), ("lab/R-1/env", b'{"a": 1}', 1, 1)),
        (_publish("lab/R-1/env", b"", qos=0, version=version, retain=True), ("lab/R-1/env", b"", 0, 0)),
        (_publish("lab/温度/env", big, packet_id=65535, version=version), ("lab/温度/env", big, 1, 65535)),
        (
            _publish("v1.1/Datastreams(7)/Observations", b"{}", packet_id=2, version=version, properties=properties),
            ("v1.1/Datastreams(7)/Observations", b"{}", 1, 2),
        ),
        (b"\xd0\x00", None),  # PINGRESP between messages
        (
            _publish("lab/R-1/env", b'{"a": 1}', packet_id=1, version=version, dup=True),
            ("lab/R-1/env", b'{"a": 1}', 1, 1),
        ),
    ]
    expected = []
    for index, (_, seen) in enumerate(packets):
        if seen is None:
            continue
        retain, dup = index == 1, index == 5
        extra: tuple[str | None, tuple[tuple[str, str], ...]] = (None, ())
        if index == 3 and version == MQTT_5:
            extra = ("application/json", (("idempotency-key", "k-1"), ("房间", "实验室-1")))
        expected.append((*seen, retain, dup, *extra))
    return b"".join(packet for packet, _ in packets), expected


@pytest.mark.parametrize("version", [MQTT_5, MQTT_311])
@pytest.mark.parametrize("cut", ["whole", "bytewise", "odd"])
def test_publishes_are_read_alike_however_the_stream_is_cut(version, cut):
    stream, expected = _stream(version)
    pieces = {"whole": [], "bytewise": [1] * 400 + [7] * 100, "odd": [3, 1, 65536, 5, 131072, 2, 2, 9]}[cut]

    async def main() -> list[tuple[Any, ...]]:
        subscriber, _ = _offline(version)
        _feed(subscriber, stream, pieces)
        assert not subscriber.lost.is_set(), subscriber.error
        return _seen(subscriber)

    assert asyncio.run(main()) == expected


def test_an_incomplete_packet_waits_for_its_rest_and_wakes_the_reader_once_complete():
    async def main() -> None:
        subscriber, _ = _offline()
        packet = _publish("t", b"payload", packet_id=9)
        subscriber.data_received(packet[:-1])
        assert not subscriber.messages and not subscriber.arrived.is_set()
        waiter = asyncio.ensure_future(subscriber.wait_for_messages(5))
        await asyncio.sleep(0)
        subscriber.data_received(packet[-1:])
        assert await waiter
        (message,) = subscriber.take(10)
        assert (message.topic, message.payload, message.packet_id) == ("t", b"payload", 9)
        assert not await subscriber.wait_for_messages(0.01)  # nothing more: returns after its timeout

    asyncio.run(main())


def test_take_hands_out_messages_oldest_first_in_batches():
    async def main() -> None:
        subscriber, _ = _offline()
        subscriber.data_received(b"".join(_publish("t", str(i).encode(), packet_id=i + 1) for i in range(7)))
        assert [m.payload for m in subscriber.take(3)] == [b"0", b"1", b"2"]
        assert [m.payload for m in subscriber.take(10)] == [b"3", b"4", b"5", b"6"]
        assert subscriber.take(10) == []

    asyncio.run(main())


def test_acks_of_a_batch_go_out_in_one_write_and_qos_0_needs_none():
    async def main() -> None:
        subscriber, transport = _offline()
        subscriber.data_received(
            _publish("t", b"a", packet_id=1) + _publish("t", b"b", qos=0) + _publish("t", b"c", packet_id=300)
        )
        subscriber.ack(subscriber.take(10))
        assert transport.written == [b"\x40\x02\x00\x01\x40\x02\x01\x2c"]

    asyncio.run(main())
    assert puback_packets([]) == b""


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x32" + _vbi(40) + _utf8("t") + b"\x00\x01\x00", "malformed"),  # shorter than it says: waits
        (b"\x32\x05" + struct.pack("!H", 20) + b"abc", "beyond the packet"),  # topic longer than the packet
        (b"\x32\x04" + _utf8("ab"), "beyond the packet"),  # no room for the packet id
        (b"\x32\xff\xff\xff\xff\x01", "longer than four bytes"),  # remaining length of five bytes
        (_publish("t", b"x", qos=2), "QoS 2"),
        (_publish(b"lab/\xff\xfe", b"x"), "UTF-8"),
        (_publish("t", b"x", properties=b"\x23\x00\x01"), "topic alias"),
        (_publish("t", b"x", properties=b"\x7f\x00"), "unknown property"),
        (b"\x40\x02\x00\x01", "unexpected packet type 4"),  # a PUBACK for something never published
        (b"\xf0\x00", "enhanced authentication"),
        (b"\xe0\x02\x8b\x00", "server shutting down"),
        (b"\xe0\x0d\x8e\x0b\x1f" + _utf8("replaced"), "session taken over (replaced)"),
    ],
)
def test_what_the_subscriber_cannot_accept_ends_the_connection_with_the_reason(packet, reason):
    async def main() -> str | None:
        subscriber, transport = _offline()
        subscriber.data_received(packet)
        if reason == "malformed":  # an incomplete packet is not an error: it waits for the rest
            assert not transport.closing and not subscriber.messages
            return "malformed"
        await asyncio.wait_for(subscriber.lost.wait(), 5)
        assert transport.closing and not subscriber.messages
        return subscriber.error

    assert reason in (asyncio.run(main()) or "")


@pytest.mark.parametrize(
    ("version", "code", "reason"),
    [
        (MQTT_5, 0x86, "bad user name or password"),
        (MQTT_5, 0x87, "not authorized"),
        (MQTT_5, 0x85, "client identifier not valid"),
        (MQTT_311, 4, "bad user name or password"),
        (MQTT_311, 5, "not authorized"),
        (MQTT_311, 1, "unacceptable protocol version"),
    ],
)
def test_a_refused_connection_says_why(version, code, reason):
    async def main() -> None:
        subscriber, transport = _offline(version)
        subscriber.data_received(_connack(code, version=version))
        with pytest.raises(MqttRefusedError, match=reason):
            await subscriber._connack  # what `connect` awaits
        await asyncio.wait_for(subscriber.lost.wait(), 5)
        assert reason in (subscriber.error or "") and transport.closing

    asyncio.run(main())


def test_the_brokers_keep_alive_wins_and_a_refusal_carries_its_reason_string():
    async def main() -> None:
        subscriber, _ = _offline(keepalive_s=30)
        subscriber.data_received(_connack(0, session_present=True, properties=b"\x13\x00\x05\x21\x00\x10"))
        await subscriber._connack
        assert subscriber.keepalive_s == 5 and subscriber.session_present
        refused, _ = _offline()
        refused.data_received(_connack(0x8A, properties=b"\x1f" + _utf8("too many tries")))
        with pytest.raises(MqttRefusedError, match=r"banned \(too many tries\)"):
            await refused._connack

    asyncio.run(main())


def test_a_suback_gives_each_filters_reason_code():
    async def main() -> None:
        subscriber, transport = _offline()
        future = subscriber.subscribe([("a/#", 1), ("b/+", 1)])
        assert transport.written[-1] == subscribe_packet(1, [("a/#", 1), ("b/+", 1)], MQTT_5)
        subscriber.data_received(b"\x90\x05\x00\x01\x00\x01\x87")  # packet 1, no properties, QoS 1 and refused
        assert await future == [1, 0x87]

    asyncio.run(main())


def test_connect_packets_carry_the_session_login_and_flow_control():
    v5 = connect_packet(
        client_id="hub-1",
        version=MQTT_5,
        clean_start=False,
        keepalive_s=30,
        username="lab",
        password="s3cret",
        session_expiry_s=604800,
        receive_maximum=10000,
    )
    properties = b"\x11" + struct.pack("!I", 604800) + b"\x21" + struct.pack("!H", 10000)
    variable = _utf8("MQTT") + b"\x05\xc0" + struct.pack("!H", 30) + _vbi(len(properties)) + properties
    body = variable + _utf8("hub-1") + _utf8("lab") + _utf8("s3cret")
    assert v5 == b"\x10" + _vbi(len(body)) + body
    v311 = connect_packet(client_id="hub-1", version=MQTT_311, clean_start=True, keepalive_s=60)
    body = _utf8("MQTT") + b"\x04\x02" + struct.pack("!H", 60) + _utf8("hub-1")
    assert v311 == b"\x10" + _vbi(len(body)) + body
    # A password alone is not sent: MQTT 3.1.1 forbids it without a user name.
    assert b"s3cret" not in connect_packet(
        client_id="c", version=MQTT_311, clean_start=False, keepalive_s=5, password="s3cret"
    )


# --- against the real broker ---------------------------------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


async def _session(url: str, client_id: str, version: int, **options: Any) -> MqttSubscriber:
    host, port = _host_port(url)
    extra: dict[str, Any] = {"session_expiry_s": 300, "receive_maximum": 100} if version == MQTT_5 else {}
    subscriber = MqttSubscriber(host=host, port=port, client_id=client_id, version=version, **{**extra, **options})
    await subscriber.connect(timeout_s=10)
    return subscriber


async def _receive(subscriber: MqttSubscriber, count: int, timeout_s: float = 10) -> list[Message]:
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count and time.monotonic() < deadline:
        if await subscriber.wait_for_messages(deadline - time.monotonic()):
            received.extend(subscriber.take(count - len(received)))
    return received


@pytest.mark.parametrize("version", [MQTT_5, MQTT_311])
def test_a_persistent_session_redelivers_what_was_not_acked_and_nothing_that_was(mqtt_url, topic_prefix, version):
    client_id = f"wire-{uuid.uuid4().hex[:10]}"
    topic = f"{topic_prefix}/wire/env"
    payloads = [f'{{"n": {i}}}'.encode() for i in range(5)]

    async def first() -> list[Message]:
        subscriber = await _session(mqtt_url, client_id, version)
        assert await subscriber.subscribe([(f"{topic_prefix}/wire/#", 1)]) == [1]
        await asyncio.to_thread(publish_all, mqtt_url, [(topic, payload) for payload in payloads])
        received = await _receive(subscriber, 5)
        subscriber.ack(received[:2])  # the process "dies" before acking the other three
        await subscriber.close()
        return received

    async def second() -> list[Message]:
        subscriber = await _session(mqtt_url, client_id, version)
        assert subscriber.session_present
        received = await _receive(subscriber, 3)  # queued for the session, sent before any SUBSCRIBE
        subscriber.ack(received)
        await subscriber.close()
        return received

    async def third() -> list[Message]:
        subscriber = await _session(mqtt_url, client_id, version)
        received = await _receive(subscriber, 1, timeout_s=0.5)
        await subscriber.close()
        # Leave no session behind on the shared broker.
        cleanup = await _session(mqtt_url, client_id, version, clean_start=True, session_expiry_s=None)
        await cleanup.close()
        return received

    received = asyncio.run(first())
    assert [(m.topic, m.payload, m.qos, m.dup) for m in received] == [(topic, p, 1, False) for p in payloads]
    again = asyncio.run(second())
    assert [(m.payload, m.dup) for m in again] == [(p, True) for p in payloads[2:]]
    assert asyncio.run(third()) == []  # everything was acknowledged


def test_mqtt5_content_type_and_user_properties_reach_the_message(mqtt_url, topic_prefix):
    topic = f"{topic_prefix}/wire/props"

    async def main() -> Message:
        subscriber = await _session(mqtt_url, f"wire-{uuid.uuid4().hex[:10]}", MQTT_5, clean_start=True)
        await subscriber.subscribe([(topic, 1)])
        host, port = _host_port(mqtt_url)

        def publish() -> None:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect(host, port)
            client.loop_start()
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = "application/vnd.sta+json"
            properties.UserProperty = [("idempotency-key", "k-9"), ("source", "frost")]
            client.publish(topic, b"{}", qos=1, properties=properties).wait_for_publish(10)
            client.disconnect()
            client.loop_stop()

        await asyncio.to_thread(publish)
        (message,) = await _receive(subscriber, 1)
        subscriber.ack([message])
        await subscriber.close()
        return message

    message = asyncio.run(main())
    assert message.content_type == "application/vnd.sta+json"
    assert message.user_properties == (("idempotency-key", "k-9"), ("source", "frost"))
    headers = MqttAdapter({"broker": "mqtt://x:1", "subscriptions": [{"topic": "#", "kind": "environment"}]}).inbound(
        message.topic, message.payload, content_type=message.content_type, user_properties=message.user_properties
    )
    assert (headers.content_type, headers.headers) == (
        "application/vnd.sta+json",
        {"idempotency-key": "k-9", "source": "frost"},
    )


def test_keep_alive_pings_hold_an_idle_connection_open(mqtt_url, topic_prefix):
    async def main() -> None:
        subscriber = await _session(mqtt_url, f"wire-{uuid.uuid4().hex[:10]}", MQTT_5, clean_start=True, keepalive_s=1)
        await subscriber.subscribe([(f"{topic_prefix}/quiet/#", 1)])
        written: list[bytes] = []
        real_write = subscriber._write

        def spy(data: bytes) -> None:
            written.append(data)
            real_write(data)

        subscriber._write = spy  # type: ignore[method-assign]
        await asyncio.sleep(3.2)  # the broker closes a link silent for 1.5 × keep-alive
        assert not subscriber.lost.is_set(), subscriber.error
        assert written.count(b"\xc0\x00") >= 2  # PINGREQs went out …
        assert subscriber._ping_sent is None or time.monotonic() - subscriber._ping_sent < 1  # … and were answered
        await subscriber.close()
        assert subscriber.error == "closed by the subscriber"

    asyncio.run(main())


def test_an_unreachable_broker_fails_the_connect():
    async def main() -> None:
        subscriber = MqttSubscriber(host="127.0.0.1", port=_free_port(), client_id="nobody")
        with pytest.raises(OSError):
            await subscriber.connect(timeout_s=5)
        await subscriber.close()

    asyncio.run(main())


# --- a private broker: TLS, login, QoS limit, restart ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _certificates(directory: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns the CA's PEM path."""
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("qihub test CA"))
        .issuer_name(name("qihub test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


class _PrivateBroker:
    """A Mosquitto of the test's own with a password file: plain, TLS and QoS-0-only listeners."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        self.passwd_tool = shutil.which("mosquitto_passwd")
        if self.binary is None or self.passwd_tool is None:
            pytest.skip("the mosquitto and mosquitto_passwd binaries are needed for a private broker")
        self.directory = directory
        self.ca = _certificates(directory)
        self.plain, self.tls, self.qos0 = _free_port(), _free_port(), _free_port()
        passwords = directory / "passwd"
        subprocess.run([self.passwd_tool, "-b", "-c", str(passwords), "lab", "s3cret"], check=True)
        (directory / "mosquitto.conf").write_text(
            # `user`: a broker started as root would otherwise switch to "mosquitto" and not read these files.
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"per_listener_settings false\nallow_anonymous false\npassword_file {passwords}\n"
            "persistence false\nlog_dest none\n"
            f"listener {self.plain} 127.0.0.1\n"
            f"listener {self.tls} 127.0.0.1\ncertfile {directory / 'server.pem'}\nkeyfile {directory / 'server.key'}\n"
            f"listener {self.qos0} 127.0.0.1\nmax_qos 0\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary or "", "-c", str(self.directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.plain), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.tls), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.qos0), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the private mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        client.username_pw_set("lab", "s3cret")
        client.connect("127.0.0.1", self.plain)
        client.loop_start()
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[_PrivateBroker]:
    broker = _PrivateBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _adapter(url: str, topic: str = "allowed/#", **extra: Any) -> MqttAdapter:
    return MqttAdapter(
        {
            "broker": url,
            "client_id": f"hub-{uuid.uuid4().hex[:10]}",
            "subscriptions": [{"topic": topic, "kind": "environment", "room": "R-1"}],
            "batch_wait_ms": 10,
            **extra,
        }
    )


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_adapter_logs_in_over_tls_and_receives(private_broker, monkeypatch, protocol):
    adapter = _adapter(f"mqtts://lab:s3cret@127.0.0.1:{private_broker.tls}", protocol=protocol)
    monkeypatch.setattr(adapter, "tls_context", lambda: _trusting(private_broker.ca))

    async def main() -> list[Message]:
        connection = _Connection(adapter, client_id=adapter.client_id("i-1"))
        await connection.open(timeout_s=10)
        await asyncio.to_thread(private_broker.publish, [("allowed/env", b'{"n": 1}'), ("allowed/env", b'{"n": 2}')])
        received = await _receive(connection.subscriber, 2)
        connection.ack(received)
        await connection.close()
        return received

    assert [m.payload for m in asyncio.run(main())] == [b'{"n": 1}', b'{"n": 2}']


def test_tls_refuses_a_broker_whose_certificate_is_not_trusted(private_broker):
    adapter = _adapter(f"mqtts://lab:s3cret@127.0.0.1:{private_broker.tls}")  # the system CAs only

    async def main() -> None:
        connection = _Connection(adapter, client_id="hub-untrusted")
        with pytest.raises(ssl.SSLCertVerificationError):
            await connection.open(timeout_s=10)
        await connection.close()

    asyncio.run(main())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_wrong_password_is_refused_with_the_brokers_reason(private_broker, protocol):
    adapter = _adapter(f"mqtt://lab:wrong@127.0.0.1:{private_broker.plain}", protocol=protocol)

    async def main() -> None:
        connection = _Connection(adapter, client_id="hub-wrong")
        with pytest.raises(MqttRefusedError, match=r"bad user name or password|not authorized"):
            await connection.open(timeout_s=10)
        await connection.close()

    asyncio.run(main())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_subscription_granted_below_qos_1_fails_the_connection(private_broker, protocol):
    # A broker limited to QoS 0 would deliver at most once: a crash would lose what it sent.
    adapter = _adapter(f"mqtt://lab:s3cret@127.0.0.1:{private_broker.qos0}", protocol=protocol)

    async def main() -> None:
        connection = _Connection(adapter, client_id="hub-qos0")
        with pytest.raises(ConnectionError, match="did not grant QoS 1 on every subscription: QoS 0"):
            await connection.open(timeout_s=10)
        await connection.close()

    asyncio.run(main())


class _Context:
    """The part of AdapterContext the MQTT adapter uses, recording what it lands and reports."""

    def __init__(self) -> None:
        self.instance_id = "i-restart"
        self.stopping = asyncio.Event()
        self.landed: list[InboundMessage] = []
        self.health: list[tuple[bool, str | None]] = []
        self.retries: list[tuple[str, int]] = []

    async def land(self, messages: list[InboundMessage]) -> LandingReport:
        self.landed.extend(messages)
        return LandingReport(received=len(messages), accepted=len(messages), quarantined=0, duplicates=0)

    async def report_health(self, *, connected: bool, lag_s: float | None = None, error: str | None = None) -> None:
        self.health.append((connected, error))

    async def retry_delay(self, operation: str, attempt: int, error: str | None) -> float:
        self.retries.append((operation, attempt))
        await asyncio.sleep(0.1)
        return 0.1

    async def record_success(self, operation: str, attempt: int) -> None:
        self.retries.append((f"{operation}-ok", attempt))


def test_the_adapter_reconnects_after_the_broker_restarts_and_keeps_landing(private_broker):
    adapter = _adapter(f"mqtt://lab:s3cret@127.0.0.1:{private_broker.plain}")
    context = _Context()
    reading = (
        '{{"sensor": "s-1", "time": "2026-03-02T08:0{}:00Z", "quantity": "temperature", "value": 21, "unit": "Cel"}}'
    )

    async def until(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def main() -> None:
        running = asyncio.ensure_future(adapter.run(context))  # type: ignore[arg-type]
        await until(lambda: (True, None) in context.health, "the first connection")
        await asyncio.to_thread(private_broker.publish, [("allowed/env", reading.format(1).encode())])
        await until(lambda: len(context.landed) == 1, "the first reading")
        await asyncio.to_thread(private_broker.stop)
        await until(lambda: any(not connected for connected, _ in context.health), "the loss to be reported")
        await asyncio.to_thread(private_broker.start)
        await until(lambda: ("connect-ok", 2) in context.retries or len(context.health) > 3, "a reconnection")
        await until(lambda: context.health[-1] == (True, None), "the adapter to be connected again")
        await asyncio.to_thread(private_broker.publish, [("allowed/env", reading.format(2).encode())])
        await until(lambda: len(context.landed) == 2, "the reading after the restart")
        context.stopping.set()
        await asyncio.wait_for(running, 10)

    asyncio.run(main())
    assert [m.dedup_key for m in context.landed] == [
        "env/s-1/temperature/2026-03-02T08:01:00+00:00",
        "env/s-1/temperature/2026-03-02T08:02:00+00:00",
    ]
    lost = [error for connected, error in context.health if not connected]
    assert lost and all(lost)  # each loss and failed reconnection reported with its reason
