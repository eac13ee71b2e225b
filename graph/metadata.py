"""PROV and DCAT description of each certificate's named graph, kept in the metadata graph.

Every named graph of a source document is a `dcat:Dataset` and `prov:Entity` in `graph.iris.METADATA_GRAPH`:
which registered document it was mapped from (and that document's SHA-256), with which mapping version, when,
its size, and the document's current status and visibility, so integrators (and per-tenant dataset selection)
can tell graphs apart without opening them. The description of one graph is replaced in a single SPARQL
Update, so readers never see two descriptions of one graph.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

import pyoxigraph as ox

from certificates.models import Certificate, CertificateKind
from graph import iris
from graph.mapping import MAPPING_VERSION, STATUS_IRIS

DCAT = "http://www.w3.org/ns/dcat#"
DCTERMS = "http://purl.org/dc/terms/"
PROV = "http://www.w3.org/ns/prov#"
VOID = "http://rdfs.org/ns/void#"
XSD = "http://www.w3.org/2001/XMLSchema#"
QH = iris.QH
ONTOLOGY_IRI = "https://qihub.example/ns"
CATALOG_IRI = f"{iris.GRAPH_BASE}catalog"
MAPPING_AGENT_IRI = f"{iris.ID_BASE}software/qihub-dcc-mapping"

N = ox.NamedNode
A = N("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")


def _literal(value: str, datatype: str | None = None) -> ox.Literal:
    return ox.Literal(value, datatype=N(f"{XSD}{datatype}")) if datatype else ox.Literal(value)


def describe_certificate_graph(
    *,
    certificate: Certificate,
    graph_iri: str,
    triple_count: int,
    generated_at: datetime | None = None,
) -> list[ox.Triple]:
    """The metadata triples of one certificate's named graph (to go into the metadata graph)."""
    when = _literal((generated_at or datetime.now(UTC)).isoformat(), "dateTime")
    graph = N(graph_iri)
    generation = N(f"{graph_iri}#mapping")
    source = N(iris.certificate_iri(certificate.id))
    lab = N(iris.organization_iri(certificate.organization_id))
    is_report = certificate.kind == CertificateKind.test_report
    kind = N(f"{QH}{'TestReport' if is_report else 'CalibrationCertificate'}")
    label = "Test report" if is_report else "Calibration certificate"
    title = f"{label} {certificate.unique_identifier or certificate.id}"
    return [
        ox.Triple(N(CATALOG_IRI), A, N(f"{DCAT}Catalog")),
        ox.Triple(N(CATALOG_IRI), N(f"{DCAT}dataset"), graph),
        ox.Triple(graph, A, N(f"{DCAT}Dataset")),
        ox.Triple(graph, A, N(f"{PROV}Entity")),
        ox.Triple(graph, N(f"{DCTERMS}title"), _literal(title)),
        ox.Triple(graph, N(f"{DCTERMS}type"), kind),
        ox.Triple(graph, N(f"{DCTERMS}source"), source),
        ox.Triple(graph, N(f"{PROV}wasDerivedFrom"), source),
        ox.Triple(graph, N(f"{DCTERMS}publisher"), lab),
        ox.Triple(graph, N(f"{DCTERMS}conformsTo"), N(ONTOLOGY_IRI)),
        ox.Triple(graph, N(f"{DCTERMS}modified"), when),
        ox.Triple(graph, N(f"{PROV}generatedAtTime"), when),
        ox.Triple(graph, N(f"{PROV}wasGeneratedBy"), generation),
        ox.Triple(graph, N(f"{QH}sha256"), _literal(certificate.sha256)),
        ox.Triple(graph, N(f"{QH}mappingVersion"), _literal(MAPPING_VERSION)),
        ox.Triple(graph, N(f"{QH}status"), N(STATUS_IRIS.get(str(certificate.status), STATUS_IRIS["draft"]))),
        ox.Triple(graph, N(f"{QH}public"), _literal("true" if certificate.public else "false", "boolean")),
        ox.Triple(graph, N(f"{VOID}triples"), _literal(str(triple_count), "integer")),
        ox.Triple(generation, A, N(f"{PROV}Activity")),
        ox.Triple(generation, N(f"{PROV}used"), source),
        ox.Triple(generation, N(f"{PROV}endedAtTime"), when),
        ox.Triple(generation, N(f"{PROV}wasAssociatedWith"), N(MAPPING_AGENT_IRI)),
        ox.Triple(N(MAPPING_AGENT_IRI), A, N(f"{PROV}SoftwareAgent")),
    ]


def _removal(graph_iri: str) -> str:
    metadata = f"<{iris.METADATA_GRAPH}>"
    return (
        f"DELETE WHERE {{ GRAPH {metadata} {{ <{graph_iri}> ?p ?o }} }} ;\n"
        f"DELETE WHERE {{ GRAPH {metadata} {{ <{graph_iri}#mapping> ?p ?o }} }} ;\n"
        f"DELETE DATA {{ GRAPH {metadata} {{ <{CATALOG_IRI}> <{DCAT}dataset> <{graph_iri}> }} }}"
    )


def metadata_update(graph_iri: str, triples: Iterable[ox.Triple]) -> str:
    """A SPARQL Update replacing the description of one named graph in the metadata graph."""
    return metadata_updates([(graph_iri, triples)])


def metadata_updates(descriptions: Iterable[tuple[str, Iterable[ox.Triple]]]) -> str:
    """One SPARQL Update replacing the descriptions of several named graphs (graph IRI, its description)."""
    removals: list[str] = []
    lines: list[str] = []
    for graph_iri, triples in descriptions:
        removals.append(_removal(graph_iri))
        lines.extend(f"{triple} ." for triple in triples)
    if not removals:
        return ""  # an empty update request is valid SPARQL and changes nothing
    removal = " ;\n".join(removals)
    body = "\n".join(lines)
    return f"{removal} ;\nINSERT DATA {{ GRAPH <{iris.METADATA_GRAPH}> {{\n{body}\n}} }}"


def metadata_removal(graph_iri: str) -> str:
    """A SPARQL Update removing the description of a named graph that no longer exists."""
    return _removal(graph_iri)
