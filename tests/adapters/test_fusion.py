"""L3 fusion: canonical records become SOSA/QUDT/PROV triples in per-instance named graphs, with IRIs from
authoritative identifiers, validated by SHACL, and answer a cross-source SPARQL question."""

from datetime import timedelta
from decimal import Decimal

import pyoxigraph as ox
import pytest
from rdflib import Graph
from rdflib.namespace import SH
from sqlmodel import Session, col, select

from adapters.canonical import (
    Complaint,
    EquipmentStatus,
    InstrumentRef,
    Sample,
    VideoEvent,
    record_json,
)
from adapters.fusion import (
    ENVIRONMENT_LIMITS_GRAPH,
    FusionSource,
    fuse_pending,
    limit_triples,
    publish_environment_limits,
    record_quads,
)
from adapters.models import AdapterEvidence, CanonicalRecordRow, EnvironmentLimit
from adapters.queries import RESULTS_WITH_VALID_CONDITIONS
from adapters.shapes import SHAPES_FILE, validate_instance_graph, validate_triples
from graph import adapter_iris as ai
from graph.iris import instrument_iri, standard_iri
from graph.queries import bind_parameters, render_query
from storage.database import session_scope
from tests.adapters.semantics_support import (
    BALANCE,
    LAB,
    ROOM,
    MemoryGraphStore,
    at,
    calibration,
    land_records,
    make_instance,
    reading,
    result,
    sample,
)

RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
SOSA = "http://www.w3.org/ns/sosa/"
QH = "https://qihub.example/ns#"
PROV = "http://www.w3.org/ns/prov#"
QUDT = "http://qudt.org/schema/qudt/"
SOURCE = FusionSource("instance-1", None, "mqtt", "2.1.0")
BALANCE_IRI = instrument_iri(BALANCE.manufacturer, BALANCE.model, BALANCE.serial)


def _triples(quads: list[ox.Quad]) -> set[tuple[str, str, str]]:
    return {(str(q.subject), str(q.predicate), str(q.object)) for q in quads}


def _iri(value: str) -> str:
    return f"<{value}>"


def test_an_environment_reading_becomes_a_sosa_observation_with_a_qudt_value_and_provenance() -> None:
    record = record_json(reading("23.70", at(9, 30)))
    quads = record_quads("environment-reading", record, source=SOURCE, message_id=41, recorded_at=at(9, 31))
    observation = _iri(ai.environment_observation_iri("env-sensor-7", "temperature", "2026-03-02T09:30:00Z"))
    value = observation[:-1] + "/value>"
    expected = {
        (observation, RDF_TYPE, f"<{SOSA}Observation>"),
        (observation, RDF_TYPE, f"<{QH}EnvironmentObservation>"),
        (observation, f"<{SOSA}madeBySensor>", _iri(ai.sensor_iri("env-sensor-7"))),
        (observation, f"<{SOSA}hasFeatureOfInterest>", _iri(ai.room_iri(ROOM))),
        (observation, f"<{SOSA}observedProperty>", _iri(ai.observable_property_iri("temperature"))),
        (observation, f"<{SOSA}resultTime>", '"2026-03-02T09:30:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime>'),
        (observation, f"<{SOSA}hasResult>", value),
        (value, f"<{QUDT}numericValue>", '"23.70"^^<http://www.w3.org/2001/XMLSchema#decimal>'),
        (value, f"<{QH}lexicalValue>", '"23.70"'),
        (value, f"<{QUDT}hasUnit>", "<http://qudt.org/vocab/unit/DEG_C>"),
        (value, f"<{QH}ucumCode>", '"Cel"'),
        (observation, f"<{PROV}wasDerivedFrom>", "<https://qihub.example/id/landing-message/41>"),
        (observation, f"<{PROV}wasAttributedTo>", "<https://qihub.example/id/adapter/mqtt/2.1.0>"),
        (_iri(ai.room_iri(ROOM)), RDF_TYPE, f"<{QH}Room>"),
        (
            _iri(ai.observable_property_iri("temperature")),
            f"<{QUDT}hasQuantityKind>",
            "<http://qudt.org/vocab/quantitykind/Temperature>",
        ),
    }
    assert expected <= _triples(quads)
    assert {q.graph_name.value for q in quads} == {ai.adapter_graph_iri("instance-1")}


