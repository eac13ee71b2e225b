"""The provincial platform adapter, tested against the platform simulator (qihub contract v1).

It speaks the hub's own contract (`openapi/platform-contract.yaml`; no provincial platform publishes an API)
and says so: the manifest's counterpart is the simulator, `simulator=True`, and nothing here claims a live
connection to a real platform.

Pull (`run`): three streams, each resumed from its checkpointed cursor, each page landed raw as one message:
`complaints` (complaints the public filed with the platform → canonical `complaint` records with their
deadlines), `directory/labs` and `directory/standards` (directory pages: landed raw and checked against the
contract, which quarantines a malformed page). Labs and standards are registry entities, not observations, so
they have no canonical record kind: right after a page's landing transaction commits, its entries are upserted
into the registry (`graph.service.import_standards`, `import_accreditations`) in a transaction of their own,
and an audit event `platform-directory-page` records which landed page (message id, cursor, sha256) was
imported and what each entry became. Re-importing a page, or an unchanged entry on another page, changes
nothing; a page landed but not imported (a crash between the two transactions) is imported on the next poll.

Write-back (`execute_command`): `platform.push-report`, `platform.push-activity`,
`platform.notify-report-modified`, each sent with the command's idempotency key as `Idempotency-Key`, so a
retried command is recorded once by the platform. `queue_report_commands` is the L4.3 rule that turns
`report.issued` / `report.modified` events into such commands for every platform instance of the lab.
"""

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import ValidationError
from sqlalchemy import String, cast
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from adapters.builtin.platform_contract import (
    BASE_PATH,
    IDEMPOTENCY_HEADER,
    ActivityPush,
    LabEntry,
    Page,
    PlatformComplaint,
    ReportModification,
    ReportPush,
    StandardEntry,
    dump,
)
from adapters.canonical import CanonicalRecord, Complaint, RecordKind
from adapters.framework import (
    MALFORMED_PAYLOAD,
    SCHEMA_VIOLATION,
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
from adapters.models import AdapterCommand, AdapterInstance, LandingMessage, LandingOutcome, OutboxEvent
from graph.models import (
    Accreditation,
    AccreditationIn,
    AccreditationStatus,
    ImportAction,
    ImportProblem,
    Standard,
    StandardIn,
    normalize_standard_code,
)
from graph.models import ScopeEntry as RegistryScopeEntry
from graph.service import ImportRejectedError, import_accreditations, import_standards
from organizations.models import Organization
from storage.database import session_scope
from storage.models import AuditEvent
from storage.service import record_event

ADAPTER_NAME = "platform"
VERSION = "1.0.0"
PUSH_REPORT = "platform.push-report"
PUSH_ACTIVITY = "platform.push-activity"
NOTIFY_REPORT_MODIFIED = "platform.notify-report-modified"
COMPLAINTS = "complaints"
LABS = "directory/labs"
STANDARDS = "directory/standards"
STREAMS = {COMPLAINTS: "/complaints", LABS: "/directory/labs", STANDARDS: "/directory/standards"}
DIRECTORY_STREAMS = frozenset({LABS, STANDARDS})
DIRECTORY_PAGE_SUBJECT = "platform-directory-page"  # audit subject: one landed directory page imported

# The platform's complaint statuses → the hub's complaint vocabulary.
COMPLAINT_STATUSES = {
    "submitted": "received",
    "accepted": "accepted",
    "processing": "in-progress",
    "resolved": "closed",
    "rejected": "rejected",
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["base_url"],
    "additionalProperties": False,
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://", "description": "Platform root (before /platform/v1)"},
        "token": {"type": "string", "description": "Bearer token the platform issued to the lab"},
        "lab_id": {"type": "string", "description": "The lab's CNAS/CMA number, sent with pushes"},
        "poll_interval_s": {"type": "number", "minimum": 0.05, "maximum": 86400, "default": 60},
        "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200},
        "timeout_s": {"type": "number", "minimum": 0.1, "maximum": 120, "default": 10},
        "streams": {
            "type": "array",
            "items": {"enum": sorted(STREAMS)},
            "uniqueItems": True,
            "description": "Which pulls to run (default all)",
        },
    },
}


