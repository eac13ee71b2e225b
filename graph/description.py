"""Self-descriptions of the SPARQL service: a SPARQL 1.1 Service Description and a VoID/DCAT dataset record.

The service description (served by `/sparql` without a query) states what the endpoint speaks, its limits
(timeouts, result cap and how truncation is signalled) and points to the VoID/DCAT description of its
dataset (`/.well-known/void`, RFC 8615 well-known URI registered by VoID §6.2).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from pyoxigraph import BlankNode, Literal, NamedNode, Triple

from graph.iris import GRAPH_BASE, ID_BASE, METADATA_GRAPH, QH
from graph.store import StoreStats

SD = "http://www.w3.org/ns/sparql-service-description#"
VOID = "http://rdfs.org/ns/void#"
DCAT = "http://www.w3.org/ns/dcat#"
DCTERMS = "http://purl.org/dc/terms/"
FORMATS = "http://www.w3.org/ns/formats/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"

PREFIXES = {
    "sd": SD,
    "void": VOID,
    "dcat": DCAT,
    "dcterms": DCTERMS,
    "formats": FORMATS,
    "rdfs": RDFS,
    "xsd": XSD,
    "qh": QH,
}

# Vocabularies the hub's mappings use (graph.md): announced as void:vocabulary.
VOCABULARIES = (
    "http://www.w3.org/ns/sosa/",
    "http://www.w3.org/ns/ssn/",
    "http://qudt.org/schema/qudt/",
    "http://www.w3.org/ns/prov#",
    "http://purl.org/dc/terms/",
    "http://www.w3.org/ns/dcat#",
    "http://www.w3.org/ns/org#",
    "https://schema.org/",
    "https://ptb.de/sis/",
    QH,
)

_RESULT_FORMATS = ("SPARQL_Results_JSON", "SPARQL_Results_XML", "SPARQL_Results_CSV", "SPARQL_Results_TSV")
_GRAPH_FORMATS = ("Turtle", "N-Triples", "RDF_XML", "JSON-LD")


@dataclass(frozen=True)
class EndpointFacts:
    """What the descriptions state about one hub's endpoint."""

    base_url: str
    default_timeout_s: float
    max_timeout_s: float
    result_cap: int
    service_allowlist: Sequence[str] = ()

    @property
    def endpoint(self) -> str:
        """The SPARQL endpoint URL."""
        return f"{self.base_url.rstrip('/')}/sparql"

    @property
    def void_document(self) -> str:
        """Where the VoID/DCAT description is served."""
        return f"{self.base_url.rstrip('/')}/.well-known/void"

    @property
    def dataset(self) -> str:
        """The IRI of the dataset the endpoint serves."""
        return f"{self.void_document}#dataset"

    @property
    def truncation_marker(self) -> str:
        """The link put in the head of SPARQL results cut by the result cap."""
        return f"{self.endpoint}#results-truncated"


def _n(iri: str) -> NamedNode:
    return NamedNode(iri)


def _text(value: str) -> Literal:
    return Literal(value, language="en")


