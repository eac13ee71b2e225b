"""Graph fixtures: the registry fixtures mapped into a plain pyoxigraph store next to the competency TriG."""

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest
from sqlmodel import Session, SQLModel, create_engine

import api.tables  # noqa: F401 - registers every domain's tables
from graph import service
from graph.registry_mapping import resync_registry_graphs

DATA = Path(__file__).parent / "data"


class PlainGraphStore:
    """The writing side of the hub's graph store over a bare pyoxigraph Store (no app needed)."""

    def __init__(self, store: ox.Store) -> None:
        self.store = store

    def replace_graph(self, graph_iri: str, triples: Iterable[ox.Triple]) -> None:
        """Drop the graph and write the triples into it, as one transaction."""
        graph = ox.NamedNode(graph_iri)
        self.store.remove_graph(graph) if graph in self.store.named_graphs() else None
        self.store.extend(ox.Quad(t.subject, t.predicate, t.object, graph) for t in triples)

    def update(self, sparql: str, *, timeout_s: float) -> None:
        """Run a SPARQL Update (no timeout in-process)."""
        self.store.update(sparql)


def import_registry_fixtures(session: Session) -> None:
    """Standards (CSV and JSON), accreditations and conformity certificates of tests/graph/data."""
    service.import_standards_document(session, content=(DATA / "standards.csv").read_bytes(), media_type="text/csv")
    service.import_standards_document(
        session, content=(DATA / "standards.json").read_bytes(), media_type="application/json"
    )
    accreditations = json.loads((DATA / "accreditations.json").read_text())
    service.import_accreditations(session, items=service.parse_accreditations(accreditations))
    certificates = json.loads((DATA / "conformity-certificates.json").read_text())
    service.import_conformity_certificates(session, items=service.parse_conformity_certificates(certificates))


@pytest.fixture(scope="module")
def knowledge_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ox.Store]:
    """The competency TriG plus every registry fixture mapped through `graph.registry_mapping`."""
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.sqlite3'}")
    SQLModel.metadata.create_all(engine)
    store = ox.Store()
    store.load(path=str(DATA / "competency.trig"), format=ox.RdfFormat.TRIG)
    with Session(engine) as session:
        import_registry_fixtures(session)
        session.commit()
        resync_registry_graphs(session, PlainGraphStore(store))
    yield store
    engine.dispose()
