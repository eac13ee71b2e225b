"""The conformance kit's checks (L1–L4 of levels.md) against one adapter plug-in, in a throw-away hub.

The same checks run from the pytest plugin (`pytest --qihub-adapter NAME`) and from the maturity assessment
(L5.3). They need nothing from the plug-in beyond the contract: its manifest, golden fixtures, parser, field
mappings and (when it declares commands) `execute_command`. A temporary hub — SQLite and an embedded graph
store in a temporary directory, migrated like a real one — receives the golden fixtures through the real
landing zone, fusion, SHACL validation and event outbox.
"""

import asyncio
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from sqlmodel import Session, select

from adapters.canonical import json_schema, record_json
from adapters.framework import Adapter, AdapterManifest, GoldenFixture, InboundMessage, QuarantineError, SystemClock

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,59}$")


@dataclass
class CheckOutcome:
    """One check's result: which criterion it gives evidence for, pass/fail and what was seen."""

    name: str
    criterion: str
    passed: bool
    detail: str
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON form (stored as evidence)."""
        return {
            "name": self.name,
            "criterion": self.criterion,
            "passed": self.passed,
            "skipped": self.skipped,
            "detail": self.detail,
        }


class CheckFailedError(Exception):
    """Raised inside a check to fail it with a readable reason."""


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckFailedError(reason)


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A canonical record's JSON without what landing assigns (the envelope link)."""
    return {key: value for key, value in data.items() if key != "envelope_id"}


def compare_golden(adapter: Adapter, fixture: GoldenFixture) -> str | None:
    """None when the fixture parses to exactly its expected canonical JSON, else what differs."""
    try:
        records = adapter.parse(fixture.message)
    except QuarantineError as error:
        return f"quarantined ({error.code}: {error.detail})"
    except Exception as error:
        return f"parser raised {type(error).__name__}: {error}"
    produced = [comparable(record_json(record)) for record in records]
    expected = [comparable(item) for item in fixture.expected]
    if produced != expected:
        shown = json.dumps(produced, sort_keys=True)[:600]
        return f"produced {shown} but expected {json.dumps(expected, sort_keys=True)[:600]}"
    return None


def example_config(manifest: AdapterManifest) -> dict[str, Any]:
    """The configuration the kit uses when none is given: the first example of the configuration schema."""
    examples = manifest.config_schema.get("examples") or [{}]
    config: dict[str, Any] = examples[0]
    return config


@dataclass
class KitContext:
    """What the checks share: the plug-in, its configuration and the temporary hub."""

    adapter_class: type[Adapter]
    config: dict[str, Any]
    work_dir: Path
    write_back: bool
    adapter: Adapter | None = None
    hub: Any = None  # _TemporaryHub once landing ran
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> AdapterManifest:
        return self.adapter_class.manifest


# --- checks -------------------------------------------------------------------------------------------------


def check_manifest(kit: KitContext) -> str:
    """The plug-in is published under `qihub.adapters` with its manifest's name and a valid manifest."""
    from importlib.metadata import entry_points

    from adapters.discovery import adapter_catalog

    manifest = kit.manifest
    AdapterManifest.model_validate(manifest.model_dump())
    jsonschema.Draft202012Validator.check_schema(manifest.config_schema)
    published = [ep for ep in entry_points(group="qihub.adapters") if ep.name == manifest.name]
    _expect(bool(published), f"no entry point named {manifest.name!r} in the group qihub.adapters")
    info = adapter_catalog(refresh=True).plugins.get(manifest.name)
    _expect(info is not None and info.adapter is kit.adapter_class, "the hub's discovery does not load this class")
    kit.adapter = kit.adapter_class(kit.config)
    return f"entry point {published[0].value} → {manifest.name} {manifest.version}; configuration accepted"


def check_golden_fixtures(kit: KitContext) -> str:
    """Each golden fixture parses to exactly its expected canonical JSON."""
    adapter = _adapter(kit)
    fixtures = kit.adapter_class.golden_fixtures()
    _expect(bool(fixtures), "the plug-in ships no golden fixtures")
    problems = [f"{fixture.name}: {problem}" for fixture in fixtures if (problem := compare_golden(adapter, fixture))]
    _expect(not problems, "; ".join(problems))
    return f"{len(fixtures)} fixtures reproduce their expected canonical JSON"