def service_description(facts: EndpointFacts) -> list[Triple]:
    """SPARQL 1.1 Service Description of the endpoint (W3C REC 2013)."""
    service = _n(facts.endpoint)
    dataset = _n(facts.dataset)
    default_graph = BlankNode()
    truncated = _n(facts.truncation_marker)
    triples = [
        Triple(service, _n(RDF + "type"), _n(SD + "Service")),
        Triple(service, _n(SD + "endpoint"), service),
        Triple(service, _n(SD + "supportedLanguage"), _n(SD + "SPARQL11Query")),
        Triple(service, _n(SD + "supportedLanguage"), _n(SD + "SPARQL11Update")),
        Triple(service, _n(SD + "defaultEntailmentRegime"), _n("http://www.w3.org/ns/entailment/Simple")),
        Triple(service, _n(SD + "feature"), _n(SD + "EmptyGraphs")),
        Triple(service, _n(SD + "defaultDataset"), dataset),
        Triple(service, _n(RDFS + "seeAlso"), _n(facts.void_document)),
        Triple(
            service,
            _n(RDFS + "comment"),
            _text(
                f"Queries stop after {facts.default_timeout_s:g} s (a 'timeout' parameter may ask for up to "
                f"{facts.max_timeout_s:g} s) and answer 503 with a problem body, never a partial result. "
                "Updates need an API key with the graph:update scope. SERVICE and LOAD reach only allow-listed "
                "endpoints. The extension parameter 'union-default-graph' queries the union of all graphs."
            ),
        ),
        Triple(dataset, _n(RDF + "type"), _n(SD + "Dataset")),
        Triple(dataset, _n(RDF + "type"), _n(VOID + "Dataset")),
        Triple(dataset, _n(SD + "defaultGraph"), default_graph),
        Triple(default_graph, _n(RDF + "type"), _n(SD + "Graph")),
        Triple(truncated, _n(RDFS + "label"), _text("Results truncated by the result cap")),
        Triple(
            truncated,
            _n(RDFS + "comment"),
            _text(
                f"At most {facts.result_cap} rows or triples are returned. A longer answer is cut and marked: "
                "HTTP header 'QIHUB-Results-Truncated: true' on every format, and this IRI in the 'link' of "
                "the head of SPARQL JSON and XML results."
            ),
        ),
        Triple(truncated, _n(QH + "resultCap"), Literal(str(facts.result_cap), datatype=_n(XSD + "integer"))),
    ]
    if facts.service_allowlist:
        triples.append(Triple(service, _n(SD + "feature"), _n(SD + "BasicFederatedQuery")))
    for name in _RESULT_FORMATS + _GRAPH_FORMATS:
        triples.append(Triple(service, _n(SD + "resultFormat"), _n(FORMATS + name)))
    for name in ("Turtle", "N-Triples", "RDF_XML", "JSON-LD"):
        triples.append(Triple(service, _n(SD + "inputFormat"), _n(FORMATS + name)))
    return triples


def void_description(
    facts: EndpointFacts, stats: StoreStats | None, title: str = "qihub knowledge graph"
) -> list[Triple]:
    """VoID + DCAT description of the dataset behind the endpoint (sizes when the store could count them)."""
    dataset = _n(facts.dataset)
    service = _n(facts.endpoint)
    distribution = _n(f"{facts.dataset}-sparql")
    triples = [
        Triple(dataset, _n(RDF + "type"), _n(VOID + "Dataset")),
        Triple(dataset, _n(RDF + "type"), _n(DCAT + "Dataset")),
        Triple(dataset, _n(DCTERMS + "title"), _text(title)),
        Triple(
            dataset,
            _n(DCTERMS + "description"),
            _text(
                "Digital calibration certificates, standards and conformity data of the national quality "
                "infrastructure as RDF (SOSA/SSN, QUDT, PROV-O): one named graph per source document, with "
                "provenance of every graph in the metadata graph."
            ),
        ),
        Triple(dataset, _n(VOID + "sparqlEndpoint"), service),
        Triple(dataset, _n(VOID + "uriSpace"), Literal(ID_BASE)),
        Triple(dataset, _n(VOID + "feature"), _n(FORMATS + "Turtle")),
        Triple(dataset, _n(DCAT + "distribution"), distribution),
        Triple(dataset, _n(QH + "graphNamespace"), Literal(GRAPH_BASE)),
        Triple(dataset, _n(QH + "metadataGraph"), _n(METADATA_GRAPH)),
        Triple(distribution, _n(RDF + "type"), _n(DCAT + "Distribution")),
        Triple(distribution, _n(DCAT + "accessURL"), service),
        Triple(distribution, _n(DCAT + "accessService"), service),
        Triple(service, _n(RDF + "type"), _n(DCAT + "DataService")),
        Triple(service, _n(DCAT + "endpointURL"), service),
        Triple(service, _n(DCAT + "endpointDescription"), service),
        Triple(service, _n(DCAT + "servesDataset"), dataset),
        Triple(service, _n(DCTERMS + "conformsTo"), _n("https://www.w3.org/TR/sparql11-protocol/")),
    ]
    for vocabulary in VOCABULARIES:
        triples.append(Triple(dataset, _n(VOID + "vocabulary"), _n(vocabulary)))
    if stats is not None:
        integer = _n(XSD + "integer")
        triples.append(Triple(dataset, _n(VOID + "triples"), Literal(str(stats.triples), datatype=integer)))
        triples.append(Triple(dataset, _n(QH + "namedGraphs"), Literal(str(stats.graphs), datatype=integer)))
    return triples
