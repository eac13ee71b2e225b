"""Helpers of the semantics tests: an in-memory graph store and landing canonical records without a transport."""

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyoxigraph as ox
from sqlmodel import Session

from adapters.canonical import (
    CalibrationEvent,
    CanonicalRecord,
    EnvironmentReading,
    InstrumentRef,
    Sample,
    TestResult,
    record_json,
)
from adapters.models import AdapterInstance, CanonicalRecordRow, LandingMessage
from graph.store import N_TRIPLES, SPARQL_RESULTS_JSON, QueryOutcome


class MemoryGraphStore:
    """The parts of graph.store.GraphStore fusion and the saved queries use, over an in-memory pyoxigraph Store."""

    def __init__(self) -> None:
        self.store = ox.Store()
        self.add_calls = 0

    def add_quads(self, quads: Iterable[ox.Quad]) -> None:
        """Insert quads."""
        self.add_calls += 1
        self.store.extend(list(quads))

    def replace_graph(self, graph_iri: str, triples: Iterable[ox.Triple]) -> None:
        """Drop a graph and write these triples into it."""
        graph = ox.NamedNode(graph_iri)
        self.store.remove_graph(graph) if graph in self.store.named_graphs() else None
        self.store.extend(ox.Quad(t.subject, t.predicate, t.object, graph) for t in triples)

    def graph_exists(self, graph_iri: str | None) -> bool:
        """Whether the named graph holds anything."""
        return graph_iri is None or ox.NamedNode(graph_iri) in self.store.named_graphs()

    def export_graph(self, graph_iri: str | None, media_type: str) -> bytes:
        """One graph as N-Triples."""
        assert media_type == N_TRIPLES and graph_iri is not None
        triples = [quad.triple for quad in self.store.quads_for_pattern(None, None, None, ox.NamedNode(graph_iri))]
        return ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES) or b""

    def query(self, sparql: str, *, union_default_graph: bool = False, **_: Any) -> QueryOutcome:
        """A SELECT over the store, as SPARQL JSON results."""
        results = self.store.query(sparql, use_default_graph_as_union=union_default_graph)
        body = results.serialize(format=ox.QueryResultsFormat.JSON)  # type: ignore[union-attr]
        return QueryOutcome(form="select", media_type=SPARQL_RESULTS_JSON, body=body or b"")

    def triples(self, graph_iri: str) -> set[tuple[str, str, str]]:
        """The graph's triples as (s, p, o) text, for assertions."""
        return {
            (str(q.subject), str(q.predicate), str(q.object))
            for q in self.store.quads_for_pattern(None, None, None, ox.NamedNode(graph_iri))
        }


def make_instance(
    session: Session, *, adapter: str = "senaite", version: str = "1.0.0", organization_id: str | None = None
) -> AdapterInstance:
    """A configured instance with a unique name (hub-wide unless an owning organization is given)."""
    instance = AdapterInstance(
        name=f"{adapter}-{uuid.uuid4().hex[:10]}",
        adapter=adapter,
        adapter_version=version,
        organization_id=organization_id,
    )
    session.add(instance)
    session.flush()
    return instance


def land_records(
    session: Session, *, instance: AdapterInstance, records: Sequence[CanonicalRecord]
) -> list[tuple[CanonicalRecordRow, CanonicalRecord]]:
    """Store each record as a landed message and its canonical row (what adapters/landing.py does)."""
    landed = []
    for record in records:
        data = record_json(record)
        raw = json.dumps(data, sort_keys=True).encode()
        digest = hashlib.sha256(raw + uuid.uuid4().bytes).hexdigest()
        message = LandingMessage(
            instance_id=instance.id,
            adapter=instance.adapter,
            adapter_version=instance.adapter_version,
            source="test",
            transport="http-push",
            content_type="application/json",
            size=len(raw),
            sha256=digest,
            dedup_key=digest,
            outcome="accepted",
            raw=raw,
        )
        session.add(message)
        session.flush()
        assert message.id is not None
        stored = record.model_copy(update={"envelope_id": message.id})
        row = CanonicalRecordRow(
            instance_id=instance.id,
            message_id=message.id,
            kind=record.kind.value,
            schema_version=record.schema_version,
            natural_key=record.natural_key,
            record=record_json(stored),
            source_time=record.source_time,
        )
        session.add(row)
        session.flush()
        landed.append((row, stored))
    return landed


LAB = "CNAS L0001"
BALANCE = InstrumentRef(manufacturer="Mettler Toledo", model="XPR205", serial="B123456789", asset_id="EQ-017")
ROOM = "LAB-A/101"


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    """A moment on 2026-03-<day> (UTC)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def reading(value: str, moment: datetime, *, quantity: str = "temperature", unit: str = "Cel") -> EnvironmentReading:
    """A reading of the test room's sensor."""
    return EnvironmentReading(
        room=ROOM, sensor_id="env-sensor-7", quantity=quantity, value=Decimal(value), unit=unit, observed_at=moment
    )


def result(result_id: str, *, sample: str = "S-2026-0001", start: datetime | None, end: datetime | None) -> TestResult:
    """A result measured with the balance in the test room."""
    return TestResult(
        result_id=result_id,
        sample_id=sample,
        lab_id=LAB,
        test_item="mass",
        method="GB/T 5009.3-2016",
        value=Decimal("20.10"),
        unit="g",
        instrument=BALANCE,
        room=ROOM,
        started_at=start,
        measured_at=end,
        status="verified",
    )


def calibration(
    number: str, *, start: datetime, until: datetime, instrument: InstrumentRef = BALANCE
) -> CalibrationEvent:
    """A passed calibration of an instrument."""
    return CalibrationEvent(
        instrument=instrument, certificate_number=number, calibrated_on=start, valid_until=until, result="pass"
    )


def sample(code: str = "S-2026-0001") -> Sample:
    """A received sample of the lab."""
    return Sample(sample_id=code, lab_id=LAB, client="客户甲", status="received", received_at=at(7))
