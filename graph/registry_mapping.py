"""Registry rows → RDF, in the terms of `ontologies/qihub.ttl` (qh:) and the vocabularies it aligns with.

Named graphs: **one per entity** (`graph.iris.standard_graph_iri`, `accreditation_graph_iri`,
`conformity_certificate_graph_iri`), not one per import batch. An import is an upsert, so re-importing a
standard must replace what the graph said about it; with one graph per entity that is a single
`replace_graph`, while batch graphs would leave stale statements in older batches. The graphs are written after
the database commit by the listener `write_registry_event` (subjects 'standard', 'accreditation',
'conformity-certificate').

Shapes (IRIs from `graph.iris`):

    <standard> a qh:Standard ; qh:code ; qh:edition ; dcterms:title "…"@en, "…"@zh ; qh:status qh:Current ;
        dcterms:issued (publication date) ; qh:implementedOn ; qh:withdrawnOn ; qh:issuingBody ; qh:icsCode ;
        qh:replaces / qh:replacedBy <standard> ; qh:hasClause <clause> .
    <clause> a qh:Clause ; qh:clauseNumber ; dcterms:title ; qh:clauseOf <standard> .
    <holder> qh:hasAccreditation <accreditation> .
    <accreditation> a qh:Accreditation ; qh:accreditationNumber ; qh:accreditedBy <body> ; qh:status ;
        schema:validFrom ; schema:expires ; qh:hasScope <accreditation>/scope/<n> .
    <scope> a qh:AccreditationScope ; qh:scopeQuantityKind <QUDT kind> ; qh:rangeMin ; qh:rangeMax (xsd:decimal) ;
        qh:rangeUnit <QUDT unit> ; qh:scopeStandard <standard> ; dcterms:description .
    <certificate> a qh:ConformityCertificate ; qh:scheme ; qh:certificateNumber ; qh:holder <org> ;
        qh:issuedBy <certification body> ; qh:certifiedProduct <certificate>/product ; qh:certifiedAgainst <standard> ;
        qh:status ; dcterms:issued ; schema:expires .

Each graph is described in the metadata graph (`graph.iris.METADATA_GRAPH`, via `graph.metadata.metadata_update`)
as a `dcat:Dataset` / `prov:Entity` derived from the registry entity, with the mapping version, time and size.

Standards named by a link (a successor, a scope's method, a certified-against standard) get `a qh:Standard ;
qh:code` in the linking graph too, so a join on the code works before (or without) that standard's import.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any, Protocol

import structlog
from pyoxigraph import Literal, NamedNode, Triple
from sqlmodel import Session, select

from graph.iris import (
    ID_BASE,
    QH,
    accreditation_graph_iri,
    accreditation_iri,
    clause_iri,
    conformity_certificate_graph_iri,
    conformity_certificate_iri,
    named_organization_iri,
    organization_iri,
    standard_graph_iri,
    standard_iri,
)
from graph.metadata import CATALOG_IRI, ONTOLOGY_IRI, metadata_update
from graph.models import Accreditation, ConformityCertificate, Standard
from storage.models import AuditEvent

log = structlog.get_logger("qihub.graph")
REGISTRY_MAPPING_VERSION = "1.0.0"
REGISTRY_AGENT_IRI = f"{ID_BASE}software/qihub-registry-mapping"
METADATA_TIMEOUT_S = 10.0
RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
XSD = "http://www.w3.org/2001/XMLSchema#"
DCTERMS = "http://purl.org/dc/terms/"
SCHEMA = "https://schema.org/"
XSD_DATE = NamedNode(f"{XSD}date")
XSD_DECIMAL = NamedNode(f"{XSD}decimal")
_INTEGER = NamedNode(f"{XSD}integer")

# Subjects of the audit events this module follows, and the tables behind them.
REGISTRY_SUBJECTS: dict[str, type[Any]] = {
    "standard": Standard,
    "accreditation": Accreditation,
    "conformity-certificate": ConformityCertificate,
}


def qh(name: str) -> NamedNode:
    """A term of the hub's ontology."""
    return NamedNode(f"{QH}{name}")


