"""Keeping each registered certificate's named graph, and its description, in step with the registry.

`publish_certificate` re-maps one certificate from its stored bytes and registry row into its own named graph
(`graph.iris.certificate_graph_iri`), then replaces the graph's description in the metadata graph. It runs after
every committed certificate event (submitted, issued, revoked, superseded, amends), so a status change is in
the graph before the request that made it returns.

`publish_certificates` does the same for many certificates with one store call for the whole batch when the
store can take N-Triples text (`NTriplesGraphWriter`, the embedded store): the background mapper uses it when
several new submissions are queued. Other stores get one `replace_graph` per certificate and one metadata
update. Either way each graph is replaced whole (never seen dropped but not refilled), and every mapping reads
the certificate's current row.

A certificate links its reference standards' certificates (`prov:wasDerivedFrom`) when the hub knows them at
mapping time. When a certificate becomes known later (submitted issued, or issued from draft), the graphs
already citing its item as reference equipment without that link are re-mapped in the same call
(`link_dependents`): one SPARQL query over the store finds them by the item's serial number.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyoxigraph as ox
from sqlmodel import Session, col, select

from certificates.models import Certificate, CertificateStatus
from certificates.xml import parse_xml
from graph import iris
from graph.mapping import EquipmentIdentity, KnownInstrument, ReferenceResolver, map_certificate_ntriples
from graph.metadata import describe_certificate_graph, metadata_removal, metadata_updates
from organizations.models import Organization
from storage.models import StoredDocument

CERTIFICATE_ACTIONS = frozenset({"submitted", "issued", "revoked", "superseded", "amends"})
# Events after which a certificate may be newly known as a reference standard's certificate.
KNOWN_FROM_ACTIONS = frozenset({"submitted", "issued"})
METADATA_TIMEOUT_S = 10.0
MAX_REFERENCE_MATCHES = 20


class CertificateGraphWriter(Protocol):
    """The part of `graph.store.GraphStore` publishing needs."""

    def replace_graph(self, graph_iri: str, triples: Iterable[ox.Triple]) -> None:
        """Atomically drop the named graph and insert these triples in it."""

    def drop_graph(self, graph_iri: str) -> bool:
        """Remove the named graph; False when it did not exist."""

    def update(self, sparql: str, *, timeout_s: float) -> None:
        """Run a SPARQL 1.1 Update atomically."""


@runtime_checkable
class NTriplesGraphWriter(Protocol):
    """A store that replaces many named graphs from N-Triples text in one call (`EmbeddedOxigraphStore`)."""

    def replace_graphs(self, graphs: Sequence[tuple[str, str]], *, then_update: str | None = None) -> None:
        """Replace each named graph with its N-Triples, then run `then_update`; each graph is replaced whole."""


@runtime_checkable
class DependentsQuerying(Protocol):
    """A store that answers SPARQL SELECT (`graph.store.GraphStore`): needed to find graphs to re-link."""

    def query(self, sparql: str, *, timeout_s: float, result_cap: int) -> Any:
        """Run a query; the outcome's `rows()` are the bindings as plain values."""


def unlinked_dependents(store: DependentsQuerying, *, references: Sequence[Certificate]) -> list[str]:
    """Ids of certificates whose graphs use one of these certificates' items as reference equipment (same serial)
    without deriving from that certificate yet."""
    pairs = [
        f"({ox.Literal(row.item_serial)} {ox.NamedNode(iris.certificate_iri(row.id))})"
        for row in references
        if row.item_serial
    ]
    if not pairs:
        return []
    query = f"""PREFIX qh: <{iris.QH}> PREFIX schema: <https://schema.org/> PREFIX prov: <http://www.w3.org/ns/prov#>
SELECT DISTINCT ?g WHERE {{
  VALUES (?serial ?reference) {{ {" ".join(pairs)} }}
  GRAPH ?g {{
    ?activity qh:usedEquipment ?equipment . ?equipment schema:serialNumber ?serial .
    FILTER NOT EXISTS {{ ?certificate prov:wasDerivedFrom ?reference }}
  }}
}}"""
    outcome = store.query(query, timeout_s=METADATA_TIMEOUT_S, result_cap=10_000)
    prefix = iris.certificate_graph_iri("")
    own = {row.id for row in references}
    found = [row["g"].removeprefix(prefix) for row in outcome.rows() if row["g"].startswith(prefix)]
    return [certificate_id for certificate_id in found if certificate_id not in own]


@dataclass
class PublishOutcome:
    """What a batch did: triples written, graphs dropped, and the certificates whose mapping failed."""

    triples: int = 0
    dropped: int = 0
    failed: dict[str, Exception] = field(default_factory=dict)


def _same(left: str | None, right: str | None) -> bool:
    """Equal ignoring case and spacing, or one side unknown."""
    if not left or not right:
        return True
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


