"""The contract between the hub and an adapter plug-in.

A plug-in is a class deriving from `Adapter`, published under the entry-point group `qihub.adapters`
(`[project.entry-points."qihub.adapters"] my-lims = "my_package:MyLimsAdapter"`). Its `manifest` says what
it is; the hub does the rest around it:

* `run(context)` connects to the source and hands raw payloads to `context.land(...)` as `InboundMessage`s;
  the hub stores them raw with their provenance envelope, de-duplicates, checkpoints and retries.
* `parse(message)` turns one payload into canonical records, or raises `QuarantineError` with a
  machine-readable code; it must be pure (the conformance kit calls it on golden fixtures).
* `execute_command(command)` writes back to the source (optional); the hub retries and dead-letters.
* `field_mappings()` and `code_lists()` publish how source fields and codes become canonical ones.
"""

import abc
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from adapters.canonical import CanonicalRecord, RecordKind
from storage.errors import InvalidInputError


class SourceKind(StrEnum):
    """What sort of system the adapter talks to."""

    lims = "lims"
    iot = "iot"
    instrument = "instrument"
    platform = "platform"
    file = "file"


class Transport(StrEnum):
    """How payloads travel from the source to the hub."""

    http_poll = "http-poll"
    http_push = "http-push"
    webhook = "webhook"
    mqtt = "mqtt"
    opcua = "opcua"
    file_drop = "file-drop"


class AdapterManifest(BaseModel):
    """What a plug-in declares about itself (the hub checks, never trusts, the rest)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,60}$", description="Entry-point name")
    version: str = Field(min_length=1, max_length=50)
    title: str
    description: str = ""
    source_kind: SourceKind
    transports: list[Transport]
    emits: list[RecordKind] = Field(description="Canonical record kinds it produces")
    commands: list[str] = Field(default_factory=list, description="Write-back command kinds it executes")
    config_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    counterpart: str = Field(description="What it was tested against, e.g. 'SENAITE 2.x JSON API v1'")
    simulator: bool = Field(default=False, description="True when the counterpart is a simulator")


@dataclass(frozen=True)
class InboundMessage:
    """One raw payload as received, with what the source told about it."""

    payload: bytes
    content_type: str
    source: str  # topic URL, endpoint URL, OPC UA node id, file name
    transport: Transport
    stream: str = "default"  # checkpoints are per stream (topic, endpoint, node)
    source_time: datetime | None = None
    cursor: str | None = None  # position in the stream after this message (checkpointed on landing)
    dedup_key: str | None = None  # the source's own message identity; the sha256 when None
    headers: dict[str, str] = field(default_factory=dict)


class QuarantineError(Exception):
    """A payload that cannot become canonical records; `code` is machine-readable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# Quarantine codes shared by all adapters (plug-ins may add their own, lowercase-with-dashes).
MALFORMED_PAYLOAD = "malformed-payload"
PAYLOAD_TOO_LARGE = "payload-too-large"
UNSUPPORTED_CONTENT_TYPE = "unsupported-content-type"
MISSING_IDENTIFIER = "missing-identifier"
UNKNOWN_UNIT = "unknown-unit"
INVALID_VALUE = "invalid-value"
SCHEMA_VIOLATION = "schema-violation"
UNKNOWN_CODE = "unknown-code"


class FieldMapping(BaseModel):
    """How one source field becomes one canonical field."""

    record_kind: RecordKind
    source_field: str
    canonical_field: str
    unit: str | None = None
    transform: str = "copy"

    @classmethod
    def table(cls, rows: list[tuple[RecordKind, str, str, str | None, str]]) -> list["FieldMapping"]:
        """Mappings from rows of (record kind, source field, canonical field, unit, transform)."""
        return [
            cls(record_kind=kind, source_field=source, canonical_field=target, unit=unit, transform=transform)
            for kind, source, target, unit, transform in rows
        ]


@dataclass(frozen=True)
class GoldenFixture:
    """A payload and the canonical JSON the adapter must produce from it (conformance kit, L2.1)."""

    name: str
    message: InboundMessage
    expected: list[dict[str, Any]]


@dataclass(frozen=True)
class CommandRequest:
    """A write-back the hub asks the adapter to perform on its source."""

    id: str
    kind: str
    target: str
    payload: dict[str, Any]
    idempotency_key: str


class CommandFailedError(Exception):
    """A write-back failed; `retryable` tells the hub whether trying again can help."""

    def __init__(self, detail: str, *, retryable: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


@dataclass(frozen=True)
class LandingReport:
    """What one `land` call did."""

    received: int
    accepted: int
    quarantined: int
    duplicates: int
    message_ids: list[int] = field(default_factory=list)


class Clock(Protocol):
    """Where the hub's runtime gets the time (a controllable clock in rule scenarios)."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        """The clock's time."""
        return self._now

    def advance(self, **delta: float) -> datetime:
        """Move forward by a `timedelta(**delta)` and return the new time."""
        self._now += timedelta(**delta)
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to a time."""
        self._now = moment


class AdapterContext(Protocol):
    """What the hub gives a running adapter."""

    instance_id: str
    config: dict[str, Any]
    clock: Clock
    stopping: asyncio.Event

    async def land(self, messages: Sequence[InboundMessage]) -> LandingReport:
        """Store messages raw, parse, de-duplicate and checkpoint them in one transaction."""
        ...

    def checkpoint(self, stream: str = "default") -> str | None:
        """The committed cursor of a stream, where reading resumes."""
        ...

    async def report_health(self, *, connected: bool, lag_s: float | None = None, error: str | None = None) -> None:
        """Record the connection state (and lag) of the source."""
        ...

    async def retry_delay(self, operation: str, attempt: int, error: str | None) -> float:
        """Record a failed attempt and sleep the backoff before the next; raises when attempts are exhausted."""
        ...

    async def record_success(self, operation: str, attempt: int) -> None:
        """Record that an operation succeeded (after `attempt` tries)."""
        ...


class Adapter(abc.ABC):
    """Base of every adapter plug-in."""

    manifest: ClassVar[AdapterManifest]

    def __init__(self, config: dict[str, Any]) -> None:
        validate_config(self.manifest, config)
        self.config = config

    @abc.abstractmethod
    async def run(self, context: AdapterContext) -> None:
        """Connect and land messages until `context.stopping` is set (reconnecting with backoff)."""

    @abc.abstractmethod
    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """Canonical records of one payload; raise `QuarantineError` when it cannot be read."""

    async def check_health(self) -> bool:
        """Whether the source answers now (used by health probes)."""
        return True

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Perform a write-back and return the source's acknowledgement; raise `CommandFailedError`."""
        raise CommandFailedError(f"{self.manifest.name} does not execute commands", retryable=False)

    def field_mappings(self) -> list[FieldMapping]:
        """Source field → canonical field, unit and transform, for every field it fills."""
        return []

    def code_lists(self) -> dict[str, dict[str, str]]:
        """Source codes → hub vocabulary terms, per code list (statuses, flags, alarm types)."""
        return {}

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """Payloads with the canonical JSON they must produce (run by the conformance kit)."""
        return []


def validate_config(manifest: AdapterManifest, config: dict[str, Any]) -> None:
    """Raise `InvalidInputError` when a configuration breaks the plug-in's configuration schema."""
    validator = jsonschema.Draft202012Validator(manifest.config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.path))
    if errors:
        problems = [f"{'/'.join(str(p) for p in error.path) or '(root)'}: {error.message}" for error in errors]
        raise InvalidInputError(
            f"The configuration does not fit {manifest.name}'s schema: " + "; ".join(problems),
            extra={"errors": problems},
        )