def check_canonical_schemas(kit: KitContext) -> str:
    """Every record the fixtures produce is of a declared kind and validates against its published JSON Schema."""
    from adapters.maturity import published_schema

    adapter = _adapter(kit)
    count = 0
    for fixture in kit.adapter_class.golden_fixtures():
        for record in adapter.parse(fixture.message):
            _expect(record.kind in kit.manifest.emits, f"{fixture.name} produced {record.kind}, not declared in emits")
            schema = published_schema(record.kind)
            _expect(schema is not None, f"no published JSON Schema for {record.kind.value}")
            assert schema is not None
            _expect(schema == json_schema(record.kind), f"the published {record.kind.value} schema is out of date")
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(record_json(record)))
            _expect(not errors, f"{fixture.name}: {errors[0].message if errors else ''}")
            count += 1
    _expect(count > 0, "the fixtures produced no records")
    return f"{count} records validate against the published schemas"


def check_field_mappings(kit: KitContext) -> str:
    """The published field mapping covers every required field of every kind the plug-in emits."""
    from adapters.maturity import required_fields

    mappings = _adapter(kit).field_mappings()
    gaps = {}
    for kind in kit.manifest.emits:
        covered = {m.canonical_field.split(".")[0] for m in mappings if m.record_kind == kind and m.source_field}
        missing = [name for name in required_fields(kind) if name not in covered]
        if missing:
            gaps[kind.value] = missing
    _expect(not gaps, f"unmapped required fields: {gaps}")
    return f"{len(mappings)} mappings cover the required fields of {', '.join(k.value for k in kit.manifest.emits)}"


def check_quarantine(kit: KitContext) -> str:
    """Malformed payloads raise QuarantineError with a machine-readable code (never another exception)."""
    from adapters.maturity import quarantine_probe

    codes, escaped = quarantine_probe(_adapter(kit), kit.manifest)
    _expect(not escaped, "; ".join(escaped))
    bad = [code for code in codes if not CODE_PATTERN.match(code)]
    _expect(not bad, f"codes are not lowercase-with-dashes: {bad}")
    return f"malformed payloads quarantined as {', '.join(codes)}"


def check_landing(kit: KitContext) -> str:
    """Through the real landing zone: duplicates stored once, counts reconcile, envelopes complete, records linked."""
    from adapters.landing import message_sha256
    from adapters.models import AdapterCounters, CanonicalRecordRow, LandingMessage

    hub = _hub(kit)
    fixtures = kit.adapter_class.golden_fixtures()
    messages = [fixture.message for fixture in fixtures]
    garbage = InboundMessage(
        payload=b"\x00\xff{not json",
        content_type="application/json",
        source="conformance-kit",
        transport=kit.manifest.transports[0],
        dedup_key="conformance-kit-garbage",
    )
    first = hub.land([*messages, garbage])
    again = hub.land(messages)  # a redelivery of everything
    kit.facts["landing"] = (first, again)
    with Session(hub.engine) as session:
        counters = session.get(AdapterCounters, hub.instance.id)
        stored = list(session.exec(select(LandingMessage).where(LandingMessage.instance_id == hub.instance.id)))
        records = list(
            session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == hub.instance.id))
        )
    distinct = len({m.dedup_key or message_sha256(m.payload) for m in messages}) + 1
    _expect(len(stored) == distinct, f"{len(stored)} messages stored for {distinct} distinct ones")
    _expect(
        again.duplicates == len(messages), f"the redelivery counted {again.duplicates} duplicates, not {len(messages)}"
    )
    assert counters is not None
    _expect(
        counters.received == counters.accepted + counters.quarantined + counters.duplicates,
        "received ≠ accepted + quarantined + duplicates",
    )
    _expect(counters.quarantined >= 1, "the malformed payload was not quarantined")
    for message in stored:
        _expect(
            all([message.source, message.adapter, message.adapter_version, message.transport, message.content_type]),
            f"message {message.id} has an incomplete envelope",
        )
        _expect(message_sha256(message.raw) == message.sha256, f"message {message.id}: sha256 does not match its bytes")
        if message.outcome == "quarantined":
            _expect(
                bool(message.error_code and CODE_PATTERN.match(message.error_code)), f"message {message.id} has no code"
            )
    for row in records:
        _expect(row.record.get("envelope_id") == row.message_id, f"record {row.id} does not link to its envelope")
        _expect(row.record.get("schema_version") == row.schema_version, f"record {row.id} lacks its schema version")
    _expect(bool(records), "no canonical record landed")
    return (
        f"received {counters.received} = accepted {counters.accepted} + quarantined {counters.quarantined} + "
        f"duplicates {counters.duplicates}; {len(records)} records linked to their envelopes"
    )