def test_a_test_result_links_sample_instrument_room_method_and_keeps_its_digits_and_censoring() -> None:
    record = result("R1", start=at(9), end=at(10)).model_copy(update={"operator": "<", "value": Decimal("0.0050")})
    quads = record_quads("test-result", record_json(record), source=SOURCE, message_id=7, recorded_at=None)
    node = _iri(ai.result_iri(LAB, "R1"))
    triples = _triples(quads)
    assert {
        (node, RDF_TYPE, f"<{QH}TestResult>"),
        (node, f"<{SOSA}hasFeatureOfInterest>", _iri(ai.sample_iri(LAB, "S-2026-0001"))),
        (node, f"<{SOSA}madeBySensor>", _iri(BALANCE_IRI)),
        (node, f"<{SOSA}usedProcedure>", _iri(standard_iri("GB/T 5009.3-2016"))),
        (node, f"<{QH}room>", _iri(ai.room_iri(ROOM))),
        (node, f"<{QH}censoring>", '"<"'),
        (node, f"<{QH}state>", f"<{QH}resultStatus-verified>"),
        (node[:-1] + "/value>", f"<{QH}lexicalValue>", '"0.0050"'),
        (node[:-1] + "/value>", f"<{QUDT}hasUnit>", "<http://qudt.org/vocab/unit/GM>"),
        (_iri(BALANCE_IRI), "<https://schema.org/serialNumber>", '"B123456789"'),
    } <= triples


def test_iris_come_from_authoritative_identifiers_and_ignore_spelling_differences() -> None:
    assert ai.lab_iri("CNAS L0001") == ai.lab_iri("  cnas   l0001 ") == "https://qihub.example/id/lab/CNAS_L0001"
    assert ai.credit_code_organization_iri("91330100ma27xl1234") == "https://qihub.example/id/uscc/91330100MA27XL1234"
    assert ai.sample_iri("CNAS L0001", "WTR-0042") == "https://qihub.example/id/sample/CNAS_L0001/WTR-0042"
    assert ai.sample_iri(None, "WTR-0042") == "https://qihub.example/id/sample/_/WTR-0042"
    assert instrument_iri("Mettler Toledo", "XPR205", "B123456789") == instrument_iri(
        "METTLER TOLEDO ", "xpr205", " B123456789"
    )
    assert ai.calibration_event_iri("zjjl-2025-1") == ai.calibration_event_iri("ZJJL-2025-1")


def test_the_same_input_twice_gives_the_same_iris() -> None:
    records = [
        ("sample", record_json(sample())),
        ("test-result", record_json(result("R1", start=at(9), end=at(10)))),
        ("environment-reading", record_json(reading("21.5", at(9, 30)))),
        ("calibration-event", record_json(calibration("CAL-1", start=at(0, day=1), until=at(0, day=20)))),
    ]
    first = [_triples(record_quads(k, r, source=SOURCE, message_id=1, recorded_at=at(11))) for k, r in records]
    second = [_triples(record_quads(k, r, source=SOURCE, message_id=1, recorded_at=at(11))) for k, r in records]
    assert first == second


def test_two_sources_describing_one_instrument_give_one_instrument_iri() -> None:
    lims = FusionSource("lims-instance", None, "senaite", "1.0.0")
    opcua = FusionSource("opcua-instance", None, "opcua", "1.0.0")
    from_lims = record_json(result("R1", start=at(9), end=at(10)))
    status = EquipmentStatus(
        instrument=InstrumentRef(manufacturer="METTLER TOLEDO", model="xpr205", serial="B123456789"),
        status="running",
        source_status="Execute",
        observed_at=at(9, 5),
    )
    store = MemoryGraphStore()
    store.add_quads(record_quads("test-result", from_lims, source=lims, message_id=1, recorded_at=None))
    store.add_quads(record_quads("equipment-status", record_json(status), source=opcua, message_id=2, recorded_at=None))
    rows = store.query(
        "SELECT DISTINCT ?instrument WHERE { GRAPH ?g { ?instrument a <https://qihub.example/ns#Instrument> } }"
    ).rows()
    assert rows == [{"instrument": BALANCE_IRI}]
    joined = store.query(
        "PREFIX sosa: <http://www.w3.org/ns/sosa/> SELECT ?result ?status WHERE { "
        "GRAPH ?a { ?result sosa:madeBySensor ?i } GRAPH ?b { ?status sosa:hasFeatureOfInterest ?i } }"
    ).rows()
    assert len(joined) == 1 and joined[0]["result"] == ai.result_iri(LAB, "R1")


