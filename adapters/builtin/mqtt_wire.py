"""A small MQTT 3.1.1 / 5 subscriber on an asyncio Protocol: what the MQTT adapter receives with.

Why not paho-mqtt (or a client built on it, like aiomqtt): measured on the bench's 10,000-message QoS 1 backlog
(2 cores, same run), a subscriber that only counts and acknowledges reached ~2,000 msg/s on paho (a network
thread reading one packet per loop with three `recv` calls, an MQTT 5 `Properties` object, an `MQTTMessageInfo`
with its own `Condition` and a cross-thread wake-up per message), ~6,500 msg/s on gmqtt (a task per message to
acknowledge after the handler) and ~55,000 msg/s here. The adapter needs ≥ 3,000 msg/s *landed*, so receiving
must cost a small part of the budget, not all of it.

The subscriber parses every packet in one `data_received` chunk in a loop over the buffer, keeps PUBLISH
payloads as `bytes` slices, decodes MQTT 5 properties only when a message has some, and sends the PUBACKs of a
whole batch in one write — after the caller says so (manual acknowledgement: the adapter acks after its landing
transaction commits). It speaks what a subscriber needs: CONNECT (clean start or a persistent session,
username/password, TLS through the transport), CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0 and 1, PUBACK,
PINGREQ/PINGRESP and DISCONNECT. Anything else from the broker (QoS 2, topic aliases it was not offered,
enhanced authentication, a malformed packet) ends the connection with the reason; the adapter reconnects.
Publishing (write-back commands, rare) stays with paho-mqtt.
"""

import asyncio
import collections
import contextlib
import ssl
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MQTT_311 = 4  # protocol level of MQTT 3.1.1 in CONNECT
MQTT_5 = 5
MAX_REMAINING_LENGTH = 268_435_455  # four bytes of variable byte integer

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT, _AUTH = 8, 9, 12, 13, 14, 15
_PINGREQ_PACKET = b"\xc0\x00"
_DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5: reason 0 (normal), the session expiry given at CONNECT applies

# MQTT 5 property identifiers by value type (MQTT 5.0 §2.2.2.2): needed to step over properties one does not use.
_BYTE_PROPERTIES = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_U16_PROPERTIES = frozenset({0x13, 0x21, 0x22, 0x23})
_U32_PROPERTIES = frozenset({0x02, 0x11, 0x18, 0x27})
_VBI_PROPERTIES = frozenset({0x0B})
_STRING_PROPERTIES = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY_PROPERTIES = frozenset({0x09, 0x16})
_USER_PROPERTY = 0x26
_CONTENT_TYPE = 0x03
_SERVER_KEEP_ALIVE = 0x13
_REASON_STRING = 0x1F
_TOPIC_ALIAS = 0x23

_CONNACK_311 = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_REASONS_5 = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


class MqttProtocolError(ConnectionError):
    """The broker sent something this subscriber cannot accept (malformed, or outside what it speaks)."""


class MqttRefusedError(ConnectionError):
    """The broker answered CONNECT with a refusal."""


def reason_text(code: int, version: int = MQTT_5) -> str:
    """A readable name of a CONNACK / SUBACK / DISCONNECT reason code."""
    if version == MQTT_311:
        return _CONNACK_311.get(code, f"return code {code}")
    return _REASONS_5.get(code, f"reason code 0x{code:02X}")