def _dcterms(name: str) -> NamedNode:
    return NamedNode(f"{DCTERMS}{name}")


def _schema(name: str) -> NamedNode:
    return NamedNode(f"{SCHEMA}{name}")


def status_concept(status: str) -> NamedNode:
    """The qh:LifecycleStatus concept of a status value ('current' → qh:Current)."""
    return qh(status[:1].upper() + status[1:])


def _date(value: date | None) -> Literal | None:
    return Literal(value.isoformat(), datatype=XSD_DATE) if value else None


def _text(value: str | None, language: str | None = None) -> Literal | None:
    if not value:
        return None
    return Literal(value, language=language) if language else Literal(value)


def _triples(subject: NamedNode, pairs: list[tuple[NamedNode, Any]]) -> Iterator[Triple]:
    for predicate, value in pairs:
        if value is not None:
            yield Triple(subject, predicate, value)


def _standard_reference(code: str) -> tuple[NamedNode, list[Triple]]:
    node = NamedNode(standard_iri(code))
    return node, [Triple(node, RDF_TYPE, qh("Standard")), Triple(node, qh("code"), Literal(code))]


def _organization(organization_id: str | None, name: str, kind: str) -> tuple[NamedNode, list[Triple]]:
    node = NamedNode(organization_iri(organization_id) if organization_id else named_organization_iri(name))
    return node, [Triple(node, RDF_TYPE, qh(kind)), Triple(node, _schema("name"), Literal(name))]


def map_standard(standard: Standard) -> list[Triple]:
    """One standard edition with its links and clauses."""
    node = NamedNode(standard_iri(standard.code))
    triples = [Triple(node, RDF_TYPE, qh("Standard"))]
    triples += _triples(
        node,
        [
            (qh("code"), Literal(standard.code)),
            (_dcterms("identifier"), Literal(standard.code)),
            (qh("edition"), _text(standard.edition)),
            (_dcterms("title"), _text(standard.title, "en")),
            (_dcterms("title"), _text(standard.title_zh, "zh")),
            (qh("status"), status_concept(standard.status)),
            (_dcterms("issued"), _date(standard.published_on)),
            (qh("implementedOn"), _date(standard.implemented_on)),
            (qh("withdrawnOn"), _date(standard.withdrawn_on)),
            (qh("issuingBody"), _text(standard.issuing_body)),
        ],
    )
    triples += [Triple(node, qh("icsCode"), Literal(code)) for code in standard.ics_codes]
    for predicate, codes in ((qh("replaces"), standard.replaces), (qh("replacedBy"), standard.replaced_by)):
        for code in codes:
            other, described = _standard_reference(code)
            triples += [Triple(node, predicate, other), *described]
    for clause in standard.clauses:
        clause_node = NamedNode(clause_iri(standard.code, clause["number"]))
        triples += [Triple(node, qh("hasClause"), clause_node), Triple(clause_node, RDF_TYPE, qh("Clause"))]
        triples += _triples(
            clause_node,
            [
                (qh("clauseNumber"), Literal(clause["number"])),
                (_dcterms("title"), _text(clause.get("title"))),
                (qh("clauseOf"), node),
            ],
        )
    return triples


def map_accreditation(accreditation: Accreditation) -> list[Triple]:
    """An accreditation, its body, its holder and each scope entry (quantity kind + range + unit, or method)."""
    node = NamedNode(accreditation_iri(accreditation.body, accreditation.number))
    body, triples = _organization(None, accreditation.body, "AccreditationBody")
    holder, described = _organization(accreditation.holder_organization_id, accreditation.holder_name, "Laboratory")
    triples += [*described, Triple(holder, qh("hasAccreditation"), node), Triple(node, RDF_TYPE, qh("Accreditation"))]
    triples += _triples(
        node,
        [
            (qh("accreditationNumber"), Literal(accreditation.number)),
            (qh("accreditedBy"), body),
            (qh("status"), status_concept(accreditation.status)),
            (_schema("validFrom"), _date(accreditation.valid_from)),
            (_schema("expires"), _date(accreditation.valid_to)),
        ],
    )
    for index, entry in enumerate(accreditation.scope, start=1):
        scope = NamedNode(f"{node.value}/scope/{index}")
        triples += [Triple(node, qh("hasScope"), scope), Triple(scope, RDF_TYPE, qh("AccreditationScope"))]
        triples += _triples(
            scope,
            [
                (qh("scopeQuantityKind"), NamedNode(entry["quantity_kind"]) if entry.get("quantity_kind") else None),
                (qh("rangeMin"), _decimal(entry.get("range_min"))),
                (qh("rangeMax"), _decimal(entry.get("range_max"))),
                (qh("rangeUnit"), NamedNode(entry["unit"]) if entry.get("unit") else None),
                (_dcterms("description"), _text(entry.get("description"))),
            ],
        )
        if entry.get("method_code"):
            standard, described = _standard_reference(entry["method_code"])
            triples += [Triple(scope, qh("scopeStandard"), standard), *described]
    return triples


