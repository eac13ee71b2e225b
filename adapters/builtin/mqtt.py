"""MQTT: lab environment readings, equipment status, video-event metadata and SensorThings observations.

Delivery is at-least-once with nothing lost across a crash: the adapter subscribes with QoS 1 in a persistent
session (MQTT 5 `clean_start=False` with a session expiry, or MQTT 3.1.1 `clean_session=False`) under a
stable client id, and acknowledges each message (PUBACK) only after the transaction that landed it has
committed. Whatever was not acknowledged when the hub stopped is redelivered by the broker; its de-duplication
key — the payload's own identity (sensor + quantity + time, SensorThings `@iot.id`, event id) — makes a
redelivery count as a duplicate instead of a second reading.

Receiving uses the hub's own subscriber (`mqtt_wire.MqttSubscriber`, on the event loop; why not paho-mqtt is
told there). Messages are landed in batches (up to `batch_size` messages or `batch_wait_ms` after the first),
each batch read while the one before it is written, and acknowledged in one write after its commit. MQTT 5's
Receive Maximum lets the broker keep that many unacknowledged messages in flight, so batching never starves the
stream. Write-back (`mqtt.command`) publishes a command message at QoS 1 (paho-mqtt) to the configured command
topic, carrying the command's idempotency key for the device to drop repeats.
"""

import asyncio
import contextlib
import functools
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from adapters.builtin.mqtt_wire import MQTT_5, MQTT_311, Message, MqttSubscriber, reason_text
from adapters.canonical import (
    CanonicalRecord,
    EnvironmentReading,
    EquipmentStatus,
    InstrumentRef,
    RecordKind,
    VideoEvent,
)
from adapters.codelists import map_code, source_code_list
from adapters.framework import (
    INVALID_VALUE,
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    SCHEMA_VIOLATION,
    Adapter,
    AdapterContext,
    AdapterManifest,
    CommandFailedError,
    CommandRequest,
    FieldMapping,
    GoldenFixture,
    InboundMessage,
    QuarantineError,
    SourceKind,
    Transport,
)
from adapters.units import from_epoch, normalise_unit, parse_decimal, parse_time
from storage.errors import InvalidInputError

COMMAND_KIND = "mqtt.command"
UNIT_MISMATCH = "unit-mismatch"  # a known unit that does not measure the reading's quantity
ENVIRONMENT = "environment"
EQUIPMENT = "equipment-status"
VIDEO = "video-event"
SENSORTHINGS = "sensorthings-observation"
PAYLOAD_KINDS = (ENVIRONMENT, EQUIPMENT, VIDEO, SENSORTHINGS)

# Units each environmental quantity may be reported in (UCUM); anything else is a mis-configured sensor.
QUANTITY_UNITS: dict[str, frozenset[str]] = {
    "temperature": frozenset({"Cel", "K", "[degF]"}),
    "relative-humidity": frozenset({"%"}),
    "co2": frozenset({"[ppm]", "umol/mol", "mg/m3", "%"}),
    "illuminance": frozenset({"lx"}),
    "humidity-ratio": frozenset({"kg/kg", "g/kg", "1"}),
    "pressure": frozenset({"Pa", "kPa", "hPa", "bar", "mbar", "mm[Hg]"}),
    "pm2-5": frozenset({"ug/m3", "mg/m3"}),
}

