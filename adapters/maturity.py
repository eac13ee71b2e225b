"""Integration maturity L1–L5 of one adapter instance, decided only from evidence the hub collected itself.

Every criterion of `levels.md` is computed at assessment time from three kinds of evidence, never from what a
plug-in declares about itself:

* the operational tables the hub filled while the instance ran (landing-zone envelopes and their bytes,
  counters, checkpoints, retry attempts, quarantine codes, canonical records and their fusion, outbox events,
  webhook deliveries, write-back commands, rule flags);
* observations recorded with `adapters.evidence.record_evidence` (the latest one per criterion for the
  deployed adapter version must not be a failure);
* active probes run now: the plug-in is discovered through its entry point, its golden fixtures are parsed
  and compared, garbage is fed to its parser, the published contract documents are read, its named graphs are
  validated with SHACL, a mutated copy must fail, the source's health is asked, the read API is queried for
  two tenants, and the conformance kit runs against it in a throw-away hub.

A level is achieved when every criterion of it and of every lower level passes (levels are cumulative). Each
assessment is stored (`adapter_assessments`) so the report shows the trend across adapter versions (L5.5).
"""

import asyncio
import hashlib
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import Field as PydanticField
from sqlalchemy import func
from sqlmodel import Session, col, select

from adapters.canonical import RECORD_TYPES, RecordKind, json_schema
from adapters.framework import Adapter, AdapterManifest, Clock, InboundMessage, QuarantineError, SystemClock
from adapters.models import (
    AdapterAssessment,
    AdapterAttempt,
    AdapterCheckpoint,
    AdapterCommand,
    AdapterCounters,
    AdapterEvidence,
    AdapterHealth,
    AdapterInstance,
    CanonicalRecordRow,
    CommandStatus,
    DeliveryStatus,
    LandingMessage,
    LandingOutcome,
    OutboxEvent,
    RuleFlag,
    WebhookDelivery,
)
from storage.schemas import ApiSchema
from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CANONICAL_SCHEMA_DIR = ROOT / "schemas" / "json" / "canonical"
OPENAPI_FILE = ROOT / "openapi" / "openapi.json"
ASYNCAPI_FILE = ROOT / "openapi" / "asyncapi.yaml"
PLATFORM_CONTRACT_FILE = ROOT / "openapi" / "platform-contract.yaml"
SHAPES_FILES = (ROOT / "ontologies" / "adapter-shapes.ttl",)

SOSA = "http://www.w3.org/ns/sosa/"
SSN = "http://www.w3.org/ns/ssn/"
QUDT = "http://qudt.org/schema/qudt/"
PROV = "http://www.w3.org/ns/prov#"
QH = "https://qihub.example/ns#"

# Domain events a record of each kind causes when it lands (adapters/events.py derives them).
EVENT_TYPES = (
    "sample.received",
    "result.verified",
    "env.excursion",
    "equipment.status.changed",
    "calibration.expired",
    "report.issued",
    "report.modified",
    "complaint.deadline.near",
)
# Kinds whose records carry coded fields mapped to hub vocabularies (L3.5).
CODED_KINDS = {
    RecordKind.sample: "status",
    RecordKind.test_result: "status",
    RecordKind.equipment_status: "status",
    RecordKind.video_event: "event_type",
    RecordKind.calibration_event: "result",
    RecordKind.complaint: "status",
}
# Kinds fusion describes with SOSA/SSN (observations and samples, adapters/fusion.py).
SOSA_KINDS = {
    RecordKind.sample.value,
    RecordKind.test_result.value,
    RecordKind.environment_reading.value,
    RecordKind.equipment_status.value,
    RecordKind.video_event.value,
}
# Kinds the SensorThings-style read API serves (L5.4).
SENSORTHINGS_KINDS = {RecordKind.environment_reading.value, RecordKind.equipment_status.value}
SAMPLE_LIMIT = 2000  # rows inspected per check: enough to show a property, bounded on a long-running instance
UNFUSED_GRACE = timedelta(minutes=5)  # a record waiting longer than this for fusion counts as not fused
CONFORMANCE_VALID_FOR = timedelta(days=1)  # a kit run for the same adapter version is reused this long


@dataclass(frozen=True)
class CriterionDef:
    """One criterion of levels.md."""

    id: str
    level: int
    title: str


CRITERIA: tuple[CriterionDef, ...] = (
    CriterionDef("L1.1", 1, "Connects with its configured transport and reports health (connected, last seen, lag)"),
    CriterionDef("L1.2", 1, "Every inbound message stored raw and immutable with a complete provenance envelope"),
    CriterionDef("L1.3", 1, "At-least-once and idempotent: duplicates stored once; resumes from its checkpoint"),
    CriterionDef("L1.4", 1, "Bounded retries with backoff; a poison message does not block the stream"),
    CriterionDef("L2.1", 2, "Parses payloads into the versioned canonical schema (JSON Schema published)"),
    CriterionDef("L2.2", 2, "Publishes its field mapping covering every required canonical field"),
    CriterionDef("L2.3", 2, "Units UCUM, times ISO 8601 with offset, decimals keep digits, censoring kept"),
    CriterionDef("L2.4", 2, "Invalid payloads quarantined with machine-readable codes; in = accepted + quarantined"),
    CriterionDef("L2.5", 2, "Each canonical record links to its raw envelope and carries its schema version"),
    CriterionDef("L3.1", 3, "Records become RDF with SOSA/SSN, QUDT, PROV-O and the hub ontology in named graphs"),
    CriterionDef("L3.2", 3, "Deterministic IRIs from authoritative identifiers"),
    CriterionDef("L3.3", 3, "SHACL shapes validate every emitted class; a broken record fails its shape"),
    CriterionDef("L3.4", 3, "Cross-source questions answered by SPARQL"),
    CriterionDef("L3.5", 3, "Code lists mapped (source statuses, flags, alarm types → hub vocabularies)"),
    CriterionDef("L4.1", 4, "Publishes domain events as CloudEvents 1.0"),
    CriterionDef("L4.2", 4, "Writes back to the source with acknowledgement and idempotency"),
    CriterionDef("L4.3", 4, "Cross-domain rules act on its fused data"),
    CriterionDef("L4.4", 4, "Failed commands retried, compensated or dead-lettered; never written twice"),
    CriterionDef("L4.5", 4, "Service levels measured and exposed (latency, completeness, timeliness)"),
    CriterionDef("L5.1", 5, "A plug-in discovered through Python entry points, with a valid manifest"),
    CriterionDef("L5.2", 5, "Public, versioned contracts: OpenAPI, AsyncAPI, JSON Schemas, SHACL shapes"),
    CriterionDef("L5.3", 5, "Passes the conformance kit (the L1–L4 checks as a pytest plugin)"),
    CriterionDef("L5.4", 5, "Open read access through a standard API with per-tenant isolation"),
    CriterionDef("L5.5", 5, "Self-assessment report with its trend across versions"),
)
LEVEL_NAMES = {
    1: "互联级 connected",
    2: "可读级 readable",
    3: "融合级 fused",
    4: "协同级 collaborative",
    5: "生态级 ecosystem",
}


# --- report schemas ----------------------------------------------------------------------------------------


class CriterionResult(ApiSchema):
    """One criterion's outcome with what proves it."""

    id: str
    level: int
    title: str
    passed: bool
    evidence: str = PydanticField(description="What the hub observed, in a sentence or two")
    links: list[str] = PydanticField(default_factory=list, description="API URLs of the proving messages/records/…")
    details: dict[str, Any] = PydanticField(default_factory=dict)


class LatencyStats(ApiSchema):
    """Latency distribution in seconds over `count` records."""

    count: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None


class ServiceLevels(ApiSchema):
    """L4.5: end-to-end latency, completeness and timeliness measured from the instance's own data."""

    measured_at: datetime
    ingest_latency: LatencyStats = PydanticField(description="source time → recorded in the landing zone")
    fusion_latency: LatencyStats = PydanticField(description="recorded → fused into the knowledge graph")
    end_to_end_latency: LatencyStats = PydanticField(description="source time → fused")
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    completeness: float | None = PydanticField(description="accepted / distinct messages received")
    records: int
    fused: int
    fused_ratio: float | None
    commands: int
    commands_acknowledged: int
    commands_dead_lettered: int
    command_ack_latency: LatencyStats
    command_timeliness: float | None = PydanticField(description="acknowledged / finished commands")
    complaints: int
    complaints_closed_on_time: int
    complaints_overdue: int
    complaint_timeliness: float | None = PydanticField(description="closed before due / complaints past or closed")
    webhook_deliveries: int
    webhook_delivered: int
    webhook_dead: int


class TrendPoint(ApiSchema):
    """One earlier (or this) assessment of the instance."""

    assessed_at: datetime
    adapter_version: str
    config_sha256: str
    achieved_level: int
    passed: int
    total: int


class MaturityReport(ApiSchema):
    """Every criterion of levels.md for one instance as deployed, the achieved level and the trend."""

    instance_id: str
    instance_name: str
    adapter: str
    adapter_version: str
    config_sha256: str
    counterpart: str | None
    simulator: bool = PydanticField(description="The counterpart is a simulator: levels are shown against it")
    achieved_level: int
    achieved_level_name: str | None
    assessed_at: datetime
    criteria: list[CriterionResult]
    service_levels: ServiceLevels
    trend: list[TrendPoint]


# --- facts gathered once per assessment --------------------------------------------------------------------


