"""Generic LIMS push: labs whose LIMS has no API send results (or samples) as JSON or CSV to the hub.

`POST /api/v1/adapters/{id}/push` takes a JSON array of objects or a CSV file with a header row. Each row is
landed as its own message (transport `http-push`), so one bad row is quarantined with its code while the
others are accepted; a row's raw bytes are the row as sent (the JSON object re-serialised compactly, or the
CSV header line plus that row), and its envelope headers name the whole body's sha256 and the row number.

The instance's configuration maps source columns onto canonical fields:

    {"record_kind": "test-result", "lab_id": "CNAS L1234", "time_zone": "Asia/Shanghai",
     "mapping": {"样品编号": {"field": "sample_id"},
                 "检测项目": {"field": "test_item"},
                 "结果": {"field": "value", "unit": "mg/kg"},
                 "检测日期": {"field": "measured_at"},
                 "状态": {"field": "status"}},
     "status_codes": {"已批准": "verified"}}

Without a mapping, columns named like canonical fields (snake_case or camelCase) are taken as they are. Each
field has a default transform (values are censored decimals, `*_at` fields ISO 8601 times, `unit` a unit
symbol normalised to UCUM, `status` a code through `status_codes` or the generic code list) that a mapping
entry may override; a result without `result_id` gets `sample_id/test_item`, as SENAITE numbers analyses.
"""

import csv
import hashlib
import io
import json
import re
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import Field as PydanticField
from pydantic import ValidationError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from adapters.canonical import CanonicalRecord, InstrumentRef, RecordKind, Sample, TestResult
from adapters.codelists import fold_code, map_code, source_code_list
from adapters.framework import (
    INVALID_VALUE,
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    SCHEMA_VIOLATION,
    UNKNOWN_CODE,
    UNSUPPORTED_CONTENT_TYPE,
    Adapter,
    AdapterContext,
    AdapterManifest,
    Clock,
    FieldMapping,
    GoldenFixture,
    InboundMessage,
    QuarantineError,
    SourceKind,
    Transport,
)
from adapters.landing import land_messages, message_sha256
from adapters.models import AdapterHealth, AdapterInstance, LandingMessage
from adapters.units import normalise_unit, parse_censored, parse_decimal, parse_time
from storage.errors import ConflictError, InvalidInputError
from storage.schemas import ApiSchema

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv", "application/csv")
MAX_ROWS = 10_000
TRANSFORMS = ("copy", "decimal", "censored", "datetime", "status", "unit", "upper", "lower")
INSTRUMENT_FIELDS = ("manufacturer", "model", "serial", "asset_id")
_RECORD_MODELS: dict[str, type[Sample] | type[TestResult]] = {
    RecordKind.test_result.value: TestResult,
    RecordKind.sample.value: Sample,
}
_GENERIC_CODE_LISTS = {RecordKind.test_result.value: "generic.result", RecordKind.sample.value: "generic.sample"}
_NOT_FROM_SOURCE = {"schema_version", "envelope_id", "record_type", "instrument"}


def _target_fields() -> list[str]:
    names: set[str] = set()
    for model in _RECORD_MODELS.values():
        names.update(name for name in model.model_fields if name not in _NOT_FROM_SOURCE)
    return sorted(names | {f"instrument.{name}" for name in INSTRUMENT_FIELDS})


CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "record_kind": {"enum": list(_RECORD_MODELS), "default": RecordKind.test_result.value},
        "lab_id": {"type": "string", "minLength": 1, "description": "CNAS/CMA number of the lab that pushes"},
        "time_zone": {"type": "string", "description": "IANA zone of times pushed without an offset"},
        "csv_delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
        "mapping": {
            "type": "object",
            "description": "Source column → canonical field, with an optional fixed unit and transform",
            "additionalProperties": {
                "type": "object",
                "required": ["field"],
                "additionalProperties": False,
                "properties": {
                    "field": {"enum": _target_fields()},
                    "unit": {"type": "string", "minLength": 1},
                    "transform": {"enum": list(TRANSFORMS)},
                },
            },
        },
        "status_codes": {
            "type": "object",
            "description": "Source status → hub status (else the generic code list)",
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "default_status": {"type": "string", "description": "Status of rows that carry none"},
    },
}


