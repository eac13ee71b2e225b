"""`fuse_backlog`: batch after batch, the store loading one while the next is built, with nothing lost.

Every record ends fused exactly once and the graph equals what batch-by-batch `fuse_pending` makes; versions
split over batches end in the newest state; a failed load leaves its rows (and the later ones) pending for the
next pass; `stop` ends the pass after the batch in progress.
"""

import threading
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from sqlmodel import Session, col, func, select

from adapters.canonical import CanonicalRecord
from adapters.fusion import fuse_backlog, fuse_pending
from adapters.models import AdapterInstance, CanonicalRecordRow
from adapters.shapes import validate_triples
from graph import adapter_iris as ai
from graph.embedded import EmbeddedOxigraphStore
from graph.store import GraphStoreUnavailableError
from storage.database import session_scope
from tests.adapters.semantics_support import LAB, MemoryGraphStore, at, land_records, make_instance, reading, sample

QH = "https://qihub.example/ns#"
PROV = "http://www.w3.org/ns/prov#"


class NQuadsStore(MemoryGraphStore):
    """The in-memory store taking N-Quads text (as the embedded and remote stores do) and SPARQL updates."""

    def __init__(self, *, fail_on_load: int | None = None, on_load: Any = None) -> None:
        super().__init__()
        self.loads: list[int] = []  # quads per load
        self.fail_on_load = fail_on_load
        self.on_load = on_load

    def add_nquads(self, data: bytes, *, atomic: bool = True) -> None:
        """Parse and insert N-Quads; the `fail_on_load`-th load fails as a dead store would."""
        if self.on_load is not None:
            self.on_load()
        if self.fail_on_load is not None and len(self.loads) + 1 == self.fail_on_load:
            self.loads.append(0)
            raise GraphStoreUnavailableError("The graph worker process stopped unexpectedly.")
        quads = list(ox.parse(data, format=ox.RdfFormat.N_QUADS))
        self.loads.append(len(quads))
        self.store.extend(quads)

    def update(self, sparql: str, *, timeout_s: float, **_: Any) -> None:
        """Run a SPARQL update."""
        self.store.update(sparql)


def _instance(hub: Any) -> str:
    # The app's own fuser would take committed rows into its store, not the one these tests inspect.
    hub.client.app.state.adapter_fuser.stop()
    with session_scope(hub.engine) as session:
        return make_instance(session).id


def _land(hub: Any, instance_id: str, *records: CanonicalRecord) -> None:
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        assert instance is not None
        land_records(session, instance=instance, records=list(records))


def _unfused(hub: Any, instance_id: str) -> int:
    with Session(hub.engine) as session:
        query = select(func.count()).where(
            CanonicalRecordRow.instance_id == instance_id, col(CanonicalRecordRow.fused_at).is_(None)
        )
        return int(session.exec(query).one())


def _quads(store: MemoryGraphStore, instance_id: str) -> set[str]:
    graph = ox.NamedNode(ai.adapter_graph_iri(instance_id))
    return {str(quad) for quad in store.store.quads_for_pattern(None, None, None, graph)}