@dataclass
class _Facts:
    session: Session
    instance: AdapterInstance
    settings: Settings
    store: Any  # graph.store.GraphStore or None
    now: datetime
    base: str
    adapter_class: type[Adapter] | None = None
    adapter: Adapter | None = None
    load_error: str | None = None
    counters: AdapterCounters | None = None
    records: list[CanonicalRecordRow] = field(default_factory=list)
    events: list[OutboxEvent] = field(default_factory=list)
    commands: list[AdapterCommand] = field(default_factory=list)
    evidence: dict[str, AdapterEvidence] = field(default_factory=dict)
    graphs: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> AdapterManifest | None:
        return None if self.adapter_class is None else self.adapter_class.manifest

    def message_link(self, message_id: int | None) -> str:
        return f"{self.base}/messages/{message_id}"


def config_sha256(config: dict[str, Any]) -> str:
    """Digest of a configuration (canonical JSON): a level belongs to the adapter as deployed."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _gather(session: Session, *, instance: AdapterInstance, settings: Settings, store: Any, now: datetime) -> _Facts:
    facts = _Facts(
        session=session,
        instance=instance,
        settings=settings,
        store=store,
        now=now,
        base=f"/api/v1/adapters/{instance.id}",
    )
    from adapters.discovery import get_adapter_class_or_raise

    try:
        facts.adapter_class = get_adapter_class_or_raise(instance.adapter)
        facts.adapter = facts.adapter_class(instance.config)
    except Exception as error:  # reported in L5.1; the table-based checks still run
        facts.load_error = f"{type(error).__name__}: {error}"
    facts.counters = session.get(AdapterCounters, instance.id)
    facts.records = list(
        session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance.id)
            .order_by(col(CanonicalRecordRow.id).desc())
            .limit(SAMPLE_LIMIT)
        )
    )
    facts.events = list(
        session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.instance_id == instance.id)
            .order_by(col(OutboxEvent.seq).desc())
            .limit(SAMPLE_LIMIT)
        )
    )
    facts.commands = list(
        session.exec(
            select(AdapterCommand)
            .where(AdapterCommand.instance_id == instance.id)
            .order_by(col(AdapterCommand.created_at).desc())
            .limit(SAMPLE_LIMIT)
        )
    )
    for row in session.exec(
        select(AdapterEvidence)
        .where(AdapterEvidence.instance_id == instance.id, AdapterEvidence.adapter_version == instance.adapter_version)
        .order_by(col(AdapterEvidence.id))
    ):
        facts.evidence[row.criterion] = row  # the latest observation per criterion wins
    facts.graphs = sorted({row.graph_iri for row in facts.records if row.graph_iri})
    return facts


def _result(
    facts: _Facts,
    criterion: str,
    passed: bool,
    evidence: str,
    links: Iterable[str] = (),
    **details: Any,
) -> CriterionResult:
    """A criterion's result, vetoed by a failed recorded observation of the same criterion and version."""
    definition = next(item for item in CRITERIA if item.id == criterion)
    recorded = facts.evidence.get(criterion)
    if recorded is not None:
        details["recorded_observation"] = {
            "passed": recorded.passed,
            "summary": recorded.summary,
            "at": str(recorded.at),
        }
        if not recorded.passed:
            passed = False
            evidence = f"{evidence} The latest recorded observation failed: {recorded.summary}"
    return CriterionResult(
        id=criterion,
        level=definition.level,
        title=definition.title,
        passed=passed,
        evidence=evidence,
        links=list(dict.fromkeys(links))[:20],
        details=details,
    )


# --- L1 ----------------------------------------------------------------------------------------------------


def _l1_1(facts: _Facts) -> CriterionResult:
    instance = facts.instance
    health = facts.session.get(AdapterHealth, instance.id)
    timeout = timedelta(seconds=facts.settings.adapter_health_timeout_s)
    last_seen = _aware(health.last_seen) if health else None
    reported_healthy = bool(health and health.connected and last_seen and facts.now - last_seen <= timeout)
    probe: bool | None = None
    probe_error = None
    if facts.adapter is not None:
        try:
            probe = _run_async(facts.adapter.check_health(), timeout_s=15)
        except Exception as error:  # a probe that raises says the source is not reachable
            probe, probe_error = False, f"{type(error).__name__}: {error}"
    manifest = facts.manifest
    transports = {str(t) for t in manifest.transports} if manifest else set()
    used = set(
        facts.session.exec(select(LandingMessage.transport).where(LandingMessage.instance_id == instance.id).distinct())
    )
    over_declared = bool(used) and used <= transports
    passed = (reported_healthy or probe is True) and probe is not False and over_declared
    parts = [
        f"runtime reports {'healthy' if reported_healthy else 'not healthy'}"
        + (f" (last seen {last_seen.isoformat()}, lag {health.lag_s} s)" if health and last_seen else ""),
        f"health probe now: {'source answers' if probe else 'source does not answer' if probe is False else 'n/a'}",
        f"messages landed over {', '.join(sorted(used)) or 'no transport yet'}"
        + (f" (declared: {', '.join(sorted(transports))})" if transports else ""),
    ]
    return _result(
        facts,
        "L1.1",
        passed,
        "; ".join(parts) + ".",
        [f"{facts.base}/health", f"{facts.base}/messages"],
        reported_healthy=reported_healthy,
        probe=probe,
        probe_error=probe_error,
        transports_used=sorted(used),
        health_timeout_s=facts.settings.adapter_health_timeout_s,
    )


def _l1_2(facts: _Facts) -> CriterionResult:
    messages = list(
        facts.session.exec(
            select(LandingMessage)
            .where(LandingMessage.instance_id == facts.instance.id)
            .order_by(col(LandingMessage.id).desc())
            .limit(SAMPLE_LIMIT)
        )
    )
    incomplete: list[int] = []
    tampered: list[int] = []
    missing_time = 0
    for message in messages:
        fields_ok = (
            all([message.source, message.adapter, message.adapter_version, message.transport, message.content_type])
            and message.received_at is not None
        )
        if message.source_time is None and message.outcome == LandingOutcome.accepted:
            missing_time += 1
            fields_ok = False
        if not fields_ok:
            incomplete.append(message.id or 0)
        if hashlib.sha256(message.raw).hexdigest() != message.sha256 or len(message.raw) != message.size:
            tampered.append(message.id or 0)
    passed = bool(messages) and not incomplete and not tampered
    evidence = (
        f"{len(messages)} landed messages checked: {len(messages) - len(incomplete)} with a complete envelope, "
        f"sha256 recomputed over the stored bytes matches for {len(messages) - len(tampered)}"
    )
    if missing_time:
        evidence += f"; {missing_time} accepted messages have no source timestamp"
    if not messages:
        evidence = "No message has landed yet."
    links = [facts.message_link(m.id) for m in messages[:3]] + [facts.message_link(i) for i in incomplete[:5]]
    return _result(
        facts, "L1.2", passed, evidence + ".", links, incomplete=incomplete[:20], sha256_mismatch=tampered[:20]
    )


def _l1_3(facts: _Facts) -> CriterionResult:
    session, instance_id = facts.session, facts.instance.id
    counters = facts.counters
    rows = session.exec(
        select(func.count(), func.count(func.distinct(LandingMessage.dedup_key))).where(
            LandingMessage.instance_id == instance_id
        )
    ).one()
    stored, distinct = int(rows[0]), int(rows[1])
    duplicates = counters.duplicates if counters else 0
    # The checkpoint of each stream must be the cursor of the last message landed on it: nothing landed past it.
    checkpoints = {
        c.stream: c for c in session.exec(select(AdapterCheckpoint).where(AdapterCheckpoint.instance_id == instance_id))
    }
    latest: dict[str, LandingMessage] = {}
    for message in session.exec(
        select(LandingMessage)
        .where(LandingMessage.instance_id == instance_id, col(LandingMessage.cursor).is_not(None))
        .order_by(col(LandingMessage.id).desc())
        .limit(SAMPLE_LIMIT)
    ):
        latest.setdefault(message.stream, message)
    behind = [stream for stream, message in latest.items() if stream not in checkpoints]
    recorded = facts.evidence.get("L1.3")
    redelivery_seen = duplicates > 0 or (recorded is not None and recorded.passed)
    passed = stored > 0 and stored == distinct and not behind and redelivery_seen
    evidence = (
        f"{stored} messages stored under {distinct} distinct dedup keys; {duplicates} redelivered duplicates "
        f"counted and not stored again; {len(checkpoints)} stream checkpoints committed with the landings"
    )
    if behind:
        evidence += f"; streams with cursors but no checkpoint: {', '.join(behind[:5])}"
    if not redelivery_seen:
        evidence += "; no redelivery observed yet, so idempotency is not yet shown"
    return _result(
        facts,
        "L1.3",
        passed,
        evidence + ".",
        [f"{facts.base}/counters", f"{facts.base}/messages"],
        stored=stored,
        distinct_keys=distinct,
        duplicates=duplicates,
        checkpoints={stream: c.cursor for stream, c in list(checkpoints.items())[:20]},
    )


