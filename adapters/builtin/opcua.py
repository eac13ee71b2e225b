"""OPC UA instruments: a data-change subscription on their status variables, and method calls as write-back.

Each configured node is one instrument status variable, mapped to the instrument's authoritative identity
(manufacturer + model + serial). A data change is landed as a small JSON document — the node id, the value
with its OPC UA status code and timestamps, and the configured identity of the node at that moment — so a
replay of the landing zone never depends on today's configuration. The de-duplication key is the node id
plus the source timestamp: after a reconnect the server re-sends the current value, and it lands once.

Write-back (`opcua.call`) calls an OPC UA method with the command's idempotency key as its first argument,
so a server that remembers keys executes the call once however often the hub retries.
"""

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from asyncua import Client, Node, ua

from adapters.canonical import CanonicalRecord, EquipmentStatus, InstrumentRef, RecordKind
from adapters.codelists import EQUIPMENT_STATUS, fold_code, source_code_list
from adapters.framework import (
    INVALID_VALUE,
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    UNKNOWN_CODE,
    UNSUPPORTED_CONTENT_TYPE,
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
from storage.errors import InvalidInputError

CONTENT_TYPE = "application/vnd.qihub.opcua-datachange+json"
CALL_COMMAND = "opcua.call"

# Numeric instrument state codes of lab device servers → hub equipment statuses; status words ("Running",
# "Error", "待机") use the hub's generic equipment code list. A deployment whose server uses other codes adds
# or overrides them with `status_codes` in its configuration.
NUMERIC_STATUS_CODES: dict[str, str] = {"0": "offline", "1": "idle", "2": "running", "3": "fault", "4": "maintenance"}


_INSTRUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["manufacturer", "model", "serial"],
    "properties": {
        "manufacturer": {"type": "string", "minLength": 1},
        "model": {"type": "string", "minLength": 1},
        "serial": {"type": "string", "minLength": 1},
        "asset_id": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint", "variables"],
    "properties": {
        "endpoint": {"type": "string", "pattern": "^opc\\.tcp://"},
        "variables": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["node_id", "instrument"],
                "properties": {
                    "node_id": {"type": "string", "minLength": 1},
                    "instrument": _INSTRUMENT_SCHEMA,
                    "room": {"type": "string", "minLength": 1},
                },
                "additionalProperties": False,
            },
        },
        "status_codes": {"type": "object", "additionalProperties": {"type": "string"}},
        "methods": {
            "type": "object",
            "description": "Command targets: a name → the object node id and the method node id to call",
            "additionalProperties": {
                "type": "object",
                "required": ["object_id", "method_id"],
                "properties": {"object_id": {"type": "string"}, "method_id": {"type": "string"}},
                "additionalProperties": False,
            },
        },
        "publishing_interval_ms": {"type": "integer", "minimum": 10, "maximum": 60000},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
    },
    "additionalProperties": False,
    "examples": [
        {
            "endpoint": "opc.tcp://127.0.0.1:4840/lab/",
            "variables": [
                {
                    "node_id": "ns=2;s=Balance-XPR205.Status",
                    "instrument": {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B123456789"},
                    "room": "R-101",
                }
            ],
            "methods": {"balance": {"object_id": "ns=2;s=Balance-XPR205", "method_id": "ns=2;s=Balance-XPR205.Call"}},
        }
    ],
}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # asyncua gives naive UTC datetimes
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _plain(value: Any) -> Any:
    """A JSON value of an OPC UA variant value (enumerations and localized text become text)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if hasattr(value, "value") and isinstance(value.value, int):  # IntEnum
        return int(value.value)
    return str(value)


def datachange_payload(
    *, node_id: str, data_value: ua.DataValue, variable: dict[str, Any]
) -> tuple[bytes, datetime | None]:
    """The landed JSON document of one data change, and its source time."""
    source_time = data_value.SourceTimestamp or data_value.ServerTimestamp
    if source_time is not None and source_time.tzinfo is None:
        source_time = source_time.replace(tzinfo=UTC)
    status = data_value.StatusCode
    document = {
        "nodeId": node_id,
        "value": _plain(data_value.Value.Value if data_value.Value is not None else None),
        "statusCode": status.name if status is not None else "Good",
        "sourceTimestamp": _iso(data_value.SourceTimestamp),
        "serverTimestamp": _iso(data_value.ServerTimestamp),
        "instrument": variable["instrument"],
        **({"room": variable["room"]} if variable.get("room") else {}),
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode(), source_time


class OpcUaAdapter(Adapter):
    """Instrument status from an OPC UA server (data-change subscription), write-back by method calls."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="opcua",
        version="1.0.0",
        title="OPC UA instrument status",
        description="Subscribes to instrument status variables of an OPC UA server; writes back by method calls.",
        source_kind=SourceKind.instrument,
        transports=[Transport.opcua],
        emits=[RecordKind.equipment_status],
        commands=[CALL_COMMAND],
        config_schema=CONFIG_SCHEMA,
        counterpart="OPC UA server (asyncua server started in the tests)",
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._variables: dict[str, dict[str, Any]] = {item["node_id"]: item for item in config["variables"]}
        self._status_codes = {
            **NUMERIC_STATUS_CODES,
            **source_code_list("generic.equipment"),
            **config.get("status_codes", {}),
        }
        unknown = sorted(set(config.get("status_codes", {}).values()) - EQUIPMENT_STATUS.codes)
        if unknown:
            raise InvalidInputError(
                f"status_codes map to terms that are not hub equipment statuses: {', '.join(unknown)}",
                extra={"allowed": sorted(EQUIPMENT_STATUS.codes)},
            )
        self._folded_codes = {fold_code(code): status for code, status in self._status_codes.items()}
        self._timeout_s = float(config.get("timeout_s", 4.0))

    # --- reading -----------------------------------------------------------------------------------------

    async def run(self, context: AdapterContext) -> None:
        """Subscribe to the status variables and land each change; reconnect with backoff when the link drops."""
        attempt = 0
        while not context.stopping.is_set():
            attempt += 1
            try:
                await self._subscribe_until_stopped(context, attempt)
                attempt = 0
            except (OSError, TimeoutError, ua.UaError, ConnectionError) as error:
                await context.report_health(connected=False, error=f"{type(error).__name__}: {error}")
                delay = await context.retry_delay("connect", attempt, str(error) or type(error).__name__)
                del delay  # retry_delay has already slept the backoff

    async def _subscribe_until_stopped(self, context: AdapterContext, attempt: int) -> None:
        changes: asyncio.Queue[tuple[str, ua.DataValue]] = asyncio.Queue()

        class Handler:
            def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
                changes.put_nowait((node.nodeid.to_string(), data.monitored_item.Value))

        client = Client(self.config["endpoint"], timeout=self._timeout_s)
        await client.connect()
        try:
            subscription = await client.create_subscription(self.config.get("publishing_interval_ms", 100), Handler())
            nodes = [client.get_node(node_id) for node_id in self._variables]
            await subscription.subscribe_data_change(nodes)
            await context.record_success("connect", attempt)
            await context.report_health(connected=True, lag_s=0.0)
            while not context.stopping.is_set():
                batch = await self._next_batch(changes, context.stopping)
                if batch:
                    messages = [self._message(node_id, data_value) for node_id, data_value in batch]
                    await context.land(messages)
                    lag = (
                        max((context.clock.now() - m.source_time).total_seconds() for m in messages if m.source_time)
                        if any(m.source_time for m in messages)
                        else None
                    )
                    await context.report_health(connected=True, lag_s=max(lag, 0.0) if lag is not None else None)
                else:
                    # No change for a while: ask the server whether the session is still alive.
                    await client.check_connection()
                    await context.report_health(connected=True)
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    @staticmethod
    async def _next_batch(
        changes: "asyncio.Queue[tuple[str, ua.DataValue]]", stopping: asyncio.Event
    ) -> list[tuple[str, ua.DataValue]]:
        batch: list[tuple[str, ua.DataValue]] = []
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            batch.append(await asyncio.wait_for(changes.get(), timeout=0.5))
        while not changes.empty() and len(batch) < 500:
            batch.append(changes.get_nowait())
        return batch

    def _message(self, node_id: str, data_value: ua.DataValue) -> InboundMessage:
        variable = self._variables.get(node_id) or self._variables[_normalise_node_id(node_id, self._variables)]
        payload, source_time = datachange_payload(node_id=node_id, data_value=data_value, variable=variable)
        stamp = _iso(source_time) or "no-timestamp"
        return InboundMessage(
            payload=payload,
            content_type=CONTENT_TYPE,
            source=f"{self.config['endpoint'].rstrip('/')}#{node_id}",
            transport=Transport.opcua,
            stream=node_id,
            source_time=source_time,
            cursor=stamp,
            dedup_key=f"{node_id}@{stamp}",
        )

    async def check_health(self) -> bool:
        """Whether the server answers: connect, read its state, disconnect."""
        client = Client(self.config["endpoint"], timeout=self._timeout_s)
        try:
            await client.connect()
        except (OSError, TimeoutError, ua.UaError):
            return False
        try:
            state = await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
            return int(state) == int(ua.ServerState.Running)
        except (OSError, TimeoutError, ua.UaError):
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    # --- parsing -----------------------------------------------------------------------------------------

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """The equipment status a data change reports."""
        if message.content_type.split(";")[0].strip() not in (CONTENT_TYPE, "application/json"):
            raise QuarantineError(UNSUPPORTED_CONTENT_TYPE, f"cannot read {message.content_type}")
        try:
            document = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise QuarantineError(MALFORMED_PAYLOAD, f"not JSON: {error}") from error
        if not isinstance(document, dict):
            raise QuarantineError(MALFORMED_PAYLOAD, "a data change is a JSON object")
        node_id = document.get("nodeId")
        instrument = document.get("instrument")
        if not node_id or not isinstance(instrument, dict):
            raise QuarantineError(MISSING_IDENTIFIER, "the node id or the instrument identity is missing")
        try:
            reference = InstrumentRef.model_validate(instrument)
        except ValueError as error:
            raise QuarantineError(MISSING_IDENTIFIER, f"instrument identity incomplete: {error}") from error
        stamp = document.get("sourceTimestamp") or document.get("serverTimestamp")
        if not stamp:
            raise QuarantineError(INVALID_VALUE, "the data change has no timestamp")
        try:
            observed_at = datetime.fromisoformat(stamp)
        except (TypeError, ValueError) as error:
            raise QuarantineError(INVALID_VALUE, f"bad timestamp {stamp!r}") from error
        if observed_at.tzinfo is None:
            raise QuarantineError(INVALID_VALUE, f"timestamp without offset {stamp!r}")
        code = document.get("value")
        if not str(document.get("statusCode", "Good")).startswith("Good"):
            # An uncertain or bad value says the instrument link is broken, not what state it is in.
            status, source_status = "offline", str(document.get("statusCode"))
        else:
            if code is None or isinstance(code, bool | dict | list):
                raise QuarantineError(INVALID_VALUE, f"status value {code!r} is not a code")
            source_status = str(code)
            status = self._folded_codes.get(fold_code(source_status), "")
            if not status:
                raise QuarantineError(UNKNOWN_CODE, f"status code {source_status!r} is not in the code list")
        return [
            EquipmentStatus(
                instrument=reference,
                status=status,
                source_status=source_status,
                room=document.get("room"),
                observed_at=observed_at,
                source_time=observed_at,
            )
        ]

    def field_mappings(self) -> list[FieldMapping]:
        """How a data change document becomes an equipment status."""
        kind = RecordKind.equipment_status
        return [
            FieldMapping(
                record_kind=kind, source_field="instrument.manufacturer", canonical_field="instrument.manufacturer"
            ),
            FieldMapping(record_kind=kind, source_field="instrument.model", canonical_field="instrument.model"),
            FieldMapping(record_kind=kind, source_field="instrument.serial", canonical_field="instrument.serial"),
            FieldMapping(record_kind=kind, source_field="instrument.asset_id", canonical_field="instrument.asset_id"),
            FieldMapping(
                record_kind=kind, source_field="value", canonical_field="status", transform="code-list:status"
            ),
            FieldMapping(record_kind=kind, source_field="value", canonical_field="source_status", transform="text"),
            FieldMapping(record_kind=kind, source_field="room", canonical_field="room"),
            FieldMapping(
                record_kind=kind, source_field="sourceTimestamp", canonical_field="observed_at", transform="iso8601-utc"
            ),
            FieldMapping(
                record_kind=kind, source_field="sourceTimestamp", canonical_field="source_time", transform="iso8601-utc"
            ),
        ]

    def code_lists(self) -> dict[str, dict[str, str]]:
        """Instrument state codes → hub equipment statuses (configurable per deployment)."""
        return {"status": dict(self._status_codes)}

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """A running balance, a fault given as text, and a bad-quality value that means offline."""
        instrument = {"manufacturer": "Mettler Toledo", "model": "XPR205", "serial": "B123456789"}
        expected_instrument = dict(instrument)

        def fixture(
            name: str, second: int, value: Any, status_code: str, expected_status: str, source_status: str
        ) -> GoldenFixture:
            document = {
                "nodeId": "ns=2;s=Balance-XPR205.Status",
                "value": value,
                "statusCode": status_code,
                "sourceTimestamp": f"2026-03-02T08:15:{second:02d}.250000+00:00",
                "serverTimestamp": f"2026-03-02T08:15:{second:02d}.300000+00:00",
                "instrument": instrument,
                "room": "R-101",
            }
            return GoldenFixture(
                name=name,
                message=InboundMessage(
                    payload=json.dumps(document).encode(),
                    content_type=CONTENT_TYPE,
                    source="opc.tcp://127.0.0.1:4840/lab#ns=2;s=Balance-XPR205.Status",
                    transport=Transport.opcua,
                    stream="ns=2;s=Balance-XPR205.Status",
                    dedup_key=f"ns=2;s=Balance-XPR205.Status@2026-03-02T08:15:{second:02d}.250000+00:00",
                ),
                expected=[
                    {
                        "record_type": "equipment-status",
                        "schema_version": "1.0",
                        "instrument": expected_instrument,
                        "status": expected_status,
                        "source_status": source_status,
                        "room": "R-101",
                        "observed_at": f"2026-03-02T08:15:{second:02d}.250000Z",
                        "source_time": f"2026-03-02T08:15:{second:02d}.250000Z",
                    }
                ],
            )

        return [
            fixture("running", 0, 2, "Good", "running", "2"),
            fixture("fault-as-text", 1, "Fault", "Good", "fault", "Fault"),
            fixture("bad-quality-is-offline", 2, 2, "BadCommunicationError", "offline", "BadCommunicationError"),
        ]

    # --- write-back --------------------------------------------------------------------------------------

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Call the target's OPC UA method with the idempotency key first, then the payload's arguments."""
        if command.kind != CALL_COMMAND:
            raise CommandFailedError(f"opcua executes only {CALL_COMMAND}, not {command.kind}", retryable=False)
        target = self.config.get("methods", {}).get(command.target)
        if target is None:
            raise CommandFailedError(f"no method configured for target {command.target!r}", retryable=False)
        arguments = command.payload.get("arguments", [])
        if not isinstance(arguments, list):
            raise CommandFailedError("payload.arguments must be a list", retryable=False)
        client = Client(self.config["endpoint"], timeout=self._timeout_s)
        try:
            await client.connect()
        except (OSError, TimeoutError, ua.UaError) as error:
            raise CommandFailedError(f"cannot reach {self.config['endpoint']}: {error}") from error
        try:
            parent = client.get_node(target["object_id"])
            result = await parent.call_method(
                ua.NodeId.from_string(target["method_id"]),
                ua.Variant(command.idempotency_key, ua.VariantType.String),
                *arguments,
            )
        except ua.UaStatusCodeError as error:
            # A method that rejects its input will reject it again; a server-side failure may pass later.
            retryable = error.code not in (ua.StatusCodes.BadInvalidArgument, ua.StatusCodes.BadMethodInvalid)
            raise CommandFailedError(f"method call failed: {error}", retryable=retryable) from error
        except (OSError, TimeoutError, ua.UaError) as error:
            raise CommandFailedError(f"method call failed: {error}") from error
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
        outputs = result if isinstance(result, list) else [result]
        return {
            "method": target["method_id"],
            "idempotency_key": command.idempotency_key,
            "outputs": [_plain(value) for value in outputs],
        }


def _normalise_node_id(node_id: str, variables: dict[str, dict[str, Any]]) -> str:
    """The configured spelling of a node id the server reported in another spelling (e.g. 'ns=2;i=5')."""
    wanted = ua.NodeId.from_string(node_id)
    for configured in variables:
        if ua.NodeId.from_string(configured) == wanted:
            return configured
    raise KeyError(node_id)
