"""A tiny adapter for landing tests: JSON readings `{"sensor", "quantity", "value", "unit", "at"}` → records."""

import json
from decimal import Decimal
from typing import Any, ClassVar

from adapters.canonical import CanonicalRecord, EnvironmentReading, RecordKind
from adapters.framework import (
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    Adapter,
    AdapterContext,
    AdapterManifest,
    InboundMessage,
    QuarantineError,
    SourceKind,
    Transport,
)


class EchoAdapter(Adapter):
    """Parses JSON readings; `{"explode": true}` makes the parser crash like a buggy plug-in."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="echo-test",
        version="0.1.0",
        title="Echo (tests)",
        source_kind=SourceKind.iot,
        transports=[Transport.mqtt],
        emits=[RecordKind.environment_reading],
        config_schema={"type": "object", "properties": {"room": {"type": "string"}}, "additionalProperties": False},
        counterpart="the tests themselves",
    )

    async def run(self, context: AdapterContext) -> None:
        """Nothing to connect to: tests call land directly."""
        await context.stopping.wait()

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """One environment reading per JSON object."""
        try:
            data: dict[str, Any] = json.loads(message.payload, parse_float=Decimal)
        except ValueError as error:
            raise QuarantineError(MALFORMED_PAYLOAD, str(error)) from error
        if data.get("explode"):
            raise RuntimeError("the parser fell over")
        if "sensor" not in data:
            raise QuarantineError(MISSING_IDENTIFIER, "no sensor")
        return [
            EnvironmentReading(
                room=self.config.get("room", "R1"),
                sensor_id=data["sensor"],
                quantity=data.get("quantity", "temperature"),
                value=data["value"],
                unit=data.get("unit", "Cel"),
                observed_at=data["at"],
            )
        ]