def _l1_4(facts: _Facts) -> CriterionResult:
    session, instance_id = facts.session, facts.instance.id
    attempts = list(
        session.exec(
            select(AdapterAttempt)
            .where(AdapterAttempt.instance_id == instance_id)
            .order_by(col(AdapterAttempt.id))
            .limit(SAMPLE_LIMIT)
        )
    )
    failures = [a for a in attempts if not a.succeeded]
    max_attempts = facts.settings.adapter_retry_max_attempts
    over_bound = [a for a in attempts if a.attempt > max_attempts]
    backed_off = [a for a in failures if (a.delay_s or 0) > 0]
    growing = _backoff_grows(failures)
    # A poison message: quarantined, and a later message on the same stream was still accepted.
    poison = session.exec(
        select(LandingMessage.id, LandingMessage.stream)
        .where(LandingMessage.instance_id == instance_id, LandingMessage.outcome == LandingOutcome.quarantined)
        .order_by(col(LandingMessage.id))
        .limit(200)
    ).all()
    survived: tuple[int, int] | None = None
    for poison_id, stream in poison:
        after = session.exec(
            select(LandingMessage.id)
            .where(
                LandingMessage.instance_id == instance_id,
                LandingMessage.stream == stream,
                LandingMessage.outcome == LandingOutcome.accepted,
                col(LandingMessage.id) > poison_id,
            )
            .limit(1)
        ).first()
        if after is not None:
            survived = (poison_id or 0, after or 0)
            break
    passed = bool(backed_off) and growing and not over_bound and survived is not None
    parts = [
        f"{len(failures)} failed attempts recorded, {len(backed_off)} followed by a backoff delay"
        + (" that grows between consecutive tries" if growing and backed_off else ""),
        f"no operation tried more than {max_attempts} times"
        if not over_bound
        else f"{len(over_bound)} tries beyond the bound of {max_attempts}",
        f"poison message {survived[0]} quarantined and message {survived[1]} after it accepted"
        if survived
        else "no quarantined message followed by an accepted one observed yet",
    ]
    links = [f"{facts.base}/attempts"]
    if survived:
        links += [facts.message_link(survived[0]), facts.message_link(survived[1])]
    return _result(
        facts,
        "L1.4",
        passed,
        "; ".join(parts) + ".",
        links,
        retry_delays_s=[a.delay_s for a in backed_off[:20]],
        operations=sorted({a.operation for a in failures}),
    )


def _backoff_grows(failures: Sequence[AdapterAttempt]) -> bool:
    """Within each run of consecutive failures of an operation, the delay grows, allowing for jitter.

    Jittered backoff ("equal jitter": a random delay between half the exponential ceiling and the ceiling) may
    wait less after one try than after the one before, once the ceiling reaches its cap; it never waits less
    than half the longest delay of the run so far. So a run grows when some delay exceeds the run's first one
    and none falls below half of the longest before it.
    """
    by_operation: dict[str, list[AdapterAttempt]] = defaultdict(list)
    for attempt in failures:
        if attempt.delay_s is not None:  # the last, exhausted try waits for nothing
            by_operation[attempt.operation].append(attempt)
    grew = False
    for attempts in by_operation.values():
        previous: AdapterAttempt | None = None
        first = peak = 0.0
        for attempt in attempts:
            delay = attempt.delay_s or 0.0
            if previous is not None and attempt.attempt == previous.attempt + 1:
                if delay + 1e-9 < peak / 2:
                    return False
                if delay > first:
                    grew = True
                peak = max(peak, delay)
            else:  # a new run of failures starts
                first = peak = delay
            previous = attempt
    single = any(len(items) == 1 and (items[0].delay_s or 0) > 0 for items in by_operation.values())
    return grew or single


# --- L2 ----------------------------------------------------------------------------------------------------


def _golden_outcomes(adapter_class: type[Adapter], adapter: Adapter | None) -> tuple[list[str], list[str]]:
    """Names of golden fixtures that reproduce their expected canonical JSON, and failures with reasons."""
    from adapters.conformance.checks import compare_golden

    fixtures = adapter_class.golden_fixtures()
    passed, failed = [], []
    # Golden fixtures pin the output for the configuration the plug-in documents (its schema's example);
    # a deployment's own settings (a lab id, extra codes) may legitimately add to it.
    parser = _example_adapter(adapter_class) or adapter
    if parser is None:
        return [], ["the plug-in cannot be built from its configuration or its schema's example"]
    for fixture in fixtures:
        problem = compare_golden(parser, fixture)
        if problem is None:
            passed.append(fixture.name)
        else:
            failed.append(f"{fixture.name}: {problem}")
    return passed, failed


def _example_adapter(adapter_class: type[Adapter]) -> Adapter | None:
    examples = adapter_class.manifest.config_schema.get("examples") or [{}]
    try:
        return adapter_class(examples[0])
    except Exception:
        return None