def _decimal(value: Any) -> Literal | None:
    # Scope JSON keeps decimals as strings (exact); xsd:decimal makes numeric FILTERs work.
    return None if value is None else Literal(str(value), datatype=XSD_DECIMAL)


def map_conformity_certificate(certificate: ConformityCertificate) -> list[Triple]:
    """A product conformity certificate: holder, certification body, product, standards, dates, status."""
    node = NamedNode(conformity_certificate_iri(certificate.scheme, certificate.number))
    holder, triples = _organization(certificate.holder_organization_id, certificate.holder_name, "Organization")
    triples[0] = Triple(holder, RDF_TYPE, _schema("Organization"))  # a holder is any organization
    product = NamedNode(f"{node.value}/product")
    triples += [Triple(node, RDF_TYPE, qh("ConformityCertificate")), Triple(product, RDF_TYPE, _schema("Product"))]
    triples += _triples(product, [(_schema("name"), Literal(certificate.product))])
    triples += _triples(product, [(_schema("model"), _text(certificate.product_model))])
    triples += _triples(
        node,
        [
            (qh("scheme"), Literal(certificate.scheme)),
            (qh("certificateNumber"), Literal(certificate.number)),
            (qh("holder"), holder),
            (qh("certifiedProduct"), product),
            (qh("status"), status_concept(certificate.status)),
            (_dcterms("issued"), _date(certificate.issued_on)),
            (_schema("expires"), _date(certificate.expires_on)),
        ],
    )
    if certificate.issuer:
        issuer, described = _organization(None, certificate.issuer, "CertificationBody")
        triples += [Triple(node, qh("issuedBy"), issuer), *described]
    for code in certificate.standard_codes:
        standard, described = _standard_reference(code)
        triples += [Triple(node, qh("certifiedAgainst"), standard), *described]
    return triples


def _entity(row: Standard | Accreditation | ConformityCertificate) -> tuple[str, str, str]:
    """(entity IRI, ontology class name, title) of a registry row."""
    if isinstance(row, Standard):
        return standard_iri(row.code), "Standard", f"Standard {row.code}"
    if isinstance(row, Accreditation):
        return accreditation_iri(row.body, row.number), "Accreditation", f"Accreditation {row.body} {row.number}"
    iri = conformity_certificate_iri(row.scheme, row.number)
    return iri, "ConformityCertificate", f"Conformity certificate {row.scheme} {row.number}"


def registry_graph(row: Standard | Accreditation | ConformityCertificate) -> tuple[str, list[Triple]]:
    """The named graph IRI of a registry row and the triples it holds."""
    if isinstance(row, Standard):
        return standard_graph_iri(row.code), map_standard(row)
    if isinstance(row, Accreditation):
        return accreditation_graph_iri(row.body, row.number), map_accreditation(row)
    return conformity_certificate_graph_iri(row.scheme, row.number), map_conformity_certificate(row)


