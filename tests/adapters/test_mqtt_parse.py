"""The MQTT adapter's parser (pure): plain JSON, SensorThings, equipment, video; quarantine codes; identities."""

import json
from pathlib import Path

import pytest

from adapters.builtin.mqtt import MqttAdapter
from adapters.canonical import record_json
from adapters.framework import InboundMessage, QuarantineError, Transport
from storage.errors import InvalidInputError
from tests.paths import SHARED

STA = SHARED / "external" / "iot" / "sensorthings"


def _adapter(**extra) -> MqttAdapter:
    config = {
        "broker": "mqtt://user:secret@broker.example:1884",
        "subscriptions": [
            {"topic": "lab/+/env", "kind": "environment"},
            {"topic": "lab/+/equipment", "kind": "equipment-status"},
            {"topic": "lab/+/video", "kind": "video-event", "room": "R-9"},
            {
                "topic": "sta/#",
                "kind": "sensorthings-observation",
                "datastreams": {"1": {"sensor": "th-1", "quantity": "relative humidity", "unit": "%", "room": "R-1"}},
            },
        ],
        **extra,
    }
    return MqttAdapter(config)


def _parse(adapter: MqttAdapter, topic: str, payload: bytes | dict):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return adapter.parse(adapter.inbound(topic, body))


def _code(adapter: MqttAdapter, topic: str, payload: bytes | dict) -> str:
    with pytest.raises(QuarantineError) as caught:
        _parse(adapter, topic, payload)
    return caught.value.code


def test_every_golden_fixture_parses_to_its_expected_canonical_json_with_its_dedup_key():
    adapter = _adapter()
    for fixture in MqttAdapter.golden_fixtures():
        assert [record_json(r) for r in adapter.parse(fixture.message)] == fixture.expected, fixture.name
        assert adapter.identity(fixture.message.stream, fixture.message.payload) == fixture.message.dedup_key


def test_the_ogc_example_observation_becomes_a_reading_of_its_configured_datastream():
    observation = (STA / "ogc-bblocks" / "Observation" / "Observation.json").read_bytes()
    [reading] = _parse(_adapter(), "sta/v1.1/Datastreams(1)/Observations", observation)
    assert (reading.sensor_id, reading.quantity, reading.unit, reading.room) == (
        "th-1",
        "relative-humidity",
        "%",
        "R-1",
    )
    assert str(reading.value) == "70.4"
    assert reading.observed_at.isoformat() == "2014-12-31T03:59:59+00:00"
    assert _adapter().identity("sta/v1.1/Datastreams(1)/Observations", observation) == "sta/1/1"


def test_frost_deep_insert_observations_with_inline_datastreams_are_read():
    thing = json.loads((STA / "frost" / "entitiesDefault.json").read_text())
    datastream = thing["Datastreams"][0]
    observation = {
        **datastream["Observations"][0],
        "Datastream": {
            "@iot.id": "lux-1",
            "unitOfMeasurement": datastream["unitOfMeasurement"],
            "ObservedProperty": {"name": "illuminance"},
        },
        "room": "R-3",
    }
    # Lumen measures luminous flux, not illuminance: a wrong unit is quarantined, not converted or guessed.
    assert _code(_adapter(), "sta/v1.1/Observations", observation) == "unit-mismatch"
    observation["Datastream"]["unitOfMeasurement"] = {"symbol": "lx"}
    [reading] = _parse(_adapter(), "sta/v1.1/Observations", observation)
    assert (reading.sensor_id, reading.quantity, str(reading.value)) == ("datastream-lux-1", "illuminance", "3")