@pytest.mark.parametrize("batch", [2])
def test_fuse_pending_fuses_in_order_in_batches_and_marks_rows(hub, batch: int) -> None:
    store = MemoryGraphStore()
    with session_scope(hub.engine) as session:
        instance = make_instance(session)
        land_records(session, instance=instance, records=[sample(), result("R1", start=at(9), end=at(10))])
        land_records(session, instance=instance, records=[reading("21.5", at(9, 30))])
        instance_id = instance.id
    with session_scope(hub.engine) as session:
        assert fuse_pending(session, store=store, limit=batch) == 2
    with session_scope(hub.engine) as session:
        assert fuse_pending(session, store=store, limit=batch) == 1
        assert fuse_pending(session, store=store, limit=batch) == 0
    assert store.add_calls == 2  # one add per batch
    with Session(hub.engine) as session:
        rows = session.exec(select(CanonicalRecordRow).order_by(col(CanonicalRecordRow.id))).all()
        assert all(row.fused_at is not None for row in rows)
        assert {row.graph_iri for row in rows} == {ai.adapter_graph_iri(instance_id)}
    # Fusing again adds nothing new: the IRIs are deterministic.
    before = len(store.store)
    with session_scope(hub.engine) as session:
        session.exec(select(CanonicalRecordRow)).all()
        for row in session.exec(select(CanonicalRecordRow)).all():
            row.fused_at = None
    with session_scope(hub.engine) as session:
        assert fuse_pending(session, store=store) == 3
    assert len(store.store) == before


def _all_kinds_quads() -> list[ox.Quad]:
    source = FusionSource("instance-all", None, "lims-push", "0.9.0")
    records = [
        sample().model_copy(update={"client_credit_code": "91330100MA27XL1234", "order_id": "WT-7"}),
        result("R1", start=at(9), end=at(10)),
        reading("21.5", at(9, 30)),
        EquipmentStatus(instrument=BALANCE, status="fault", source_status="ERROR", observed_at=at(9), room=ROOM),
        VideoEvent(
            event_id="evt-1",
            camera_id="cam-1",
            room=ROOM,
            event_type="person-entered",
            observed_at=at(9, 1),
            snapshot_uri="https://nvr.example/s/evt-1.jpg",
            snapshot_sha256="b" * 64,
        ),
        calibration("CAL-1", start=at(0, day=1), until=at(0, day=20)),
        Complaint(
            complaint_id="CP-1",
            against_lab_id=LAB,
            subject="报告延迟",
            received_at=at(8),
            due_at=at(8, day=9),
            status="in-progress",
        ),
    ]
    quads: list[ox.Quad] = []
    for index, record in enumerate(records, start=1):
        quads += record_quads(
            record.kind.value, record_json(record), source=source, message_id=index, recorded_at=at(11)
        )
    return quads


def test_every_record_kind_fuses_into_a_graph_that_conforms_to_the_adapter_shapes() -> None:
    report = validate_triples(_all_kinds_quads())
    assert report.violations == []
    assert report.conforms


def test_every_hub_class_fusion_emits_has_a_shape() -> None:
    emitted = {str(q.object.value) for q in _all_kinds_quads() if q.predicate.value.endswith("#type")}
    shapes = Graph().parse(SHAPES_FILE, format="turtle")
    targeted = {str(target) for target in shapes.objects(None, SH.targetClass)}
    own = {iri for iri in emitted if iri.startswith(QH)}
    assert own - targeted == set()
    assert f"{QH}TestResult" in targeted and f"{QH}EnvironmentObservation" in targeted


def test_a_measured_value_without_a_unit_fails_on_the_quantity_value_shape() -> None:
    broken = result("R9", start=at(9), end=at(10)).model_copy(update={"unit": None})
    quads = record_quads("test-result", record_json(broken), source=SOURCE, message_id=9, recorded_at=None)
    report = validate_triples(quads)
    assert not report.conforms
    assert [(v.shape, v.path) for v in report.violations] == [
        ("https://qihub.example/shapes/adapters#QuantityValueShape", f"{QUDT}hasUnit"),
        ("https://qihub.example/shapes/adapters#QuantityValueShape", f"{QH}ucumCode"),
    ]
    assert report.violations[0].focus == ai.result_iri(LAB, "R9") + "/value"


