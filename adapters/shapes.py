"""SHACL validation of what fusion wrote (L3.3): an adapter instance's graph against ontologies/adapter-shapes.ttl.

Validation is an audit, not the fusion path (pySHACL works on rdflib graphs and is slow on big ones): it reads
the instance's named graph from the store, or, with `records=N`, rebuilds the triples of the instance's N most
recent fused records, the newest version of each subject (fusion is deterministic, so they are the triples in
the store but for the history links of revised subjects). The outcome is recorded as `adapter_evidence` for
criterion L3.3 with the violations (focus node, shape, path, message).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from pyshacl import validate
from rdflib import Graph, URIRef
from rdflib.namespace import RDF, SH
from sqlmodel import Session, col, select

from adapters.evidence import record_evidence
from adapters.fusion import FusionSource, record_quads, version_order
from adapters.models import AdapterInstance, CanonicalRecordRow, LandingMessage
from graph.adapter_iris import adapter_graph_iri
from graph.store import N_TRIPLES, GraphStore

SHAPES_FILE = Path(__file__).resolve().parents[1] / "ontologies" / "adapter-shapes.ttl"
CRITERION = "L3.3"


@dataclass(frozen=True)
class ShapeViolation:
    """One SHACL result: the node, the shape it broke, the property path, and why."""

    focus: str
    shape: str | None
    path: str | None
    message: str
    severity: str


@dataclass(frozen=True)
class ShapesReport:
    """Whether the triples conform, with every violation (empty when they do)."""

    conforms: bool
    triples: int
    violations: list[ShapeViolation] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The report as evidence details (at most 50 violations listed)."""
        return {
            "conforms": self.conforms,
            "triples": self.triples,
            "violations": len(self.violations),
            "results": [violation.__dict__ for violation in self.violations[:50]],
        }


@cache
def _shapes() -> Graph:
    return Graph().parse(SHAPES_FILE, format="turtle")


def _name(node: object) -> str | None:
    return None if node is None else str(node)


def validate_ntriples(data: bytes) -> ShapesReport:
    """Validate N-Triples against the adapter shapes."""
    graph = Graph().parse(data=data, format="nt")
    conforms, results_graph, _text = validate(
        graph, shacl_graph=_shapes(), inference="none", allow_warnings=True, advanced=True
    )
    violations = []
    for result in results_graph.subjects(RDF.type, SH.ValidationResult):
        severity = results_graph.value(result, SH.resultSeverity)
        source_shape = results_graph.value(result, SH.sourceShape)
        # Property shapes are blank nodes: name the node shape that holds them.
        holder = _shapes().value(predicate=SH.property, object=source_shape) if source_shape else None
        shape = holder if isinstance(holder, URIRef) else source_shape
        violations.append(
            ShapeViolation(
                focus=str(results_graph.value(result, SH.focusNode)),
                shape=_name(shape) if isinstance(shape, URIRef) else None,
                path=_name(results_graph.value(result, SH.resultPath)),
                message=str(results_graph.value(result, SH.resultMessage) or ""),
                severity=str(severity).rsplit("#", 1)[-1] if isinstance(severity, URIRef) else "Violation",
            )
        )
    violations.sort(key=lambda violation: (violation.focus, violation.path or ""))
    return ShapesReport(conforms=bool(conforms), triples=len(graph), violations=violations)


def validate_triples(triples: Iterable[ox.Triple | ox.Quad]) -> ShapesReport:
    """Validate triples (or quads, their graph ignored) against the adapter shapes."""
    plain = [item.triple if isinstance(item, ox.Quad) else item for item in triples]
    return validate_ntriples(ox.serialize(plain, format=ox.RdfFormat.N_TRIPLES) or b"")


def _recent_quads(session: Session, instance: AdapterInstance, records: int) -> list[ox.Quad]:
    rows = session.exec(
        select(CanonicalRecordRow)
        .where(CanonicalRecordRow.instance_id == instance.id, col(CanonicalRecordRow.fused_at).is_not(None))
        .order_by(col(CanonicalRecordRow.id).desc())
        .limit(records)
    ).all()
    versions = dict(
        session.exec(
            select(LandingMessage.id, LandingMessage.adapter_version).where(
                col(LandingMessage.id).in_([row.message_id for row in rows])
            )
        ).all()
    )
    # The graph shows one version per subject (the newest): rebuild that one, not the ones it replaced.
    newest: dict[tuple[str, str], CanonicalRecordRow] = {}
    for row in rows:
        key = (row.kind, row.natural_key)
        shown = newest.get(key)
        if shown is None or version_order(row.source_time, row.id) > version_order(shown.source_time, shown.id):
            newest[key] = row
    quads: list[ox.Quad] = []
    for row in sorted(newest.values(), key=lambda row: row.id or 0, reverse=True):
        source = FusionSource(
            instance.id, instance.organization_id, instance.adapter, versions.get(row.message_id, "unknown")
        )
        quads += record_quads(
            row.kind, row.record, source=source, message_id=row.message_id, recorded_at=row.recorded_at
        )
    return quads


def validate_instance_graph(
    session: Session,
    *,
    instance: AdapterInstance,
    store: GraphStore | None = None,
    records: int = 500,
) -> ShapesReport:
    """Validate an instance's fused data and record the outcome as L3.3 evidence.

    With a `store`, the instance's whole named graph is read from it; without, the triples of its `records`
    most recent fused records are rebuilt. An instance with nothing fused yet fails (no evidence of fusion).
    """
    if store is not None:
        graph_iri = adapter_graph_iri(instance.id)
        data = store.export_graph(graph_iri, N_TRIPLES) if store.graph_exists(graph_iri) else b""
        report = validate_ntriples(data)
        scope = f"graph {graph_iri}"
    else:
        report = validate_triples(_recent_quads(session, instance, records))
        scope = f"the {records} most recent fused records"
    passed = report.conforms and report.triples > 0
    if report.triples == 0:
        summary = "Nothing fused yet: no triples to validate."
    elif report.conforms:
        summary = f"{report.triples} triples of {scope} conform to the adapter shapes."
    else:
        summary = f"{len(report.violations)} SHACL violation(s) in {scope}."
    record_evidence(
        session, instance=instance, criterion=CRITERION, passed=passed, summary=summary, details=report.summary()
    )
    return report
