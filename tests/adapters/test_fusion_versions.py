"""Fusion of changing source objects: a new version of a subject replaces the earlier one's statements in the
graph (newest by source time), keeps provenance of both, and subjects seen once cost no update."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import pyoxigraph as ox
from sqlmodel import Session, col, select

from adapters.canonical import CanonicalRecord, Complaint, record_json
from adapters.fusion import FusionSource, fuse_pending, record_quads
from adapters.models import AdapterInstance, CanonicalRecordRow
from adapters.shapes import validate_instance_graph, validate_triples
from graph import adapter_iris as ai
from storage.database import session_scope
from tests.adapters.semantics_support import (
    LAB,
    MemoryGraphStore,
    at,
    land_records,
    make_instance,
    reading,
    result,
    sample,
)

QH = "https://qihub.example/ns#"
PROV = "http://www.w3.org/ns/prov#"
QUDT = "http://qudt.org/schema/qudt/"
SAMPLE = ai.sample_iri(LAB, "S-2026-0001")


class VersionedStore(MemoryGraphStore):
    """The in-memory store with SPARQL updates, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    def update(self, sparql: str, *, timeout_s: float, **_: Any) -> None:
        """Run a SPARQL update."""
        self.updates += 1
        self.store.update(sparql)


def _version(record: CanonicalRecord, moment: datetime, **changes: Any) -> CanonicalRecord:
    return record.model_copy(update={"source_time": moment, **changes})


def _land(hub: Any, instance_id: str, *records: CanonicalRecord) -> list[int]:
    """Land records as messages of the instance; returns their message ids."""
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        assert instance is not None
        return [row.message_id for row, _record in land_records(session, instance=instance, records=list(records))]


def _new_instance(hub: Any) -> str:
    # The app's own fuser would take committed rows into its store, not the one these tests inspect.
    hub.client.app.state.adapter_fuser.stop()
    with session_scope(hub.engine) as session:
        return make_instance(session).id


def _fuse(hub: Any, store: VersionedStore, *, limit: int = 1000) -> int:
    with session_scope(hub.engine) as session:
        return fuse_pending(session, store=store, limit=limit)


def _objects(store: VersionedStore, instance_id: str, subject: str, predicate: str) -> list[str]:
    graph = ox.NamedNode(ai.adapter_graph_iri(instance_id))
    found = store.store.quads_for_pattern(ox.NamedNode(subject), ox.NamedNode(predicate), None, graph)
    return sorted(quad.object.value for quad in found if not isinstance(quad.object, ox.Triple))


def _message(message_id: int) -> str:
    return ai.landing_message_iri(message_id)


