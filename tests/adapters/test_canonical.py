"""Canonical records: published JSON Schemas match the models; golden records validate and keep their digits."""

import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from adapters.canonical import (
    RECORD_TYPES,
    SCHEMA_DIR,
    SCHEMA_VERSION,
    RecordKind,
    json_schema,
    record_from_json,
    record_json,
)

GOLDEN: dict[RecordKind, dict[str, Any]] = {
    RecordKind.sample: {
        "schema_version": "1.0",
        "record_type": "sample",
        "sample_id": "WTR-2026-0042",
        "lab_id": "CNAS L0001",
        "client": "杭州某水务有限公司",
        "client_credit_code": "91330100MA27XL1234",
        "sample_type": "drinking water",
        "order_id": "WT-20260302-07",
        "received_at": "2026-03-02T01:30:00Z",
        "status": "received",
        "source_status": "sample_received",
    },
    RecordKind.test_result: {
        "schema_version": "1.0",
        "envelope_id": 17,
        "record_type": "test-result",
        "result_id": "WTR-2026-0042/Pb",
        "sample_id": "WTR-2026-0042",
        "lab_id": "CNAS L0001",
        "test_item": "Pb",
        "method": "GB/T 5750.6-2023",
        "value": "0.0050",
        "operator": "<",
        "unit": "mg/L",
        "expanded_uncertainty": "0.0004",
        "instrument": {"manufacturer": "Agilent", "model": "7900", "serial": "JP18460123", "asset_id": "ICPMS-1"},
        "room": "LAB-A/204",
        "measured_at": "2026-03-02T06:10:00Z",
        "status": "verified",
    },
    RecordKind.environment_reading: {
        "schema_version": "1.0",
        "record_type": "environment-reading",
        "room": "LAB-A/204",
        "sensor_id": "env-sensor-7",
        "quantity": "temperature",
        "value": "23.70",
        "unit": "Cel",
        "observed_at": "2015-02-02T14:19:00Z",
    },
    RecordKind.equipment_status: {
        "schema_version": "1.0",
        "record_type": "equipment-status",
        "instrument": {"manufacturer": "Agilent", "model": "7900", "serial": "JP18460123"},
        "status": "running",
        "source_status": "Execute",
        "observed_at": "2026-03-02T06:00:00Z",
    },
    RecordKind.video_event: {
        "schema_version": "1.0",
        "record_type": "video-event",
        "event_id": "evt-9001",
        "camera_id": "cam-204",
        "room": "LAB-A/204",
        "event_type": "person-entered",
        "source_event_type": "regionEntrance",
        "observed_at": "2026-03-02T06:01:02Z",
        "snapshot_uri": "https://nvr.lab.example/snapshots/evt-9001.jpg",
        "snapshot_sha256": "a" * 64,
    },
    RecordKind.calibration_event: {
        "schema_version": "1.0",
        "record_type": "calibration-event",
        "instrument": {"manufacturer": "Agilent", "model": "7900", "serial": "JP18460123"},
        "certificate_number": "ZJJL-2025-12345",
        "calibration_lab": "浙江省计量科学研究院",
        "calibrated_on": "2025-06-01T00:00:00Z",
        "valid_until": "2026-05-31T15:59:59.999999Z",
        "result": "pass",
    },
    RecordKind.complaint: {
        "schema_version": "1.0",
        "record_type": "complaint",
        "complaint_id": "CP-2026-0007",
        "against_lab_id": "CNAS L0001",
        "subject": "检测报告延迟出具",
        "channel": "platform",
        "received_at": "2026-03-01T02:00:00Z",
        "due_at": "2026-03-08T02:00:00Z",
        "status": "accepted",
    },
}


@pytest.mark.parametrize("kind", list(RecordKind))
def test_published_schema_files_equal_the_generated_schemas(kind: RecordKind) -> None:
    path = SCHEMA_DIR / f"{kind.value}-{SCHEMA_VERSION}.schema.json"
    assert path.exists(), "run `python -m adapters.canonical` to publish the schemas"
    assert json.loads(path.read_text(encoding="utf-8")) == json_schema(kind)


def test_every_record_kind_has_a_published_schema_and_nothing_else_is_published() -> None:
    published = {path.name for path in SCHEMA_DIR.glob("*.schema.json")}
    assert published == {f"{kind.value}-{SCHEMA_VERSION}.schema.json" for kind in RecordKind}


@pytest.mark.parametrize("kind", list(RecordKind))
def test_golden_records_validate_against_their_schema_and_round_trip(kind: RecordKind) -> None:
    golden = GOLDEN[kind]
    schema = json.loads((SCHEMA_DIR / f"{kind.value}-{SCHEMA_VERSION}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(golden)
    record = record_from_json(kind.value, golden)
    assert record_json(record) == golden


def test_decimals_keep_their_digits_in_the_published_json() -> None:
    record = record_from_json("environment-reading", GOLDEN[RecordKind.environment_reading])
    assert record_json(record)["value"] == "23.70"
    result = record_from_json("test-result", GOLDEN[RecordKind.test_result])
    assert record_json(result)["value"] == "0.0050"
    assert record_json(result)["operator"] == "<"


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        (RecordKind.environment_reading, {"value": "23,70"}),
        (RecordKind.environment_reading, {"observed_at": "2015-02-02T14:19:00"}),
        (RecordKind.test_result, {"operator": "≈"}),
        (RecordKind.sample, {"client_credit_code": "12345"}),
        (RecordKind.video_event, {"snapshot_sha256": "XYZ"}),
        (RecordKind.complaint, {"unexpected": "field"}),
        (RecordKind.calibration_event, {"schema_version": "2.0"}),
    ],
)
def test_records_breaking_the_schema_fail_both_the_json_schema_and_the_model(
    kind: RecordKind, change: dict[str, Any]
) -> None:
    broken = {**GOLDEN[kind], **change}
    validator = jsonschema.Draft202012Validator(json_schema(kind), format_checker=jsonschema.FormatChecker())
    model_rejects = False
    try:
        RECORD_TYPES[kind].model_validate(broken)
    except ValidationError:
        model_rejects = True
    assert model_rejects
    if change != {"observed_at": "2015-02-02T14:19:00"}:  # JSON Schema's date-time format cannot demand an offset
        assert not validator.is_valid(broken)


def test_schemas_name_their_version_and_kind() -> None:
    for kind in RecordKind:
        schema = json_schema(kind)
        assert schema["$id"].endswith(f"/{kind.value}-{SCHEMA_VERSION}.schema.json")
        assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