def describe_registry_graph(
    row: Standard | Accreditation | ConformityCertificate, *, graph_iri: str, triple_count: int
) -> list[Triple]:
    """The PROV/DCAT description of one registry graph (for the metadata graph)."""
    source, kind, title = _entity(row)
    graph = NamedNode(graph_iri)
    generation = NamedNode(f"{graph_iri}#mapping")
    when = Literal(row.updated_at.isoformat(), datatype=NamedNode(f"{XSD}dateTime"))
    prov = "http://www.w3.org/ns/prov#"
    dcat = "http://www.w3.org/ns/dcat#"
    return [
        Triple(NamedNode(CATALOG_IRI), NamedNode(f"{dcat}dataset"), graph),
        Triple(graph, RDF_TYPE, NamedNode(f"{dcat}Dataset")),
        Triple(graph, RDF_TYPE, NamedNode(f"{prov}Entity")),
        Triple(graph, _dcterms("title"), Literal(title)),
        Triple(graph, _dcterms("type"), qh(kind)),
        Triple(graph, _dcterms("source"), NamedNode(source)),
        Triple(graph, NamedNode(f"{prov}wasDerivedFrom"), NamedNode(source)),
        Triple(graph, _dcterms("conformsTo"), NamedNode(ONTOLOGY_IRI)),
        Triple(graph, _dcterms("modified"), when),
        Triple(graph, NamedNode(f"{prov}wasGeneratedBy"), generation),
        Triple(graph, qh("mappingVersion"), Literal(REGISTRY_MAPPING_VERSION)),
        Triple(graph, qh("status"), status_concept(row.status)),
        Triple(graph, NamedNode("http://rdfs.org/ns/void#triples"), Literal(str(triple_count), datatype=_INTEGER)),
        Triple(generation, RDF_TYPE, NamedNode(f"{prov}Activity")),
        Triple(generation, NamedNode(f"{prov}used"), NamedNode(source)),
        Triple(generation, NamedNode(f"{prov}endedAtTime"), when),
        Triple(generation, NamedNode(f"{prov}wasAssociatedWith"), NamedNode(REGISTRY_AGENT_IRI)),
        Triple(NamedNode(REGISTRY_AGENT_IRI), RDF_TYPE, NamedNode(f"{prov}SoftwareAgent")),
    ]


class GraphWriter(Protocol):
    """What the registry needs of a graph store (`graph.store.GraphStore` provides it)."""

    def replace_graph(self, graph_iri: str, triples: Iterable[Triple]) -> None:
        """Replace the whole content of one named graph."""

    def update(self, sparql: str, *, timeout_s: float) -> None:
        """Run a SPARQL 1.1 Update atomically."""


def publish_registry_row(store: GraphWriter, row: Standard | Accreditation | ConformityCertificate) -> str:
    """Replace a registry row's named graph and its description in the metadata graph; returns the graph IRI."""
    graph_iri, triples = registry_graph(row)
    store.replace_graph(graph_iri, triples)
    description = describe_registry_graph(row, graph_iri=graph_iri, triple_count=len(triples))
    store.update(metadata_update(graph_iri, description), timeout_s=METADATA_TIMEOUT_S)
    return graph_iri


def registry_row_for_event(
    session: Session, event: AuditEvent
) -> Standard | Accreditation | ConformityCertificate | None:
    """The registry row an audit event is about, or None when the event is not about one."""
    table = REGISTRY_SUBJECTS.get(event.subject_kind)
    return session.get(table, event.subject_id) if table else None


def registry_listener(get_store: Callable[[], GraphWriter | None]) -> Callable[[Session, AuditEvent], None]:
    """An after-commit listener writing each imported or updated registry row into its named graph."""

    def write_registry_event(session: Session, event: AuditEvent) -> None:
        store = get_store()
        row = registry_row_for_event(session, event) if store is not None else None
        if store is None or row is None:
            return
        try:
            publish_registry_row(store, row)
        except Exception:
            # The registry row is committed either way; `resync_registry_graphs` repairs a missed write.
            log.exception("registry graph write failed", subject=event.subject_kind, subject_id=event.subject_id)

    return write_registry_event


def resync_registry_graphs(session: Session, store: GraphWriter) -> int:
    """Rewrite the graph of every registry row (after a store outage or a mapping change); returns the count."""
    count = 0
    for table in REGISTRY_SUBJECTS.values():
        for row in session.exec(select(table)):
            publish_registry_row(store, row)
            count += 1
    return count