class PushBodyError(InvalidInputError):
    """A pushed body that cannot be split into rows (not JSON/CSV, not an array, no header, too many rows)."""

    code = "invalid-push-body"
    title = "Unreadable push body"

    def __init__(self, detail: str, *, http_status: int = 400) -> None:
        super().__init__(detail)
        self.http_status = http_status


def _default_transform(field: str) -> str:
    if field in ("value", "expanded_uncertainty"):
        return "censored" if field == "value" else "decimal"
    if field.endswith("_at") or field == "source_time":
        return "datetime"
    if field in ("unit", "status"):
        return field
    return "copy"


def _skip_space(text: str, position: int) -> int:
    while text[position] in " \t\n\r":
        position += 1
    return position


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class LimsPushAdapter(Adapter):
    """Rows pushed as JSON or CSV, mapped by the instance's configuration onto canonical records."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="lims-push",
        version="1.0.0",
        title="Generic LIMS push (JSON or CSV with a column mapping)",
        description="For LIMS without an API: POST /api/v1/adapters/{id}/push with a JSON array or a CSV file.",
        source_kind=SourceKind.lims,
        transports=[Transport.http_push],
        emits=[RecordKind.test_result, RecordKind.sample],
        config_schema=CONFIG_SCHEMA,
        counterpart="HTTP pushes of JSON arrays and CSV exports (tests send them through the API)",
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.record_kind: str = config.get("record_kind", RecordKind.test_result.value)
        self.mapping: dict[str, dict[str, str]] = config.get("mapping", {})
        self.status_codes = {fold_code(source): hub for source, hub in config.get("status_codes", {}).items()}
        self.delimiter: str = config.get("csv_delimiter", ",")
        self.zone: str | None = config.get("time_zone")

    async def run(self, context: AdapterContext) -> None:
        """Nothing to connect to: pushes arrive through the API. The endpoint is up while the worker runs."""
        await context.report_health(connected=True)
        await context.stopping.wait()

    # --- splitting a pushed body into row messages ------------------------------------------------------

    def messages_from_body(self, body: bytes, media_type: str, *, source: str) -> list[InboundMessage]:
        """One message per row of a pushed JSON array or CSV file; PushBodyError when the body is unreadable."""
        batch = hashlib.sha256(body).hexdigest()
        if media_type in JSON_TYPES:
            payloads = self._json_rows(body)
            content_type = "application/json"
        elif media_type in CSV_TYPES:
            payloads = self._csv_rows(body)
            content_type = "text/csv"
        else:
            raise PushBodyError("Push a JSON array (application/json) or a CSV file (text/csv).", http_status=415)
        if not payloads:
            raise PushBodyError("The body holds no rows.", http_status=422)
        if len(payloads) > MAX_ROWS:
            raise PushBodyError(f"{len(payloads)} rows; push at most {MAX_ROWS} at a time.", http_status=413)
        return [
            InboundMessage(
                payload=payload,
                content_type=content_type,
                source=source,
                transport=Transport.http_push,
                stream="push",
                headers={"batch-sha256": batch, "row": str(number)},
            )
            for number, payload in enumerate(payloads, start=1)
        ]

    @staticmethod
    def _json_rows(body: bytes) -> list[bytes]:
        try:
            text = body.decode("utf-8-sig")
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise PushBodyError(f"The body is not JSON: {error}") from error
        if not isinstance(data, list):
            raise PushBodyError("Push a JSON array of row objects.", http_status=422)
        # Each row's exact text is cut out of the body (numbers keep their digits, keys their order).
        decoder = json.JSONDecoder()
        rows: list[bytes] = []
        position = _skip_space(text, text.index("[") + 1)
        while text[position] != "]":
            _, end = decoder.raw_decode(text, position)
            rows.append(text[position:end].encode())
            position = _skip_space(text, end)
            if text[position] == ",":
                position = _skip_space(text, position + 1)
        return rows

    def _csv_rows(self, body: bytes) -> list[bytes]:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PushBodyError(f"The CSV is not UTF-8: {error}") from error
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter))
        except csv.Error as error:
            raise PushBodyError(f"The CSV cannot be read: {error}") from error
        rows = [row for row in rows if any(cell.strip() for cell in row)]
        if not rows:
            raise PushBodyError("The CSV is empty.", http_status=422)
        header, data = rows[0], rows[1:]
        if len(set(header)) != len(header) or not all(name.strip() for name in header):
            raise PushBodyError("The CSV header must name every column once.", http_status=422)
        payloads = []
        for row in data:
            out = io.StringIO(newline="")
            writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\n")
            writer.writerow(header)
            writer.writerow(row)
            payloads.append(out.getvalue().encode())
        return payloads

    # --- parsing one row --------------------------------------------------------------------------------

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """The canonical record of one pushed row."""
        return [self.record_from_row(self._row(message))]

    def _row(self, message: InboundMessage) -> dict[str, Any]:
        if message.content_type in JSON_TYPES:
            try:
                row = json.loads(message.payload, parse_float=Decimal)
            except (ValueError, UnicodeDecodeError) as error:
                raise QuarantineError(MALFORMED_PAYLOAD, f"Not JSON: {error}") from error
            if not isinstance(row, dict):
                raise QuarantineError(MALFORMED_PAYLOAD, f"A row must be a JSON object, not {type(row).__name__}")
            nested = row.get("instrument")
            if isinstance(nested, dict):  # {"instrument": {"serial": …}} reads as the column "instrument.serial"
                row = {key: value for key, value in row.items() if key != "instrument"}
                row.update({f"instrument.{key}": value for key, value in nested.items()})
            return row
        if message.content_type in CSV_TYPES:
            try:
                reader = csv.DictReader(
                    io.StringIO(message.payload.decode("utf-8-sig"), newline=""), delimiter=self.delimiter
                )
                rows = list(reader)
            except (UnicodeDecodeError, csv.Error) as error:
                raise QuarantineError(MALFORMED_PAYLOAD, f"Unreadable CSV row: {error}") from error
            if len(rows) != 1:
                raise QuarantineError(MALFORMED_PAYLOAD, f"Expected one CSV row under the header, got {len(rows)}")
            if None in rows[0]:
                raise QuarantineError(MALFORMED_PAYLOAD, "The row has more cells than the header has columns")
            return dict(rows[0])
        raise QuarantineError(UNSUPPORTED_CONTENT_TYPE, f"Cannot read {message.content_type!r} rows")

    def _rules(self, row: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
        """(source column, canonical field, transform, fixed unit) for the row's columns."""
        if self.mapping:
            return [
                (column, spec["field"], spec.get("transform") or _default_transform(spec["field"]), spec.get("unit"))
                for column, spec in self.mapping.items()
            ]
        known = set(_target_fields())
        rules: list[tuple[str, str, str, str | None]] = []
        for column in row:
            field = column if column in known else _camel_to_snake(column)
            if field in known:
                rules.append((column, field, _default_transform(field), None))
        return rules

    def record_from_row(self, row: dict[str, Any]) -> CanonicalRecord:
        """Map, transform and validate one row; QuarantineError with a code when it cannot be a record."""
        fields: dict[str, Any] = {}
        instrument: dict[str, Any] = {}
        fixed_unit: str | None = None
        for column, field, transform, unit in self._rules(row):
            raw = row.get(column)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            value = self._transform(transform, raw, column)
            if field == "value" and isinstance(value, tuple):
                fields["operator"], fields["value"] = value
                fixed_unit = unit or fixed_unit
            elif field.startswith("instrument."):
                instrument[field.removeprefix("instrument.")] = value
            elif field == "status":
                fields["status"], fields["source_status"] = value, str(raw).strip()[:300]
            else:
                fields[field] = value[1] if isinstance(value, tuple) else value
        if fixed_unit and "unit" not in fields:
            fields["unit"] = normalise_unit(fixed_unit)
        return self._validated(fields, instrument)

    def _transform(self, transform: str, raw: Any, column: str) -> Any:
        if transform == "censored":
            censored = parse_censored(raw if not isinstance(raw, str) else raw.strip())
            return (censored.operator, censored.value)
        if transform == "decimal":
            return parse_decimal(raw)
        text = str(raw).strip()
        if transform == "datetime":
            return parse_time(text, zone=self.zone)
        if transform == "unit":
            return normalise_unit(text)
        if transform == "status":
            hub = self.status_codes.get(fold_code(text))
            return hub if hub is not None else map_code(_GENERIC_CODE_LISTS[self.record_kind], text)
        if transform == "upper":
            return text.upper()
        if transform == "lower":
            return text.lower()
        return text

    def _validated(self, fields: dict[str, Any], instrument: dict[str, Any]) -> CanonicalRecord:
        model = _RECORD_MODELS[self.record_kind]
        fields.setdefault("lab_id", self.config.get("lab_id"))
        if "status" not in fields and self.config.get("default_status"):
            fields["status"] = self.config["default_status"]
        if model is TestResult:
            if not fields.get("sample_id"):
                raise QuarantineError(MISSING_IDENTIFIER, "The row has no sample id")
            if not fields.get("test_item"):
                raise QuarantineError(MISSING_IDENTIFIER, "The row has no test item")
            fields.setdefault("result_id", f"{fields['sample_id']}/{fields['test_item']}")
            if instrument:
                missing = [name for name in ("manufacturer", "model", "serial") if not instrument.get(name)]
                if missing:
                    raise QuarantineError(MISSING_IDENTIFIER, f"The instrument has no {', '.join(missing)}")
                fields["instrument"] = InstrumentRef(**instrument)
            if fields.get("value") is not None and not fields.get("unit"):
                raise QuarantineError(INVALID_VALUE, "A numeric result needs a unit (a unit column or a mapped unit)")
        elif not fields.get("sample_id"):
            raise QuarantineError(MISSING_IDENTIFIER, "The row has no sample id")
        if "status" not in fields:
            raise QuarantineError(UNKNOWN_CODE, "The row has no status and the instance no default_status")
        try:
            return model.model_validate({key: value for key, value in fields.items() if value is not None})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
            )
            raise QuarantineError(SCHEMA_VIOLATION, problems[:1000]) from error

    # --- what it publishes ------------------------------------------------------------------------------

    def field_mappings(self) -> list[FieldMapping]:
        """The configured column mapping (or the identity mapping of canonical field names)."""
        if self.mapping:
            kind = RecordKind(self.record_kind)
            return [
                FieldMapping(
                    record_kind=kind,
                    source_field=column,
                    canonical_field=spec["field"],
                    unit=normalise_unit(spec["unit"]) if spec.get("unit") else None,
                    transform=spec.get("transform") or _default_transform(spec["field"]),
                )
                for column, spec in self.mapping.items()
            ]
        # Without a mapping, a column named like a canonical field is that field, whichever kind is configured.
        return [
            FieldMapping(
                record_kind=RecordKind(kind_name),
                source_field=name,
                canonical_field=name,
                transform=_default_transform(name),
            )
            for kind_name, model in _RECORD_MODELS.items()
            for name in model.model_fields
            if name not in _NOT_FROM_SOURCE
        ] + [
            FieldMapping(
                record_kind=RecordKind.test_result,
                source_field=f"instrument.{name}",
                canonical_field=f"instrument.{name}",
            )
            for name in INSTRUMENT_FIELDS
        ]

    def code_lists(self) -> dict[str, dict[str, str]]:
        """The configured status codes over the generic code list of the record kind."""
        name = _GENERIC_CODE_LISTS[self.record_kind]
        return {name: {**source_code_list(name), **self.config.get("status_codes", {})}}

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """A JSON row and a CSV row (default configuration: canonical column names)."""
        json_row = {
            "sampleId": "S-2026-0001",
            "testItem": "Pb",
            "method": "GB 5009.12-2023",
            "value": "<0.010",
            "unit": "mg/kg",
            "measuredAt": "2026-03-02T10:15:00+08:00",
            "status": "verified",
        }
        csv_row = (
            "sample_id,test_item,value,unit,measured_at,status\n"
            "S-2026-0002,Cd,0.0250,mg/kg,2026-03-02T11:00:00+08:00,pending\n"
        )
        return [
            GoldenFixture(
                name="json-row",
                message=InboundMessage(
                    payload=json.dumps(json_row).encode(),
                    content_type="application/json",
                    source="fixture:json-row",
                    transport=Transport.http_push,
                    stream="push",
                ),
                expected=[
                    {
                        "schema_version": "1.0",
                        "record_type": "test-result",
                        "result_id": "S-2026-0001/Pb",
                        "sample_id": "S-2026-0001",
                        "test_item": "Pb",
                        "method": "GB 5009.12-2023",
                        "value": "0.010",
                        "operator": "<",
                        "unit": "mg/kg",
                        "measured_at": "2026-03-02T02:15:00Z",
                        "status": "verified",
                        "source_status": "verified",
                    }
                ],
            ),
            GoldenFixture(
                name="csv-row",
                message=InboundMessage(
                    payload=csv_row.encode(),
                    content_type="text/csv",
                    source="fixture:csv-row",
                    transport=Transport.http_push,
                    stream="push",
                ),
                expected=[
                    {
                        "schema_version": "1.0",
                        "record_type": "test-result",
                        "result_id": "S-2026-0002/Cd",
                        "sample_id": "S-2026-0002",
                        "test_item": "Cd",
                        "value": "0.0250",
                        "unit": "mg/kg",
                        "measured_at": "2026-03-02T03:00:00Z",
                        "status": "unverified",
                        "source_status": "pending",
                    }
                ],
            ),
        ]