@cache
def _published_schemas() -> dict[str, dict[str, Any]]:
    """Published canonical JSON Schemas by `$id`."""
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(CANONICAL_SCHEMA_DIR.glob("*.schema.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and "$id" in document:
            schemas[document["$id"]] = document
    return schemas


def published_schema(kind: RecordKind) -> dict[str, Any] | None:
    """The published JSON Schema of a record kind (None when the file is missing)."""
    return _published_schemas().get(json_schema(kind)["$id"])


def _l2_1(facts: _Facts) -> CriterionResult:
    manifest = facts.manifest
    if facts.adapter_class is None or manifest is None:
        return _result(facts, "L2.1", False, f"The plug-in cannot be loaded: {facts.load_error}.")
    missing_schemas = [kind.value for kind in manifest.emits if published_schema(kind) is None]
    golden_ok, golden_failed = _golden_outcomes(facts.adapter_class, facts.adapter)
    invalid: list[int] = []
    by_kind: Counter[str] = Counter()
    for row in facts.records:
        by_kind[row.kind] += 1
        schema = published_schema(RecordKind(row.kind)) if row.kind in {k.value for k in RecordKind} else None
        if schema is None or not jsonschema.Draft202012Validator(schema).is_valid(row.record):
            invalid.append(row.id or 0)
    passed = bool(golden_ok) and not golden_failed and not missing_schemas and bool(facts.records) and not invalid
    evidence = (
        f"golden fixtures → expected canonical JSON: {len(golden_ok)} pass, {len(golden_failed)} fail; "
        f"{len(facts.records) - len(invalid)} of {len(facts.records)} stored records validate against the "
        f"published JSON Schemas ({', '.join(f'{k}: {n}' for k, n in sorted(by_kind.items())) or 'none'})"
    )
    if missing_schemas:
        evidence += f"; no published schema for {', '.join(missing_schemas)}"
    if not golden_ok and not golden_failed:
        evidence += "; the plug-in ships no golden fixtures"
    links = [f"{facts.base}/records?kind={kind}" for kind in sorted(by_kind)]
    return _result(
        facts, "L2.1", passed, evidence + ".", links, golden_failed=golden_failed[:10], invalid_records=invalid[:20]
    )


def required_fields(kind: RecordKind) -> list[str]:
    """Fields a record of this kind must carry (the canonical model's required fields)."""
    schema = RECORD_TYPES[kind].model_json_schema(mode="validation")
    return [name for name in schema.get("required", []) if name not in ("record_type", "schema_version")]


def _l2_2(facts: _Facts) -> CriterionResult:
    manifest = facts.manifest
    if facts.adapter is None or manifest is None:
        return _result(facts, "L2.2", False, f"The plug-in cannot be built: {facts.load_error}.")
    mappings = facts.adapter.field_mappings()
    gaps: dict[str, list[str]] = {}
    for kind in manifest.emits:
        covered = {m.canonical_field.split(".")[0] for m in mappings if m.record_kind == kind and m.source_field}
        missing = [name for name in required_fields(kind) if name not in covered]
        if missing:
            gaps[kind.value] = missing
    passed = bool(mappings) and not gaps
    evidence = f"{len(mappings)} published field mappings for {', '.join(k.value for k in manifest.emits)}; " + (
        "every required canonical field is mapped" if not gaps else f"unmapped required fields: {gaps}"
    )
    return _result(
        facts,
        "L2.2",
        passed,
        evidence + ".",
        [f"/api/v1/adapters/catalog#{manifest.name}"],
        mappings=[m.model_dump(mode="json") for m in mappings[:60]],
    )


_TIME_FIELDS = (
    "source_time",
    "received_at",
    "started_at",
    "measured_at",
    "observed_at",
    "calibrated_on",
    "valid_until",
    "due_at",
)
_DECIMAL_FIELDS = ("value", "expanded_uncertainty")


def _l2_3(facts: _Facts) -> CriterionResult:
    from adapters.units import normalise_unit

    bad_units: set[str] = set()
    bad_times: list[int] = []
    float_values: list[int] = []
    censored = 0
    lost_operator: list[int] = []
    units_seen: set[str] = set()
    for row in facts.records:
        record = row.record
        unit = record.get("unit")
        if unit is not None:
            units_seen.add(unit)
            try:
                if normalise_unit(unit) != unit:
                    bad_units.add(unit)
            except QuarantineError:
                bad_units.add(unit)
        for name in _TIME_FIELDS:
            value = record.get(name)
            if value is None:
                continue
            try:
                parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                bad_times.append(row.id or 0)
                continue
            if parsed.utcoffset() is None:
                bad_times.append(row.id or 0)
        for name in _DECIMAL_FIELDS:
            if name in record and not isinstance(record[name], str):
                float_values.append(row.id or 0)  # a JSON number loses trailing zeros ("20.10" → 20.1)
        if record.get("operator"):
            censored += 1
            if record.get("value") is None:
                lost_operator.append(row.id or 0)
    probe_ok, probe_failed = True, list[str]()
    if facts.adapter_class is not None:
        # The golden fixtures pin units, times and decimals exactly: a fixture that passes keeps digits.
        golden_ok, probe_failed = _golden_outcomes(facts.adapter_class, facts.adapter)
        probe_ok = bool(golden_ok) and not probe_failed
    passed = (
        bool(facts.records) and not bad_units and not bad_times and not float_values and not lost_operator and probe_ok
    )
    evidence = (
        f"{len(facts.records)} records: units {', '.join(sorted(units_seen)) or '(none carried)'} "
        f"{'all UCUM as the hub normalises them' if not bad_units else f'not normalised: {sorted(bad_units)}'}; "
        f"{'all times ISO 8601 with an offset' if not bad_times else f'{len(bad_times)} times without offset'}; "
        + ("decimals stored as text (digits kept); " if not float_values else f"{len(float_values)} JSON numbers; ")
        + f"{censored} censored values keep their operator"
    )
    return _result(
        facts,
        "L2.3",
        passed,
        evidence + ".",
        [f"{facts.base}/records"],
        bad_units=sorted(bad_units),
        bad_times=bad_times[:20],
        float_values=float_values[:20],
        golden_failed=probe_failed[:10],
    )


GARBAGE_PAYLOADS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\xff{not json", "application/json"),
    (b"{}", "application/json"),
)


def quarantine_probe(adapter: Adapter, manifest: AdapterManifest) -> tuple[list[str], list[str]]:
    """Feed malformed payloads to the parser: codes it answered with, and payloads it did not quarantine."""
    codes, escaped = [], []
    transport = manifest.transports[0]
    for payload, content_type in GARBAGE_PAYLOADS:
        message = InboundMessage(payload=payload, content_type=content_type, source="probe", transport=transport)
        try:
            adapter.parse(message)
        except QuarantineError as error:
            codes.append(error.code)
            continue
        except Exception as error:
            escaped.append(f"{payload[:20]!r}: raised {type(error).__name__} instead of QuarantineError")
            continue
        escaped.append(f"{payload[:20]!r}: parsed without complaint")
    return codes, escaped


def _l2_4(facts: _Facts) -> CriterionResult:
    session, instance_id = facts.session, facts.instance.id
    counters = facts.counters
    by_outcome = dict(
        session.exec(
            select(LandingMessage.outcome, func.count())
            .where(LandingMessage.instance_id == instance_id)
            .group_by(LandingMessage.outcome)
        ).all()
    )
    codes = Counter(
        dict(
            session.exec(
                select(LandingMessage.error_code, func.count())
                .where(LandingMessage.instance_id == instance_id, LandingMessage.outcome == LandingOutcome.quarantined)
                .group_by(LandingMessage.error_code)
            ).all()
        )
    )
    accepted = int(by_outcome.get(LandingOutcome.accepted.value, 0))
    quarantined = int(by_outcome.get(LandingOutcome.quarantined.value, 0))
    reconciled = (
        counters is not None and counters.received == counters.accepted + counters.quarantined + counters.duplicates
    )
    rows_match = counters is not None and counters.accepted == accepted and counters.quarantined == quarantined
    uncoded = codes.get(None, 0)  # type: ignore[call-overload]
    probe_codes: list[str] = []
    escaped: list[str] = []
    if facts.adapter is not None and facts.manifest is not None:
        probe_codes, escaped = quarantine_probe(facts.adapter, facts.manifest)
    passed = bool(counters and counters.received) and reconciled and rows_match and not uncoded and not escaped
    evidence = (
        f"counters: received {counters.received if counters else 0} = accepted "
        f"{counters.accepted if counters else 0} + quarantined {counters.quarantined if counters else 0} + "
        f"duplicates {counters.duplicates if counters else 0}"
        f" {'(reconciles)' if reconciled else '(does NOT reconcile)'}; landing zone holds {accepted} accepted and "
        f"{quarantined} quarantined messages {'as counted' if rows_match else '(differs from the counters)'}; "
        f"quarantine codes {dict(codes) or '{}'}; malformed probe payloads answered with {probe_codes or 'nothing'}"
    )
    if escaped:
        evidence += f"; not quarantined: {escaped}"
    first_quarantined = session.exec(
        select(LandingMessage.id)
        .where(LandingMessage.instance_id == instance_id, LandingMessage.outcome == LandingOutcome.quarantined)
        .limit(3)
    ).all()
    links = [f"{facts.base}/counters", f"{facts.base}/messages?outcome=quarantined"]
    links += [facts.message_link(i) for i in first_quarantined]
    return _result(facts, "L2.4", passed, evidence + ".", links, quarantine_codes={str(k): v for k, v in codes.items()})


def _l2_5(facts: _Facts) -> CriterionResult:
    session = facts.session
    message_ids = {row.message_id for row in facts.records}
    landed = (
        {
            message_id: outcome
            for message_id, outcome in session.exec(
                select(LandingMessage.id, LandingMessage.outcome).where(
                    col(LandingMessage.id).in_(list(message_ids)[:SAMPLE_LIMIT])
                )
            ).all()
        }
        if message_ids
        else {}
    )
    broken: list[int] = []
    for row in facts.records:
        record = row.record
        if (
            landed.get(row.message_id) != LandingOutcome.accepted
            or record.get("envelope_id") != row.message_id
            or not row.schema_version
            or record.get("schema_version") != row.schema_version
        ):
            broken.append(row.id or 0)
    passed = bool(facts.records) and not broken
    versions = sorted({row.schema_version for row in facts.records})
    evidence = (
        f"{len(facts.records) - len(broken)} of {len(facts.records)} records point to an accepted raw message "
        f"(envelope_id) and carry schema version {', '.join(versions) or '—'}"
    )
    links = [facts.message_link(row.message_id) for row in facts.records[:3]] + [f"{facts.base}/records"]
    return _result(facts, "L2.5", passed, evidence + ".", links, broken=broken[:20])


# --- L3 ----------------------------------------------------------------------------------------------------


def _ask(store: Any, sparql: str) -> bool:
    outcome = store.query(sparql, timeout_s=10.0, result_cap=10)
    return bool(outcome.boolean())


def _select(store: Any, sparql: str, cap: int = 1000) -> list[dict[str, Any]]:
    outcome = store.query(sparql, timeout_s=15.0, result_cap=cap)
    rows: list[dict[str, Any]] = outcome.rows()
    return rows


def _values(graphs: Sequence[str]) -> str:
    return " ".join(f"<{g}>" for g in graphs)


def _fusion_facts(facts: _Facts) -> tuple[int, int, int]:
    """Records fused, records waiting longer than the grace period, records in total."""
    fused = sum(1 for row in facts.records if row.fused_at is not None)
    late = sum(
        1
        for row in facts.records
        if row.fused_at is None and facts.now - (_aware(row.recorded_at) or facts.now) > UNFUSED_GRACE
    )
    return fused, late, len(facts.records)


def _l3_1(facts: _Facts) -> CriterionResult:
    fused, late, total = _fusion_facts(facts)
    if facts.store is None:
        return _result(facts, "L3.1", False, "No knowledge-graph store is available to inspect.")
    graphs = [g for g in facts.graphs if facts.store.graph_exists(g)][:50]
    vocabularies: dict[str, bool] = {}
    if graphs:
        for name, namespace in (("SOSA/SSN", SOSA), ("QUDT", QUDT), ("PROV-O", PROV), ("hub ontology", QH)):
            filter_ = f'STRSTARTS(STR(?p), "{namespace}") || (isIRI(?o) && STRSTARTS(STR(?o), "{namespace}"))'
            if namespace == SOSA:
                filter_ += f' || STRSTARTS(STR(?p), "{SSN}") || (isIRI(?o) && STRSTARTS(STR(?o), "{SSN}"))'
            vocabularies[name] = _ask(
                facts.store, f"ASK {{ VALUES ?g {{ {_values(graphs)} }} GRAPH ?g {{ ?s ?p ?o FILTER({filter_}) }} }}"
            )
    kinds = {row.kind for row in facts.records}
    quantitative = bool(kinds & {RecordKind.environment_reading.value, RecordKind.test_result.value})
    # SOSA/SSN describe observations and samples; a complaint or a calibration is not one, so an adapter
    # emitting only those is judged on PROV-O and the hub ontology.
    observational = bool(kinds & SOSA_KINDS)
    needed = (["SOSA/SSN"] if observational else []) + ["PROV-O", "hub ontology"] + (["QUDT"] if quantitative else [])
    passed = fused > 0 and late == 0 and bool(graphs) and all(vocabularies.get(name) for name in needed)
    evidence = (
        f"{fused} of {total} records fused into {len(facts.graphs)} named graphs ({late} waiting beyond "
        f"{int(UNFUSED_GRACE.total_seconds() // 60)} min); vocabularies used: "
        + (", ".join(f"{name} {'yes' if used else 'no'}" for name, used in vocabularies.items()) or "none")
    )
    links = [f"/rdf-graphs?graph={g}" for g in graphs[:3]]
    return _result(facts, "L3.1", passed, evidence + ".", links, graphs=graphs[:20], vocabularies=vocabularies)


def _authoritative_iris(record: dict[str, Any]) -> list[str]:
    from graph.iris import instrument_iri

    iris = []
    instrument = record.get("instrument")
    if isinstance(instrument, dict):
        iris.append(instrument_iri(instrument.get("manufacturer"), instrument.get("model"), instrument.get("serial")))
    return iris


def _l3_2(facts: _Facts) -> CriterionResult:
    if facts.store is None:
        return _result(facts, "L3.2", False, "No knowledge-graph store is available to inspect.")
    fused = [row for row in facts.records if row.fused_at is not None and row.graph_iri]
    # Same authoritative identity → same graph: rows describing one thing never fan out into several graphs.
    graphs_by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in fused:
        graphs_by_key[(row.kind, row.natural_key)].add(row.graph_iri or "")
    split = {f"{kind}:{key}": sorted(g) for (kind, key), g in graphs_by_key.items() if len(g) > 1}
    # Authoritative identifiers (manufacturer + model + serial for instruments) must yield the shared IRI.
    expected: set[str] = set()
    for row in fused:
        expected.update(_authoritative_iris(row.record))
    present = {
        iri
        for iri in expected
        if _ask(facts.store, f"ASK {{ GRAPH ?g {{ {{ <{iri}> ?p ?o }} UNION {{ ?s ?q <{iri}> }} }} }}")
    }
    shared = []
    for iri in sorted(present)[:20]:
        rows = _select(
            facts.store, f"SELECT DISTINCT ?g WHERE {{ GRAPH ?g {{ {{ <{iri}> ?p ?o }} UNION {{ ?s ?q <{iri}> }} }} }}"
        )
        others = [r["g"] for r in rows if r["g"] not in facts.graphs]
        if others:
            shared.append({"iri": iri, "also_in": others[:5]})
    # Re-deriving the graph of a record gives the same IRIs (deterministic mapping), when fusion can say.
    redo_ok, redo_detail = _refusion_probe(facts, fused[:5])
    checked = bool(fused) and (bool(expected) or bool(graphs_by_key))
    passed = checked and not split and present == expected and redo_ok
    evidence = (
        f"{len(graphs_by_key)} identities among {len(fused)} fused records map to one graph each"
        + (f" (split: {list(split)[:3]})" if split else "")
        + f"; {len(present)} of {len(expected)} instrument IRIs derived from manufacturer+model+serial present"
        + (f", {len(shared)} of them shared with other sources' graphs" if shared else "")
        + f"; {redo_detail}"
    )
    return _result(
        facts, "L3.2", passed, evidence + ".", [f"/rdf-graphs?graph={g}" for g in facts.graphs[:3]], shared=shared
    )


def _refusion_probe(facts: _Facts, rows: Sequence[CanonicalRecordRow]) -> tuple[bool, str]:
    """Map a few stored records twice with the fusion module: the IRIs must be the same both times."""
    from adapters.fusion import FusionSource, record_quads

    instance = facts.instance
    for row in rows:
        source = FusionSource(instance.id, instance.organization_id, instance.adapter, instance.adapter_version)
        runs = [
            _iris(
                record_quads(
                    row.kind, row.record, source=source, message_id=row.message_id, recorded_at=row.recorded_at
                )
            )
            for _ in range(2)
        ]
        if runs[0] != runs[1]:
            return False, f"record {row.id} maps to different IRIs on a second run"
    return bool(rows), f"{len(rows)} records mapped twice give identical IRIs"


def _iris(quads: Iterable[Any]) -> set[str]:
    import pyoxigraph

    found: set[str] = set()
    for quad in quads:
        for term in (quad.subject, quad.object):
            if isinstance(term, pyoxigraph.NamedNode):
                found.add(term.value)
    return found


def _graph_ntriples(store: Any, graph_iri: str) -> bytes:
    data: bytes = store.export_graph(graph_iri, "application/n-triples")
    return data


def mutation_probe(data: bytes) -> tuple[bool, str]:
    """Remove one property a shape requires (sh:minCount ≥ 1) from a node of the targeted class; SHACL must object."""
    from rdflib import Graph, URIRef
    from rdflib.namespace import RDF, SH

    from adapters.shapes import _shapes, validate_ntriples

    graph = Graph().parse(data=data, format="nt")
    shapes = _shapes()
    for shape, target in sorted(shapes.subject_objects(SH.targetClass), key=str):
        nodes = sorted(graph.subjects(RDF.type, target), key=str)
        if not nodes:
            continue
        for prop in shapes.objects(shape, SH.property):
            path = shapes.value(prop, SH.path)
            min_count = shapes.value(prop, SH.minCount)
            if not isinstance(path, URIRef) or min_count is None or int(str(min_count)) < 1:
                continue
            node = next((n for n in nodes if (n, path, None) in graph), None)
            if node is None:
                continue
            graph.remove((node, path, None))
            report = validate_ntriples(graph.serialize(format="nt").encode())
            hit = any(v.focus == str(node) and v.path == str(path) for v in report.violations)
            if not report.conforms and hit:
                return True, f"removing {path.n3()} from a {target.n3()} fails on that shape as expected"
            return False, f"removing {path.n3()} from a {target.n3()} was not reported by SHACL"
    return False, "no shape with a required property targets a class found in the graph"


def _l3_3(facts: _Facts) -> CriterionResult:
    from adapters.shapes import validate_ntriples

    if facts.store is None:
        return _result(facts, "L3.3", False, "No knowledge-graph store is available to inspect.")
    graphs = [g for g in facts.graphs if facts.store.graph_exists(g)][:20]
    if not graphs:
        return _result(facts, "L3.3", False, "No fused graph of this instance to validate.")
    failures: dict[str, list[dict[str, Any]]] = {}
    triples = 0
    data = b""
    for graph_iri in graphs:
        data = _graph_ntriples(facts.store, graph_iri)
        report = validate_ntriples(data)
        triples += report.triples
        if not report.conforms:
            failures[graph_iri] = [v.__dict__ for v in report.violations[:5]]
    mutation_ok, mutation_detail = mutation_probe(data)
    passed = not failures and triples > 0 and mutation_ok
    evidence = (
        f"{len(graphs) - len(failures)} of {len(graphs)} named graphs ({triples} triples) conform to the adapter "
        f"SHACL shapes; {mutation_detail}"
    )
    links = [f"/rdf-graphs?graph={g}" for g in graphs[:3]]
    return _result(facts, "L3.3", passed, evidence + ".", links, violations=failures)


def _l3_4(facts: _Facts) -> CriterionResult:
    if facts.store is None or not facts.graphs:
        return _result(facts, "L3.4", False, "No fused graph of this instance to query.")
    graphs = facts.graphs[:50]
    # A cross-source question: which resources described in this instance's graphs are also described or
    # referenced by another source's graph (another adapter, a certificate, a standard)? Answered by SPARQL.
    rows = _select(
        facts.store,
        f"""SELECT DISTINCT ?node ?other WHERE {{
              VALUES ?mine {{ {_values(graphs)} }}
              GRAPH ?mine {{ {{ ?node ?p ?x }} UNION {{ ?y ?q ?node }} }}
              FILTER(isIRI(?node) && !STRSTARTS(STR(?node), "http://www.w3.org/") && !STRSTARTS(STR(?node), "{QH}")
                     && !STRSTARTS(STR(?node), "http://qudt.org/"))
              GRAPH ?other {{ {{ ?node ?p2 ?x2 }} UNION {{ ?y2 ?q2 ?node }} }}
              FILTER(?other NOT IN ({", ".join(f"<{g}>" for g in graphs)}))
            }} LIMIT 50""",
        cap=50,
    )
    foreign = sorted({row["other"] for row in rows if row.get("other") not in facts.graphs})
    passed = bool(foreign)
    evidence = (
        f"SPARQL joins {len({row['node'] for row in rows})} resources of this instance's graphs with "
        f"{len(foreign)} graphs of other sources"
        if passed
        else "No resource of this instance's graphs is shared with another source's graph, so no cross-source "
        "question can be answered yet"
    )
    return _result(facts, "L3.4", passed, evidence + ".", ["/sparql"], joined=rows[:10])


def _l3_5(facts: _Facts) -> CriterionResult:
    from adapters.codelists import VOCABULARIES, fold_code

    manifest = facts.manifest
    if facts.adapter is None or manifest is None:
        return _result(facts, "L3.5", False, f"The plug-in cannot be built: {facts.load_error}.")
    coded = [kind for kind in manifest.emits if kind in CODED_KINDS]
    code_lists = facts.adapter.code_lists()
    hub_terms = set().union(*(v.codes for v in VOCABULARIES.values()))
    off_vocabulary = sorted({term for codes in code_lists.values() for term in codes.values() if term not in hub_terms})
    folded: dict[str, set[str]] = defaultdict(set)
    for codes in code_lists.values():
        for source, hub in codes.items():
            folded[fold_code(source)].add(hub)
    # Table-driven: every stored record's source code maps, through the published lists, to the status it has.
    mismatched: list[int] = []
    checked = 0
    for row in facts.records:
        source = str(row.record.get("source_status") or row.record.get("source_event_type") or "")
        field_name = CODED_KINDS.get(RecordKind(row.kind)) if row.kind in {k.value for k in RecordKind} else None
        if not source or not field_name or row.record.get(field_name) is None:
            continue
        checked += 1
        hub_value = row.record[field_name]
        if hub_value not in folded.get(fold_code(str(source)), set()) and not _bad_quality(str(source), hub_value):
            mismatched.append(row.id or 0)
    if not coded:
        passed = True
        evidence = f"{manifest.name} emits no coded fields ({', '.join(k.value for k in manifest.emits)})"
    else:
        passed = bool(code_lists) and not off_vocabulary and checked > 0 and not mismatched
        evidence = (
            f"{len(code_lists)} code lists published ({sum(len(c) for c in code_lists.values())} source codes) "
            + ("all onto hub vocabulary terms; " if not off_vocabulary else f"off-vocabulary terms {off_vocabulary}; ")
            + f"{checked - len(mismatched)} of {checked} stored records' source codes map to the status they carry"
        )
    return _result(facts, "L3.5", passed, evidence + ".", [f"{facts.base}/records"], mismatched=mismatched[:20])


def _bad_quality(source: str, hub_value: str) -> bool:
    # OPC UA-style quality codes ("BadCommunicationError") mean the link is down: the instrument is offline.
    return source.startswith("Bad") and hub_value == "offline"


# --- L4 ----------------------------------------------------------------------------------------------------


def cloudevent_problems(event: OutboxEvent) -> list[str]:
    """What makes an outbox row not a valid CloudEvents 1.0 event (required and typed attributes)."""
    problems = []
    if not event.id:
        problems.append("no id")
    if not event.source:
        problems.append("no source")
    if not event.type or not all(part for part in event.type.split(".")):
        problems.append("no type")
    if event.time is None:
        problems.append("no time")
    if event.datacontenttype and "/" not in event.datacontenttype:
        problems.append("datacontenttype is not a media type")
    try:
        json.dumps(event.data)
    except (TypeError, ValueError):
        problems.append("data is not JSON")
    return problems


def _expected_event_types(records: Sequence[CanonicalRecordRow]) -> set[str]:
    """Event types the instance's records must have caused (from what the records say, not from the events)."""
    expected: set[str] = set()
    latest: dict[str, tuple[str, str]] = {}  # instrument → (observed_at, status) of the newest status seen so far
    for row in sorted(records, key=lambda r: r.id or 0):  # in arrival order, as the events were derived
        record = row.record
        if row.kind == RecordKind.sample.value and record.get("status") == "received":
            expected.add("sample.received")
        if row.kind == RecordKind.test_result.value and record.get("status") == "verified":
            expected.add("result.verified")
        if row.kind == RecordKind.equipment_status.value:
            instrument = json.dumps(record.get("instrument"), sort_keys=True)
            observed = _instant(record.get("observed_at"))
            known = latest.get(instrument)
            if known is None or observed > known[0]:
                if known is not None and known[1] != record.get("status"):
                    expected.add("equipment.status.changed")
                latest[instrument] = (observed, str(record.get("status")))
    return expected


def _instant(value: Any) -> str:
    """A comparable UTC form of an ISO 8601 time."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).isoformat()
    except ValueError:
        return ""


def _l4_1(facts: _Facts) -> CriterionResult:
    invalid = {event.id: problems for event in facts.events if (problems := cloudevent_problems(event))}
    types = Counter(event.type for event in facts.events)
    expected = _expected_event_types(facts.records)
    missing = sorted(expected - set(types))
    passed = bool(facts.events) and not invalid and not missing
    evidence = (
        f"{len(facts.events)} outbox events from this instance, "
        f"{len(facts.events) - len(invalid)} valid CloudEvents 1.0 "
        f"({', '.join(f'{t} ×{n}' for t, n in sorted(types.items())) or 'none'})"
    )
    if expected:
        evidence += f"; the landed records imply {', '.join(sorted(expected))}" + (
            f", missing {missing}" if missing else ", all present"
        )
    links = [f"/api/v1/events/{event.id}" for event in facts.events[:3]]
    links += [f"/api/v1/events?type={event_type}" for event_type in sorted(types)]
    return _result(
        facts, "L4.1", passed, evidence + ".", links, invalid=dict(list(invalid.items())[:10]), types=dict(types)
    )


def _ack_events(facts: _Facts, command: AdapterCommand) -> list[OutboxEvent]:
    found = []
    for event in facts.session.exec(
        select(OutboxEvent)
        .where(OutboxEvent.type.startswith("command."))
        .order_by(col(OutboxEvent.seq).desc())
        .limit(SAMPLE_LIMIT)  # type: ignore[attr-defined]
    ):
        data = event.data or {}
        if command.id in (event.subject, data.get("id"), data.get("commandId"), data.get("command_id")) or (
            event.subject and command.id in event.subject
        ):
            found.append(event)
    return found


def _l4_2(facts: _Facts) -> CriterionResult:
    manifest = facts.manifest
    declared = manifest.commands if manifest else []
    if not declared:
        return _result(facts, "L4.2", False, "The plug-in executes no write-back commands.")
    acknowledged = [c for c in facts.commands if c.status == CommandStatus.acknowledged and c.ack is not None]
    with_event = [(c, events) for c in acknowledged if (events := _ack_events(facts, c))]
    # Idempotency: each key has one command row (unique), acknowledged once; a replay answered from the row.
    keys = Counter(c.idempotency_key for c in facts.commands)
    reused = [key for key, n in keys.items() if n > 1]
    recorded = facts.evidence.get("L4.2")
    passed = bool(with_event) and not reused
    evidence = (
        f"{len(facts.commands)} write-back commands ({', '.join(declared)}); {len(acknowledged)} acknowledged by the "
        f"source, {len(with_event)} with an acknowledgement event; every idempotency key names one command"
    )
    if recorded is not None and recorded.passed:
        evidence += f"; recorded: {recorded.summary}"
    links = [f"/api/v1/commands/{c.id}" for c, _ in with_event[:3]] + [
        f"/api/v1/events/{events[0].id}" for _, events in with_event[:3]
    ]
    return _result(
        facts,
        "L4.2",
        passed,
        evidence + ".",
        links,
        acks=[c.ack for c, _ in with_event[:3]],
    )


def _instance_keys(facts: _Facts) -> set[str]:
    """Identifiers of what this instance's records describe, as rule findings name them."""
    from graph.iris import instrument_iri

    keys = {row.natural_key for row in facts.records}
    for row in facts.records:
        record = row.record
        for name in ("sample_id", "result_id", "room", "complaint_id", "certificate_number"):
            if record.get(name):
                keys.add(str(record[name]))
        instrument = record.get("instrument")
        if isinstance(instrument, dict):
            keys.add(f"{instrument.get('manufacturer')}/{instrument.get('model')}/{instrument.get('serial')}")
            # Rules name instruments by their IRI (calibration-expired, test-on-unavailable-instrument).
            keys.add(instrument_iri(instrument.get("manufacturer"), instrument.get("model"), instrument.get("serial")))
    return keys


def _flag_involves(facts: _Facts, flag: RuleFlag, keys: set[str]) -> bool:
    """Whether a rule finding was raised on, or from, this instance's data."""
    details = flag.details or {}
    mentioned = {str(v) for v in _flatten(details)}
    return flag.subject_key in keys or facts.instance.id in mentioned or bool(keys & mentioned)


def _rule_commands(facts: _Facts) -> tuple[list[AdapterCommand], list[AdapterCommand]]:
    """This instance's write-backs a rule acted on: blocked with reasons, and queued by a rule from an event."""
    blocked = [c for c in facts.commands if c.status == CommandStatus.blocked and c.reasons]
    queued: list[AdapterCommand] = []
    by_event: dict[str, AdapterCommand] = {}
    for command in facts.commands:
        # The report rule keys the platform commands it queues "<event type>:<event id>" (adapters.events).
        event_type, _, event_id = command.idempotency_key.partition(":")
        if event_type in ("report.issued", "report.modified") and event_id:
            by_event[event_id] = command
    if by_event:
        found = facts.session.exec(select(OutboxEvent.id, OutboxEvent.type).where(col(OutboxEvent.id).in_(by_event)))
        queued = [
            by_event[event_id]
            for event_id, event_type in found
            if by_event[event_id].idempotency_key.startswith(f"{event_type}:")
        ]
    return blocked, queued


def _l4_3(facts: _Facts) -> CriterionResult:
    keys = _instance_keys(facts)
    flags = [
        flag
        for flag in facts.session.exec(select(RuleFlag).order_by(col(RuleFlag.id).desc()).limit(SAMPLE_LIMIT))
        if _flag_involves(facts, flag, keys)
    ]
    blocked, queued = _rule_commands(facts)
    rules = Counter(flag.rule for flag in flags)
    parts = []
    if flags:
        parts.append(
            f"{len(flags)} rule findings involve this instance's data "
            f"({', '.join(f'{r} ×{n}' for r, n in sorted(rules.items()))})"
        )
    if blocked:
        parts.append(
            f"{len(blocked)} write-backs blocked by a rule ({blocked[0].reasons[0] if blocked[0].reasons else ''})"
        )
    if queued:
        kinds = Counter(c.kind for c in queued)
        parts.append(
            f"{len(queued)} write-backs queued by the report rule from report events "
            f"({', '.join(f'{k} ×{n}' for k, n in sorted(kinds.items()))})"
        )
    passed = bool(flags or blocked or queued)
    evidence = "; ".join(parts) if parts else "No cross-domain rule has acted on this instance's data yet"
    links = ["/api/v1/rules/flags"] + [f"/api/v1/commands/{c.id}" for c in (blocked + queued)[:5]]
    return _result(
        facts,
        "L4.3",
        passed,
        evidence + ".",
        links,
        flags=[{"rule": f.rule, "subject": f.subject_key, "reason": f.reason} for f in flags[:10]],
        blocked_commands=[{"id": c.id, "kind": c.kind, "reasons": c.reasons} for c in blocked[:5]],
        rule_commands=[{"id": c.id, "kind": c.kind, "status": c.status} for c in queued[:5]],
    )


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    elif isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _l4_4(facts: _Facts) -> CriterionResult:
    commands = facts.commands
    if not (facts.manifest and facts.manifest.commands):
        return _result(facts, "L4.4", False, "The plug-in executes no write-back commands.")
    retried_then_acked = [c for c in commands if c.status == CommandStatus.acknowledged and c.attempts > 1]
    dead = [c for c in commands if c.status == CommandStatus.dead_lettered]
    compensated = [c for c in commands if c.status == CommandStatus.compensated]
    handled = retried_then_acked + dead + compensated
    max_attempts = facts.settings.command_max_attempts
    runaway = [c for c in commands if c.attempts > max_attempts]
    stuck = [
        c for c in commands if c.status in (CommandStatus.failed, CommandStatus.pending) and c.attempts >= max_attempts
    ]
    passed = bool(handled) and not runaway and not stuck
    evidence = (
        f"{len(retried_then_acked)} commands acknowledged after retries, {len(dead)} dead-lettered, "
        f"{len(compensated)} compensated; none tried more than {max_attempts} times"
        if not runaway
        else f"{len(runaway)} commands tried more than {max_attempts} times"
    )
    if stuck:
        evidence += f"; {len(stuck)} failed commands neither retried to success nor dead-lettered"
    if not handled:
        evidence += "; no failed command observed yet"
    links = [f"/api/v1/commands/{c.id}" for c in handled[:5]]
    return _result(facts, "L4.4", passed, evidence + ".", links)


def _percentiles(values: Sequence[float]) -> LatencyStats:
    if not values:
        return LatencyStats(count=0, p50_s=None, p95_s=None, max_s=None)
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return LatencyStats(
        count=len(ordered), p50_s=round(statistics.median(ordered), 6), p95_s=round(p95, 6), max_s=round(ordered[-1], 6)
    )


def service_levels_of(session: Session, *, instance: AdapterInstance, now: datetime | None = None) -> ServiceLevels:
    """L4.5 metrics of an instance: latency (source → landed → fused), completeness and timeliness."""
    now = now or datetime.now(UTC)
    records = list(
        session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance.id)
            .order_by(col(CanonicalRecordRow.id).desc())
            .limit(SAMPLE_LIMIT)
        )
    )
    ingest, fusion, end_to_end = [], [], []
    for row in records:
        source, recorded, fused = _aware(row.source_time), _aware(row.recorded_at), _aware(row.fused_at)
        if source and recorded:
            ingest.append(max((recorded - source).total_seconds(), 0.0))
        if recorded and fused:
            fusion.append(max((fused - recorded).total_seconds(), 0.0))
        if source and fused:
            end_to_end.append(max((fused - source).total_seconds(), 0.0))
    counters = session.get(AdapterCounters, instance.id) or AdapterCounters(instance_id=instance.id)
    distinct = counters.received - counters.duplicates
    commands = list(
        session.exec(select(AdapterCommand).where(AdapterCommand.instance_id == instance.id).limit(SAMPLE_LIMIT))
    )
    acknowledged = [c for c in commands if c.status == CommandStatus.acknowledged]
    dead = [c for c in commands if c.status == CommandStatus.dead_lettered]
    finished = len(acknowledged) + len(dead) + sum(1 for c in commands if c.status == CommandStatus.compensated)
    ack_latency = [
        max(((_aware(c.acknowledged_at) or now) - (_aware(c.created_at) or now)).total_seconds(), 0.0)
        for c in acknowledged
        if c.acknowledged_at
    ]
    on_time, overdue, judged, complaints = _complaint_timeliness(records, now)
    events = session.exec(
        select(OutboxEvent.id).where(OutboxEvent.instance_id == instance.id).limit(SAMPLE_LIMIT)
    ).all()
    deliveries = (
        list(session.exec(select(WebhookDelivery).where(col(WebhookDelivery.event_id).in_(list(events)))))
        if events
        else []
    )
    return ServiceLevels(
        measured_at=now,
        ingest_latency=_percentiles(ingest),
        fusion_latency=_percentiles(fusion),
        end_to_end_latency=_percentiles(end_to_end),
        received=counters.received,
        accepted=counters.accepted,
        quarantined=counters.quarantined,
        duplicates=counters.duplicates,
        completeness=round(counters.accepted / distinct, 6) if distinct > 0 else None,
        records=len(records),
        fused=sum(1 for row in records if row.fused_at),
        fused_ratio=round(sum(1 for row in records if row.fused_at) / len(records), 6) if records else None,
        commands=len(commands),
        commands_acknowledged=len(acknowledged),
        commands_dead_lettered=len(dead),
        command_ack_latency=_percentiles(ack_latency),
        command_timeliness=round(len(acknowledged) / finished, 6) if finished else None,
        complaints=complaints,
        complaints_closed_on_time=on_time,
        complaints_overdue=overdue,
        complaint_timeliness=round(on_time / judged, 6) if judged else None,
        webhook_deliveries=len(deliveries),
        webhook_delivered=sum(1 for d in deliveries if d.status == DeliveryStatus.delivered),
        webhook_dead=sum(1 for d in deliveries if d.status == DeliveryStatus.dead),
    )