def test_a_tampered_reading_without_sensor_and_with_a_non_number_fails_on_the_observation_shapes() -> None:
    tampered = {**record_json(reading("21.5", at(9, 30))), "sensor_id": "", "value": "21,5"}
    report = validate_triples(
        record_quads("environment-reading", tampered, source=SOURCE, message_id=3, recorded_at=None)
    )
    found = {(v.shape, v.path) for v in report.violations}
    assert ("https://qihub.example/shapes/adapters#EnvironmentObservationShape", f"{SOSA}madeBySensor") in found
    assert ("https://qihub.example/shapes/adapters#QuantityValueShape", f"{QUDT}numericValue") in found


def test_validating_an_instance_graph_records_l33_evidence(hub) -> None:
    store = MemoryGraphStore()
    with session_scope(hub.engine) as session:
        good = make_instance(session)
        land_records(session, instance=good, records=[sample(), result("R1", start=at(9), end=at(10))])
        bad = make_instance(session)
        land_records(
            session, instance=bad, records=[result("R2", start=at(9), end=at(10)).model_copy(update={"unit": None})]
        )
        fuse_pending(session, store=store)
        from_store = validate_instance_graph(session, instance=good, store=store)
        rebuilt = validate_instance_graph(session, instance=bad)
        good_id, bad_id = good.id, bad.id
    assert from_store.conforms and from_store.triples > 10
    assert not rebuilt.conforms
    with Session(hub.engine) as session:
        evidence = {
            row.instance_id: row
            for row in session.exec(select(AdapterEvidence).where(AdapterEvidence.criterion == "L3.3"))
        }
    assert evidence[good_id].passed is True
    assert evidence[bad_id].passed is False
    assert evidence[bad_id].details["violations"] == 2
    assert evidence[bad_id].details["results"][0]["path"] == f"{QUDT}hasUnit"


def _scenario(hub) -> tuple[MemoryGraphStore, str]:
    """LIMS results, calibrations and IoT readings from three instances, fused, with the room's limits."""
    store = MemoryGraphStore()
    other = InstrumentRef(manufacturer="Sartorius", model="Cubis II", serial="0038812345")
    with session_scope(hub.engine) as session:
        lims, iot, equipment = make_instance(session), make_instance(session, adapter="mqtt"), make_instance(session)
        land_records(
            session,
            instance=lims,
            records=[
                sample(),
                result("R-ok", start=at(9), end=at(10)),  # calibrated, room within limits
                result("R-hot", start=at(11), end=at(12)),  # a reading of 30.0 Cel at 11:30
                result("R-no-start", start=None, end=at(14)),  # window 13:00–14:00 by default, room fine
                result("R-expired", start=at(9, day=21), end=at(10, day=21)),  # after the calibration ran out
                result("R-other", start=at(9), end=at(10)).model_copy(update={"instrument": other}),
                result("R-no-readings", start=at(16), end=at(17)),  # nobody measured the room then
            ],
        )
        land_records(
            session,
            instance=equipment,
            records=[
                calibration("CAL-2026-01", start=at(0, day=1), until=at(0, day=20)),
                calibration("CAL-O", start=at(0, day=1), until=at(0, day=20), instrument=other),
            ],
        )
        land_records(
            session,
            instance=iot,
            records=[
                reading("21.5", at(9, 30)),
                reading("60.0", at(9, 40), quantity="relative-humidity", unit="%"),  # no humidity limit
                reading("30.0", at(11, 30)),
                reading("22.0", at(11, 40)),
                reading("22.4", at(13, 15)),
                reading("21.9", at(9, 30, day=21)),
            ],
        )
        session.add(EnvironmentLimit(room=ROOM, quantity="temperature", unit="Cel", minimum="18", maximum="26"))
        session.flush()
        while fuse_pending(session, store=store, limit=4):
            pass
        publish_environment_limits(session, store=store)
    return store, BALANCE_IRI