# --- the push endpoint's work -------------------------------------------------------------------------------


class PushedRow(ApiSchema):
    """What became of one pushed row (rows count from 1)."""

    row: int
    outcome: str = PydanticField(description="accepted, quarantined or duplicate")
    message_id: int | None = PydanticField(default=None, description="The landed message (none for a duplicate)")
    error_code: str | None = None
    error_detail: str | None = None


class PushReport(ApiSchema):
    """The landing report of a push: counts reconcile (received = accepted + quarantined + duplicates)."""

    received: int
    accepted: int
    quarantined: int
    duplicates: int
    rows: list[PushedRow]


class NotAPushAdapterError(InvalidInputError):
    """The instance's plug-in does not take pushes."""

    code = "not-a-push-adapter"
    title = "The adapter does not take pushes"


class InstanceDisabledError(ConflictError):
    """The instance is switched off."""

    code = "instance-disabled"
    title = "Adapter instance disabled"


def land_push(
    session: Session,
    *,
    instance: AdapterInstance,
    adapter: Adapter,
    body: bytes,
    media_type: str,
    source: str,
    clock: Clock,
    max_message_bytes: int,
) -> PushReport:
    """Split a pushed body into row messages and land them; per-row outcomes in row order."""
    if not instance.enabled:
        raise InstanceDisabledError(f"Adapter instance {instance.name!r} is disabled.")
    if Transport.http_push not in adapter.manifest.transports:
        raise NotAPushAdapterError(
            f"{instance.adapter} does not take pushes (transports: {', '.join(adapter.manifest.transports)})."
        )
    if isinstance(adapter, LimsPushAdapter):
        messages = adapter.messages_from_body(body, media_type, source=source)
    else:  # another push plug-in: the body is one message, its parser decides
        messages = [
            InboundMessage(
                payload=body, content_type=media_type, source=source, transport=Transport.http_push, stream="push"
            )
        ]
    report = land_messages(
        session,
        instance=instance,
        adapter=adapter,
        messages=messages,
        clock=clock,
        max_message_bytes=max_message_bytes,
    )
    landed = {
        row.sha256: row
        for row in session.exec(
            select(LandingMessage)
            .options(defer(LandingMessage.raw))  # type: ignore[arg-type]
            .where(col(LandingMessage.id).in_(report.message_ids))
        )
    }
    rows: list[PushedRow] = []
    reported: set[str] = set()
    for number, message in enumerate(messages, start=1):
        digest = message_sha256(message.payload)
        stored = landed.get(digest)
        if stored is None or digest in reported:
            rows.append(PushedRow(row=number, outcome="duplicate"))
            continue
        reported.add(digest)
        rows.append(
            PushedRow(
                row=number,
                outcome=stored.outcome,
                message_id=stored.id,
                error_code=stored.error_code,
                error_detail=stored.error_detail,
            )
        )
    health = session.get(AdapterHealth, instance.id) or AdapterHealth(instance_id=instance.id)
    health.connected, health.last_seen, health.last_error, health.checked_at = True, clock.now(), None, clock.now()
    session.add(health)
    return PushReport(
        received=report.received,
        accepted=report.accepted,
        quarantined=report.quarantined,
        duplicates=report.duplicates,
        rows=rows,
    )