def test_decimals_keep_their_digits_and_units_become_ucum():
    payload = (
        b'{"sensor": "s", "room": "R", "time": "2026-03-02T08:00:00Z", '
        b'"quantity": "Temp", "value": 20.10, "unit": "\xe2\x84\x83"}'
    )
    [reading] = _parse(_adapter(), "lab/R/env", payload)
    assert (str(reading.value), reading.unit, reading.quantity) == ("20.10", "Cel", "temperature")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "malformed-payload"),
        (b"[1, 2]", "malformed-payload"),
        (
            {"room": "R", "time": "2026-03-02T08:00:00Z", "quantity": "t", "value": 1, "unit": "Cel"},
            "missing-identifier",
        ),
        (
            {"sensor": "s", "time": "2026-03-02T08:00:00Z", "quantity": "t", "value": 1, "unit": "Cel"},
            "missing-identifier",
        ),
        (
            {
                "sensor": "s",
                "room": "R",
                "time": "2026-03-02T08:00:00Z",
                "quantity": "t",
                "value": 1,
                "unit": "furlong",
            },
            "unknown-unit",
        ),
        (
            {"sensor": "s", "room": "R", "time": "2026-03-02T08:00:00Z", "quantity": "rh", "value": 1, "unit": "Cel"},
            "unit-mismatch",
        ),
        (
            {
                "sensor": "s",
                "room": "R",
                "time": "2026-03-02T08:00:00Z",
                "quantity": "t",
                "value": "warm",
                "unit": "Cel",
            },
            "invalid-value",
        ),
        (
            {"sensor": "s", "room": "R", "time": "2026-03-02 08:00", "quantity": "t", "value": 1, "unit": "Cel"},
            "invalid-value",
        ),
        ({"sensor": "s", "room": "R", "quantity": "t", "value": 1, "unit": "Cel"}, "schema-violation"),
        (
            {"sensor": "s", "room": "R", "time": "2026-03-02T08:00:00Z", "quantity": "noise", "value": 1, "unit": "dB"},
            "unknown-code",
        ),
        ({"sensor": "s", "room": "R", "time": "2026-03-02T08:00:00Z", "readings": "hot"}, "schema-violation"),
    ],
)
def test_bad_environment_payloads_are_quarantined_with_a_code(payload, code):
    assert _code(_adapter(), "lab/R/env", payload) == code


def test_a_local_time_is_read_in_the_configured_zone():
    payload = {"sensor": "s", "room": "R", "time": "2026-03-02 08:00:00", "quantity": "t", "value": 1, "unit": "Cel"}
    [reading] = _parse(_adapter(timezone="Asia/Shanghai"), "lab/R/env", payload)
    assert reading.observed_at.isoformat() == "2026-03-02T00:00:00+00:00"


def test_equipment_and_video_payloads_map_their_codes_and_need_their_ids():
    adapter = _adapter()
    status = {"instrument": {"manufacturer": "A", "model": "B", "serial": "C"}, "status": "报警", "time": 1772438400000}
    [equipment] = _parse(adapter, "lab/R/equipment", status)
    assert (equipment.status, equipment.source_status) == ("fault", "报警")
    assert equipment.observed_at.isoformat() == "2026-03-02T08:00:00+00:00"
    assert _code(adapter, "lab/R/equipment", {**status, "status": "dancing"}) == "unknown-code"
    assert _code(adapter, "lab/R/equipment", {**status, "instrument": {"model": "B"}}) == "missing-identifier"
    alarm = {"eventId": "e1", "cameraId": "c1", "eventType": "VMD", "time": "2026-03-02T08:00:00Z"}
    [video] = _parse(adapter, "lab/R/video", alarm)
    assert (video.event_type, video.room) == ("motion", "R-9")
    assert _code(adapter, "lab/R/video", {**alarm, "cameraId": None}) == "missing-identifier"
    assert adapter.identity("lab/R/video", json.dumps({**alarm, "cameraId": None}).encode()) is None


def test_a_reading_has_one_identity_however_its_time_is_written():
    adapter = _adapter()
    one = {"sensor": "s", "room": "R", "time": "2026-03-02T08:00:00+08:00", "quantity": "t", "value": 1, "unit": "Cel"}
    two = {**one, "time": "2026-03-02T00:00:00Z", "value": 1.0}
    assert adapter.identity("lab/R/env", json.dumps(one).encode()) == adapter.identity(
        "lab/R/env", json.dumps(two).encode()
    )
    assert adapter.identity("lab/R/env", b"{broken") is None


def test_envelopes_name_the_broker_without_its_credentials():
    message = _adapter().inbound("lab/R/env", b"{}")
    assert isinstance(message, InboundMessage)
    assert (message.source, message.transport, message.stream) == (
        "mqtt://broker.example:1884/lab/R/env",
        Transport.mqtt,
        "lab/R/env",
    )