def _complaint_timeliness(records: Sequence[CanonicalRecordRow], now: datetime) -> tuple[int, int, int, int]:
    """Complaints closed before their due time, open past it, judged (closed or due), and all complaints."""
    latest: dict[str, CanonicalRecordRow] = {}
    closed_at: dict[str, datetime] = {}
    for row in sorted(records, key=lambda r: r.id or 0):
        if row.kind != RecordKind.complaint.value:
            continue
        latest[row.natural_key] = row
        if row.record.get("status") in ("closed", "rejected") and row.natural_key not in closed_at:
            closed_at[row.natural_key] = _aware(row.source_time) or _aware(row.recorded_at) or now
    on_time = overdue = judged = 0
    for key, row in latest.items():
        due = datetime.fromisoformat(str(row.record["due_at"]).replace("Z", "+00:00"))
        if key in closed_at:
            judged += 1
            on_time += closed_at[key] <= due
        elif due < now:
            judged += 1
            overdue += 1
    return on_time, overdue, judged, len(latest)


def _l4_5(facts: _Facts, levels: ServiceLevels) -> CriterionResult:
    measured = levels.end_to_end_latency.count > 0 and levels.completeness is not None
    passed = measured
    e2e = levels.end_to_end_latency
    evidence = (
        f"end-to-end latency p50 {e2e.p50_s} s / p95 {e2e.p95_s} s over {e2e.count} records; completeness "
        f"{levels.completeness}; fused {levels.fused}/{levels.records}; commands acknowledged "
        f"{levels.commands_acknowledged}/{levels.commands}; complaints closed on time "
        f"{levels.complaints_closed_on_time}/{levels.complaints}"
        if measured
        else "Not enough data to measure latency source → fused and completeness yet"
    )
    return _result(facts, "L4.5", passed, evidence + ".", [f"{facts.base}/service-levels"])


