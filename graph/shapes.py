"""SHACL validation of mapped graphs against ontologies/shapes.ttl (pySHACL; rdflib only on this path).

Validation is for tests, imports and audits, not the request path: pySHACL works on rdflib graphs, so the
triples are handed over as N-Triples. Warnings (sh:Warning, sh:Info) are reported but do not make a graph
non-conformant: they flag data quality of the source document, which the registry's rules already report.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyoxigraph as ox
from pyshacl import validate
from rdflib import Graph, URIRef
from rdflib.namespace import RDF, SH

ONTOLOGY_DIR = Path(__file__).resolve().parents[1] / "ontologies"
ONTOLOGY_FILE = ONTOLOGY_DIR / "qihub.ttl"
SHAPES_FILE = ONTOLOGY_DIR / "shapes.ttl"
CONTEXT_FILE = ONTOLOGY_DIR / "context.jsonld"


@dataclass(frozen=True)
class ShaclResult:
    """One validation result: which node, which property, how severe, and why."""

    focus: str
    path: str | None
    severity: str
    message: str
    value: str | None = None


@dataclass(frozen=True)
class ShaclReport:
    """The outcome of validating one graph: `conforms` ignores warnings; `results` lists everything."""

    conforms: bool
    results: list[ShaclResult] = field(default_factory=list)
    text: str = ""

    @property
    def violations(self) -> list[ShaclResult]:
        """The results of severity sh:Violation."""
        return [result for result in self.results if result.severity == "Violation"]


@cache
def _shapes() -> Graph:
    return Graph().parse(SHAPES_FILE, format="turtle")


@cache
def _ontology() -> Graph:
    return Graph().parse(ONTOLOGY_FILE, format="turtle")


def _rdflib_graph(triples: Iterable[ox.Triple]) -> Graph:
    data = ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES) or b""
    return Graph().parse(data=data, format="nt")


def _name(node: object) -> str | None:
    return None if node is None else str(node)


def validate_graph(triples: Iterable[ox.Triple], *, inference: bool = False) -> ShaclReport:
    """Validate triples against the hub's shapes (`inference=True` adds RDFS entailment over the ontology)."""
    data = _rdflib_graph(triples)
    conforms, results_graph, text = validate(
        data,
        shacl_graph=_shapes(),
        ont_graph=_ontology() if inference else None,
        inference="rdfs" if inference else "none",
        allow_warnings=True,
        advanced=True,
    )
    results = []
    for result in results_graph.subjects(RDF.type, SH.ValidationResult):
        severity = results_graph.value(result, SH.resultSeverity)
        results.append(
            ShaclResult(
                focus=str(results_graph.value(result, SH.focusNode)),
                path=_name(results_graph.value(result, SH.resultPath)),
                severity=str(severity).rsplit("#", 1)[-1] if isinstance(severity, URIRef) else "Violation",
                message=str(results_graph.value(result, SH.resultMessage) or ""),
                value=_name(results_graph.value(result, SH.value)),
            )
        )
    results.sort(key=lambda result: (result.severity, result.focus, result.path or ""))
    return ShaclReport(conforms=bool(conforms), results=results, text=str(text))