@pytest.mark.parametrize(
    "config",
    [
        {"broker": "http://x:1", "subscriptions": [{"topic": "a", "kind": "environment"}]},
        {"broker": "mqtt://x:1", "subscriptions": []},
        {"broker": "mqtt://x:1", "subscriptions": [{"topic": "a/#/b", "kind": "environment"}]},
        {"broker": "mqtt://x:1", "subscriptions": [{"topic": "a", "kind": "weather"}]},
        {"broker": "mqtt://x:1", "subscriptions": [{"topic": "a", "kind": "environment"}], "timezone": "Mars/Base"},
    ],
)
def test_bad_configurations_are_refused(config):
    with pytest.raises(InvalidInputError):
        MqttAdapter(config)


def test_field_mappings_cover_every_required_canonical_field():
    from adapters.canonical import RECORD_TYPES

    mappings = _adapter().field_mappings()
    for kind in MqttAdapter.manifest.emits:
        required = {name for name, field in RECORD_TYPES[kind].model_fields.items() if field.is_required()}
        mapped = {m.canonical_field.split(".")[0] for m in mappings if m.record_kind == kind}
        assert required <= mapped, (kind, required - mapped)
    assert Path(__file__).exists()


def _plain(topic: str, body: bytes) -> InboundMessage:
    return InboundMessage(
        payload=body, content_type="application/json", source="mqtt://x", transport=Transport.mqtt, stream=topic
    )


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (
            "lab/1/env",
            b'{"sensor": "s", "room": "R", "time": "2015-02-02T14:19:00+01:00", "readings": '
            b'{"Temperature": {"value": 23.70, "unit": "\xc2\xb0C"}, "CO2": {"value": 749.2, "unit": "ppm"}}}',
        ),
        (
            "lab/1/env",
            b'{"sensor": "s", "room": "R", "time": 1422883140, "quantity": "Humidity", "value": 26.2, "unit": "%"}',
        ),
        (
            "sta/v1.1/Datastreams(1)/Observations",
            b'{"@iot.id": 7, "phenomenonTime": "2014-12-31T11:59:59.00+08:00", "result": 70.4}',
        ),
        (
            "lab/1/equipment",
            b'{"instrument": {"manufacturer": "A", "model": "B", "serial": "C"}, "status": "Running", '
            b'"time": "2026-03-02T08:00:00Z"}',
        ),
    ],
)
def test_inbound_reads_the_payload_once_with_the_same_records_and_its_observation_time_as_source_time(topic, body):
    adapter = _adapter()
    message = adapter.inbound(topic, body)
    records = adapter.parse(message)
    # The same records as a message parsed from scratch (what the conformance kit and other callers do).
    assert [record_json(r) for r in records] == [record_json(r) for r in adapter.parse(_plain(topic, body))]
    assert message.dedup_key == adapter.identity(topic, body)
    # The envelope carries the time the payload states (criterion L1.2), as the records do.
    assert message.source_time is not None
    assert message.source_time == records[0].source_time


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"sensor": "s", "room": "R", "time": "2015-02-02T14:19:00Z", "quantity": "Temperature", "value": 1, '
        b'"unit": "furlong"}',
        b'{"sensor": "s", "room": "R", "time": "2015-02-02T14:19:00Z", "quantity": "Humidity", "value": 1, '
        b'"unit": "lx"}',
        b'{"sensor": "' + b"x" * 400 + b'", "room": "R", "time": "2015-02-02T14:19:00Z", "quantity": "Humidity", '
        b'"value": 1, "unit": "%"}',
    ],
)
def test_a_payload_read_on_arrival_fails_parse_with_the_same_code_every_time(body):
    adapter = _adapter()
    message = adapter.inbound("lab/1/env", body)
    with pytest.raises(QuarantineError) as fresh:
        adapter.parse(_plain("lab/1/env", body))
    for _ in range(2):  # a batch retried after a database failure asks again
        with pytest.raises(QuarantineError) as caught:
            adapter.parse(message)
        assert (caught.value.code, caught.value.detail) == (fresh.value.code, fresh.value.detail)
    assert message.source_time is None