# --- L5 ----------------------------------------------------------------------------------------------------


def _l5_1(facts: _Facts) -> CriterionResult:
    from adapters.discovery import adapter_catalog

    catalog = adapter_catalog()
    info = catalog.plugins.get(facts.instance.adapter)
    error = next((e.error for e in catalog.errors if e.name == facts.instance.adapter), None)
    passed = info is not None and facts.adapter is not None
    if info is not None:
        manifest = info.adapter.manifest
        evidence = (
            f"entry point {info.name} = {info.target} ({info.distribution or 'no distribution'}) in group "
            f"qihub.adapters loads a valid manifest: {manifest.name} {manifest.version}, {manifest.source_kind}, "
            f"emits {', '.join(k.value for k in manifest.emits)}"
        )
        if facts.adapter is None:
            evidence += f"; but the deployed configuration is refused: {facts.load_error}"
        if manifest.version != facts.instance.adapter_version:
            evidence += f"; the instance last ran version {facts.instance.adapter_version}"
    else:
        evidence = f"No usable plug-in {facts.instance.adapter!r} in the entry points" + (f": {error}" if error else "")
    return _result(facts, "L5.1", passed, evidence + ".", [f"/api/v1/adapters/catalog#{facts.instance.adapter}"])


@cache
def _openapi_problems(mtime: float) -> list[str]:
    del mtime  # cache key: re-validated only when the file changes
    try:
        from openapi_spec_validator import validate as validate_openapi

        document = json.loads(OPENAPI_FILE.read_text())
        validate_openapi(document)
    except Exception as error:
        return [f"openapi.json: {type(error).__name__}: {str(error)[:200]}"]
    if not document.get("info", {}).get("version"):
        return ["openapi.json has no info.version"]
    return []