def check_fusion(kit: KitContext) -> str:
    """The landed records fuse into the instance's named graph, with the shared vocabularies, and conform to SHACL."""
    from adapters.fusion import fuse_pending
    from adapters.maturity import PROV, QH, SOSA, mutation_probe
    from adapters.models import CanonicalRecordRow
    from adapters.shapes import validate_ntriples

    hub = _hub(kit, landed=True)
    with Session(hub.engine) as session:
        fused = fuse_pending(session, store=hub.store, limit=10_000)
        session.commit()
        graphs = sorted(
            {
                g
                for g in session.exec(
                    select(CanonicalRecordRow.graph_iri).where(CanonicalRecordRow.instance_id == hub.instance.id)
                )
                if g
            }
        )
    _expect(fused > 0 and bool(graphs), "nothing was fused")
    data = b"".join(hub.store.export_graph(g, "application/n-triples") for g in graphs)
    text = data.decode()
    for name, namespace in (("SOSA", SOSA), ("PROV-O", PROV), ("hub ontology", QH)):
        _expect(namespace in text, f"the graph uses no {name} term")
    report = validate_ntriples(data)
    _expect(report.conforms, f"SHACL: {[v.__dict__ for v in report.violations[:3]]}")
    mutation_ok, mutation_detail = mutation_probe(data)
    _expect(mutation_ok, mutation_detail)
    return f"{fused} records fused into {len(graphs)} graph(s), {report.triples} triples conform; {mutation_detail}"


def check_events(kit: KitContext) -> str:
    """The landed records caused the expected domain events, each a valid CloudEvents 1.0 envelope."""
    from adapters.events import to_cloudevent
    from adapters.maturity import _expected_event_types, cloudevent_problems
    from adapters.models import CanonicalRecordRow, OutboxEvent

    hub = _hub(kit, landed=True)
    with Session(hub.engine) as session:
        events = list(session.exec(select(OutboxEvent).where(OutboxEvent.instance_id == hub.instance.id)))
        records = list(
            session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == hub.instance.id))
        )
    expected = _expected_event_types(records)
    types = {event.type for event in events}
    _expect(not (expected - types), f"missing events {sorted(expected - types)} (emitted: {sorted(types)})")
    for event in events:
        problems = cloudevent_problems(event)
        _expect(not problems, f"event {event.id}: {problems}")
        envelope = to_cloudevent(event)
        _expect(envelope.get("specversion") == "1.0", f"event {event.id} is not CloudEvents 1.0")
    if not events:
        return "the fixtures cause no domain event (none expected)"
    return f"{len(events)} CloudEvents 1.0 events: {', '.join(sorted(types))}"


def check_write_back(kit: KitContext) -> str:
    """A command runs once per idempotency key: a second request with the key is answered from the first."""
    from adapters import commands
    from adapters.models import AdapterCommand, CommandStatus

    if not kit.manifest.commands:
        raise _NotApplicableError("the plug-in declares no write-back commands")
    if not kit.write_back:
        raise _NotApplicableError(
            "write-back is exercised against the live source only when asked (--qihub-write-back)"
        )
    hub = _hub(kit)
    calls: list[str] = []
    adapter = _adapter(kit)
    original = adapter.execute_command

    async def counting(command: Any) -> dict[str, Any]:
        calls.append(command.idempotency_key)
        return await original(command)

    adapter.execute_command = counting  # type: ignore[method-assign]
    kind = kit.manifest.commands[0]
    target, payload = _command_example(kit)
    with Session(hub.engine) as session:
        request: dict[str, Any] = {"kind": kind, "target": target, "payload": payload, "idempotency_key": "kit-1"}
        first = commands.create_command(
            session, instance=hub.instance, requested_by=None, clock=SystemClock(), **request
        )
        session.commit()
        second = commands.create_command(
            session, instance=hub.instance, requested_by=None, clock=SystemClock(), **request
        )
        session.commit()
        _expect(first.id == second.id, "the same idempotency key created a second command")
    for _ in range(3):
        asyncio.run(
            commands.dispatch_pending(
                hub.engine, adapters={hub.instance.id: adapter}, settings=hub.settings, clock=SystemClock()
            )
        )
    with Session(hub.engine) as session:
        command = session.get(AdapterCommand, first.id)
        assert command is not None
        _expect(
            command.status == CommandStatus.acknowledged, f"the command ended {command.status}: {command.last_error}"
        )
    _expect(calls == ["kit-1"], f"the source was called {len(calls)} times for one key")
    return f"{kind} acknowledged ({command.ack}); the source was called once for one key"


