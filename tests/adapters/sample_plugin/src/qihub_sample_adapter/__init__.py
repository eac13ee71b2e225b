"""Lab balances that drop one JSON file per reading into a folder, as a qihub adapter plug-in (file drop).

A reading file::

    {"balance": {"manufacturer": "Sartorius", "model": "Cubis II MCA225S", "serial": "0039012345"},
     "room": "R-204", "state": "WEIGHING", "at": "2026-03-02T09:00:00+08:00",
     "temperature": {"value": "21.40", "unit": "°C"},
     "weighing": {"sample": "S-2026-0001", "item": "mass", "net": "12.3450", "unit": "g", "approved": true}}

becomes an equipment status, an environment reading (the balance's internal temperature sensor) and, when a
weighing is present, a test result. Files are read in name order; the cursor is the last file name landed.
Write-back `balance.tare` writes `<idempotency key>.json` into the command folder once; asking again with
the same key answers with the file already there.
"""

import asyncio
import contextlib
import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from adapters.canonical import (
    CanonicalRecord,
    EnvironmentReading,
    EquipmentStatus,
    InstrumentRef,
    RecordKind,
    TestResult,
)
from adapters.framework import (
    INVALID_VALUE,
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    UNKNOWN_CODE,
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
from adapters.units import normalise_unit

__version__ = "0.3.0"
CONTENT_TYPE = "application/json"
TARE = "balance.tare"
GOLDEN_DIR = Path(__file__).parent / "golden"

# The balance's own state words → hub equipment statuses.
STATES = {
    "IDLE": "idle",
    "STABLE": "idle",
    "WEIGHING": "running",
    "CALIBRATING": "maintenance",
    "LEVEL_ERROR": "fault",
    "OVERLOAD": "fault",
    "OFF": "offline",
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["directory"],
    "properties": {
        "directory": {"type": "string", "minLength": 1, "description": "Folder the balances write readings to"},
        "command_directory": {
            "type": "string",
            "minLength": 1,
            "description": "Folder the balances read commands from",
        },
        "lab_id": {"type": "string"},
        "poll_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    },
    "additionalProperties": False,
    "examples": [{"directory": "/var/lib/balances/readings", "command_directory": "/var/lib/balances/commands"}],
    "x-command-example": {"target": "0039012345", "payload": {"reason": "conformance"}},
}


class BalanceFileAdapter(Adapter):
    """Balance reading files (file drop) → equipment status, internal temperature and weighing results."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="sample-balance",
        version=__version__,
        title="Lab balances (file drop) — sample third-party plug-in",
        description="Reads balance reading files from a folder; tares balances through command files.",
        source_kind=SourceKind.instrument,
        transports=[Transport.file_drop],
        emits=[RecordKind.equipment_status, RecordKind.environment_reading, RecordKind.test_result],
        commands=[TARE],
        config_schema=CONFIG_SCHEMA,
        counterpart="a folder of balance reading files (written by the tests)",
    )

    @property
    def directory(self) -> Path:
        """Where reading files arrive."""
        return Path(self.config["directory"])

    async def run(self, context: AdapterContext) -> None:
        """Poll the folder; land new files in name order; back off while the folder cannot be read."""
        attempt = 0
        while not context.stopping.is_set():
            try:
                names = sorted(path.name for path in self.directory.iterdir() if path.suffix == ".json")
            except OSError as error:
                attempt += 1
                await context.report_health(connected=False, error=str(error))
                await context.retry_delay("list-folder", attempt, str(error))
                continue
            if attempt:
                await context.record_success("list-folder", attempt + 1)
                attempt = 0
            cursor = context.checkpoint()
            fresh = [name for name in names if cursor is None or name > cursor]
            messages = [self.message(self.directory / name) for name in fresh]
            if messages:
                await context.land(messages)
            await context.report_health(connected=True, lag_s=0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(context.stopping.wait(), timeout=float(self.config.get("poll_s", 0.2)))

    def message(self, path: Path) -> InboundMessage:
        """One reading file as an inbound message (the file name is its identity and cursor)."""
        stat = path.stat()
        return InboundMessage(
            payload=path.read_bytes(),
            content_type=CONTENT_TYPE,
            source=path.resolve().as_uri(),
            transport=Transport.file_drop,
            source_time=datetime.fromtimestamp(stat.st_mtime).astimezone(),
            cursor=path.name,
            dedup_key=path.name,
        )

    async def check_health(self) -> bool:
        """Whether the reading folder exists and can be listed."""
        try:
            next(iter(self.directory.iterdir()), None)
        except OSError:
            return False
        return True

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """The records of one reading file."""
        try:
            data = json.loads(message.payload, parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as error:
            raise QuarantineError(MALFORMED_PAYLOAD, f"not JSON: {error}") from error
        if not isinstance(data, dict):
            raise QuarantineError(MALFORMED_PAYLOAD, "a reading file holds one JSON object")
        balance = data.get("balance")
        if not isinstance(balance, dict) or not all(balance.get(k) for k in ("manufacturer", "model", "serial")):
            raise QuarantineError(MISSING_IDENTIFIER, "the balance's manufacturer, model and serial are required")
        instrument = InstrumentRef(
            manufacturer=balance["manufacturer"], model=balance["model"], serial=balance["serial"]
        )
        at = _time(data.get("at"))
        state = str(data.get("state", ""))
        if state.upper() not in STATES:
            raise QuarantineError(UNKNOWN_CODE, f"unknown balance state {state!r}")
        room = data.get("room")
        records: list[CanonicalRecord] = [
            EquipmentStatus(
                instrument=instrument,
                status=STATES[state.upper()],
                source_status=state,
                room=room,
                observed_at=at,
                source_time=at,
            )
        ]
        temperature = data.get("temperature")
        if isinstance(temperature, dict):
            records.append(
                EnvironmentReading(
                    room=room or "unknown",
                    sensor_id=f"{instrument.serial}-internal-temperature",
                    quantity="temperature",
                    value=_decimal(temperature.get("value")),
                    unit=normalise_unit(str(temperature.get("unit", ""))),
                    observed_at=at,
                    source_time=at,
                )
            )
        weighing = data.get("weighing")
        if isinstance(weighing, dict):
            if not weighing.get("sample"):
                raise QuarantineError(MISSING_IDENTIFIER, "a weighing needs its sample code")
            records.append(
                TestResult(
                    result_id=f"{instrument.serial}/{at.isoformat()}",
                    sample_id=str(weighing["sample"]),
                    lab_id=self.config.get("lab_id"),
                    test_item=str(weighing.get("item") or "mass"),
                    value=_decimal(weighing.get("net")),
                    unit=normalise_unit(str(weighing.get("unit", ""))),
                    instrument=instrument,
                    room=room,
                    measured_at=at,
                    status="verified" if weighing.get("approved") else "unverified",
                    source_status="approved" if weighing.get("approved") else "pending",
                    source_time=at,
                )
            )
        return records

    def field_mappings(self) -> list[FieldMapping]:
        """Reading-file fields → canonical fields."""
        status, env, result = RecordKind.equipment_status, RecordKind.environment_reading, RecordKind.test_result
        rows = [
            (status, "balance.manufacturer", "instrument.manufacturer", None, "copy"),
            (status, "balance.model", "instrument.model", None, "copy"),
            (status, "balance.serial", "instrument.serial", None, "copy"),
            (status, "state", "status", None, "code-list:state"),
            (status, "state", "source_status", None, "copy"),
            (status, "room", "room", None, "copy"),
            (status, "at", "observed_at", None, "iso8601-with-offset"),
            (env, "room", "room", None, "copy"),
            (env, "balance.serial", "sensor_id", None, "append '-internal-temperature'"),
            (env, "(constant)", "quantity", None, "'temperature'"),
            (env, "temperature.value", "value", None, "decimal-text"),
            (env, "temperature.unit", "unit", "Cel", "ucum"),
            (env, "at", "observed_at", None, "iso8601-with-offset"),
            (result, "balance.serial + at", "result_id", None, "join '/'"),
            (result, "weighing.sample", "sample_id", None, "copy"),
            (result, "weighing.item", "test_item", None, "copy (default 'mass')"),
            (result, "weighing.net", "value", None, "decimal-text"),
            (result, "weighing.unit", "unit", "g", "ucum"),
            (result, "weighing.approved", "status", None, "approved → verified, else unverified"),
            (result, "balance", "instrument", None, "manufacturer/model/serial"),
            (result, "at", "measured_at", None, "iso8601-with-offset"),
        ]
        return [
            FieldMapping(record_kind=kind, source_field=src, canonical_field=dst, unit=unit, transform=transform)
            for kind, src, dst, unit, transform in rows
        ]

    def code_lists(self) -> dict[str, dict[str, str]]:
        """Balance states → hub equipment statuses; approval flags → hub result statuses."""
        return {"state": dict(STATES), "approval": {"approved": "verified", "pending": "unverified"}}

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """Reading files with the canonical JSON they must produce (from the package's golden folder)."""
        fixtures = []
        for path in sorted(GOLDEN_DIR.glob("*.input.json")):
            name = path.name.removesuffix(".input.json")
            expected = json.loads((GOLDEN_DIR / f"{name}.expected.json").read_text())
            message = InboundMessage(
                payload=path.read_bytes(),
                content_type=CONTENT_TYPE,
                source=f"file:///golden/{path.name}",
                transport=Transport.file_drop,
                cursor=path.name,
                dedup_key=f"golden-{path.name}",
            )
            fixtures.append(GoldenFixture(name=name, message=message, expected=expected))
        return fixtures

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Tare a balance: write `<idempotency key>.json` into the command folder unless it is already there."""
        if command.kind != TARE:
            raise CommandFailedError(f"unsupported command {command.kind}", retryable=False)
        folder = self.config.get("command_directory")
        if not folder:
            raise CommandFailedError("no command_directory configured", retryable=False)
        path = Path(folder) / f"{command.idempotency_key}.json"
        body = {"command": "tare", "balance": command.target, **command.payload, "key": command.idempotency_key}
        try:
            with path.open("x") as handle:  # "x": created once, never overwritten
                json.dump(body, handle)
            written = True
        except FileExistsError:
            written = False
        except OSError as error:
            raise CommandFailedError(f"cannot write {path}: {error}") from error
        return {"file": path.name, "written": written}


def _time(value: Any) -> datetime:
    if not value:
        raise QuarantineError(INVALID_VALUE, "the reading has no time")
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as error:
        raise QuarantineError(INVALID_VALUE, f"bad time {value!r}") from error
    if moment.utcoffset() is None:
        raise QuarantineError(INVALID_VALUE, f"time without offset {value!r}")
    return moment


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as error:
        raise QuarantineError(INVALID_VALUE, f"{value!r} is not a number") from error