def contract_documents_problems(manifest: AdapterManifest, emitted_types: Iterable[str]) -> tuple[list[str], list[str]]:
    """The public contract documents an adapter relies on: which were checked, and what is wrong with them."""
    import yaml
    from rdflib import Graph

    checked, problems = [], []
    if OPENAPI_FILE.exists():
        checked.append("openapi/openapi.json")
        problems += _openapi_problems(OPENAPI_FILE.stat().st_mtime)
    else:
        problems.append("openapi/openapi.json is missing")
    if ASYNCAPI_FILE.exists():
        checked.append("openapi/asyncapi.yaml")
        try:
            asyncapi = yaml.safe_load(ASYNCAPI_FILE.read_text())
            if not str(asyncapi.get("asyncapi", "")).startswith(("2.", "3.")):
                problems.append("asyncapi.yaml does not declare an AsyncAPI version")
            if not asyncapi.get("info", {}).get("version"):
                problems.append("asyncapi.yaml has no info.version")
            if not asyncapi.get("channels"):
                problems.append("asyncapi.yaml has no channels")
            text = ASYNCAPI_FILE.read_text()
            undocumented = sorted(t for t in set(emitted_types) if t not in text)
            if undocumented:
                problems.append(f"asyncapi.yaml does not document {undocumented}")
        except Exception as error:
            problems.append(f"asyncapi.yaml: {type(error).__name__}: {error}")
    else:
        problems.append("openapi/asyncapi.yaml is missing")
    if manifest.source_kind == "platform":
        if PLATFORM_CONTRACT_FILE.exists():
            checked.append("openapi/platform-contract.yaml")
            try:
                from openapi_spec_validator import validate as validate_openapi

                validate_openapi(yaml.safe_load(PLATFORM_CONTRACT_FILE.read_text()))
            except Exception as error:
                problems.append(f"platform-contract.yaml: {type(error).__name__}: {str(error)[:200]}")
        else:
            problems.append("openapi/platform-contract.yaml is missing")
    for kind in manifest.emits:
        schema = published_schema(kind)
        name = f"schemas/json/canonical/{kind.value}-*.schema.json"
        if schema is None:
            problems.append(f"{name} is missing")
            continue
        checked.append(name)
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            problems.append(f"{name}: {error.message}")
    for path in SHAPES_FILES:
        if not path.exists():
            problems.append(f"ontologies/{path.name} is missing")
            continue
        checked.append(f"ontologies/{path.name}")
        try:
            Graph().parse(path, format="turtle")
        except Exception as error:
            problems.append(f"{path.name}: {type(error).__name__}: {error}")
    return checked, problems