def test_the_cross_source_query_returns_results_measured_under_valid_calibration_and_room_limits(hub) -> None:
    store, instrument = _scenario(hub)
    query = RESULTS_WITH_VALID_CONDITIONS
    rows = store.query(
        render_query(query, bind_parameters(query, {"instrument": instrument})), union_default_graph=True
    ).rows()
    assert [row["resultId"] for row in rows] == ["R-ok", "R-no-start"]
    first = rows[0]
    assert first["value"] == "20.10" and first["unit"] == "g"
    assert first["certificateNumber"] == "CAL-2026-01"
    assert first["room"] == ai.room_iri(ROOM)
    assert first["readings"] == "2"
    assert rows[1]["startedAt"] == "2026-03-02T13:00:00Z"
    # Without demanding readings, the result measured while nobody watched the room qualifies too.
    relaxed = store.query(
        render_query(query, bind_parameters(query, {"instrument": instrument, "requireReadings": "false"})),
        union_default_graph=True,
    ).rows()
    assert [row["resultId"] for row in relaxed] == ["R-ok", "R-no-start", "R-no-readings"]
    # The limits sit in their own graph, written from the table.
    assert ox.NamedNode(ENVIRONMENT_LIMITS_GRAPH) in store.store.named_graphs()


def test_limit_changes_rewrite_the_limits_graph(hub) -> None:
    store = MemoryGraphStore()
    with session_scope(hub.engine) as session:
        session.add(EnvironmentLimit(room="R1", quantity="temperature", unit="Cel", maximum="25.0"))
        session.flush()
        assert publish_environment_limits(session, store=store) == 1
        limit = session.exec(select(EnvironmentLimit)).one()
        limit.maximum = "24.5"
        session.flush()
        publish_environment_limits(session, store=store)
    maxima = store.query(
        f"SELECT ?max WHERE {{ GRAPH <{ENVIRONMENT_LIMITS_GRAPH}> {{ ?l <{QH}maximum> ?max }} }}"
    ).rows()
    assert maxima == [{"max": "24.5"}]


def test_records_before_and_after_a_day_boundary_keep_utc_times() -> None:
    late = reading("20.0", at(23, 59) + timedelta(seconds=30))
    quads = record_quads("environment-reading", record_json(late), source=SOURCE, message_id=5, recorded_at=None)
    times = {str(q.object.value) for q in quads if q.predicate.value == f"{SOSA}resultTime"}
    assert times == {"2026-03-02T23:59:30Z"}


def test_a_sample_names_its_client_by_credit_code_and_its_order() -> None:
    record = Sample(
        sample_id="S-1",
        lab_id=LAB,
        client="杭州某水务有限公司",
        client_credit_code="91330100MA27XL1234",
        order_id="WT-7",
        status="received",
    )
    triples = _triples(record_quads("sample", record_json(record), source=SOURCE, message_id=1, recorded_at=None))
    node = _iri(ai.sample_iri(LAB, "S-1"))
    client = _iri(ai.credit_code_organization_iri("91330100MA27XL1234"))
    assert (node, f"<{QH}client>", client) in triples
    assert (node, f"<{QH}order>", _iri(ai.order_iri(LAB, "WT-7"))) in triples
    assert (client, f"<{QH}unifiedSocialCreditCode>", '"91330100MA27XL1234"') in triples
    assert (node, f"<{QH}state>", f"<{QH}sampleStatus-received>") in triples


def test_unknown_record_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        record_quads("weather", {}, source=SOURCE, message_id=1, recorded_at=None)


def test_every_hub_term_fusion_uses_is_declared_in_the_ontology() -> None:
    from graph.shapes import ONTOLOGY_FILE

    store = ox.Store()
    store.load(path=str(ONTOLOGY_FILE), format=ox.RdfFormat.TURTLE)
    declared = {
        quad.subject.value
        for quad in store.quads_for_pattern(None, None, None)
        if isinstance(quad.subject, ox.NamedNode)
    }
    limit = EnvironmentLimit(room=ROOM, quantity="temperature", unit="Cel", minimum="18", maximum="26", method="GB/T 1")
    used: set[str] = set()
    for triple in [q.triple for q in _all_kinds_quads()] + list(limit_triples([limit])):
        used.add(triple.predicate.value)
        if triple.predicate.value.endswith("#type") or triple.predicate.value in {f"{QH}state", f"{QH}eventType"}:
            used.add(triple.object.value)
    own = {term for term in used if term.startswith(QH)}
    assert len(own) > 40
    assert own <= declared, own - declared