def _readings(count: int) -> list[CanonicalRecord]:
    return [reading(f"21.{index}", at(9 + index // 60, index % 60)) for index in range(count)]


def test_a_backlog_is_fused_in_batches_into_the_graph_batch_by_batch_fusion_makes(hub) -> None:
    instance_id = _instance(hub)
    _land(hub, instance_id, *_readings(23))
    pipelined = NQuadsStore()
    assert fuse_backlog(hub.engine, store=pipelined, limit=5) == 23
    assert pipelined.loads and len(pipelined.loads) == 5 and _unfused(hub, instance_id) == 0
    assert fuse_backlog(hub.engine, store=pipelined, limit=5) == 0  # nothing fused twice

    with session_scope(hub.engine) as session:  # the same records once more, one batch at a time
        session.execute(
            CanonicalRecordRow.__table__.update()  # type: ignore[attr-defined]
            .where(CanonicalRecordRow.__table__.c.instance_id == instance_id)  # type: ignore[attr-defined]
            .values(fused_at=None)
        )
    one_by_one = MemoryGraphStore()
    while True:
        with session_scope(hub.engine) as session:
            if not fuse_pending(session, store=one_by_one, limit=5):
                break
    assert _quads(pipelined, instance_id) == _quads(one_by_one, instance_id)
    assert len(_quads(pipelined, instance_id)) > 23 * 10


def test_versions_split_over_pipelined_batches_end_in_the_newest_state_and_conform(hub) -> None:
    instance_id = _instance(hub)
    versions = [
        sample().model_copy(update={"source_time": at(7, minute), "received_at": at(7, minute)}) for minute in range(5)
    ]
    # Readings between the versions, so each batch of two holds a version and the batch before is still loading.
    _land(hub, instance_id, *[record for pair in zip(versions, _readings(5), strict=True) for record in pair])
    store = NQuadsStore()
    assert fuse_backlog(hub.engine, store=store, limit=2) == 10

    subject = ox.NamedNode(ai.sample_iri(LAB, "S-2026-0001"))
    graph = ox.NamedNode(ai.adapter_graph_iri(instance_id))

    def objects(predicate: str) -> list[str]:
        found = store.store.quads_for_pattern(subject, ox.NamedNode(predicate), None, graph)
        return sorted(str(quad.object.value) for quad in found if not isinstance(quad.object, ox.Triple))

    assert objects(f"{QH}receivedAt") == ["2026-03-02T07:04:00Z"]
    assert len(objects(f"{PROV}wasInfluencedBy")) == 4
    assert len(objects(f"{PROV}wasDerivedFrom")) == 1
    assert validate_triples(list(store.store.quads_for_pattern(None, None, None, graph))).violations == []


def test_a_failed_load_leaves_its_batch_and_the_later_ones_pending_and_the_next_pass_fuses_them(hub) -> None:
    instance_id = _instance(hub)
    _land(hub, instance_id, *_readings(12))
    failing = NQuadsStore(fail_on_load=2)
    with pytest.raises(GraphStoreUnavailableError):
        fuse_backlog(hub.engine, store=failing, limit=4)
    assert _unfused(hub, instance_id) == 8  # the first batch is in the graph and marked; nothing else is

    working = NQuadsStore()
    assert fuse_backlog(hub.engine, store=working, limit=4) == 8
    assert _unfused(hub, instance_id) == 0
    assert len(_quads(failing, instance_id) | _quads(working, instance_id)) == len(_quads_of_all(hub, instance_id))


def _quads_of_all(hub: Any, instance_id: str) -> set[str]:
    with session_scope(hub.engine) as session:
        session.execute(
            CanonicalRecordRow.__table__.update()  # type: ignore[attr-defined]
            .where(CanonicalRecordRow.__table__.c.instance_id == instance_id)  # type: ignore[attr-defined]
            .values(fused_at=None)
        )
    everything = NQuadsStore()
    fuse_backlog(hub.engine, store=everything, limit=100)
    return _quads(everything, instance_id)


def test_stop_ends_the_pass_after_the_batch_in_progress(hub) -> None:
    instance_id = _instance(hub)
    _land(hub, instance_id, *_readings(9))
    stop = threading.Event()
    store = NQuadsStore(on_load=stop.set)
    assert fuse_backlog(hub.engine, store=store, limit=3, stop=stop) == 3
    assert _unfused(hub, instance_id) == 6
    assert fuse_backlog(hub.engine, store=store, limit=3, stop=stop) == 0


def test_the_embedded_store_takes_the_batches_as_nquads_bulk_loads(hub, tmp_path: Path) -> None:
    instance_id = _instance(hub)
    _land(hub, instance_id, *_readings(30))
    store = EmbeddedOxigraphStore(tmp_path / "graph")
    try:
        assert fuse_backlog(hub.engine, store=store, limit=7) == 30
        graph = ai.adapter_graph_iri(instance_id)
        outcome = store.query(
            f"SELECT (COUNT(?o) AS ?n) WHERE {{ GRAPH <{graph}> {{ ?o a <http://www.w3.org/ns/sosa/Observation> }} }}",
            timeout_s=30,
            result_cap=10,
        )
        assert outcome.rows() == [{"n": "30"}]
    finally:
        store.close()
    assert _unfused(hub, instance_id) == 0