_DEFAULTS_SCHEMA: dict[str, Any] = {
    "room": {"type": "string", "minLength": 1, "maxLength": 300},
    "sensor": {"type": "string", "minLength": 1, "maxLength": 300},
    "quantity": {"type": "string", "minLength": 1, "maxLength": 100},
    "unit": {"type": "string", "minLength": 1, "maxLength": 100},
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["broker", "subscriptions"],
    "properties": {
        "broker": {"type": "string", "pattern": "^mqtts?://[^/]+/?$", "description": "mqtt://[user:pass@]host:port"},
        "username": {"type": "string", "minLength": 1},
        "password": {"type": "string"},
        "client_id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "Stable across restarts"},
        "protocol": {"enum": ["5", "3.1.1"], "default": "5"},
        "session_expiry_s": {"type": "integer", "minimum": 60, "maximum": 4294967295, "default": 604800},
        "receive_maximum": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 10000},
        "keepalive_s": {"type": "integer", "minimum": 5, "maximum": 3600, "default": 30},
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 120, "default": 10},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
        "batch_wait_ms": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 50},
        "timezone": {"type": "string", "description": "IANA zone of payload times written without an offset"},
        "room": {"type": "string", "minLength": 1, "maxLength": 300, "description": "Room when nothing names one"},
        "command_topic": {"type": "string", "minLength": 1, "description": "Where commands go; may use {target}"},
        "subscriptions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["topic", "kind"],
                "properties": {
                    "topic": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "kind": {"enum": list(PAYLOAD_KINDS)},
                    **_DEFAULTS_SCHEMA,
                    "datastreams": {
                        "type": "object",
                        "description": "SensorThings Datastream id → sensor, quantity, unit and room",
                        "additionalProperties": {
                            "type": "object",
                            "properties": _DEFAULTS_SCHEMA,
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}

# Units and codes repeat in every message of a stream: their normalisation is pure, so it is looked up once.
_unit = functools.lru_cache(maxsize=4096)(normalise_unit)
_code = functools.lru_cache(maxsize=4096)(map_code)

_SENSOR_FIELDS = ("sensor", "sensor_id", "sensorId", "device")
_TIME_FIELDS = ("time", "timestamp", "observed_at", "observedAt", "ts")
_DATASTREAM_IN_TOPIC = re.compile(r"Datastreams\((?:'([^']*)'|([^)]*))\)")
_JSON = json.JSONDecoder(parse_float=Decimal)  # numbers keep their digits ("20.10" stays 20.10)


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str, zone: str | None) -> datetime:
    # The readings of one minute share their time text: parsed (and checked) once. Failures are not cached.
    return parse_time(text, zone=zone)


_isoformat = functools.lru_cache(maxsize=4096)(datetime.isoformat)  # identities of one minute share their time


def _schema_violation(error: ValidationError) -> QuarantineError:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
    return QuarantineError(SCHEMA_VIOLATION, problems)


@dataclass(frozen=True)
class _ReadMessage(InboundMessage):
    """An MQTT message as `inbound` made it, carrying what reading its payload gave (records, or the failure)."""

    reading: "list[CanonicalRecord] | Exception | None" = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @property
    def url(self) -> str:
        """The broker URL without credentials (used in envelopes)."""
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_broker(config: dict[str, Any]) -> Broker:
    """The broker of a configuration (credentials in the URL or in `username`/`password`)."""
    parts = urlsplit(config["broker"])
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise InvalidInputError(f"broker must be mqtt://host:port, not {config['broker']!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError as error:
        raise InvalidInputError(f"broker has a bad port: {error}") from error
    username = config.get("username") or (unquote(parts.username) if parts.username else None)
    password = config.get("password") or (unquote(parts.password) if parts.password else None)
    return Broker(parts.scheme, parts.hostname, port, username, password)


def check_topic_filter(topic: str) -> None:
    """Raise InvalidInputError unless `topic` is a valid MQTT topic filter ('+' and '#' as whole levels)."""
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or ("+" in level and level != "+"):
            raise InvalidInputError(f"Bad topic filter {topic!r}: '+' and '#' must fill a level, '#' only the last.")
    if not topic or "\0" in topic or len(topic.encode()) > 65535:
        raise InvalidInputError(f"Bad topic filter {topic!r}.")


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return value
    return None


def _text(value: Any, what: str) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise QuarantineError(INVALID_VALUE, f"{what} must be text, not {type(value).__name__}")
    return str(value)


class MqttAdapter(Adapter):
    """Subscribes to MQTT topics and lands JSON or SensorThings payloads exactly once (QoS 1, acked after commit)."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="mqtt",
        version="1.0.0",
        title="MQTT (lab environment, equipment status, video events, SensorThings)",
        description=(
            "Subscribes with QoS 1 in a persistent session and acknowledges after landing; plain JSON readings "
            "and OGC SensorThings Observation payloads; write-back by publishing commands."
        ),
        source_kind=SourceKind.iot,
        transports=[Transport.mqtt],
        emits=[RecordKind.environment_reading, RecordKind.equipment_status, RecordKind.video_event],
        commands=[COMMAND_KIND],
        config_schema=CONFIG_SCHEMA,
        counterpart="Eclipse Mosquitto 2.x on 127.0.0.1:1883 (MQTT 5); amqtt in-process broker off CI",
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.broker = parse_broker(config)
        self._source_prefix = f"{self.broker.url}/"  # envelopes name the broker (without credentials) and topic
        self.subscriptions: list[dict[str, Any]] = list(config["subscriptions"])
        self._matched: dict[str, dict[str, Any] | None] = {}
        for subscription in self.subscriptions:
            check_topic_filter(subscription["topic"])
        self.zone: str | None = config.get("timezone")
        if self.zone:
            try:
                parse_time("2000-01-01T00:00:00", zone=self.zone)
            except QuarantineError as error:
                raise InvalidInputError(f"Unknown time zone {self.zone!r}") from error
        self.batch_size = int(config.get("batch_size", 500))
        self.batch_wait_s = int(config.get("batch_wait_ms", 50)) / 1000
        self.receive_maximum = int(config.get("receive_maximum", 10000))
        self.protocol = MQTT_5 if config.get("protocol", "5") == "5" else MQTT_311  # paho's MQTTv5 / MQTTv311

    # --- parsing (pure: the conformance kit calls it on golden fixtures) ----------------------------------

    def subscription_for(self, topic: str) -> dict[str, Any] | None:
        """The first configured subscription whose filter matches a topic."""
        if topic in self._matched:
            return self._matched[topic]
        found = next((s for s in self.subscriptions if mqtt.topic_matches_sub(s["topic"], topic)), None)
        if len(self._matched) < 10_000:  # topics are few (a sensor each); matching one costs more than parsing
            self._matched[topic] = found
        return found

    def _kind_of(self, topic: str, data: dict[str, Any]) -> str:
        subscription = self.subscription_for(topic)
        if subscription is not None:
            return str(subscription["kind"])
        # A topic no subscription names (e.g. a replayed fixture): recognise the payload's shape.
        if "result" in data and ("phenomenonTime" in data or "@iot.id" in data):
            return SENSORTHINGS
        if "camera_id" in data or "cameraId" in data or "camera" in data:
            return VIDEO
        if "instrument" in data or "serial" in data:
            return EQUIPMENT
        return ENVIRONMENT

    @staticmethod
    def _load(payload: bytes) -> dict[str, Any]:
        try:
            # json.loads(payload, parse_float=Decimal) without building a decoder per message; a payload starting
            # with "{" and no NUL after it is UTF-8 (what `json.detect_encoding` would find, without its look).
            utf8 = payload[:1] == b"{" and payload[1:2] != b"\x00"
            data = _JSON.decode(payload.decode("utf-8" if utf8 else json.detect_encoding(payload), "surrogatepass"))
        except (ValueError, UnicodeDecodeError) as error:
            raise QuarantineError(MALFORMED_PAYLOAD, f"not JSON: {error}") from None
        if not isinstance(data, dict):
            raise QuarantineError(MALFORMED_PAYLOAD, f"expected a JSON object, got {type(data).__name__}")
        return data

    def _time(self, value: Any, what: str = "time") -> datetime:
        if value is None:
            raise QuarantineError(SCHEMA_VIOLATION, f"the payload has no {what}")
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return from_epoch(str(value), milliseconds=value > 100_000_000_000)
        if not isinstance(value, str):
            raise QuarantineError(INVALID_VALUE, f"{what} must be ISO 8601 text or a Unix timestamp")
        if "/" in value:  # a SensorThings interval: the observation is complete at its end
            value = value.rsplit("/", 1)[1]
        return _parse_time(value, self.zone)

    def identity(self, topic: str, payload: bytes) -> str | None:
        """The payload's own identity (its de-duplication key), or None when it has none readable."""
        try:
            data = self._load(payload)
        except QuarantineError:
            return None  # unreadable payloads de-duplicate by their bytes
        return self._identity(topic, data, self._kind_of(topic, data), self.subscription_for(topic) or {})

    def _identity(self, topic: str, data: dict[str, Any], kind: str, defaults: dict[str, Any]) -> str | None:
        try:
            if kind == SENSORTHINGS:
                datastream = self._datastream_id(topic, data)
                observation = data.get("@iot.id")
                if observation is not None:
                    return f"sta/{datastream}/{observation}"
                return f"sta/{datastream}/{self._time(_first(data, 'phenomenonTime', 'resultTime')).isoformat()}"
            moment = _isoformat(self._time(_first(data, *_TIME_FIELDS)))
            if kind == VIDEO:
                camera, event = (
                    _first(data, "camera_id", "cameraId", "camera"),
                    _first(data, "event_id", "eventId", "id"),
                )
                return None if camera is None or event is None else f"video/{camera}/{event}"
            if kind == EQUIPMENT:
                instrument = self._instrument(data)
                return f"equipment/{instrument.manufacturer}/{instrument.model}/{instrument.serial}/{moment}"
            sensor = _first(data, *_SENSOR_FIELDS) or defaults.get("sensor")
            if sensor is None:
                return None
            quantity = _first(data, "quantity") or defaults.get("quantity")
            return (
                f"env/{sensor}/{quantity}/{moment}" if quantity and "readings" not in data else f"env/{sensor}/{moment}"
            )
        except (QuarantineError, ValidationError, ValueError, TypeError):
            return None  # unreadable payloads de-duplicate by their bytes

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """Canonical records of one MQTT payload (topic = `message.stream`)."""
        if isinstance(message, _ReadMessage) and message.reading is not None:
            # Read once when it arrived (`inbound`): the same records, or the same failure.
            outcome = message.reading
            if isinstance(outcome, QuarantineError):
                raise QuarantineError(outcome.code, outcome.detail)
            if isinstance(outcome, Exception):
                raise outcome
            return list(outcome)
        data = self._load(message.payload)
        return self._records(message.stream, data, self._kind_of(message.stream, data))

    def _records(self, topic: str, data: dict[str, Any], kind: str) -> list[CanonicalRecord]:
        defaults = self.subscription_for(topic) or {}
        try:
            if kind == SENSORTHINGS:
                return [self._sensorthings(topic, data, defaults)]
            if kind == EQUIPMENT:
                return [self._equipment(data, defaults)]
            if kind == VIDEO:
                return [self._video(data, defaults)]
            return self._environment(data, defaults)
        except ValidationError as error:
            raise _schema_violation(error) from None

    def _read(self, topic: str, payload: bytes) -> tuple[str | None, "list[CanonicalRecord] | Exception"]:
        """A payload's identity and its records (or why it has none), from one JSON decode."""
        try:
            data = self._load(payload)
        except QuarantineError as error:
            return None, error
        kind = self._kind_of(topic, data)
        if kind == ENVIRONMENT:
            return self._read_environment(data, self.subscription_for(topic) or {})
        key = self._identity(topic, data, kind, self.subscription_for(topic) or {})
        try:
            return key, self._records(topic, data, kind)
        except Exception as error:  # kept for `parse` to raise when the landing zone asks for the records
            return key, error

    def _read_environment(
        self, data: dict[str, Any], defaults: dict[str, Any]
    ) -> tuple[str | None, "list[CanonicalRecord] | Exception"]:
        """`_identity` and `_environment` of a reading, its sensor and time looked up once (the hot path)."""
        sensor = _first(data, *_SENSOR_FIELDS) or defaults.get("sensor")
        moment: datetime | Exception
        try:
            moment = self._time(_first(data, *_TIME_FIELDS))
        except Exception as error:  # no identity; `_environment` reports it when the records are asked for
            moment = error
        key = None
        if sensor is not None and isinstance(moment, datetime):
            # The same key as `_identity` gives (keys of messages landed earlier must still match).
            quantity = _first(data, "quantity") or defaults.get("quantity")
            when = _isoformat(moment)
            key = f"env/{sensor}/{quantity}/{when}" if quantity and "readings" not in data else f"env/{sensor}/{when}"
        try:
            return key, self._environment(data, defaults, looked_up=(sensor, moment))
        except ValidationError as error:
            return key, _schema_violation(error)
        except Exception as error:  # kept for `parse` to raise when the landing zone asks for the records
            return key, error

    def _room(self, data: dict[str, Any], defaults: dict[str, Any]) -> str | None:
        room = _first(data, "room", "room_id", "roomId") or defaults.get("room") or self.config.get("room")
        return None if room is None else _text(room, "room")

    def _reading(
        self, *, room: str | None, sensor: str, quantity_text: Any, value: Any, unit_text: Any, moment: datetime
    ) -> EnvironmentReading:
        if room is None:
            raise QuarantineError(MISSING_IDENTIFIER, "no room: neither the payload nor the subscription names one")
        if quantity_text is None:
            raise QuarantineError(SCHEMA_VIOLATION, "the reading names no quantity")
        quantity = _code("generic.environment-quantity", _text(quantity_text, "quantity"))
        if value is None:
            raise QuarantineError(SCHEMA_VIOLATION, f"the {quantity} reading has no value")
        if unit_text is None:
            raise QuarantineError(SCHEMA_VIOLATION, f"the {quantity} reading has no unit")
        unit = _unit(_text(unit_text, "unit"))
        allowed = QUANTITY_UNITS.get(quantity)
        if allowed is not None and unit not in allowed:
            raise QuarantineError(UNIT_MISMATCH, f"{unit_text!r} ({unit}) does not measure {quantity}")
        return EnvironmentReading(
            room=room,
            sensor_id=sensor,
            quantity=quantity,
            value=parse_decimal(value),
            unit=unit,
            observed_at=moment,
            source_time=moment,
        )

    def _environment(
        self,
        data: dict[str, Any],
        defaults: dict[str, Any],
        looked_up: "tuple[Any, datetime | Exception] | None" = None,
    ) -> list[CanonicalRecord]:
        # `looked_up`: the sensor and the time (or why it has none) when the caller already read them.
        sensor = looked_up[0] if looked_up is not None else _first(data, *_SENSOR_FIELDS) or defaults.get("sensor")
        if sensor is None:
            raise QuarantineError(MISSING_IDENTIFIER, "the reading names no sensor")
        sensor = _text(sensor, "sensor")
        room = self._room(data, defaults)
        if looked_up is None:
            moment = self._time(_first(data, *_TIME_FIELDS))
        elif isinstance(looked_up[1], Exception):
            raise looked_up[1]
        else:
            moment = looked_up[1]
        readings = data.get("readings")
        if readings is None:
            quantity = _first(data, "quantity") or defaults.get("quantity")
            unit = _first(data, "unit") or defaults.get("unit")
            return [
                self._reading(
                    room=room,
                    sensor=sensor,
                    quantity_text=quantity,
                    value=data.get("value"),
                    unit_text=unit,
                    moment=moment,
                )
            ]
        items: list[tuple[Any, Any, Any]]
        if isinstance(readings, dict):
            items = []
            for quantity, reading in readings.items():
                if isinstance(reading, dict):
                    items.append((quantity, reading.get("value"), reading.get("unit")))
                else:
                    raise QuarantineError(SCHEMA_VIOLATION, f"readings.{quantity} must be {{value, unit}}")
        elif isinstance(readings, list) and all(isinstance(item, dict) for item in readings):
            items = [(item.get("quantity"), item.get("value"), item.get("unit")) for item in readings]
        else:
            raise QuarantineError(SCHEMA_VIOLATION, "readings must be an object or a list of objects")
        if not items:
            raise QuarantineError(SCHEMA_VIOLATION, "readings is empty")
        return [
            self._reading(room=room, sensor=sensor, quantity_text=quantity, value=value, unit_text=unit, moment=moment)
            for quantity, value, unit in items
        ]

    def _instrument(self, data: dict[str, Any]) -> InstrumentRef:
        source = data.get("instrument")
        fields = source if isinstance(source, dict) else data
        manufacturer, model, serial = (fields.get(name) for name in ("manufacturer", "model", "serial"))
        if not (manufacturer and model and serial):
            raise QuarantineError(MISSING_IDENTIFIER, "an instrument needs manufacturer, model and serial")
        asset = _first(fields, "asset_id", "assetId")
        return InstrumentRef(
            manufacturer=_text(manufacturer, "manufacturer"),
            model=_text(model, "model"),
            serial=_text(serial, "serial"),
            asset_id=None if asset is None else _text(asset, "asset_id"),
        )

    def _equipment(self, data: dict[str, Any], defaults: dict[str, Any]) -> EquipmentStatus:
        instrument = self._instrument(data)
        source_status = _first(data, "status", "state")
        if source_status is None:
            raise QuarantineError(SCHEMA_VIOLATION, "the equipment message has no status")
        source_status = _text(source_status, "status")
        moment = self._time(_first(data, *_TIME_FIELDS))
        return EquipmentStatus(
            instrument=instrument,
            status=_code("generic.equipment", source_status),
            source_status=source_status,
            room=self._room(data, defaults),
            observed_at=moment,
            source_time=moment,
        )

    def _video(self, data: dict[str, Any], defaults: dict[str, Any]) -> VideoEvent:
        event_id = _first(data, "event_id", "eventId", "id")
        camera = _first(data, "camera_id", "cameraId", "camera")
        if event_id is None or camera is None:
            raise QuarantineError(MISSING_IDENTIFIER, "a video event needs an event id and a camera id")
        source_type = _first(data, "event_type", "eventType", "type")
        if source_type is None:
            raise QuarantineError(SCHEMA_VIOLATION, "the video event has no type")
        source_type = _text(source_type, "event type")
        snapshot: dict[str, Any] = data["snapshot"] if isinstance(data.get("snapshot"), dict) else {}
        moment = self._time(_first(data, *_TIME_FIELDS))
        return VideoEvent(
            event_id=_text(event_id, "event id"),
            camera_id=_text(camera, "camera id"),
            room=self._room(data, defaults),
            event_type=_code("generic.video-alarm", source_type),
            source_event_type=source_type,
            observed_at=moment,
            snapshot_uri=_first(data, "snapshot_uri", "snapshotUri") or snapshot.get("uri"),
            snapshot_sha256=_first(data, "snapshot_sha256", "snapshotSha256") or snapshot.get("sha256"),
            source_time=moment,
        )

    def _datastream_id(self, topic: str, data: dict[str, Any]) -> str:
        datastream = data.get("Datastream")
        if isinstance(datastream, dict) and datastream.get("@iot.id") is not None:
            return str(datastream["@iot.id"])
        found = _DATASTREAM_IN_TOPIC.search(topic)
        if found is None:
            link = data.get("Datastream@iot.navigationLink")
            found = _DATASTREAM_IN_TOPIC.search(link) if isinstance(link, str) else None
        if found is None:
            raise QuarantineError(MISSING_IDENTIFIER, "no Datastream id in the topic or the observation")
        return found.group(1) if found.group(1) is not None else found.group(2)

    def _sensorthings(self, topic: str, data: dict[str, Any], defaults: dict[str, Any]) -> EnvironmentReading:
        datastream_id = self._datastream_id(topic, data)
        described = dict(defaults)
        described.update((defaults.get("datastreams") or {}).get(datastream_id, {}))
        datastream: dict[str, Any] = data["Datastream"] if isinstance(data.get("Datastream"), dict) else {}
        unit_of_measurement = datastream.get("unitOfMeasurement") or {}
        observed_property = datastream.get("ObservedProperty") or {}
        unit = (
            described.get("unit")
            or unit_of_measurement.get("symbol")
            or unit_of_measurement.get("definition")
            or unit_of_measurement.get("name")
        )
        quantity = described.get("quantity") or observed_property.get("name")
        result = data.get("result")
        if isinstance(result, dict | list | bool):
            raise QuarantineError(INVALID_VALUE, "only numeric SensorThings results become readings")
        moment = self._time(_first(data, "phenomenonTime", "resultTime"), "phenomenonTime")
        return self._reading(
            room=self._room(data, described),
            sensor=str(described.get("sensor") or f"datastream-{datastream_id}"),
            quantity_text=quantity,
            value=result,
            unit_text=unit,
            moment=moment,
        )

    def field_mappings(self) -> list[FieldMapping]:
        """How JSON fields and SensorThings properties become canonical fields."""
        env, equipment, video = RecordKind.environment_reading, RecordKind.equipment_status, RecordKind.video_event
        rows = [
            (env, "sensor | subscription.sensor | sta:Datastream", "sensor_id", None, "copy"),
            (env, "room | subscription.room | config.room", "room", None, "copy"),
            (env, "quantity | readings key | sta:ObservedProperty.name", "quantity", None, "code-list:quantity"),
            (env, "value | sta:result", "value", None, "decimal-keep-digits"),
            (env, "unit | sta:unitOfMeasurement.symbol", "unit", "UCUM", "ucum-normalise"),
            (env, "time | sta:phenomenonTime", "observed_at", None, "iso8601-utc"),
            (env, "time | sta:phenomenonTime", "source_time", None, "iso8601-utc"),
            (equipment, "instrument.manufacturer", "instrument.manufacturer", None, "copy"),
            (equipment, "instrument.model", "instrument.model", None, "copy"),
            (equipment, "instrument.serial", "instrument.serial", None, "copy"),
            (equipment, "instrument.asset_id", "instrument.asset_id", None, "copy"),
            (equipment, "status", "status", None, "code-list:equipment"),
            (equipment, "status", "source_status", None, "copy"),
            (equipment, "room", "room", None, "copy"),
            (equipment, "time", "observed_at", None, "iso8601-utc"),
            (equipment, "time", "source_time", None, "iso8601-utc"),
            (video, "event_id", "event_id", None, "copy"),
            (video, "camera_id", "camera_id", None, "copy"),
            (video, "room", "room", None, "copy"),
            (video, "event_type", "event_type", None, "code-list:video-event"),
            (video, "event_type", "source_event_type", None, "copy"),
            (video, "time", "observed_at", None, "iso8601-utc"),
            (video, "time", "source_time", None, "iso8601-utc"),
            (video, "snapshot.uri", "snapshot_uri", None, "copy"),
            (video, "snapshot.sha256", "snapshot_sha256", None, "copy"),
        ]
        return FieldMapping.table(rows)

    def code_lists(self) -> dict[str, dict[str, str]]:
        """Quantity names, equipment states and camera alarm types → hub vocabularies."""
        return {
            "quantity": source_code_list("generic.environment-quantity"),
            "equipment": source_code_list("generic.equipment"),
            "video-event": source_code_list("generic.video-alarm"),
        }

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """A room reading with two quantities, a SensorThings observation, an equipment state and a camera alarm."""

        def message(topic: str, body: dict[str, Any], key: str) -> InboundMessage:
            return InboundMessage(
                payload=json.dumps(body).encode(),
                content_type="application/json",
                source=f"mqtt://127.0.0.1:1883/{topic}",
                transport=Transport.mqtt,
                stream=topic,
                dedup_key=key,
            )

        reading = {
            "sensor": "uci-occupancy-1",
            "room": "office-1",
            "time": "2015-02-02T14:19:00+01:00",
            "readings": {"Temperature": {"value": "23.70", "unit": "°C"}, "Humidity": {"value": 26.272, "unit": "%"}},
        }
        observation = {
            "@iot.id": 1,
            "Datastream": {"@iot.id": 7, "unitOfMeasurement": {"symbol": "degC"}, "ObservedProperty": {"name": "T"}},
            "phenomenonTime": "2014-12-31T11:59:59.00+08:00",
            "resultTime": "2014-12-31T11:59:59.00+08:00",
            "result": 70.4,
            "room": "R-101",
        }
        status = {
            "instrument": {"manufacturer": "Agilent", "model": "7890B", "serial": "CN12345678"},
            "status": "运行中",
            "room": "R-101",
            "time": "2026-03-02T08:15:00Z",
        }
        alarm = {
            "event_id": "evt-0001",
            "camera_id": "cam-3",
            "room": "R-101",
            "event_type": "regionEntrance",
            "time": "2026-03-02T08:16:00+08:00",
            "snapshot": {"uri": "https://nvr.example/snapshots/evt-0001.jpg"},
        }
        base = {"schema_version": "1.0"}
        return [
            GoldenFixture(
                name="room-reading-two-quantities",
                message=message("lab/office-1/env", reading, "env/uci-occupancy-1/2015-02-02T13:19:00+00:00"),
                expected=[
                    {
                        **base,
                        "record_type": "environment-reading",
                        "room": "office-1",
                        "sensor_id": "uci-occupancy-1",
                        "quantity": "temperature",
                        "value": "23.70",
                        "unit": "Cel",
                        "observed_at": "2015-02-02T13:19:00Z",
                        "source_time": "2015-02-02T13:19:00Z",
                    },
                    {
                        **base,
                        "record_type": "environment-reading",
                        "room": "office-1",
                        "sensor_id": "uci-occupancy-1",
                        "quantity": "relative-humidity",
                        "value": "26.272",
                        "unit": "%",
                        "observed_at": "2015-02-02T13:19:00Z",
                        "source_time": "2015-02-02T13:19:00Z",
                    },
                ],
            ),
            GoldenFixture(
                name="sensorthings-observation",
                message=message("v1.1/Datastreams(7)/Observations", observation, "sta/7/1"),
                expected=[
                    {
                        **base,
                        "record_type": "environment-reading",
                        "room": "R-101",
                        "sensor_id": "datastream-7",
                        "quantity": "temperature",
                        "value": "70.4",
                        "unit": "Cel",
                        "observed_at": "2014-12-31T03:59:59Z",
                        "source_time": "2014-12-31T03:59:59Z",
                    }
                ],
            ),
            GoldenFixture(
                name="equipment-running",
                message=message(
                    "lab/R-101/equipment", status, "equipment/Agilent/7890B/CN12345678/2026-03-02T08:15:00+00:00"
                ),
                expected=[
                    {
                        **base,
                        "record_type": "equipment-status",
                        "instrument": status["instrument"],
                        "status": "running",
                        "source_status": "运行中",
                        "room": "R-101",
                        "observed_at": "2026-03-02T08:15:00Z",
                        "source_time": "2026-03-02T08:15:00Z",
                    }
                ],
            ),
            GoldenFixture(
                name="camera-region-entrance",
                message=message("lab/R-101/video", alarm, "video/cam-3/evt-0001"),
                expected=[
                    {
                        **base,
                        "record_type": "video-event",
                        "event_id": "evt-0001",
                        "camera_id": "cam-3",
                        "room": "R-101",
                        "event_type": "person-entered",
                        "source_event_type": "regionEntrance",
                        "observed_at": "2026-03-02T00:16:00Z",
                        "snapshot_uri": "https://nvr.example/snapshots/evt-0001.jpg",
                        "source_time": "2026-03-02T00:16:00Z",
                    }
                ],
            ),
        ]

    # --- receiving --------------------------------------------------------------------------------------------

    def inbound(
        self,
        topic: str,
        payload: bytes,
        *,
        content_type: str | None = None,
        user_properties: "tuple[tuple[str, str], ...] | list[tuple[str, str]]" = (),
    ) -> InboundMessage:
        """The landing-zone message of one MQTT publication (MQTT 5 content type and user properties kept)."""
        headers = {str(name): str(value) for name, value in user_properties} if user_properties else {}
        key, reading = self._read(topic, payload)
        source_time = None
        if isinstance(reading, list) and reading:
            # The observation time the payload states (the same for every reading of one message).
            source_time = reading[0].source_time
        return _ReadMessage(
            payload=payload,
            content_type=content_type or "application/json",
            source=self._source_prefix + topic,
            transport=Transport.mqtt,
            stream=topic,
            source_time=source_time,
            # The broker session, not a cursor, is where MQTT resumes; the checkpoint shows the last identity landed.
            cursor=key,
            dedup_key=key,
            headers=headers,
            reading=reading,
        )

    def tls_context(self) -> ssl.SSLContext:
        """The TLS settings of an `mqtts://` broker: the system's trusted CAs and host-name checking."""
        return ssl.create_default_context()

    def client_id(self, instance_id: str) -> str:
        """The stable client id the broker keeps the persistent session under."""
        return str(self.config.get("client_id") or f"qihub-{instance_id}")

    async def run(self, context: AdapterContext) -> None:
        """Connect, subscribe and land until stopped; reconnect with recorded backoff when the broker goes away."""
        attempt = 0
        while not context.stopping.is_set():
            connection = _Connection(self, client_id=self.client_id(context.instance_id))
            try:
                await connection.open(timeout_s=float(self.config.get("connect_timeout_s", 10)))
            except Exception as error:
                await connection.close()
                attempt += 1
                detail = f"{type(error).__name__}: {error}"
                await context.report_health(connected=False, error=detail)
                await context.retry_delay("connect", attempt, detail)
                continue
            if attempt:
                await context.record_success("connect", attempt + 1)
            attempt = 0
            # Written beside the first batches rather than before them (a broker resuming the session is already
            # sending its backlog); awaited before anything else reports on this connection.
            connected = asyncio.ensure_future(context.report_health(connected=True, lag_s=0.0))
            try:
                await self._consume(context, connection, connected)
            finally:
                await connection.close()
                await asyncio.wait({connected})
                failure = connected.exception()
            if failure is not None:
                raise failure  # a failed health write fails the run, as it did when awaited in line
            if not context.stopping.is_set():
                attempt = 1
                detail = connection.error or "connection to the broker lost"
                await context.report_health(connected=False, error=detail)
                await context.retry_delay("connect", attempt, detail)

    async def _next_batch(self, connection: "_Connection", stopping: asyncio.Event) -> list[Message]:
        loop = asyncio.get_running_loop()
        if not await connection.wait_for_messages(0.25):
            return []
        batch = connection.take(self.batch_size)
        deadline = loop.time() + self.batch_wait_s
        while len(batch) < self.batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0 or stopping.is_set() or connection.lost.is_set():
                break
            if not await connection.wait_for_messages(remaining):
                break
            batch.extend(connection.take(self.batch_size - len(batch)))
        return batch

    async def _land_with_retries(self, context: AdapterContext, batch: list[InboundMessage]) -> None:
        attempt = 0
        while True:
            try:
                await context.land(batch)
            except Exception as error:  # the database, not the source, failed: keep the batch and retry
                attempt += 1
                await context.retry_delay("land", attempt, f"{type(error).__name__}: {error}")
                continue
            if attempt:
                await context.record_success("land", attempt + 1)
            return

    async def _land_and_ack(
        self, context: AdapterContext, connection: "_Connection", batch: list[Message], inbound: list[InboundMessage]
    ) -> bool:
        """Land a batch, then acknowledge it; False when the connection was lost before the acks could go."""
        await self._land_with_retries(context, inbound)
        if connection.lost.is_set():
            # These acks would go nowhere: the broker redelivers the batch and it lands as duplicates.
            return False
        # PUBACK only now, after the landing transaction committed: this is what makes a crash lossless.
        connection.ack(batch)
        return True

    async def _consume(
        self, context: AdapterContext, connection: "_Connection", connected: "asyncio.Future[None]"
    ) -> None:
        heartbeat_s = 10.0
        last_report = time.monotonic()
        landing: asyncio.Task[bool] | None = None  # the previous batch, landing in a worker thread
        try:
            while not context.stopping.is_set() and not connection.lost.is_set():
                batch = await self._next_batch(connection, context.stopping)
                # Read while the previous batch is written: its transaction leaves the interpreter free while the
                # database works, and batches still land (and are acked) one after the other, in arrival order.
                inbound = [
                    self.inbound(m.topic, m.payload, content_type=m.content_type, user_properties=m.user_properties)
                    for m in batch
                ]
                if landing is not None:
                    acked = await landing
                    landing = None
                    if not acked:
                        return  # lost: what is not acked (this batch too) comes again with the next session
                if batch:
                    landing = asyncio.ensure_future(self._land_and_ack(context, connection, batch, inbound))
                    await asyncio.sleep(0)  # let it hand the batch to its thread before the next one is read
                    if time.monotonic() - last_report > heartbeat_s and connected.done():
                        lag = max(0.0, time.monotonic() - batch[0].received_at)
                        await context.report_health(connected=True, lag_s=round(lag, 3))
                        last_report = time.monotonic()
                elif time.monotonic() - last_report > heartbeat_s and connected.done():
                    # A quiet topic is not a dead source: the connection (kept alive by pings) is news from it.
                    await context.report_health(connected=True, lag_s=0.0)
                    last_report = time.monotonic()
            if landing is not None:
                await landing
                landing = None
        finally:
            if landing is not None:
                # Failed (or cancelled) while a batch was landing: its transaction runs to its end in its thread
                # anyway; wait for it so that the next connection never lands beside it.
                with contextlib.suppress(Exception):
                    await landing

    async def check_health(self) -> bool:
        """Whether the broker accepts a connection now."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.broker.host, self.broker.port), 3)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    # --- write-back -------------------------------------------------------------------------------------------

    def _publish_command(self, command: CommandRequest, topic: str, body: bytes) -> dict[str, Any]:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"qihub-cmd-{command.id}"[:128],
            protocol=mqtt.MQTTv5 if self.protocol == MQTT_5 else mqtt.MQTTv311,
        )
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.scheme == "mqtts":
            client.tls_set()
        properties = None
        if self.protocol == MQTT_5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ContentType = "application/json"
            properties.UserProperty = [("idempotency-key", command.idempotency_key), ("command-id", command.id)]
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as error:
            raise CommandFailedError(f"cannot reach the broker {self.broker.url}: {error}") from error
        client.loop_start()
        try:
            info = client.publish(topic, body, qos=1, properties=properties)
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                raise CommandFailedError(f"the broker did not acknowledge the command on {topic}")
        finally:
            client.disconnect()
            client.loop_stop()
        return {
            "topic": topic,
            "broker": self.broker.url,
            "mid": info.mid,
            "idempotencyKey": command.idempotency_key,
            "publishedAt": datetime.now(UTC).isoformat(),
        }

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Publish the command at QoS 1; the broker's PUBACK is the acknowledgement."""
        if command.kind != COMMAND_KIND:
            raise CommandFailedError(f"mqtt executes only {COMMAND_KIND}, not {command.kind}", retryable=False)
        template = self.config.get("command_topic")
        if not template:
            raise CommandFailedError("no command_topic is configured", retryable=False)
        topic = template.replace("{target}", command.target)
        if any(character in topic for character in "+#"):
            raise CommandFailedError(f"{topic!r} is not a topic one can publish to", retryable=False)
        body = json.dumps(
            {
                "id": command.id,
                "idempotencyKey": command.idempotency_key,
                "kind": command.kind,
                "target": command.target,
                "payload": command.payload,
            },
            sort_keys=True,
        ).encode()
        return await asyncio.to_thread(self._publish_command, command, topic, body)


class _Connection:
    """One MQTT connection of the adapter: an `MqttSubscriber` with the instance's session, login and subscriptions.

    Receiving runs on the adapter's event loop (no network thread): messages wait in the subscriber's buffer until
    the adapter takes a batch, and their PUBACKs go out in one write once that batch's landing has committed.
    """

    def __init__(self, adapter: MqttAdapter, *, client_id: str) -> None:
        self.adapter = adapter
        broker, config = adapter.broker, adapter.config
        v5 = adapter.protocol == MQTT_5
        self.subscriber = MqttSubscriber(
            host=broker.host,
            port=broker.port,
            client_id=client_id,
            version=adapter.protocol,
            clean_start=False,  # the persistent session keeps what was not acknowledged across a restart
            keepalive_s=int(config.get("keepalive_s", 30)),
            username=broker.username,
            password=broker.password,
            # Without a session expiry an MQTT 5 session ends at disconnect and unacknowledged messages with it.
            session_expiry_s=int(config.get("session_expiry_s", 604800)) if v5 else None,
            receive_maximum=adapter.receive_maximum if v5 else None,
            ssl_context=adapter.tls_context() if broker.scheme == "mqtts" else None,
        )
        self.lost = self.subscriber.lost

    @property
    def error(self) -> str | None:
        """Why the connection ended (None while it is up)."""
        return self.subscriber.error

    async def open(self, *, timeout_s: float) -> None:
        """Connect and subscribe; raises ConnectionError (or TimeoutError) when the broker is unreachable or refuses.

        Returns at the subscription acknowledgement, or as soon as messages arrive: a broker resuming a
        persistent session sends its queued backlog before it answers the SUBSCRIBE, and waiting for the SUBACK
        behind thousands of messages would leave them all unlanded meanwhile. A subscription refused later still
        fails the connection (`lost`); what was delivered before that came at QoS 1 and is landed and acked.
        """
        subscriber = self.subscriber
        await subscriber.connect(timeout_s=timeout_s)
        suback = subscriber.subscribe([(subscription["topic"], 1) for subscription in self.adapter.subscriptions])
        suback.add_done_callback(self._check_grants)
        lost = asyncio.ensure_future(self.lost.wait())
        arrived = asyncio.ensure_future(subscriber.wait_for_messages(timeout_s))
        waiters: set[asyncio.Future[Any]] = {suback, lost, arrived}
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            arrived.cancel()
        if self.lost.is_set() or (suback.done() and subscriber.error):
            raise ConnectionError(subscriber.error or "connection to the broker lost")
        if not suback.done() and not subscriber.messages:
            raise ConnectionError(f"no subscription acknowledgement within {timeout_s} s")

    def _check_grants(self, suback: "asyncio.Future[list[int]]") -> None:
        if suback.cancelled() or suback.exception() is not None:
            return  # the connection ended first: `lost` tells
        v5 = self.adapter.protocol == MQTT_5
        refused = [
            (reason_text(code) if v5 else "failure") if code >= 0x80 else f"QoS {code}"
            for code in suback.result()
            if code != 1
        ]
        if refused:
            # QoS 0 would lose messages across a crash: refuse to run rather than pretend at-least-once.
            self.subscriber.abort(f"the broker did not grant QoS 1 on every subscription: {', '.join(refused)}")

    async def wait_for_messages(self, timeout_s: float) -> bool:
        """Whether messages are buffered, waiting up to `timeout_s` for some to arrive."""
        return await self.subscriber.wait_for_messages(timeout_s)

    def take(self, count: int) -> list[Message]:
        """Up to `count` buffered messages, oldest first."""
        return self.subscriber.take(count)

    def ack(self, messages: list[Message]) -> None:
        """PUBACK these messages (one write for the batch)."""
        self.subscriber.ack(messages)

    async def close(self) -> None:
        """Disconnect (unacknowledged messages stay with the broker for the next session; acks sent go first)."""
        await self.subscriber.close()