def _l5_2(facts: _Facts) -> CriterionResult:
    if facts.manifest is None:
        return _result(facts, "L5.2", False, f"The plug-in cannot be loaded: {facts.load_error}.")
    emitted = {event.type for event in facts.events}
    checked, problems = contract_documents_problems(facts.manifest, emitted)
    passed = not problems
    evidence = f"{len(checked)} contract documents read and validated ({', '.join(checked)})"
    if problems:
        evidence += f"; problems: {'; '.join(problems[:5])}"
    return _result(facts, "L5.2", passed, evidence + ".", ["/openapi.json"], problems=problems)


def _l5_3(facts: _Facts) -> CriterionResult:
    from adapters.conformance.checks import run_conformance
    from adapters.evidence import record_evidence

    if facts.adapter_class is None or facts.manifest is None:
        return _result(facts, "L5.3", False, f"The plug-in cannot be loaded: {facts.load_error}.")
    version = facts.manifest.version
    previous = facts.evidence.get("L5.3")
    if (
        previous is not None
        and previous.details.get("kit_version") == version
        and facts.now - (_aware(previous.at) or facts.now) < CONFORMANCE_VALID_FOR
    ):
        results = previous.details.get("checks", [])
        passed = previous.passed
        when = f"run at {previous.at}"
    else:
        # The kit runs offline on the plug-in's example configuration; live write-back is L4.2's evidence.
        outcomes = run_conformance(facts.adapter_class, config=None, write_back=False)
        results = [o.as_dict() for o in outcomes]
        passed = bool(outcomes) and all(o.passed for o in outcomes)
        good = sum(o.passed for o in outcomes)
        summary = f"conformance kit on {facts.manifest.name} {version}: {good}/{len(outcomes)} checks pass"
        record_evidence(
            facts.session,
            instance=facts.instance,
            criterion="L5.3",
            passed=passed,
            summary=summary,
            details={"kit_version": version, "checks": results},
        )
        when = "run now in a throw-away hub"
    failing = [r["name"] for r in results if not r["passed"]]
    evidence = f"conformance kit ({when}): {len(results) - len(failing)} of {len(results)} checks pass"
    if failing:
        evidence += f"; failing: {', '.join(failing)}"
    return CriterionResult(
        id="L5.3",
        level=5,
        title=next(c.title for c in CRITERIA if c.id == "L5.3"),
        passed=passed,
        evidence=evidence + ".",
        links=[f"{facts.base}/maturity"],
        details={"checks": results},
    )


def _l5_4(facts: _Facts) -> CriterionResult:
    from adapters.sensorthings import things_visible_to

    kinds = {row.kind for row in facts.records}
    parts: list[str] = []
    ok = False
    if kinds & SENSORTHINGS_KINDS:
        own = things_visible_to(
            facts.session, organization_id=facts.instance.organization_id, instance_id=facts.instance.id
        )
        stranger = things_visible_to(
            facts.session, organization_id="probe-" + facts.instance.id, instance_id=facts.instance.id
        )
        isolated = not stranger
        ok = bool(own) and isolated
        parts.append(
            f"SensorThings read API serves {len(own)} Things of this instance to its tenant and "
            f"{'none' if isolated else len(stranger)} to another tenant"
        )
    if facts.store is not None and facts.graphs:
        in_sparql = [g for g in facts.graphs[:20] if facts.store.graph_exists(g)]
        if in_sparql:
            parts.append(f"{len(in_sparql)} named graphs readable over the SPARQL endpoint")
            ok = ok or not (kinds & SENSORTHINGS_KINDS)
    if not parts:
        parts.append("No data of this instance is readable through a standard API yet")
    links = ["/api/v1/sta/v1.1/Things", "/sparql"]
    return _result(facts, "L5.4", ok, "; ".join(parts) + ".", links)


def _l5_5(facts: _Facts, trend: Sequence[TrendPoint]) -> CriterionResult:
    versions = sorted({point.adapter_version for point in trend})
    passed = bool(trend)
    evidence = (
        f"this report is assessment {len(trend)} of the instance; trend over versions {', '.join(versions)}: "
        + ", ".join(f"{p.adapter_version} L{p.achieved_level}" for p in trend[-5:])
    )
    return _result(facts, "L5.5", passed, evidence + ".", [f"{facts.base}/maturity"])


# --- assessment --------------------------------------------------------------------------------------------


def _run_async(coroutine: Any, *, timeout_s: float) -> Any:
    """Run a probe coroutine from synchronous code (in its own loop, or a thread when one is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(asyncio.wait_for(coroutine, timeout_s))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout_s)).result(timeout_s + 5)


def achieved_level(results: Sequence[CriterionResult]) -> int:
    """The highest level whose criteria, and every lower level's, all pass (0 when L1 is not met)."""
    level = 0
    for candidate in range(1, 6):
        if all(result.passed for result in results if result.level == candidate):
            level = candidate
        else:
            break
    return level


def assess_instance(
    session: Session,
    *,
    instance: AdapterInstance,
    settings: Settings,
    store: Any = None,
    clock: Clock | None = None,
    record: bool = True,
) -> MaturityReport:
    """Assess every criterion for the instance from the hub's evidence; stores the assessment when `record`."""
    now = (clock or SystemClock()).now()
    facts = _gather(session, instance=instance, settings=settings, store=store, now=now)
    levels = service_levels_of(session, instance=instance, now=now)
    results = [
        _l1_1(facts),
        _l1_2(facts),
        _l1_3(facts),
        _l1_4(facts),
        _l2_1(facts),
        _l2_2(facts),
        _l2_3(facts),
        _l2_4(facts),
        _l2_5(facts),
    ]
    for check in (_l3_1, _l3_2, _l3_3, _l3_4):
        results.append(_safe(facts, check))
    results.append(_l3_5(facts))
    results += [_l4_1(facts), _l4_2(facts), _l4_3(facts), _l4_4(facts), _l4_5(facts, levels)]
    results += [_l5_1(facts), _l5_2(facts), _safe(facts, _l5_3), _l5_4(facts)]
    digest = config_sha256(instance.config)
    version = facts.manifest.version if facts.manifest else instance.adapter_version
    trend = trend_of(session, instance_id=instance.id)
    current = TrendPoint(
        assessed_at=now,
        adapter_version=version,
        config_sha256=digest,
        achieved_level=0,
        passed=0,
        total=len(CRITERIA),
    )
    results.append(_l5_5(facts, [*trend, current]))
    level = achieved_level(results)
    current.achieved_level = level
    current.passed = sum(r.passed for r in results)
    if record:
        session.add(
            AdapterAssessment(
                instance_id=instance.id,
                adapter=instance.adapter,
                adapter_version=version,
                config_sha256=digest,
                achieved_level=level,
                passed=current.passed,
                total=len(results),
                criteria=[r.model_dump(mode="json") for r in results],
                service_levels=levels.model_dump(mode="json"),
                assessed_at=now,
            )
        )
        session.flush()
    return MaturityReport(
        instance_id=instance.id,
        instance_name=instance.name,
        adapter=instance.adapter,
        adapter_version=version,
        config_sha256=digest,
        counterpart=facts.manifest.counterpart if facts.manifest else None,
        simulator=bool(facts.manifest and facts.manifest.simulator),
        achieved_level=level,
        achieved_level_name=LEVEL_NAMES.get(level),
        assessed_at=now,
        criteria=results,
        service_levels=levels,
        trend=[*trend, current],
    )


def _safe(facts: _Facts, check: Callable[[_Facts], CriterionResult]) -> CriterionResult:
    """Run a check that talks to the graph store or runs the kit; a failure of the probe fails the criterion."""
    try:
        return check(facts)
    except Exception as error:
        name = check.__name__.lstrip("_").replace("_", ".").upper()
        return _result(facts, name, False, f"The probe failed: {type(error).__name__}: {error}.")


def trend_of(session: Session, *, instance_id: str) -> list[TrendPoint]:
    """Earlier assessments of an instance, oldest first."""
    rows = session.exec(
        select(AdapterAssessment)
        .where(AdapterAssessment.instance_id == instance_id)
        .order_by(col(AdapterAssessment.assessed_at), col(AdapterAssessment.id))
    )
    return [
        TrendPoint(
            assessed_at=row.assessed_at,
            adapter_version=row.adapter_version,
            config_sha256=row.config_sha256,
            achieved_level=row.achieved_level,
            passed=row.passed,
            total=row.total,
        )
        for row in rows
    ]


def report_json(report: MaturityReport) -> dict[str, Any]:
    """The report as the API returns it (camelCase JSON)."""
    data: dict[str, Any] = report.model_dump(mode="json", by_alias=True)
    return data


__all__ = [
    "CRITERIA",
    "CriterionResult",
    "MaturityReport",
    "ServiceLevels",
    "achieved_level",
    "assess_instance",
    "service_levels_of",
    "trend_of",
]