@dataclass(slots=True)
class Message:
    """One PUBLISH as received: topic, payload bytes, QoS and packet id (for the PUBACK), MQTT 5 extras."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 at QoS 0 (nothing to acknowledge)
    retain: bool
    dup: bool
    received_at: float  # time.monotonic() of the chunk it arrived in
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


# --- encoding ------------------------------------------------------------------------------------------------


def _vbi(value: int) -> bytes:
    """A variable byte integer (remaining lengths, property lengths)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    if len(data) > 65535:
        raise ValueError("an MQTT string holds at most 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _binary(data: bytes) -> bytes:
    if len(data) > 65535:
        raise ValueError("MQTT binary data holds at most 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _vbi(len(body)) + body


def connect_packet(
    *,
    client_id: str,
    version: int,
    clean_start: bool,
    keepalive_s: int,
    username: str | None = None,
    password: str | None = None,
    session_expiry_s: int | None = None,
    receive_maximum: int | None = None,
) -> bytes:
    """CONNECT: a persistent session unless `clean_start`; a password is only sent with a user name (3.1.1 rule)."""
    flags = 0x02 if clean_start else 0x00
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _binary(password.encode())
    variable = _string("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive_s)
    if version == MQTT_5:
        properties = b""
        if session_expiry_s:
            properties += b"\x11" + struct.pack("!I", session_expiry_s)
        if receive_maximum:
            properties += b"\x21" + struct.pack("!H", receive_maximum)
        variable += _vbi(len(properties)) + properties
    return _packet(_CONNECT << 4, variable + payload)


def subscribe_packet(packet_id: int, filters: Sequence[tuple[str, int]], version: int) -> bytes:
    """SUBSCRIBE to each (topic filter, maximum QoS)."""
    body = struct.pack("!H", packet_id)
    if version == MQTT_5:
        body += b"\x00"  # no properties
    for topic, qos in filters:
        body += _string(topic) + bytes([qos])
    return _packet(_SUBSCRIBE << 4 | 0x02, body)


def puback_packets(packet_ids: Iterable[int]) -> bytes:
    """PUBACKs of many messages in one buffer (reason "success" is implied by the 2-byte form in MQTT 5 too)."""
    return b"".join([b"\x40\x02" + pid.to_bytes(2, "big") for pid in packet_ids])


# --- decoding ------------------------------------------------------------------------------------------------


def _read_vbi(data: bytes, position: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= end:
            raise MqttProtocolError("malformed packet: truncated variable byte integer")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 21:
            raise MqttProtocolError("malformed packet: variable byte integer longer than four bytes")


def _read_string(data: bytes, position: int, end: int) -> tuple[str, int]:
    if position + 2 > end:
        raise MqttProtocolError("malformed packet: truncated string")
    length = int.from_bytes(data[position : position + 2], "big")
    start, position = position + 2, position + 2 + length
    if position > end:
        raise MqttProtocolError("malformed packet: string beyond its packet")
    try:
        return data[start:position].decode(), position
    except UnicodeDecodeError:
        raise MqttProtocolError("malformed packet: a string is not UTF-8") from None


def read_properties(data: bytes, position: int, end: int) -> tuple[dict[int, Any], int]:
    """MQTT 5 properties at `position` (length prefixed): {identifier: value}, user properties as a list of pairs."""
    length, position = _read_vbi(data, position, end)
    stop = position + length
    if stop > end:
        raise MqttProtocolError("malformed packet: properties beyond their packet")
    found: dict[int, Any] = {}
    while position < stop:
        identifier, position = _read_vbi(data, position, stop)
        value: Any
        if identifier in _BYTE_PROPERTIES:
            if position + 1 > stop:
                raise MqttProtocolError("malformed packet: truncated property")
            value, position = data[position], position + 1
        elif identifier in _U16_PROPERTIES:
            if position + 2 > stop:
                raise MqttProtocolError("malformed packet: truncated property")
            value, position = int.from_bytes(data[position : position + 2], "big"), position + 2
        elif identifier in _U32_PROPERTIES:
            if position + 4 > stop:
                raise MqttProtocolError("malformed packet: truncated property")
            value, position = int.from_bytes(data[position : position + 4], "big"), position + 4
        elif identifier in _VBI_PROPERTIES:
            value, position = _read_vbi(data, position, stop)
        elif identifier in _STRING_PROPERTIES:
            value, position = _read_string(data, position, stop)
        elif identifier in _BINARY_PROPERTIES:
            if position + 2 > stop:
                raise MqttProtocolError("malformed packet: truncated property")
            size = int.from_bytes(data[position : position + 2], "big")
            value, position = bytes(data[position + 2 : position + 2 + size]), position + 2 + size
            if position > stop:
                raise MqttProtocolError("malformed packet: property beyond its properties")
        elif identifier == _USER_PROPERTY:
            name, position = _read_string(data, position, stop)
            text, position = _read_string(data, position, stop)
            found.setdefault(_USER_PROPERTY, []).append((name, text))
            continue
        else:
            raise MqttProtocolError(f"malformed packet: unknown property 0x{identifier:02X}")
        found[identifier] = value
    return found, stop


def _retrieve(future: "asyncio.Future[Any]") -> None:
    # A failure nobody awaits (the connection ended before its SUBACK) is reported through `lost`, not as an
    # "exception was never retrieved" log line.
    if not future.cancelled():
        future.exception()


# --- the connection ------------------------------------------------------------------------------------------


class MqttSubscriber(asyncio.Protocol):
    """One MQTT connection that subscribes and buffers what arrives; the owner takes messages and acks them.

    Runs on the event loop that calls `connect` (no thread). Messages wait in `messages` (oldest first) until
    `take`n; `ack` sends their PUBACKs in one write. `lost` is set when the connection ends for any reason,
    with `error` telling why.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        version: int = MQTT_5,
        clean_start: bool = False,
        keepalive_s: int = 30,
        username: str | None = None,
        password: str | None = None,
        session_expiry_s: int | None = None,
        receive_maximum: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if version not in (MQTT_311, MQTT_5):
            raise ValueError(f"MQTT protocol level {version} is not spoken here (4 = 3.1.1, 5 = 5.0)")
        self.host, self.port, self.client_id, self.version = host, port, client_id, version
        self.clean_start = clean_start
        self.keepalive_s = keepalive_s
        self.username, self.password = username, password
        self.session_expiry_s, self.receive_maximum = session_expiry_s, receive_maximum
        self.ssl_context = ssl_context
        self.messages: collections.deque[Message] = collections.deque()
        self.arrived = asyncio.Event()  # set whenever messages were added (or the connection was lost)
        self.lost = asyncio.Event()
        self.error: str | None = None
        self.session_present = False
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._closed = self._loop.create_future()  # resolved by connection_lost
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._next_packet_id = 0
        self._chunks: list[bytes] = []  # bytes of an incomplete packet, until `_needed` bytes are there
        self._buffered = 0
        self._needed = 0
        self._topics: dict[bytes, str] = {}  # topic bytes → text: a stream's topics repeat in every message
        self._last_out = self._last_in = time.monotonic()
        self._ping_sent: float | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._closing = False
        self._connack.add_done_callback(_retrieve)

    # --- the owner's side ------------------------------------------------------------------------------------

    async def connect(self, *, timeout_s: float) -> None:
        """Open the connection and wait for the broker's CONNACK; raises ConnectionError subclasses or TimeoutError."""
        async with asyncio.timeout(timeout_s):
            await self._loop.create_connection(
                lambda: self,
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context is not None else None,
            )
            self._write(
                connect_packet(
                    client_id=self.client_id,
                    version=self.version,
                    clean_start=self.clean_start,
                    keepalive_s=self.keepalive_s,
                    username=self.username,
                    password=self.password,
                    session_expiry_s=self.session_expiry_s,
                    receive_maximum=self.receive_maximum,
                )
            )
            await self._connack
        self._schedule_keepalive()

    def subscribe(self, filters: Sequence[tuple[str, int]]) -> "asyncio.Future[list[int]]":
        """Send SUBSCRIBE; the future gives the SUBACK's reason code per filter (0–2 = granted QoS)."""
        self._next_packet_id = self._next_packet_id % 65535 + 1
        packet_id = self._next_packet_id
        future: asyncio.Future[list[int]] = self._loop.create_future()
        future.add_done_callback(_retrieve)
        self._subacks[packet_id] = future
        self._write(subscribe_packet(packet_id, filters, self.version))
        return future

    def take(self, count: int) -> list[Message]:
        """Up to `count` buffered messages, oldest first."""
        messages = self.messages
        if len(messages) <= count:
            taken = list(messages)
            messages.clear()
            return taken
        return [messages.popleft() for _ in range(count)]

    async def wait_for_messages(self, timeout_s: float) -> bool:
        """Whether messages are buffered, waiting up to `timeout_s` for some (returns early when the link is lost)."""
        if self.messages:
            return True
        if self.lost.is_set() or timeout_s <= 0:
            return False
        self.arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.arrived.wait()
        return bool(self.messages)

    def ack(self, messages: Iterable[Message]) -> None:
        """Send the PUBACKs of these messages (QoS 0 ones need none) in one write."""
        ids = [message.packet_id for message in messages if message.qos]
        if ids and not self.lost.is_set():
            self._write(puback_packets(ids))

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """DISCONNECT after whatever is queued (acks included) and wait for the broker to end the connection.

        Only our sending side is shut (TCP half-close): closing the socket outright while the broker's last bytes
        are still unread makes the kernel answer with a reset, and a broker that gets the reset before it has read
        our final PUBACKs drops them and redelivers those messages (seen with Mosquitto in about 1 of 5 sessions).
        """
        if self._keepalive is not None:
            self._keepalive.cancel()
        transport = self._transport
        if transport is None:
            return
        self._closing = True
        if not transport.is_closing():
            if self._connack.done() and not self._connack.cancelled() and self._connack.exception() is None:
                self._write(_DISCONNECT_PACKET)
                if transport.can_write_eof():  # not over TLS: there the broker's own close after DISCONNECT ends it
                    transport.write_eof()
            else:
                transport.close()  # flushes the write buffer first: acks written before are sent
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._closed)
        if not self._closed.done():
            transport.abort()

    # --- the transport's side (asyncio.Protocol) ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        self._last_out = time.monotonic()

    def abort(self, detail: str) -> None:
        """End the connection at once for `detail` (nothing queued is sent); `lost` follows."""
        if self.error is None:
            self.error = detail
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The transport is open (asyncio calls this)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended, for whatever reason (asyncio calls this)."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.error is None and self._closing:
            self.error = "closed by the subscriber"
        elif self.error is None:
            self.error = f"connection to the broker lost: {exc}" if exc else "the broker closed the connection"
        failure = MqttProtocolError(self.error)
        if not self._connack.done():
            self._connack.set_exception(failure)
        for future in self._subacks.values():
            if not future.done():
                future.set_exception(failure)
        self._subacks.clear()
        self.lost.set()
        self.arrived.set()  # wake a waiting owner: it looks at `lost`
        if not self._closed.done():
            self._closed.set_result(None)

    def _schedule_keepalive(self) -> None:
        if self.keepalive_s > 0 and not self.lost.is_set():
            self._keepalive = self._loop.call_later(max(0.5, self.keepalive_s / 4), self._check_keepalive)

    def _check_keepalive(self) -> None:
        now = time.monotonic()
        if self._ping_sent is not None and now - self._ping_sent > self.keepalive_s:
            self.abort(f"no PINGRESP from the broker within {self.keepalive_s} s")
            return
        # A control packet at least every keep-alive period (MQTT-3.1.2-23), and a ping when the broker is quiet,
        # so that a dead link is noticed by the missing PINGRESP.
        if self._ping_sent is None and max(now - self._last_out, now - self._last_in) >= self.keepalive_s / 2:
            self._write(_PINGREQ_PACKET)
            self._ping_sent = now
        self._schedule_keepalive()

    def data_received(self, data: bytes) -> None:
        """Bytes from the broker: every complete packet is handled now (asyncio calls this)."""
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._needed:
                return  # a large packet still arriving: join its chunks once, when it is complete
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._last_in = received = time.monotonic()
        try:
            position, needed = self._parse(data, received)
        except MqttProtocolError as error:
            self.abort(str(error))
            return
        except IndexError:
            self.abort("malformed packet from the broker")
            return
        if position < len(data):
            rest = data[position:]
            self._chunks.append(rest)
            self._buffered = len(rest)
            self._needed = needed

    def _parse(self, data: bytes, received: float) -> tuple[int, int]:
        """Handle every complete packet in `data`; returns where the incomplete rest starts and its size wanted."""
        end = len(data)
        position = needed = 0
        before = len(self.messages)
        while position < end:
            if end - position < 2:
                needed = 2
                break
            first = data[position]
            # Remaining length: a variable byte integer of 1–4 bytes.
            index = position + 1
            byte = data[index]
            length = byte & 0x7F
            index += 1
            shift = 7
            while byte & 0x80:
                if index >= end:
                    needed = end - position + 1
                    break
                if shift > 21:
                    raise MqttProtocolError("malformed packet: remaining length longer than four bytes")
                byte = data[index]
                length |= (byte & 0x7F) << shift
                index += 1
                shift += 7
            else:
                stop = index + length
                if stop <= end:
                    if first >> 4 == _PUBLISH:
                        self._publish(first, data, index, stop, received)
                    else:
                        self._control(first >> 4, data, index, stop)
                    position = stop
                    continue
                needed = stop - position
            break
        if len(self.messages) > before:
            self.arrived.set()
        return position, needed

    def _publish(self, first: int, data: bytes, index: int, stop: int, received: float) -> None:
        qos = (first >> 1) & 0x03
        if qos == 2:
            raise MqttProtocolError("the broker sent a QoS 2 message on a QoS 1 subscription")
        start = index + 2 + ((data[index] << 8) | data[index + 1])
        # The topic, packet id and property length must fit inside the packet (nothing is read from the next one).
        if start + (2 if qos else 0) + (1 if self.version == MQTT_5 else 0) > stop:
            raise MqttProtocolError("malformed PUBLISH: its header runs beyond the packet")
        raw_topic = data[index + 2 : start]
        packet_id = 0
        if qos:
            packet_id = (data[start] << 8) | data[start + 1]
            start += 2
        content_type: str | None = None
        user_properties: tuple[tuple[str, str], ...] = ()
        if self.version == MQTT_5:
            if data[start] == 0:  # no properties: the common case, nothing to decode
                start += 1
            else:
                properties, start = read_properties(data, start, stop)
                if _TOPIC_ALIAS in properties:
                    raise MqttProtocolError("the broker used a topic alias it was not offered")
                content_type = properties.get(_CONTENT_TYPE)
                user_properties = tuple(properties.get(_USER_PROPERTY, ()))
        topic = self._topics.get(raw_topic)
        if topic is None:
            try:
                topic = raw_topic.decode()
            except UnicodeDecodeError:
                raise MqttProtocolError("malformed PUBLISH: the topic is not UTF-8") from None
            if not topic:
                raise MqttProtocolError("malformed PUBLISH: empty topic name")
            if len(self._topics) < 10_000:
                self._topics[raw_topic] = topic
        self.messages.append(
            Message(
                topic,
                data[start:stop],
                qos,
                packet_id,
                bool(first & 0x01),
                bool(first & 0x08),
                received,
                content_type,
                user_properties,
            )
        )

    def _control(self, kind: int, data: bytes, start: int, stop: int) -> None:
        if kind == _PINGRESP:
            self._ping_sent = None
        elif kind == _CONNACK:
            self._connack_received(data, start, stop)
        elif kind == _SUBACK:
            if stop - start < 2:
                raise MqttProtocolError("malformed SUBACK")
            packet_id = int.from_bytes(data[start : start + 2], "big")
            position = start + 2
            if self.version == MQTT_5:
                _, position = read_properties(data, position, stop)
            future = self._subacks.pop(packet_id, None)
            if future is not None and not future.done():
                future.set_result(list(data[position:stop]))
        elif kind == _DISCONNECT:
            code = data[start] if stop > start else 0
            detail = f"the broker disconnected: {reason_text(code)}"
            if stop - start > 1:
                properties, _ = read_properties(data, start + 1, stop)
                if _REASON_STRING in properties:
                    detail += f" ({properties[_REASON_STRING]})"
            self.abort(detail)
        elif kind == _AUTH:
            raise MqttProtocolError("the broker asked for enhanced authentication, which is not configured")
        else:
            # PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK answer packets this subscriber never sends; the rest are
            # client-to-server packets.
            raise MqttProtocolError(f"unexpected packet type {kind} from the broker")

    def _connack_received(self, data: bytes, start: int, stop: int) -> None:
        if stop - start < 2:
            raise MqttProtocolError("malformed CONNACK")
        self.session_present = bool(data[start] & 0x01)
        code = data[start + 1]
        detail = reason_text(code, self.version)
        if self.version == MQTT_5 and stop - start > 2:
            properties, _ = read_properties(data, start + 2, stop)
            if _SERVER_KEEP_ALIVE in properties:
                self.keepalive_s = int(properties[_SERVER_KEEP_ALIVE])  # the broker's value wins (MQTT-3.2.2-21)
            if _REASON_STRING in properties:
                detail += f" ({properties[_REASON_STRING]})"
        if self._connack.done():
            raise MqttProtocolError("a second CONNACK from the broker")
        if code:
            refusal = MqttRefusedError(f"the broker refused the connection: {detail}")
            self.error = str(refusal)
            self._connack.set_exception(refusal)
            if self._transport is not None:
                self._transport.close()
            return
        self._connack.set_result(None)
