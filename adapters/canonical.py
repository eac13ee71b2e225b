"""Canonical records: the versioned, source-independent shape every adapter parses its payloads into.

Each record carries its schema version and, once landed, the id of the raw message it came from. Units are
UCUM codes, times ISO 8601 with an offset, measured values `Decimal` (so "20.10" keeps its digits) with an
optional censoring operator ("<0.5" is `operator="<"`, `value=0.5`). The JSON Schemas published under
`schemas/json/canonical/` are generated from these models (`python -m adapters.canonical`).
"""

import json
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema

SCHEMA_VERSION: Final = "1.0"
SCHEMA_BASE = "https://qihub.example/schemas/canonical/"
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "json" / "canonical"


class RecordKind(StrEnum):
    """The kinds of canonical record."""

    sample = "sample"
    test_result = "test-result"
    environment_reading = "environment-reading"
    equipment_status = "equipment-status"
    video_event = "video-event"
    calibration_event = "calibration-event"
    complaint = "complaint"


Text = Annotated[str, Field(min_length=1, max_length=300)]
Ucum = Annotated[str, Field(min_length=1, max_length=40, description="UCUM case-sensitive unit code")]
# Decimals travel as JSON strings so that "20.10" keeps its trailing zero (a JSON number would not).
DECIMAL_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
Number = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    WithJsonSchema(
        {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Decimal as written (digits kept)"},
        mode="serialization",
    ),
]
# 统一社会信用代码 (GB 32100-2015): 18 characters, the authoritative identity of a Chinese legal entity.
CreditCode = Annotated[str, Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")]


class InstrumentRef(BaseModel):
    """An instrument by its authoritative identity (manufacturer + model + serial), with the lab's asset id."""

    model_config = ConfigDict(extra="forbid")

    manufacturer: Text
    model: Text
    serial: Text
    asset_id: Text | None = None


class CanonicalRecord(BaseModel):
    """Fields every canonical record has."""

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[RecordKind]
    schema_version: Literal["1.0"] = SCHEMA_VERSION
    envelope_id: int | None = Field(default=None, description="Landing-zone message this record was parsed from")
    source_time: AwareDatetime | None = Field(default=None, description="When the source says it happened")

    @property
    def natural_key(self) -> str:
        """The authoritative identity of what the record describes (stable across sources)."""
        raise NotImplementedError


class Sample(CanonicalRecord):
    """A sample received for testing (LIMS analysis request / 样品)."""

    kind: ClassVar[RecordKind] = RecordKind.sample
    record_type: Literal["sample"] = "sample"
    sample_id: Text = Field(description="The lab's sample code (per its coding rules)")
    lab_id: Text | None = Field(default=None, description="CNAS/CMA number of the lab")
    client: Text | None = None
    client_credit_code: CreditCode | None = Field(default=None, description="Client's 统一社会信用代码")
    sample_type: Text | None = None
    order_id: Text | None = Field(default=None, description="Test order (委托单) the sample belongs to")
    received_at: AwareDatetime | None = None
    status: Text = Field(description="Hub vocabulary: registered, received, in-testing, verified, published, …")
    source_status: Text | None = Field(default=None, description="The source's own status code")

    @property
    def natural_key(self) -> str:
        """Sample code (unique within the lab)."""
        return f"{self.lab_id or ''}/{self.sample_id}"


class TestResult(CanonicalRecord):
    """One measured result of a test item on a sample."""

    kind: ClassVar[RecordKind] = RecordKind.test_result
    record_type: Literal["test-result"] = "test-result"
    result_id: Text
    sample_id: Text
    lab_id: Text | None = None
    test_item: Text = Field(description="Analysis / test item keyword")
    method: Text | None = Field(default=None, description="Standard or method code, e.g. 'GB/T 5750.5-2023'")
    value: Number | None = None
    operator: Literal["<", "<=", ">", ">="] | None = Field(default=None, description="Censoring, e.g. '<'")
    text_value: Text | None = Field(default=None, description="Non-numeric result (e.g. 'negative')")
    unit: Ucum | None = None
    expanded_uncertainty: Number | None = None
    instrument: InstrumentRef | None = None
    room: Text | None = None
    analyst: Text | None = None
    started_at: AwareDatetime | None = None
    measured_at: AwareDatetime | None = None
    status: Text = Field(description="Hub vocabulary: unverified, verified, retracted, rejected")
    source_status: Text | None = None

    @property
    def natural_key(self) -> str:
        """Result id (unique within the lab)."""
        return f"{self.lab_id or ''}/{self.result_id}"


class EnvironmentReading(CanonicalRecord):
    """One environmental quantity measured in a room (temperature, humidity, CO2, …)."""

    kind: ClassVar[RecordKind] = RecordKind.environment_reading
    record_type: Literal["environment-reading"] = "environment-reading"
    room: Text
    sensor_id: Text
    quantity: Text = Field(description="temperature, relative-humidity, co2, illuminance, humidity-ratio, …")
    value: Number
    unit: Ucum
    observed_at: AwareDatetime

    @property
    def natural_key(self) -> str:
        """Sensor, quantity and time."""
        return f"{self.sensor_id}/{self.quantity}/{self.observed_at.isoformat()}"


class EquipmentStatus(CanonicalRecord):
    """The state of an instrument at a time."""

    kind: ClassVar[RecordKind] = RecordKind.equipment_status
    record_type: Literal["equipment-status"] = "equipment-status"
    instrument: InstrumentRef
    status: Text = Field(description="Hub vocabulary: idle, running, fault, maintenance, offline")
    source_status: Text | None = None
    room: Text | None = None
    observed_at: AwareDatetime

    @property
    def natural_key(self) -> str:
        """Instrument and time."""
        i = self.instrument
        return f"{i.manufacturer}/{i.model}/{i.serial}/{self.observed_at.isoformat()}"


class VideoEvent(CanonicalRecord):
    """Metadata of a video analytics event; the video itself never enters the hub, only a snapshot reference."""

    kind: ClassVar[RecordKind] = RecordKind.video_event
    record_type: Literal["video-event"] = "video-event"
    event_id: Text
    camera_id: Text
    room: Text | None = None
    event_type: Text = Field(description="Hub vocabulary: person-entered, person-left, sample-handled, …")
    source_event_type: Text | None = None
    observed_at: AwareDatetime
    snapshot_uri: Annotated[str, Field(max_length=2000)] | None = None
    snapshot_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @property
    def natural_key(self) -> str:
        """Camera and event id."""
        return f"{self.camera_id}/{self.event_id}"


class CalibrationEvent(CanonicalRecord):
    """A calibration of an instrument and how long it is valid."""

    kind: ClassVar[RecordKind] = RecordKind.calibration_event
    record_type: Literal["calibration-event"] = "calibration-event"
    instrument: InstrumentRef
    certificate_number: Text
    calibration_lab: Text | None = None
    calibrated_on: AwareDatetime
    valid_until: AwareDatetime
    result: Text = Field(description="Hub vocabulary: pass, fail, adjusted, limited")

    @property
    def natural_key(self) -> str:
        """Calibration certificate number."""
        return self.certificate_number


class Complaint(CanonicalRecord):
    """A complaint about a testing service, with its handling deadline."""

    kind: ClassVar[RecordKind] = RecordKind.complaint
    record_type: Literal["complaint"] = "complaint"
    complaint_id: Text
    against_lab_id: Text | None = None
    subject: Annotated[str, Field(min_length=1, max_length=2000)]
    channel: Text | None = None
    received_at: AwareDatetime
    due_at: AwareDatetime
    status: Text = Field(description="Hub vocabulary: received, accepted, in-progress, closed, rejected")
    source_status: Text | None = Field(default=None, description="The source's own status code")

    @property
    def natural_key(self) -> str:
        """Complaint id."""
        return self.complaint_id


RECORD_TYPES: dict[RecordKind, type[CanonicalRecord]] = {
    model.kind: model
    for model in (Sample, TestResult, EnvironmentReading, EquipmentStatus, VideoEvent, CalibrationEvent, Complaint)
}


def record_from_json(kind: str, data: dict[str, Any]) -> CanonicalRecord:
    """Rebuild a canonical record from its stored JSON."""
    return RECORD_TYPES[RecordKind(kind)].model_validate(data)


def record_json(record: CanonicalRecord) -> dict[str, Any]:
    """The record as stored and published: JSON types, decimals as strings (digits kept)."""
    return record.model_dump(mode="json", exclude_none=True)


def json_schema(kind: RecordKind) -> dict[str, Any]:
    """The published JSON Schema of one record kind."""
    schema = RECORD_TYPES[kind].model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}{kind.value}-{SCHEMA_VERSION}.schema.json",
        **schema,
    }


def write_json_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every kind's JSON Schema as `<kind>-<version>.schema.json` (what `python -m adapters.canonical` does)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in RecordKind:
        path = directory / f"{kind.value}-{SCHEMA_VERSION}.schema.json"
        path.write_text(json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_json_schemas():
        print(written_path)
