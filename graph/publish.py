"""Keeping each registered certificate's named graph, and its description, in step with the registry.

`publish_certificate` re-maps one certificate from its stored bytes and registry row into its own named graph
(`graph.iris.certificate_graph_iri`) with one `replace_graph`, then replaces the graph's description in the
metadata graph. It runs after every committed certificate event (submitted, issued, revoked, superseded,
amends), so a status change is in the graph before the request that made it returns.
"""

from collections.abc import Iterable, Sequence
from typing import Protocol

import pyoxigraph as ox
from sqlmodel import Session, col, select

from certificates.models import Certificate, CertificateStatus
from certificates.xml import parse_xml
from graph import iris
from graph.mapping import EquipmentIdentity, KnownInstrument, ReferenceResolver, map_certificate
from graph.metadata import describe_certificate_graph, metadata_removal, metadata_update
from organizations.models import Organization
from storage.models import StoredDocument

CERTIFICATE_ACTIONS = frozenset({"submitted", "issued", "revoked", "superseded", "amends"})
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


def _same(left: str | None, right: str | None) -> bool:
    """Equal ignoring case and spacing, or one side unknown."""
    if not left or not right:
        return True
    return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()


def reference_resolver(session: Session) -> ReferenceResolver:
    """Find the registered certificates of a reference standard by its serial number (and maker/model if given)."""

    def resolve(identity: EquipmentIdentity) -> Sequence[KnownInstrument]:
        if not identity.serial:
            return []
        rows = session.exec(
            select(Certificate)
            .where(Certificate.item_serial == identity.serial, Certificate.status != CertificateStatus.draft)
            .order_by(col(Certificate.id))
            .limit(MAX_REFERENCE_MATCHES)
        ).all()
        return [
            KnownInstrument(
                certificate_id=row.id,
                instrument_iri=iris.instrument_iri(row.item_manufacturer, row.item_model, row.item_serial),
            )
            for row in rows
            if _same(row.item_manufacturer, identity.manufacturer) and _same(row.item_model, identity.model)
        ]

    return resolve


def certificate_triples(session: Session, certificate: Certificate) -> list[ox.Triple]:
    """Map a registered certificate from its stored bytes, with its lab and known reference standards."""
    document = session.get(StoredDocument, certificate.sha256)
    if document is None:
        raise LookupError(f"The document of certificate {certificate.id} is missing.")
    # The bytes passed validation at submission; the size cap is the document's own size.
    root = parse_xml(document.content, max_bytes=max(len(document.content), 1))
    organization = session.get(Organization, certificate.organization_id)
    return map_certificate(
        root,
        certificate=certificate,
        lab_name=organization.name if organization else None,
        lab_accreditation=organization.accreditation_number if organization else None,
        resolve_reference=reference_resolver(session),
    )


def publish_certificate(session: Session, store: CertificateGraphWriter, *, certificate_id: str) -> int:
    """Write one certificate's named graph and its metadata; returns the number of triples (0 if gone)."""
    graph_iri = iris.certificate_graph_iri(certificate_id)
    certificate = session.get(Certificate, certificate_id)
    if certificate is None:
        store.drop_graph(graph_iri)
        store.update(metadata_removal(graph_iri), timeout_s=METADATA_TIMEOUT_S)
        return 0
    triples = certificate_triples(session, certificate)
    store.replace_graph(graph_iri, triples)
    description = describe_certificate_graph(certificate=certificate, graph_iri=graph_iri, triple_count=len(triples))
    store.update(metadata_update(graph_iri, description), timeout_s=METADATA_TIMEOUT_S)
    return len(triples)
