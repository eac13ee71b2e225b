"""SENAITE LIMS through its JSON API (senaite.jsonapi v1): samples and analyses in, status transitions out.

Reading follows the API's two-step design: a cheap catalog search lists what changed (`recent_modified` narrows
it on the server, `sort_on=modified`, paged through `next`), then each changed object is read in full from its
own URL (`…/v1/<resource>/<uid>?complete=yes`) and that HTTP response, byte for byte, is landed as one message.
Its de-duplication key is `uid@modification_date`, so an object lands again exactly when it changed. The cursor
of each stream (resource) is `modification_date|uid` of the last object landed; `recent_modified` only takes
named ranges (today, yesterday, this-week, …), so the adapter asks for the narrowest range sure to include the
cursor and filters the rest itself.

Write-back (`senaite.transition`) posts `{"uid", "transition"}` to `…/v1/update`, as the senaite.jsonapi CRUD
documentation describes, and returns the updated object's state as the acknowledgement. Before posting it reads
the object: when it already is in the transition's end state (a retry after a lost acknowledgement) nothing is
sent again.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx

from adapters.canonical import CanonicalRecord, InstrumentRef, RecordKind, Sample, TestResult
from adapters.codelists import map_code, source_code_list
from adapters.framework import (
    INVALID_VALUE,
    MALFORMED_PAYLOAD,
    MISSING_IDENTIFIER,
    SCHEMA_VIOLATION,
    UNKNOWN_CODE,
    UNKNOWN_UNIT,
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
from adapters.units import Operator, normalise_unit, parse_censored, parse_time

API_PATH = "/@@API/senaite/v1"
TRANSITION_COMMAND = "senaite.transition"
SAMPLES = "AnalysisRequest"
ANALYSES = "Analysis"
# Samples first: a result's sample is then already known when the result arrives.
DEFAULT_RESOURCES = [SAMPLES, ANALYSES]
# The state a transition ends in, to recognise a transition the source has already performed. Transitions not
# listed are sent without that check (SENAITE then refuses an impossible one with an error).
TRANSITION_END_STATES: dict[str, str] = {
    "receive": "sample_received",
    "submit": "to_be_verified",
    "verify": "verified",
    "publish": "published",
    "cancel": "cancelled",
    "reinstate": "sample_due",
    "invalidate": "invalid",
    "retract": "retracted",
    "reject": "rejected",
}
# Named ranges of `recent_modified` → how far back they surely reach, whatever the server's time zone: the range
# starts at local midnight, so a day of margin is allowed (one day for "yesterday": it covers at least 24 h).
_RECENT_RANGES: list[tuple[str, Callable[[datetime], datetime]]] = [
    ("yesterday", lambda now: now - timedelta(hours=24)),
    ("this-week", lambda now: _midnight(now) - timedelta(days=now.weekday()) + timedelta(days=1)),
    ("this-month", lambda now: _midnight(now).replace(day=1) + timedelta(days=1)),
    ("this-year", lambda now: _midnight(now).replace(month=1, day=1) + timedelta(days=1)),
]
_RETRYABLE_STATUSES = {408, 425, 429, 500, 502, 503, 504}
FIXTURES = "adapters.builtin.senaite_fixtures"
_T = TypeVar("_T")

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["base_url"],
    "additionalProperties": False,
    # The golden fixtures' expected records are for this configuration (no lab id, rooms or instruments; the
    # saved analysis, red blood cells, comes without a unit, so the lab's unit of that service is configured).
    "examples": [{"base_url": "http://lims.example:8080/senaite", "units": {"LAB-047": "10^12/L"}}],
    # What the conformance kit writes back (the saved sample URI-0001, due → received).
    "x-command-example": {
        "target": "99afa09663054c18b1ae7a1cd2cd7693",
        "payload": {"uid": "99afa09663054c18b1ae7a1cd2cd7693", "transition": "receive"},
    },
    "properties": {
        "base_url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "The SENAITE site, e.g. http://lims:8080/senaite (the API is below /@@API/senaite/v1)",
        },
        "username": {"type": "string", "description": "HTTP basic auth user (a SENAITE lab user)"},
        "password": {"type": "string"},
        "lab_id": {"type": "string", "minLength": 1, "description": "CNAS/CMA number of the lab the LIMS serves"},
        "resources": {
            "type": "array",
            "items": {"enum": [SAMPLES, ANALYSES]},
            "minItems": 1,
            "uniqueItems": True,
            "default": DEFAULT_RESOURCES,
        },
        "poll_interval_s": {"type": "number", "minimum": 0.01, "default": 30},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 10},
        "time_zone": {"type": "string", "description": "IANA zone of times the LIMS writes without an offset"},
        "default_room": {"type": "string", "description": "Room results are measured in when SENAITE says none"},
        "units": {
            "type": "object",
            "description": "Analysis keyword → unit of its results when SENAITE sends none (the service's unit)",
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "instruments": {
            "type": "object",
            "description": "SENAITE instrument UID → authoritative identity (manufacturer, model, serial)",
            "additionalProperties": {
                "type": "object",
                "required": ["manufacturer", "model", "serial"],
                "properties": {
                    "manufacturer": {"type": "string"},
                    "model": {"type": "string"},
                    "serial": {"type": "string"},
                    "asset_id": {"type": "string"},
                    "room": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
    },
}


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def recent_modified_range(cursor_time: datetime | None, now: datetime) -> str | None:
    """The narrowest `recent_modified` range sure to include everything modified since `cursor_time`."""
    if cursor_time is None:
        return None
    now = now.astimezone(UTC)
    for name, reaches_back_to in _RECENT_RANGES:
        if cursor_time >= reaches_back_to(now):
            return name
    return None


@dataclass(frozen=True, order=True)
class Cursor:
    """Position in one stream: the last landed object's modification time, then its uid (a total order)."""

    modified: datetime
    uid: str

    def text(self) -> str:
        """As checkpointed: `2024-10-07T08:20:33+00:00|99afa…`."""
        return f"{self.modified.isoformat()}|{self.uid}"

    @classmethod
    def read(cls, text: str | None) -> "Cursor | None":
        """The cursor a checkpoint holds (None when the stream has none yet or it cannot be read)."""
        if not text:
            return None
        modified, _, uid = text.partition("|")
        try:
            moment = datetime.fromisoformat(modified)
        except ValueError:
            return None
        return cls(moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC), uid)