def test_a_new_version_of_a_sample_replaces_its_state_and_keeps_the_earlier_message_as_history(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    registered = _version(sample(), at(7), status="registered", source_status="sample_registered")
    [first] = _land(hub, instance_id, registered, result("R1", start=at(9), end=at(10)))[:1]
    assert _fuse(hub, store) == 2
    [second] = _land(hub, instance_id, _version(sample(), at(8), source_status="sample_received"))
    assert _fuse(hub, store) == 1

    assert _objects(store, instance_id, SAMPLE, f"{QH}state") == [f"{QH}sampleStatus-received"]
    assert _objects(store, instance_id, SAMPLE, f"{QH}sourceCode") == ["sample_received"]
    assert _objects(store, instance_id, SAMPLE, f"{PROV}wasDerivedFrom") == [_message(second)]
    assert _objects(store, instance_id, SAMPLE, f"{PROV}wasInfluencedBy") == [_message(first)]
    assert len(_objects(store, instance_id, SAMPLE, f"{PROV}generatedAtTime")) == 1
    # The result that names the sample, and the shared lab node, are untouched.
    assert _objects(store, instance_id, ai.result_iri(LAB, "R1"), f"{QH}state") == [f"{QH}resultStatus-verified"]
    assert _objects(store, instance_id, ai.lab_iri(LAB), f"{QH}accreditationNumber") == [LAB]
    assert store.updates == 1
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        assert instance is not None
        from_store = validate_instance_graph(session, instance=instance, store=store)
        rebuilt = validate_instance_graph(session, instance=instance)
    assert from_store.violations == [] and from_store.conforms
    assert rebuilt.violations == [] and rebuilt.conforms


def test_a_corrected_result_keeps_one_value_with_the_new_digits(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    original = _version(result("R1", start=at(9), end=at(10)), at(10), value=Decimal("5.1"))
    _land(hub, instance_id, original)
    _fuse(hub, store)
    _land(hub, instance_id, _version(original, at(11), value=Decimal("5.20")))
    _fuse(hub, store)

    value = ai.result_iri(LAB, "R1") + "/value"
    assert _objects(store, instance_id, value, f"{QUDT}numericValue") == ["5.2"]  # the store normalises
    assert _objects(store, instance_id, value, f"{QH}lexicalValue") == ["5.20"]
    assert _objects(store, instance_id, value, f"{QUDT}hasUnit") == ["http://qudt.org/vocab/unit/GM"]


def test_an_older_version_arriving_late_does_not_overwrite_the_newer_state_but_is_marked_fused(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    [newer] = _land(hub, instance_id, _version(sample(), at(8)))
    _fuse(hub, store)
    before = len(store.store)
    _land(hub, instance_id, _version(sample(), at(7), status="registered"))
    assert _fuse(hub, store) == 1

    assert _objects(store, instance_id, SAMPLE, f"{QH}state") == [f"{QH}sampleStatus-received"]
    assert _objects(store, instance_id, SAMPLE, f"{PROV}wasDerivedFrom") == [_message(newer)]
    assert len(store.store) == before and store.updates == 0
    with Session(hub.engine) as session:
        rows = session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance_id)).all()
    assert all(row.fused_at is not None for row in rows)


def test_versions_in_one_batch_end_in_the_newest_state_whatever_their_arrival_order(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    closed, accepted, received = _land(
        hub,
        instance_id,
        *[
            Complaint(
                complaint_id="CP-1",
                against_lab_id=LAB,
                subject="报告延迟",
                received_at=at(8),
                due_at=at(8, day=9),
                status=status,
                source_status=code,
                source_time=moment,
            )
            for status, code, moment in (
                ("closed", "resolved", at(12)),
                ("accepted", "accepted", at(9)),
                ("received", "submitted", at(8)),
            )
        ],
    )
    assert _fuse(hub, store) == 3

    complaint = ai.complaint_iri("CP-1")
    assert _objects(store, instance_id, complaint, f"{QH}state") == [f"{QH}complaintStatus-closed"]
    assert _objects(store, instance_id, complaint, f"{QH}sourceCode") == ["resolved"]
    assert _objects(store, instance_id, complaint, f"{PROV}wasDerivedFrom") == [_message(closed)]
    assert _objects(store, instance_id, complaint, f"{PROV}wasInfluencedBy") == sorted(
        [_message(accepted), _message(received)]
    )


def test_versions_split_over_batches_end_in_the_newest_state_and_conform(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    versions = [_version(sample(), at(7, minute), received_at=at(7, minute)) for minute in range(5)]
    _land(hub, instance_id, *versions)
    while _fuse(hub, store, limit=2):
        pass

    assert _objects(store, instance_id, SAMPLE, f"{QH}receivedAt") == ["2026-03-02T07:04:00Z"]
    assert len(_objects(store, instance_id, SAMPLE, f"{PROV}wasInfluencedBy")) == 4
    graph = ox.NamedNode(ai.adapter_graph_iri(instance_id))
    report = validate_triples(list(store.store.quads_for_pattern(None, None, None, graph)))
    assert report.violations == []


def test_environment_readings_seen_for_the_first_time_are_bulk_added_without_an_update(hub) -> None:
    store, instance_id = VersionedStore(), _new_instance(hub)
    _land(hub, instance_id, *[reading("21.5", at(9, minute)) for minute in range(20)])
    assert _fuse(hub, store) == 20
    assert store.updates == 0 and store.add_calls == 1
    with Session(hub.engine) as session:
        unfused = session.exec(select(CanonicalRecordRow).where(col(CanonicalRecordRow.fused_at).is_(None))).all()
    assert unfused == []


def test_a_complaint_keeps_the_source_status_code_it_was_mapped_from() -> None:
    complaint = Complaint(
        complaint_id="CP-2",
        subject="样品损坏",
        received_at=at(8),
        due_at=at(8, day=9),
        status="in-progress",
        source_status="processing",
    )
    source = FusionSource("instance-1", None, "platform", "1.0.0")
    quads = record_quads("complaint", record_json(complaint), source=source, message_id=3, recorded_at=None)
    codes = [
        q.object.value for q in quads if q.predicate.value == f"{QH}sourceCode" and isinstance(q.object, ox.Literal)
    ]
    assert codes == ["processing"]