class PlatformAdapter(Adapter):
    """Provincial inspection/testing public-service platform, through the hub's contract v1 (simulated)."""

    manifest: ClassVar[AdapterManifest] = AdapterManifest(
        name=ADAPTER_NAME,
        version=VERSION,
        title="Provincial platform (qihub contract v1)",
        description=(
            "Pushes lab activity, reports and certificates to a provincial public-service platform and pulls "
            "its complaints and directories of accredited labs and standards, through the contract the hub "
            "defines (openapi/platform-contract.yaml). Tested against the platform simulator only."
        ),
        source_kind=SourceKind.platform,
        transports=[Transport.http_poll],
        emits=[RecordKind.complaint],
        commands=[PUSH_REPORT, PUSH_ACTIVITY, NOTIFY_REPORT_MODIFIED],
        config_schema=CONFIG_SCHEMA,
        counterpart="provincial platform simulator (qihub contract v1)",
        simulator=True,
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.base_url = str(config["base_url"]).rstrip("/") + BASE_PATH
        self.poll_interval_s = float(config.get("poll_interval_s", 60))
        self.page_size = int(config.get("page_size", 200))
        self.timeout_s = float(config.get("timeout_s", 10))
        self.streams = list(config.get("streams") or STREAMS)

    def _headers(self) -> dict[str, str]:
        token = self.config.get("token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self.timeout_s)

    # --- pull --------------------------------------------------------------------------------------------

    async def run(self, context: AdapterContext) -> None:
        """Poll every stream from its checkpoint, land each page, sleep, repeat until stopping."""
        async with self._client() as client:
            while not context.stopping.is_set():
                await self.poll_once(context, client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(context.stopping.wait(), timeout=self.poll_interval_s)

    async def poll_once(self, context: AdapterContext, client: httpx.AsyncClient) -> int:
        """One pass over the streams; returns the pages landed. Failures are retried with the runtime's backoff."""
        landed = 0
        # Pages a crash left landed but not yet in the registry go first, before newer pages of the same entries.
        await self._import_directories(context)
        for stream in self.streams:
            attempt = 1
            while not context.stopping.is_set():
                try:
                    landed += await self._pull_stream(context, client, stream)
                except (httpx.HTTPError, ValueError) as error:
                    await context.report_health(connected=False, error=f"{stream}: {error}")
                    await context.retry_delay(f"poll:{stream}", attempt, str(error))
                    attempt += 1
                    continue
                await context.record_success(f"poll:{stream}", attempt)
                break
        if not context.stopping.is_set():
            await context.report_health(connected=True, lag_s=0.0)
        return landed

    async def _pull_stream(self, context: AdapterContext, client: httpx.AsyncClient, stream: str) -> int:
        pages = 0
        cursor = context.checkpoint(stream)
        while True:
            params: dict[str, Any] = {"limit": self.page_size}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(STREAMS[stream], params=params)
            response.raise_for_status()
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ValueError(f"{stream} answered something that is not a page")
            if not body["items"]:
                return pages
            next_cursor = body.get("cursor") or cursor
            report = await context.land(
                [
                    InboundMessage(
                        payload=response.content,
                        content_type=response.headers.get("content-type", "application/json").split(";")[0],
                        source=str(response.request.url),
                        transport=Transport.http_poll,
                        stream=stream,
                        cursor=next_cursor,
                        source_time=_page_time(body["items"]),
                    )
                ]
            )
            if stream in DIRECTORY_STREAMS and report.accepted:
                await self._import_directories(context)
            pages += 1
            cursor = next_cursor
            if not body.get("more"):
                return pages

    async def _import_directories(self, context: AdapterContext) -> None:
        if not DIRECTORY_STREAMS.intersection(self.streams):
            return
        if isinstance(context, HubDatabase):
            await asyncio.to_thread(import_pending_directories, context.engine, instance_id=context.instance_id)
        # A context without the hub's database (a third-party runner) leaves the landed pages to whoever runs
        # `import_pending_directories` against that database.

    def parse(self, message: InboundMessage) -> list[CanonicalRecord]:
        """Complaint pages → complaint records; directory pages are checked against the contract, no records."""
        try:
            body = json.loads(message.payload)
        except ValueError as error:
            raise QuarantineError(MALFORMED_PAYLOAD, f"not JSON: {error}") from error
        model: type[Any] = {
            COMPLAINTS: Page[PlatformComplaint],
            LABS: Page[LabEntry],
            STANDARDS: Page[StandardEntry],
        }.get(message.stream, Page[PlatformComplaint])
        try:
            page = model.model_validate(body)
        except ValidationError as error:
            # The status code list is part of the contract: name an unknown code as such.
            if any(item["type"] == "literal_error" and item["loc"][-1] == "status" for item in error.errors()):
                raise QuarantineError(UNKNOWN_CODE, _errors(error)) from error
            raise QuarantineError(SCHEMA_VIOLATION, _errors(error)) from error
        if message.stream in (LABS, STANDARDS):
            return []
        return [_complaint(item) for item in page.items]

    def field_mappings(self) -> list[FieldMapping]:
        """Platform complaint fields → canonical complaint fields."""
        kind = RecordKind.complaint
        pairs = [
            ("complaintId", "complaint_id", "copy"),
            ("againstLabId", "against_lab_id", "copy"),
            ("subject", "subject", "copy"),
            ("channel", "channel", "copy"),
            ("receivedAt", "received_at", "ISO 8601 with offset"),
            ("dueAt", "due_at", "ISO 8601 with offset"),
            ("status", "status", "code list complaint-status"),
            ("status", "source_status", "copy"),
            ("updatedAt", "source_time", "ISO 8601 with offset"),
        ]
        return [FieldMapping(record_kind=kind, source_field=s, canonical_field=c, transform=t) for s, c, t in pairs]

    def code_lists(self) -> dict[str, dict[str, str]]:
        """The platform's complaint statuses → hub complaint vocabulary."""
        return {"complaint-status": dict(COMPLAINT_STATUSES)}

    @classmethod
    def golden_fixtures(cls) -> list[GoldenFixture]:
        """A complaints page and the canonical complaint it becomes."""
        payload = {
            "items": [
                {
                    "complaintId": "ZJ-TS-2026-000123",
                    "againstLabId": "CNAS L0001",
                    "subject": "报告出具超期 (report late)",
                    "channel": "platform-web",
                    "receivedAt": "2026-03-01T09:30:00+08:00",
                    "dueAt": "2026-03-08T09:30:00+08:00",
                    "status": "accepted",
                    "updatedAt": "2026-03-01T10:00:00+08:00",
                }
            ],
            "cursor": "1",
            "more": False,
            "simulator": True,
        }
        message = InboundMessage(
            payload=json.dumps(payload, ensure_ascii=False).encode(),
            content_type="application/json",
            source="http://platform-simulator/platform/v1/complaints",
            transport=Transport.http_poll,
            stream=COMPLAINTS,
            cursor="1",
        )
        expected = {
            "schema_version": "1.0",
            "source_time": "2026-03-01T10:00:00+08:00",
            "record_type": "complaint",
            "complaint_id": "ZJ-TS-2026-000123",
            "against_lab_id": "CNAS L0001",
            "subject": "报告出具超期 (report late)",
            "channel": "platform-web",
            "received_at": "2026-03-01T09:30:00+08:00",
            "due_at": "2026-03-08T09:30:00+08:00",
            "status": "accepted",
            "source_status": "accepted",
        }
        return [GoldenFixture(name="complaints-page", message=message, expected=[expected])]

    # --- write-back --------------------------------------------------------------------------------------

    async def execute_command(self, command: CommandRequest) -> dict[str, Any]:
        """Send one push with the command's idempotency key; the platform's receipt is the acknowledgement."""
        try:
            path, body = self._request_of(command)
        except (ValidationError, KeyError, TypeError) as error:
            raise CommandFailedError(
                f"{command.kind}: payload does not fit the contract: {error}", retryable=False
            ) from error
        async with self._client() as client:
            try:
                response = await client.post(path, json=body, headers={IDEMPOTENCY_HEADER: command.idempotency_key})
            except httpx.HTTPError as error:
                raise CommandFailedError(f"{command.kind}: platform unreachable: {error}") from error
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise CommandFailedError(f"{command.kind}: platform answered {response.status_code}")
        if response.status_code >= 400:
            raise CommandFailedError(
                f"{command.kind}: platform refused ({response.status_code}): {response.text[:500]}", retryable=False
            )
        receipt: dict[str, Any] = response.json()
        return {"status": response.status_code, **receipt}

    def _request_of(self, command: CommandRequest) -> tuple[str, dict[str, Any]]:
        payload = dict(command.payload)
        payload.setdefault("labId", self.config.get("lab_id") or command.payload.get("labId"))
        if command.kind == PUSH_REPORT:
            return "/reports", dump(ReportPush.model_validate(payload))
        if command.kind == PUSH_ACTIVITY:
            return "/activity", dump(ActivityPush.model_validate(payload))
        if command.kind == NOTIFY_REPORT_MODIFIED:
            payload.pop("labId", None)
            number = payload.pop("reportNumber")
            return f"/reports/{_path_segment(number)}/modifications", dump(ReportModification.model_validate(payload))
        raise CommandFailedError(f"{ADAPTER_NAME} does not execute {command.kind!r}", retryable=False)

    async def check_health(self) -> bool:
        """Whether the platform answers its directory endpoint now."""
        try:
            async with self._client() as client:
                response = await client.get(STREAMS[STANDARDS], params={"limit": 1})
            return response.status_code == 200
        except httpx.HTTPError:
            return False


def _page_time(items: list[Any]) -> datetime | None:
    """The source's time of a page: the latest `updatedAt` of its entries (None when none carries one)."""
    moments = []
    for item in items:
        text = item.get("updatedAt") if isinstance(item, dict) else None
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if moment.utcoffset() is not None:  # a time without an offset is not a usable source time
                    moments.append(moment)
    return max(moments, key=lambda moment: moment.timestamp()) if moments else None


def _errors(error: ValidationError) -> str:
    return "; ".join(f"{'/'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()[:10])


def _path_segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _complaint(item: PlatformComplaint) -> Complaint:
    return Complaint(
        complaint_id=item.complaint_id,
        against_lab_id=item.against_lab_id,
        subject=item.subject,
        channel=item.channel,
        received_at=item.received_at,
        due_at=item.due_at,
        status=COMPLAINT_STATUSES[item.status],
        source_status=item.status,
        source_time=item.updated_at,
    )


# --- L4.3: report changes notify the platform ----------------------------------------------------------------


def _platform_instances(session: Session, organization_id: str | None) -> list[AdapterInstance]:
    query = select(AdapterInstance).where(
        AdapterInstance.adapter == ADAPTER_NAME, col(AdapterInstance.enabled).is_(True)
    )
    instances = list(session.exec(query))
    # A lab's platform connection, or a hub-wide one (no owner) that speaks for every lab.
    return [i for i in instances if i.organization_id is None or i.organization_id == organization_id]


def report_command_of(event: OutboxEvent) -> tuple[str, str, dict[str, Any]] | None:
    """The platform command (kind, target, payload) a report event calls for, or None."""
    from adapters.events import REPORT_ISSUED, REPORT_MODIFIED

    report = event.data.get("report") or {}
    number = report.get("certificateId") or report.get("sampleId")
    if not number:
        return None
    kind = "calibration-certificate" if report.get("kind") == "calibration-certificate" else "test-report"
    moment = event.time.isoformat()
    if event.type == REPORT_ISSUED:
        payload: dict[str, Any] = {
            "reportNumber": number,
            "kind": kind,
            "issuedAt": moment,
            **({"labId": report["labId"]} if report.get("labId") else {}),
            **({"sampleId": report["sampleId"]} if report.get("sampleId") else {}),
        }
        return PUSH_REPORT, number, payload
    if event.type == REPORT_MODIFIED:
        payload = {"reportNumber": number, "change": event.data.get("change") or "amended", "modifiedAt": moment}
        if event.data.get("status"):
            payload["status"] = event.data["status"]
        if event.data.get("reason"):
            payload["reason"] = str(event.data["reason"])[:2000]
        return NOTIFY_REPORT_MODIFIED, number, payload
    return None


def queue_report_commands(session: Session, *, event: OutboxEvent) -> list[AdapterCommand]:
    """Queue a platform push for a report event, once per platform instance (keyed by the event id)."""
    from adapters import commands  # the command queue imports the events module, which calls this

    wanted = report_command_of(event)
    if wanted is None:
        return []
    kind, target, payload = wanted
    clock = _FixedClock(event.time)
    return [
        commands.create_command(
            session,
            instance=instance,
            kind=kind,
            target=target[:500],
            payload=payload,
            idempotency_key=f"{event.type}:{event.id}",
            requested_by=instance.organization_id,
            clock=clock,
        )
        for instance in _platform_instances(session, event.organization_id)
    ]


class _FixedClock:
    """The event's own time: the command is queued when the change it reports happened."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment

    def now(self) -> datetime:
        """The event's time."""
        return self._moment


# --- directories into the registry ---------------------------------------------------------------------------


@runtime_checkable
class HubDatabase(Protocol):
    """A running context that can reach the hub's database (the worker's `InstanceRuntime` can)."""

    engine: Engine
    instance_id: str


@dataclass(frozen=True)
class DirectoryImport:
    """What importing one landed directory page did to the registry (keys are standard codes or lab numbers)."""

    message_id: int
    instance_id: str
    stream: str
    cursor: str | None
    sha256: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # entries the registry's rules refuse, and why
    already_imported: bool = False


def directory_items(message_payload: bytes, stream: str) -> list[LabEntry] | list[StandardEntry]:
    """The entries of one landed directory page."""
    if stream == LABS:
        return Page[LabEntry].model_validate_json(message_payload).items
    return Page[StandardEntry].model_validate_json(message_payload).items


def _problem_text(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in item['loc']) or '(entry)'}: {item['msg']}" for item in error.errors())


def _merged_links(kept: list[str], pulled: list[str]) -> list[str]:
    # Links are only added: the registry completes the inverse side of every link itself, so a stored list may
    # name more than the platform's entry does, and dropping those would undo the registry's own bookkeeping.
    return list(dict.fromkeys([*kept, *(normalize_standard_code(code) for code in pulled)]))


def _standard_in(entry: StandardEntry, row: Standard | None) -> StandardIn:
    """The registry entry a platform standard becomes; fields the platform does not publish keep their values."""
    fields: dict[str, Any] = StandardIn.model_validate(row).model_dump() if row is not None else {}
    fields.update(code=entry.code, title=entry.title, status=entry.status)
    # An absent optional field means the platform does not say, not that the registry's value is wrong.
    for name in ("title_zh", "published_on", "implemented_on"):
        value = getattr(entry, name)
        if value is not None:
            fields[name] = value
    fields["replaces"] = _merged_links(fields.get("replaces", []), entry.replaces)
    fields["replaced_by"] = _merged_links(fields.get("replaced_by", []), entry.replaced_by)
    return StandardIn.model_validate(fields)


def _holder(session: Session, entry: LabEntry) -> Organization | None:
    """The hub organization a directory lab is, by its 统一社会信用代码, else by its accreditation number."""
    if entry.credit_code:
        found = session.exec(
            select(Organization).where(Organization.unified_social_credit_code == entry.credit_code)
        ).first()
        if found is not None:
            return found
    return session.exec(select(Organization).where(Organization.accreditation_number == entry.lab_id)).first()


def _accreditation_in(entry: LabEntry, row: Accreditation | None, holder: Organization | None) -> AccreditationIn:
    """The registry accreditation a platform lab becomes: the directory is the published record of it."""
    holder_id = holder.id if holder is not None else (row.holder_organization_id if row is not None else None)
    return AccreditationIn(
        body=entry.body,
        # The registry numbers accreditations as the bodies print them ('CNAS L0001'): the platform's labId.
        number=entry.lab_id,
        holder_organization_id=holder_id,
        holder_name=entry.name,
        status=AccreditationStatus(entry.status),
        valid_from=entry.valid_from,
        valid_to=entry.valid_to,
        scope=[RegistryScopeEntry(method_code=line.standard, description=line.test_item) for line in entry.scope],
    )


def _same(stored: Any, wanted: StandardIn | AccreditationIn) -> bool:
    return type(wanted).model_validate(stored).model_dump(mode="json") == wanted.model_dump(mode="json")


def _standard_items(
    session: Session, entries: list[StandardEntry]
) -> tuple[list[StandardIn], list[str], list[dict[str, str]]]:
    codes = [normalize_standard_code(entry.code) for entry in entries]
    rows = {row.code: row for row in session.exec(select(Standard).where(col(Standard.code).in_(codes)))}
    changed: dict[str, StandardIn] = {}
    unchanged: list[str] = []
    refused: list[dict[str, str]] = []
    for code, entry in zip(codes, entries, strict=True):
        try:
            item = _standard_in(entry, rows.get(code))
        except ValidationError as error:
            refused.append({"key": code, "problem": _problem_text(error)})
            continue
        if code in rows and _same(rows[code], item):
            unchanged.append(code)
        else:
            changed[code] = item  # the later of two entries of one code in a page wins, as the platform orders them
    return list(changed.values()), unchanged, refused


def _accreditation_items(
    session: Session, entries: list[LabEntry]
) -> tuple[list[AccreditationIn], list[str], list[dict[str, str]]]:
    numbers = [entry.lab_id for entry in entries]
    rows = {
        (row.body, row.number): row
        for row in session.exec(select(Accreditation).where(col(Accreditation.number).in_(numbers)))
    }
    changed: dict[tuple[str, str], AccreditationIn] = {}
    unchanged: list[str] = []
    refused: list[dict[str, str]] = []
    for entry in entries:
        key = (entry.body, entry.lab_id)
        try:
            item = _accreditation_in(entry, rows.get(key), _holder(session, entry))
        except ValidationError as error:
            refused.append({"key": entry.lab_id, "problem": _problem_text(error)})
            continue
        if key in rows and _same(rows[key], item):
            unchanged.append(entry.lab_id)
        else:
            changed[key] = item
    return list(changed.values()), unchanged, refused


def _recorded_import(session: Session, message: LandingMessage) -> DirectoryImport | None:
    event = session.exec(
        select(AuditEvent).where(
            AuditEvent.subject_kind == DIRECTORY_PAGE_SUBJECT, AuditEvent.subject_id == str(message.id)
        )
    ).first()
    if event is None:
        return None
    return DirectoryImport(**{**event.details, "already_imported": True})


def _record_page(session: Session, *, done: DirectoryImport, action: str) -> None:
    details = asdict(done)
    details.pop("already_imported")
    record_event(
        session,
        subject_kind=DIRECTORY_PAGE_SUBJECT,
        subject_id=str(done.message_id),
        action=action,
        details=details,
    )


def _page_of(message: LandingMessage, **outcome: Any) -> DirectoryImport:
    if message.id is None:
        raise ValueError("only a landed message (with an id) can be imported")
    return DirectoryImport(
        message_id=message.id,
        instance_id=message.instance_id,
        stream=message.stream,
        cursor=message.cursor,
        sha256=message.sha256,
        **outcome,
    )


def import_directory_page(session: Session, *, message: LandingMessage) -> DirectoryImport:
    """Upsert one landed directory page's entries into the registry, once; unchanged entries are left alone."""
    if message.stream not in DIRECTORY_STREAMS or message.outcome != LandingOutcome.accepted:
        raise ValueError(f"message {message.id} is not an accepted directory page")
    earlier = _recorded_import(session, message)
    if earlier is not None:
        return earlier
    entries = directory_items(message.raw, message.stream)
    names: dict[str, str] = {}  # the registry's report key → the key the platform uses
    if message.stream == STANDARDS:
        standards, unchanged, refused = _standard_items(session, [e for e in entries if isinstance(e, StandardEntry)])
        report = import_standards(session, items=standards) if standards else None
    else:
        labs, unchanged, refused = _accreditation_items(session, [e for e in entries if isinstance(e, LabEntry)])
        report = import_accreditations(session, items=labs) if labs else None
        names = {f"{item.body} {item.number}": item.number for item in labs}
    items = report.items if report is not None else []
    done = _page_of(
        message,
        created=[names.get(item.key, item.key) for item in items if item.action == ImportAction.created],
        updated=[names.get(item.key, item.key) for item in items if item.action == ImportAction.updated],
        unchanged=unchanged,
        refused=refused,
    )
    _record_page(session, done=done, action="imported")
    return done


def _refuse_page(session: Session, *, message: LandingMessage, problems: list[ImportProblem]) -> DirectoryImport:
    """Record a page the registry refused as a whole (e.g. a replacement cycle), so it is not retried forever."""
    refused = [{"key": problem.code or "", "problem": problem.message} for problem in problems]
    done = _page_of(message, refused=refused)
    _record_page(session, done=done, action="refused")
    return done


def pending_directory_pages(session: Session, *, instance_id: str | None = None, limit: int = 100) -> list[int]:
    """Ids of accepted directory pages landed by platform instances and not yet imported, oldest first."""
    imported = select(AuditEvent.subject_id).where(AuditEvent.subject_kind == DIRECTORY_PAGE_SUBJECT)
    query = select(LandingMessage.id).where(
        LandingMessage.adapter == ADAPTER_NAME,
        col(LandingMessage.stream).in_(sorted(DIRECTORY_STREAMS)),
        LandingMessage.outcome == LandingOutcome.accepted.value,
        cast(LandingMessage.id, String).not_in(imported),
    )
    if instance_id is not None:
        query = query.where(LandingMessage.instance_id == instance_id)
    return [
        message_id for message_id in session.exec(query.order_by(col(LandingMessage.id)).limit(limit)) if message_id
    ]


def import_pending_directories(
    engine: Engine, *, instance_id: str | None = None, limit: int = 100
) -> list[DirectoryImport]:
    """Import the pending directory pages, each in its own transaction (a refused page leaves the others)."""
    with Session(engine) as session:
        pending = pending_directory_pages(session, instance_id=instance_id, limit=limit)
    done: list[DirectoryImport] = []
    for message_id in pending:
        try:
            with session_scope(engine) as session:
                message = session.get_one(LandingMessage, message_id)
                done.append(import_directory_page(session, message=message))
        except ImportRejectedError as rejected:
            with session_scope(engine) as session:
                message = session.get_one(LandingMessage, message_id)
                done.append(_refuse_page(session, message=message, problems=rejected.problems))
    return done


def directory_imports(session: Session, *, instance_id: str | None = None) -> list[DirectoryImport]:
    """The directory pages imported so far (optionally of one instance), in landing order."""
    events = session.exec(
        select(AuditEvent).where(AuditEvent.subject_kind == DIRECTORY_PAGE_SUBJECT).order_by(col(AuditEvent.id))
    )
    found = [DirectoryImport(**{**event.details, "already_imported": True}) for event in events]
    return [page for page in found if instance_id is None or page.instance_id == instance_id]