def _command_example(kit: KitContext) -> tuple[str, dict[str, Any]]:
    example = kit.manifest.config_schema.get("x-command-example") or {}
    return str(example.get("target", "default")), dict(example.get("payload", {}))


class _NotApplicableError(Exception):
    """A check that does not apply to this plug-in."""


CHECKS: tuple[tuple[str, str, Callable[[KitContext], str]], ...] = (
    ("manifest-discoverable", "L5.1", check_manifest),
    ("golden-fixtures", "L2.1", check_golden_fixtures),
    ("canonical-schemas", "L2.1", check_canonical_schemas),
    ("field-mappings", "L2.2", check_field_mappings),
    ("quarantine-codes", "L2.4", check_quarantine),
    ("landing-idempotent-reconciled", "L1.3", check_landing),
    ("fusion-shacl", "L3.3", check_fusion),
    ("cloudevents", "L4.1", check_events),
    ("write-back-idempotent", "L4.2", check_write_back),
)


def _adapter(kit: KitContext) -> Adapter:
    if kit.adapter is None:
        kit.adapter = kit.adapter_class(kit.config)
    return kit.adapter


# --- the temporary hub -------------------------------------------------------------------------------------


class _TemporaryHub:
    """A migrated SQLite database and an embedded graph store in a temporary directory, with one instance."""

    def __init__(self, kit: KitContext) -> None:
        import api.tables  # noqa: F401 - registers every domain's tables
        from adapters.models import AdapterInstance
        from graph.store import open_graph_store
        from storage.database import make_engine
        from storage.migrate import upgrade_database
        from storage.settings import Settings

        self.settings = Settings(data_dir=kit.work_dir / "hub", database_url=None)
        self.settings.ensure_data_dir()
        self.engine = make_engine(self.settings)
        upgrade_database(self.engine)
        self.store = open_graph_store(self.settings)
        self.adapter = _adapter(kit)
        with Session(self.engine) as session:
            instance = AdapterInstance(
                name=f"conformance-{kit.manifest.name}",
                adapter=kit.manifest.name,
                adapter_version=kit.manifest.version,
                config=kit.config,
            )
            session.add(instance)
            session.commit()
            session.refresh(instance)
            session.expunge(instance)
        self.instance = instance

    def land(self, messages: list[InboundMessage]) -> Any:
        from adapters.landing import land_messages

        with Session(self.engine) as session:
            report = land_messages(
                session,
                instance=self.instance,
                adapter=self.adapter,
                messages=messages,
                clock=SystemClock(),
                max_message_bytes=self.settings.adapter_max_message_bytes,
            )
            session.commit()
        return report

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()


def _hub(kit: KitContext, *, landed: bool = False) -> _TemporaryHub:
    if kit.hub is None:
        kit.hub = _TemporaryHub(kit)
    if landed and "landing" not in kit.facts:
        check_landing(kit)
    hub: _TemporaryHub = kit.hub
    return hub


def run_check(kit: KitContext, name: str, criterion: str, check: Callable[[KitContext], str]) -> CheckOutcome:
    """Run one check, turning its failure into an outcome."""
    try:
        return CheckOutcome(name, criterion, True, check(kit))
    except _NotApplicableError as skip:
        return CheckOutcome(name, criterion, True, str(skip), skipped=True)
    except CheckFailedError as failure:
        return CheckOutcome(name, criterion, False, str(failure))
    except Exception as error:
        return CheckOutcome(name, criterion, False, f"{type(error).__name__}: {error}")


def run_conformance(
    adapter_class: type[Adapter],
    *,
    config: dict[str, Any] | None = None,
    write_back: bool = False,
    work_dir: Path | None = None,
) -> list[CheckOutcome]:
    """Run every check against a plug-in in a throw-away hub; returns one outcome per check."""
    with tempfile.TemporaryDirectory(prefix="qihub-conformance-") as temporary:
        kit = KitContext(
            adapter_class=adapter_class,
            config=config if config is not None else example_config(adapter_class.manifest),
            work_dir=work_dir or Path(temporary),
            write_back=write_back,
        )
        try:
            return [run_check(kit, name, criterion, check) for name, criterion, check in CHECKS]
        finally:
            if kit.hub is not None:
                kit.hub.close()
