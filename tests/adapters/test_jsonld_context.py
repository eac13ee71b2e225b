"""The published JSON-LD context (ontologies/context.jsonld) covers what adapter fusion emits, not only certificates."""

import json

import pyoxigraph as ox
from rdflib import Graph
from rdflib.compare import isomorphic

from graph.shapes import CONTEXT_FILE
from tests.adapters.test_fusion import _all_kinds_quads

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
OWN_CLASS_NAMESPACES = ("https://qihub.example/ns#", "http://www.w3.org/ns/sosa/", "http://www.w3.org/ns/prov#")


def _context() -> dict:
    return json.loads(CONTEXT_FILE.read_text())["@context"]


def _expanded_terms(context: dict) -> dict[str, str]:
    """Term name → the IRI it stands for (compact IRIs expanded with the context's own prefixes)."""
    prefixes = {name: value for name, value in context.items() if isinstance(value, str) and value[-1:] in "/#"}
    terms = {}
    for name, value in context.items():
        if name.startswith("@"):
            continue
        iri = value.get("@id", "") if isinstance(value, dict) else value
        prefix, _, local = iri.partition(":")
        terms[name] = prefixes[prefix] + local if prefix in prefixes else iri
    return terms


def _fused_graph() -> Graph:
    triples = [ox.Triple(quad.subject, quad.predicate, quad.object) for quad in _all_kinds_quads()]
    return Graph().parse(data=ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES), format="nt")


def test_every_property_and_hub_class_of_fused_records_has_a_context_term():
    iris = set(_expanded_terms(_context()).values())
    quads = _all_kinds_quads()
    properties = {quad.predicate.value for quad in quads} - {RDF_TYPE}
    classes = {
        quad.object.value
        for quad in quads
        if quad.predicate.value == RDF_TYPE and quad.object.value.startswith(OWN_CLASS_NAMESPACES)
    }
    assert len(properties) > 30 and len(classes) > 10
    assert sorted(properties - iris) == []
    assert sorted(classes - iris) == []


def test_fused_records_compact_to_readable_terms_and_round_trip():
    graph = _fused_graph()
    document = graph.serialize(format="json-ld", context=_context())
    compacted = json.loads(document)
    nodes = compacted["@graph"]
    assert any("EnvironmentObservation" in node.get("@type", ()) and "madeBySensor" in node for node in nodes)
    assert any(node.get("@type") == "Complaint" and "dueAt" in node for node in nodes)
    assert isomorphic(Graph().parse(data=document, format="json-ld"), graph)


def test_context_terms_are_unique_and_keep_their_certificate_meanings():
    context = _context()
    terms = _expanded_terms(context)
    # The calibration event's validity (a dateTime) has its own term: `validFrom` stays schema:validFrom (a date).
    assert terms["validFrom"] == "https://schema.org/validFrom"
    assert terms["validFromTime"] == "https://qihub.example/ns#validFrom"
    raw = CONTEXT_FILE.read_text()
    assert raw.count('"validFrom"') == 1 and raw.count('"room"') == 1