def reference_resolver(session: Session) -> ReferenceResolver:
    """Find the registered certificates of a reference standard by its serial number (and maker/model if given)."""
    by_serial: dict[str, list[Certificate]] = {}  # a batch's certificates share few reference standards

    def resolve(identity: EquipmentIdentity) -> Sequence[KnownInstrument]:
        if not identity.serial:
            return []
        rows = by_serial.get(identity.serial)
        if rows is None:
            rows = list(
                session.exec(
                    select(Certificate)
                    .where(Certificate.item_serial == identity.serial, Certificate.status != CertificateStatus.draft)
                    .order_by(col(Certificate.id))
                    .limit(MAX_REFERENCE_MATCHES)
                ).all()
            )
            by_serial[identity.serial] = rows
        return [
            KnownInstrument(
                certificate_id=row.id,
                instrument_iri=iris.instrument_iri(row.item_manufacturer, row.item_model, row.item_serial),
            )
            for row in rows
            if _same(row.item_manufacturer, identity.manufacturer) and _same(row.item_model, identity.model)
        ]

    return resolve


def certificate_ntriples(
    session: Session, certificate: Certificate, *, resolve_reference: ReferenceResolver | None = None
) -> str:
    """Map a registered certificate from its stored bytes, with its lab and known reference standards."""
    document = session.get(StoredDocument, certificate.sha256)
    if document is None:
        raise LookupError(f"The document of certificate {certificate.id} is missing.")
    # The bytes passed validation at submission; the size cap is the document's own size.
    root = parse_xml(document.content, max_bytes=max(len(document.content), 1))
    organization = session.get(Organization, certificate.organization_id)
    return map_certificate_ntriples(
        root,
        certificate=certificate,
        lab_name=organization.name if organization else None,
        lab_accreditation=organization.accreditation_number if organization else None,
        resolve_reference=resolve_reference or reference_resolver(session),
    )


def certificate_triples(session: Session, certificate: Certificate) -> list[ox.Triple]:
    """`certificate_ntriples` as pyoxigraph triples."""
    text = certificate_ntriples(session, certificate)
    return [quad.triple for quad in ox.parse(text.encode(), format=ox.RdfFormat.N_TRIPLES)]


def _write(
    store: CertificateGraphWriter,
    graphs: Sequence[tuple[str, str]],
    descriptions: Sequence[tuple[str, list[ox.Triple]]],
) -> None:
    if not graphs:
        return
    update = metadata_updates(descriptions)
    if isinstance(store, NTriplesGraphWriter):
        store.replace_graphs(graphs, then_update=update)
        return
    for graph_iri, ntriples in graphs:
        store.replace_graph(
            graph_iri, (quad.triple for quad in ox.parse(ntriples.encode(), format=ox.RdfFormat.N_TRIPLES))
        )
    store.update(update, timeout_s=METADATA_TIMEOUT_S)


def _rows(session: Session, certificate_ids: Sequence[str]) -> dict[str, Certificate]:
    statement = select(Certificate).where(col(Certificate.id).in_(certificate_ids))
    return {row.id: row for row in session.exec(statement).all()}


def publish_certificates(
    session: Session, store: CertificateGraphWriter, *, certificate_ids: Sequence[str], link_dependents: bool = False
) -> PublishOutcome:
    """Write the named graphs and metadata of several certificates (one store call when the store allows).

    A certificate that is gone has its graph and description removed; one whose mapping fails is reported in
    `failed` and leaves its graph as it was, without holding up the others. With `link_dependents`, graphs that
    cite these certificates' items as reference equipment without linking them are re-mapped too.
    """
    outcome = PublishOutcome()
    wanted = list(dict.fromkeys(certificate_ids))
    rows = _rows(session, wanted)
    if link_dependents and isinstance(store, DependentsQuerying):
        known = [row for row in rows.values() if row.status != CertificateStatus.draft and row.item_serial]
        dependents = [item for item in unlinked_dependents(store, references=known) if item not in rows]
        if dependents:
            rows.update(_rows(session, dependents))
            wanted += [item for item in dependents if item in rows]  # never drop a graph found this way
    resolve = reference_resolver(session)
    graphs: list[tuple[str, str]] = []
    descriptions: list[tuple[str, list[ox.Triple]]] = []
    for certificate_id in wanted:
        graph_iri = iris.certificate_graph_iri(certificate_id)
        certificate = rows.get(certificate_id)
        if certificate is None:
            store.drop_graph(graph_iri)
            store.update(metadata_removal(graph_iri), timeout_s=METADATA_TIMEOUT_S)
            outcome.dropped += 1
            continue
        try:
            ntriples = certificate_ntriples(session, certificate, resolve_reference=resolve)
        except Exception as error:  # one bad certificate must not keep the rest of the batch out of the graph
            outcome.failed[certificate_id] = error
            continue
        count = ntriples.count("\n")  # one triple a line: literals never hold a raw newline
        graphs.append((graph_iri, ntriples))
        descriptions.append(
            (graph_iri, describe_certificate_graph(certificate=certificate, graph_iri=graph_iri, triple_count=count))
        )
        outcome.triples += count
    _write(store, graphs, descriptions)
    return outcome


def publish_certificate(
    session: Session, store: CertificateGraphWriter, *, certificate_id: str, link_dependents: bool = False
) -> int:
    """Write one certificate's named graph and its metadata; returns the number of triples (0 if gone)."""
    outcome = publish_certificates(session, store, certificate_ids=[certificate_id], link_dependents=link_dependents)
    for error in outcome.failed.values():
        raise error
    return outcome.triples