class SourceError(Exception):
    """SENAITE answered, but not with something the adapter can use (a 4xx, a body that is not a listing)."""


class TransientSourceError(Exception):
    """A failure worth retrying: unreachable, timed out, or a 5xx/429 answer."""


class SenaiteAdapter(Adapter):
    """Polls a SENAITE LIMS for changed samples and analyses; performs workflow transitions on request."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name="senaite",
        version="1.0.0",
        title="SENAITE LIMS (JSON API v1)",
        description="Samples (AnalysisRequest) and results (Analysis) through senaite.jsonapi; status transitions "
        "written back through its update route.",
        source_kind=SourceKind.lims,
        transports=[Transport.http_poll],
        emits=[RecordKind.sample, RecordKind.test_result],
        commands=[TRANSITION_COMMAND],
        config_schema=CONFIG_SCHEMA,
        counterpart="SENAITE 2.x JSON API v1 (a local fake serving real saved senaite.jsonapi responses)",
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.api_url = config["base_url"].rstrip("/") + API_PATH
        self.resources: list[str] = list(config.get("resources", DEFAULT_RESOURCES))
        self.page_size = int(config.get("page_size", 100))
        self.poll_interval_s = float(config.get("poll_interval_s", 30))
        self.timeout_s = float(config.get("timeout_s", 10))
        self.zone: str | None = config.get("time_zone")
        self.instruments: dict[str, dict[str, str]] = config.get("instruments", {})
        self.units: dict[str, str] = config.get("units", {})

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the configured site (basic auth when a user is configured)."""
        auth = None
        if self.config.get("username"):
            auth = httpx.BasicAuth(self.config["username"], self.config.get("password", ""))
        return httpx.AsyncClient(
            auth=auth, timeout=self.timeout_s, headers={"Accept": "application/json"}, follow_redirects=True
        )

    # --- reading -----------------------------------------------------------------------------------------

    async def run(self, context: AdapterContext) -> None:
        """Poll every `poll_interval_s` until stopped; a pass that fails after its retries waits for the next."""
        async with self.client() as client:
            while not context.stopping.is_set():
                try:
                    await self.sync(context, client)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # retries exhausted or a source error: the next pass tries again
                    await context.report_health(connected=False, error=f"{type(error).__name__}: {error}"[:500])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(context.stopping.wait(), timeout=self.poll_interval_s)

    async def sync(self, context: AdapterContext, client: httpx.AsyncClient) -> int:
        """One pass over every configured resource; returns how many changed objects were landed."""
        started = context.clock.now()
        landed = 0
        for resource in self.resources:
            landed += await self.sync_resource(context, client, resource)
        lag = (context.clock.now() - started).total_seconds()
        await context.report_health(connected=True, lag_s=max(lag, 0.0))
        return landed

    async def sync_resource(self, context: AdapterContext, client: httpx.AsyncClient, resource: str) -> int:
        """List what changed since the stream's cursor (step 1), then land each changed object in full (step 2)."""
        cursor = Cursor.read(context.checkpoint(resource))
        changed = await self._changed_since(context, client, resource, cursor)
        landed = 0
        for start in range(0, len(changed), self.page_size):
            batch = changed[start : start + self.page_size]
            messages = [await self._full_object(context, client, resource, position) for position in batch]
            await context.land(messages)
            landed += len(messages)
        return landed

    async def _changed_since(
        self, context: AdapterContext, client: httpx.AsyncClient, resource: str, cursor: Cursor | None
    ) -> list[Cursor]:
        params: dict[str, str] = {"sort_on": "modified", "sort_order": "ascending", "limit": str(self.page_size)}
        recent = recent_modified_range(cursor.modified if cursor else None, context.clock.now())
        if recent:
            params["recent_modified"] = recent
        url: str | None = f"{self.api_url}/{resource}"
        found: dict[str, Cursor] = {}
        pages = 0
        while url is not None and pages < 100_000:
            listing = await self._get_json(context, client, url, params if pages == 0 else None, f"list {resource}")
            pages += 1
            items = listing.get("items")
            if not isinstance(items, list):
                raise SourceError(f"The {resource} listing has no items list")
            for brain in items:
                position = _brain_position(brain)
                if position is not None and (cursor is None or position > cursor):
                    found[position.uid] = max(position, found.get(position.uid, position))
            next_url = listing.get("next")
            url = next_url if isinstance(next_url, str) and next_url else None
        # Ordered by (modified, uid) across all pages, so the checkpoint only ever moves forward.
        return sorted(found.values())

    async def _full_object(
        self, context: AdapterContext, client: httpx.AsyncClient, resource: str, position: Cursor
    ) -> InboundMessage:
        url = f"{self.api_url}/{resource}/{quote(position.uid, safe='')}"
        response = await self._request(context, client, "GET", url, {"complete": "yes"}, f"read {resource}")
        # The response as SENAITE sent it is the raw message; a broken body is quarantined by `parse`.
        return InboundMessage(
            payload=response.content,
            content_type=response.headers.get("content-type", "application/json").split(";")[0].strip(),
            source=url,
            transport=Transport.http_poll,
            stream=resource,
            source_time=position.modified,
            cursor=position.text(),
            dedup_key=f"{position.uid}@{position.modified.isoformat()}",
        )

    async def _get_json(
        self,
        context: AdapterContext,
        client: httpx.AsyncClient,
        url: str,
        params: dict[str, str] | None,
        operation: str,
    ) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            response = await self._send(client, "GET", url, params)
            try:
                body = response.json()
            except ValueError:
                raise TransientSourceError(f"{url} answered with a body that is not JSON") from None
            if not isinstance(body, dict):
                raise TransientSourceError(f"{url} answered with JSON that is not an object")
            return body

        return await self._with_retries(context, operation, attempt)

    async def _request(
        self,
        context: AdapterContext,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        params: dict[str, str] | None,
        operation: str,
    ) -> httpx.Response:
        return await self._with_retries(context, operation, lambda: self._send(client, method, url, params))

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, params: dict[str, str] | None
    ) -> httpx.Response:
        try:
            response = await client.request(method, url, params=params)
        except httpx.TransportError as error:  # refused, reset, timed out
            raise TransientSourceError(f"{type(error).__name__}: {error}") from error
        if response.status_code in _RETRYABLE_STATUSES:
            raise TransientSourceError(f"{url} answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise SourceError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
        return response

    async def _with_retries(self, context: AdapterContext, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        attempt = 1
        while True:
            try:
                result = await call()
            except TransientSourceError as error:
                if context.stopping.is_set():
                    raise
                await context.report_health(connected=False, error=str(error)[:500])
                await context.retry_delay(operation, attempt, str(error))  # sleeps the backoff; raises when spent
                attempt += 1
                continue
            if attempt > 1:
                await context.record_success(operation, attempt)
            return result

    async def check_health(self) -> bool:
        """Whether the site answers the API's version route."""
        async with self.client() as client:
            try:
                response = await client.get(f"{self.api_url}/version")
            except httpx.TransportError:
                return False
        return response.status_code == 200

    # --- parsing -----------------------------------------------------------------------------------------

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """Canonical records of one senaite.jsonapi response (its `items`), or one bare object."""
        if message.content_type not in ("application/json", "text/json"):
            raise QuarantineError(UNSUPPORTED_CONTENT_TYPE, f"Expected JSON, got {message.content_type!r}")
        try:
            body = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError) as error:
            raise QuarantineError(MALFORMED_PAYLOAD, f"Not JSON: {error}") from error
        if isinstance(body, dict) and isinstance(body.get("items"), list):
            items = body["items"]
        elif isinstance(body, dict) and "portal_type" in body:
            items = [body]
        else:
            raise QuarantineError(MALFORMED_PAYLOAD, "Neither a senaite.jsonapi response nor a SENAITE object")
        records: list[CanonicalRecord] = []
        for item in items:
            if not isinstance(item, dict):
                raise QuarantineError(MALFORMED_PAYLOAD, "An item of the response is not an object")
            records.extend(self.parse_object(item))
        return records

    def parse_object(self, item: dict[str, Any]) -> list[CanonicalRecord]:
        """The canonical record of one SENAITE object (none for an analysis without a result yet)."""
        portal_type = item.get("portal_type")
        try:
            if portal_type == SAMPLES:
                return [self._sample(item)]
            if portal_type == ANALYSES:
                result = self._result(item)
                return [] if result is None else [result]
        except QuarantineError:
            raise
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise QuarantineError(SCHEMA_VIOLATION, str(error)[:1000]) from error
        raise QuarantineError(MALFORMED_PAYLOAD, f"Unsupported SENAITE portal_type {portal_type!r}")

    def _time(self, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise QuarantineError(INVALID_VALUE, f"{value!r} is not a time")
        return parse_time(value, zone=self.zone)

    def _sample(self, item: dict[str, Any]) -> Sample:
        sample_id = _text(item.get("id")) or _text(item.get("getId"))
        if not sample_id:
            raise QuarantineError(MISSING_IDENTIFIER, "The sample has no id")
        review_state = _text(item.get("review_state"))
        if not review_state:
            raise QuarantineError(UNKNOWN_CODE, f"Sample {sample_id} has no review_state")
        return Sample(
            sample_id=sample_id,
            lab_id=self.config.get("lab_id"),
            client=_text(item.get("getClientTitle")) or _text(item.get("getClientID")),
            sample_type=_text(item.get("SampleTypeTitle")) or _text(item.get("getSampleTypeTitle")),
            order_id=_text(item.get("getClientOrderNumber")) or _text(item.get("ClientOrderNumber")),
            received_at=self._time(item.get("getDateReceived") or item.get("DateReceived")),
            status=map_code("senaite.sample", review_state),
            source_status=review_state,
            source_time=self._time(item.get("modification_date") or item.get("modified")),
        )

    def _result(self, item: dict[str, Any]) -> TestResult | None:
        sample_id = _text(item.get("getRequestID")) or _text(item.get("parent_id"))
        analysis_id = _text(item.get("id"))
        keyword = _text(item.get("Keyword")) or _text(item.get("getKeyword")) or analysis_id
        if not sample_id or not analysis_id or not keyword:
            raise QuarantineError(MISSING_IDENTIFIER, "The analysis has no id, keyword or sample")
        raw_result = item.get("Result")
        if raw_result in (None, ""):
            return None  # nothing measured yet: the analysis lands raw, a result record follows when it is
        review_state = _text(item.get("review_state"))
        # Listings taken without workflow data carry no review_state; a captured result is then unverified.
        status = map_code("senaite.analysis", review_state) if review_state else "unverified"
        operator, value, text_value = _result_value(raw_result, _text(item.get("DetectionLimitOperand")))
        unit_text = _text(item.get("Unit")) or _text(item.get("getUnit")) or self.units.get(keyword)
        if value is not None and unit_text is None:
            # A number without its unit cannot be compared or fused; the configuration can name the unit.
            raise QuarantineError(UNKNOWN_UNIT, f"Analysis {keyword} has a numeric result but no unit")
        uncertainty = item.get("Uncertainty")
        instrument_uid = _reference_uid(item.get("Instrument"))
        instrument = self.instruments.get(instrument_uid) if instrument_uid else None
        return TestResult(
            result_id=f"{sample_id}/{analysis_id}",
            sample_id=sample_id,
            lab_id=self.config.get("lab_id"),
            test_item=keyword,
            method=_text(item.get("MethodTitle")) or _text(item.get("getMethodTitle")),
            value=value,
            operator=operator,
            text_value=text_value,
            unit=normalise_unit(unit_text) if unit_text and value is not None else None,
            expanded_uncertainty=parse_censored(uncertainty).value if uncertainty not in (None, "") else None,
            instrument=(
                InstrumentRef(
                    **{
                        key: instrument[key]
                        for key in ("manufacturer", "model", "serial", "asset_id")
                        if key in instrument
                    }
                )
                if instrument
                else None
            ),
            room=(instrument or {}).get("room") or self.config.get("default_room"),
            analyst=_text(item.get("Analyst")) or _text(item.get("getAnalyst")),
            started_at=self._time(item.get("start") or item.get("getStartProcessDate")),
            measured_at=self._time(item.get("ResultCaptureDate") or item.get("getResultCaptureDate")),
            status=status,
            source_status=review_state,
            source_time=self._time(item.get("modification_date") or item.get("modified")),
        )

    def field_mappings(self) -> list[FieldMapping]:
        """How SENAITE fields become canonical sample and test-result fields."""
        sample, result = RecordKind.sample, RecordKind.test_result
        rows = [
            (sample, "id", "sample_id", None, "copy"),
            (sample, "(configuration) lab_id", "lab_id", None, "copy"),
            (sample, "getClientTitle | getClientID", "client", None, "copy"),
            (sample, "SampleTypeTitle", "sample_type", None, "copy"),
            (sample, "getClientOrderNumber | ClientOrderNumber", "order_id", None, "copy"),
            (sample, "getDateReceived | DateReceived", "received_at", None, "iso8601 → UTC"),
            (sample, "review_state", "status", None, "code list senaite.sample"),
            (sample, "review_state", "source_status", None, "copy"),
            (sample, "modification_date", "source_time", None, "iso8601 → UTC"),
            (result, "parent_id + '/' + id", "result_id", None, "concatenate"),
            (result, "getRequestID | parent_id", "sample_id", None, "copy"),
            (result, "(configuration) lab_id", "lab_id", None, "copy"),
            (result, "Keyword", "test_item", None, "copy"),
            (result, "MethodTitle", "method", None, "copy"),
            (result, "Result", "value", None, "decimal as written; '<0.5' keeps its operator"),
            (result, "DetectionLimitOperand | Result prefix", "operator", None, "censoring operator"),
            (result, "Result (not a number)", "text_value", None, "copy"),
            (result, "Unit | (configuration) units[Keyword]", "unit", "UCUM", "unit symbol → UCUM code"),
            (result, "Uncertainty", "expanded_uncertainty", None, "decimal as written"),
            (result, "Instrument.uid", "instrument", None, "configured instruments → manufacturer/model/serial"),
            (result, "(configuration) instruments[uid].room | default_room", "room", None, "copy"),
            (result, "Analyst", "analyst", None, "copy"),
            (result, "start", "started_at", None, "iso8601 → UTC"),
            (result, "ResultCaptureDate", "measured_at", None, "iso8601 → UTC"),
            (result, "review_state", "status", None, "code list senaite.analysis (missing: unverified)"),
            (result, "review_state", "source_status", None, "copy"),
            (result, "modification_date", "source_time", None, "iso8601 → UTC"),
        ]
        return FieldMapping.table(rows)

    def code_lists(self) -> dict[str, dict[str, str]]:
        """SENAITE review states → hub sample and result statuses."""
        return {
            "senaite.sample": source_code_list("senaite.sample"),
            "senaite.analysis": source_code_list("senaite.analysis"),
        }

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """The saved real senaite.jsonapi responses with the canonical JSON they must become."""
        folder = resources.files(FIXTURES)
        expected = json.loads(folder.joinpath("expected.json").read_text(encoding="utf-8"))
        fixtures = []
        for name, records in expected.items():
            payload = folder.joinpath(name).read_bytes()
            fixtures.append(
                GoldenFixture(
                    name=name,
                    message=InboundMessage(
                        payload=payload,
                        content_type="application/json",
                        source=f"fixture:{name}",
                        transport=Transport.http_poll,
                        stream=SAMPLES if "request" in name else ANALYSES,
                    ),
                    expected=records,
                )
            )
        return fixtures

    # --- write-back --------------------------------------------------------------------------------------

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Perform a workflow transition on a sample or analysis and return SENAITE's answer as the ack."""
        if command.kind != TRANSITION_COMMAND:
            raise CommandFailedError(f"SENAITE does not execute {command.kind!r} commands", retryable=False)
        uid = command.payload.get("uid") or command.target
        transition = command.payload.get("transition")
        if not isinstance(uid, str) or not uid or not isinstance(transition, str) or not transition:
            raise CommandFailedError("A SENAITE transition needs a 'uid' and a 'transition'", retryable=False)
        async with self.client() as client:
            current = await self._current_state(client, uid)
            end_state = TRANSITION_END_STATES.get(transition)
            if end_state is not None and current == end_state:
                return {"uid": uid, "transition": transition, "review_state": current, "already_applied": True}
            response = await self._post(client, f"{self.api_url}/update", {"uid": uid, "transition": transition})
        try:
            body = response.json()
        except ValueError:
            raise CommandFailedError("SENAITE acknowledged with a body that is not JSON") from None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise CommandFailedError("SENAITE did not return the updated object", retryable=False)
        updated = items[0]
        return {
            "uid": updated.get("uid", uid),
            "transition": transition,
            "review_state": updated.get("review_state"),
            "modified": updated.get("modification_date") or updated.get("modified"),
            "url": body.get("url"),
            "already_applied": False,
        }

    async def _current_state(self, client: httpx.AsyncClient, uid: str) -> str | None:
        try:
            response = await client.get(f"{self.api_url}/{quote(uid, safe='')}", params={"complete": "yes"})
        except httpx.TransportError as error:
            raise CommandFailedError(f"SENAITE is unreachable: {error}") from error
        if response.status_code == 404:
            raise CommandFailedError(f"SENAITE has no object {uid}", retryable=False)
        if response.status_code >= 400:
            retryable = response.status_code in _RETRYABLE_STATUSES
            raise CommandFailedError(f"Reading {uid} answered HTTP {response.status_code}", retryable=retryable)
        try:
            items = response.json().get("items") or []
        except (ValueError, AttributeError):
            raise CommandFailedError(f"Reading {uid} answered with a body that is not a listing") from None
        if not items:
            raise CommandFailedError(f"SENAITE has no object {uid}", retryable=False)
        state = items[0].get("review_state")
        return state if isinstance(state, str) else None

    async def _post(self, client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await client.post(url, json=body)
        except httpx.TransportError as error:
            raise CommandFailedError(f"SENAITE is unreachable: {error}") from error
        if response.status_code in _RETRYABLE_STATUSES:
            raise CommandFailedError(f"SENAITE answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise CommandFailedError(
                f"SENAITE refused the transition (HTTP {response.status_code}): {_message(response)}", retryable=False
            )
        return response


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _reference_uid(value: Any) -> str | None:
    """The uid of a `{url, uid, api_url}` reference (or of a bare uid string)."""
    if isinstance(value, dict):
        return _text(value.get("uid"))
    return _text(value)


def _brain_position(brain: Any) -> Cursor | None:
    if not isinstance(brain, dict):
        return None
    uid = _text(brain.get("uid"))
    modified = _text(brain.get("modified")) or _text(brain.get("modification_date"))
    if not uid or not modified:
        return None
    try:
        moment = datetime.fromisoformat(modified)
    except ValueError:
        return None
    return Cursor(moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC), uid)


_DETECTION_OPERANDS: dict[str | None, Operator] = {"<": "<", ">": ">", "<=": "<=", ">=": ">="}


def _result_value(raw: Any, detection_operand: str | None) -> tuple[Any, Decimal | None, str | None]:
    """(operator, value, text) of a SENAITE result: "4.5", "<0.5", or "0.5" with a detection-limit operand."""
    try:
        censored = parse_censored(raw)
    except QuarantineError:
        if isinstance(raw, str):
            return None, None, raw.strip()[:300]  # a textual result ("negative", a selected option)
        raise
    operator = censored.operator
    if operator is None and detection_operand in _DETECTION_OPERANDS:
        operator = _DETECTION_OPERANDS[detection_operand]
    return operator, censored.value, None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:500]
    return response.text[:200]
