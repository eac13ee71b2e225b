"""L3 fusion: canonical records become RDF in one named graph per adapter instance.

Vocabularies: SOSA/SSN for observations, samples, sensors and features of interest; QUDT for values and units
(`qudt:numericValue` as `xsd:decimal`, with `qh:lexicalValue` keeping the digits as written, because RDF stores
normalise decimals: "20.10" is stored as 20.1); PROV-O for provenance (every record's main node
`prov:wasDerivedFrom` its raw landing-zone message, `prov:wasAttributedTo` the adapter plug-in at its version,
`prov:generatedAtTime` when the hub made the record); the hub ontology (ontologies/qihub.ttl) for the rest.
Units use `qudt:hasUnit`, the property the certificate graphs use, so one query reads both.

IRIs come from authoritative identifiers (graph.iris, graph.adapter_iris), never from row ids, so fusing a
record twice, or two sources describing one instrument, gives the same nodes. That makes fusion idempotent:
`fuse_pending` adds a batch's quads to the store first and marks the rows fused after; a crash in between
only means the batch is added again, which changes nothing.

A source object that changes (a sample received, a result corrected, a complaint closed) lands as a new version
with the same kind and natural key. The graph shows one version per subject, the newest by source time (then
by arrival): its statements replace the earlier version's in one SPARQL update, it `prov:wasDerivedFrom` its
own message and `prov:wasInfluencedBy` the messages of the earlier versions. A version older than the one
already fused (it arrived out of order) is marked fused without touching the graph. Only records whose key
has an earlier version (fused, or in the same batch) pay for this; the rest are bulk-loaded as before.

Per record the work is a handful of dict look-ups and string formats (no pydantic, no pyoxigraph terms, and no
SPARQL but for revised subjects): records are read as the JSON they are stored as, rendered as N-Quads text
(what pyoxigraph would write for the same quads, byte for byte), and one bulk load writes a batch. The store's
load dominates what is left, and it runs in the store's own process: `fuse_backlog` (the worker's and the API's
loop) reads and renders the next batch while the store loads the previous one.
"""

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import pyoxigraph as ox
from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from adapters.codelists import (
    CALIBRATION_RESULT,
    COMPLAINT_STATUS,
    EQUIPMENT_STATUS,
    QUANTITY_KINDS,
    RESULT_STATUS,
    SAMPLE_STATUS,
    VIDEO_EVENT_TYPE,
    Vocabulary,
)
from adapters.models import AdapterInstance, CanonicalRecordRow, EnvironmentLimit, LandingMessage
from adapters.units import qudt_unit_iri
from graph import adapter_iris as ai
from graph.iris import QH, instrument_iri, named_organization_iri, standard_iri
from graph.store import GraphStore, NQuadsLoader

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
SOSA = "http://www.w3.org/ns/sosa/"
PROV = "http://www.w3.org/ns/prov#"
QUDT = "http://qudt.org/schema/qudt/"
QUDT_QUANTITY_KIND = "http://qudt.org/vocab/quantitykind/"
SCHEMA = "https://schema.org/"
DCTERMS = "http://purl.org/dc/terms/"
ENVIRONMENT_LIMITS_GRAPH = "https://qihub.example/graph/environment-limits"
FUSION_VERSION = "1.0"


# --- N-Quads terms ---------------------------------------------------------------------------------------------
# Terms are N-Triples text ("<iri>", "\"text\"^^<datatype>") and a statement is one N-Quads line: building a
# pyoxigraph term per node and a Quad per statement, only for the store to serialise them again, cost more than
# the mapping itself. The text is the one pyoxigraph writes for the same quads (tests/adapters/
# test_fusion_nquads.py compares it with what the term-building fusion wrote, byte for byte). IRIs minted by
# graph.iris/adapter_iris are valid by construction; those built from source codes are checked like pyoxigraph
# checks them, and the store's loader parses the text strictly, so nothing pyoxigraph would refuse gets in.


def _n(iri: str) -> str:
    """An IRI the hub minted (from graph.iris/adapter_iris: slugs, digests, numbers) as an N-Triples term."""
    return f"<{iri}>"


@lru_cache(maxsize=16384)  # codes, units and standards repeat in every batch: checked once each
def _checked(iri: str) -> str:
    """An IRI built from source data (a code, a unit), checked the way pyoxigraph checks it (ValueError if not)."""
    return f"<{ox.NamedNode(iri).value}>"


def _value_of(term: str) -> str:
    """The IRI of an IRI term."""
    return term[1:-1]


# oxrdf's escapes (C0 controls, DEL and the two non-characters U+FFFE/U+FFFF as \uXXXX, the usual short forms),
# so a literal reads exactly as pyoxigraph writes it.
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES.update({code: f"\\u{code:04X}" for code in (*range(0x20), 0x7F, 0xFFFE, 0xFFFF) if code not in _ESCAPES})
_NEEDS_ESCAPE = re.compile('[\x00-\x1f\x7f"\\\\\ufffe\uffff]')


def _quoted(text: str) -> str:
    """A plain (xsd:string) literal as N-Triples text."""
    return f'"{text.translate(_ESCAPES)}"' if _NEEDS_ESCAPE.search(text) else f'"{text}"'


A = _n(f"{RDF}type")
LABEL = _n(f"{RDFS}label")
IDENTIFIER = _n(f"{DCTERMS}identifier")
DESCRIPTION = _n(f"{DCTERMS}description")
# classes
C_OBSERVATION = _n(f"{SOSA}Observation")
C_SAMPLE = _n(f"{SOSA}Sample")
C_SENSOR = _n(f"{SOSA}Sensor")
C_FOI = _n(f"{SOSA}FeatureOfInterest")
C_PROPERTY = _n(f"{SOSA}ObservableProperty")
C_QUANTITY_VALUE = _n(f"{QUDT}QuantityValue")
C_SOFTWARE_AGENT = _n(f"{PROV}SoftwareAgent")
C_PRODUCT = _n(f"{SCHEMA}Product")
C_ORGANIZATION = _n(f"{SCHEMA}Organization")
C_LAB = _n(f"{QH}Laboratory")
C_LAB_SAMPLE = _n(f"{QH}LabSample")
C_TEST_ORDER = _n(f"{QH}TestOrder")
C_TEST_RESULT = _n(f"{QH}TestResult")
C_ENV_OBSERVATION = _n(f"{QH}EnvironmentObservation")
C_EQUIPMENT_STATUS = _n(f"{QH}EquipmentStatusObservation")
C_VIDEO_EVENT = _n(f"{QH}VideoEvent")
C_CAMERA = _n(f"{QH}Camera")
C_CALIBRATION_EVENT = _n(f"{QH}CalibrationEvent")
C_COMPLAINT = _n(f"{QH}Complaint")
C_ROOM = _n(f"{QH}Room")
C_INSTRUMENT = _n(f"{QH}Instrument")
C_MANUFACTURER = _n(f"{QH}Manufacturer")
C_ENVIRONMENT_LIMIT = _n(f"{QH}EnvironmentLimit")
# properties
P_FOI = _n(f"{SOSA}hasFeatureOfInterest")
P_SENSOR = _n(f"{SOSA}madeBySensor")
P_PROPERTY = _n(f"{SOSA}observedProperty")
P_PROCEDURE = _n(f"{SOSA}usedProcedure")
P_RESULT = _n(f"{SOSA}hasResult")
P_SIMPLE_RESULT = _n(f"{SOSA}hasSimpleResult")
P_RESULT_TIME = _n(f"{SOSA}resultTime")
P_IS_SAMPLE_OF = _n(f"{SOSA}isSampleOf")
P_NUMERIC = _n(f"{QUDT}numericValue")
P_UNIT = _n(f"{QUDT}hasUnit")
P_QUANTITY_KIND = _n(f"{QUDT}hasQuantityKind")
P_DERIVED_FROM = _n(f"{PROV}wasDerivedFrom")
P_INFLUENCED_BY = _n(f"{PROV}wasInfluencedBy")
P_ATTRIBUTED_TO = _n(f"{PROV}wasAttributedTo")
P_GENERATED_AT = _n(f"{PROV}generatedAtTime")
P_ASSOCIATED_WITH = _n(f"{PROV}wasAssociatedWith")
P_ENDED_AT = _n(f"{PROV}endedAtTime")
P_MANUFACTURER = _n(f"{SCHEMA}manufacturer")
P_MODEL = _n(f"{SCHEMA}model")
P_SERIAL = _n(f"{SCHEMA}serialNumber")
P_NAME = _n(f"{SCHEMA}name")
P_LEXICAL = _n(f"{QH}lexicalValue")
P_UCUM = _n(f"{QH}ucumCode")
P_CENSORING = _n(f"{QH}censoring")
P_UNCERTAINTY = _n(f"{QH}expandedUncertainty")
P_STATE = _n(f"{QH}state")
P_SOURCE_CODE = _n(f"{QH}sourceCode")
P_LAB = _n(f"{QH}lab")
P_ORDER = _n(f"{QH}order")
P_CLIENT = _n(f"{QH}client")
P_CLIENT_NAME = _n(f"{QH}clientName")
P_SAMPLE_TYPE = _n(f"{QH}sampleType")
P_RECEIVED_AT = _n(f"{QH}receivedAt")
P_DUE_AT = _n(f"{QH}dueAt")
P_ROOM = _n(f"{QH}room")
P_STARTED_AT = _n(f"{QH}startedAt")
P_ANALYST = _n(f"{QH}analyst")
P_ACCREDITATION_NUMBER = _n(f"{QH}accreditationNumber")
P_CREDIT_CODE = _n(f"{QH}unifiedSocialCreditCode")
P_ASSET_ID = _n(f"{QH}identification")
P_CALIBRATED_INSTRUMENT = _n(f"{QH}calibratedInstrument")
P_CERTIFICATE_NUMBER = _n(f"{QH}certificateNumber")
P_VALID_FROM = _n(f"{QH}validFrom")
P_VALID_UNTIL = _n(f"{QH}validUntil")
P_EVENT_TYPE = _n(f"{QH}eventType")
P_SNAPSHOT = _n(f"{QH}snapshot")
P_SHA256 = _n(f"{QH}sha256")
P_CHANNEL = _n(f"{QH}channel")
P_CONCERNS_LAB = _n(f"{QH}concernsLab")
P_LIMITED_PROPERTY = _n(f"{QH}limitedProperty")
P_MINIMUM = _n(f"{QH}minimum")
P_MAXIMUM = _n(f"{QH}maximum")
P_METHOD = _n(f"{QH}method")
T_DATETIME = _n(f"{XSD}dateTime")
T_DECIMAL = _n(f"{XSD}decimal")
T_ANY_URI = _n(f"{XSD}anyURI")
EQUIPMENT_STATE_PROPERTY = ai.observable_property_iri("equipment-state")
VIDEO_ACTIVITY_PROPERTY = ai.observable_property_iri("video-activity")


@lru_cache(maxsize=16384)  # a minute's readings share their time; a batch shares its recorded_at
def _time_literal(text: str) -> str:
    return f"{_quoted(text)}^^{T_DATETIME}"


def _time(value: Any) -> str | None:
    return _time_literal(str(value)) if value else None


def _decimal_text(text: str) -> str:
    """The lexical form of an xsd:decimal in plain notation (xsd:decimal has no exponent form)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        # A tampered or broken record: keep the text, typed, so SHACL reports it instead of fusion hiding it.
        return text
    return format(number, "f")


@lru_cache(maxsize=16384)  # sensor values repeat (a room's temperature hovers around a few values)
def _decimal_literal(text: str) -> str:
    return f"{_quoted(_decimal_text(text))}^^{T_DECIMAL}"


def _decimal(value: Any) -> str:
    """An xsd:decimal literal in plain notation (the text as given, typed, when it is not a number)."""
    return _decimal_literal(str(value))


# Plain literals repeat (labels, units, lexical values, identifiers of shared nodes): rendered once.
_text_literal = lru_cache(maxsize=65536)(_quoted)


@lru_cache(maxsize=4096)
def _generated_at(recorded_at: datetime) -> str:
    # One landing batch shares one recorded_at.
    return _time_literal(_utc(recorded_at).isoformat())


@dataclass
class _Batch:
    """N-Quads lines of one batch, with the shared nodes (rooms, sensors, labs, …) described once per graph."""

    lines: list[str] = field(default_factory=list)
    described: set[tuple[str, str]] = field(default_factory=set)
    writers: dict[str, "_Writer"] = field(default_factory=dict)  # by instance id: one graph each

    def first(self, graph: str, iri: str) -> bool:
        key = (graph, iri)
        if key in self.described:
            return False
        self.described.add(key)
        return True

    def text(self) -> str:
        """The batch's N-Quads."""
        return "".join(self.lines)


class _Writer:
    """Adds one record's statements to a batch, in one graph (subjects, predicates, objects as N-Triples terms)."""

    def __init__(self, batch: _Batch, graph_iri: str) -> None:
        self.batch = batch
        self.graph_iri = graph_iri
        self._end = f" <{graph_iri}> .\n"  # the graph term and the end of every line
        self._append = batch.lines.append

    def add(self, subject: str, predicate: str, obj: str | None) -> None:
        if obj is not None:
            self._append(f"{subject} {predicate} {obj}{self._end}")

    def text(self, subject: str, predicate: str, value: Any) -> None:
        if value is not None and value != "":
            self._append(f"{subject} {predicate} {_text_literal(str(value))}{self._end}")

    def once(self, iri: str) -> bool:
        return self.batch.first(self.graph_iri, iri)

    def concept(self, subject: str, vocabulary: Vocabulary, code: Any, source_code: Any = None) -> None:
        if code:
            predicate = P_STATE if vocabulary is not VIDEO_EVENT_TYPE else P_EVENT_TYPE
            self.add(subject, predicate, _checked(vocabulary.iri(code)))
        self.text(subject, P_SOURCE_CODE, source_code)

    # --- shared nodes ---------------------------------------------------------------------------------------

    def lab(self, lab_number: str | None) -> str | None:
        if not lab_number:
            return None
        iri = ai.lab_iri(lab_number)
        node = _n(iri)
        if self.once(iri):
            self.add(node, A, C_LAB)
            self.text(node, P_ACCREDITATION_NUMBER, lab_number.strip())
        return node

    def room(self, room: str | None) -> str | None:
        if not room:
            return None
        iri = ai.room_iri(room)
        node = _n(iri)
        if self.once(iri):
            self.add(node, A, C_ROOM)
            self.add(node, A, C_FOI)
            self.text(node, LABEL, room)
        return node

    def sensor(self, sensor_id: str, *, camera: bool = False) -> str:
        iri = ai.sensor_iri(sensor_id)
        node = _n(iri)
        if self.once(iri):
            self.add(node, A, C_SENSOR)
            if camera:
                self.add(node, A, C_CAMERA)
            self.text(node, IDENTIFIER, sensor_id)
        return node

    def observable_property(self, iri: str, label: str, quantity_kind: str | None = None) -> str:
        node = _n(iri)
        if self.once(iri):
            self.add(node, A, C_PROPERTY)
            self.text(node, LABEL, label)
            if quantity_kind:
                self.add(node, P_QUANTITY_KIND, _checked(QUDT_QUANTITY_KIND + quantity_kind))
        return node

    def instrument(self, ref: dict[str, Any] | None) -> str | None:
        if not ref:
            return None
        manufacturer, model, serial = ref.get("manufacturer"), ref.get("model"), ref.get("serial")
        iri = instrument_iri(manufacturer, model, serial)
        node = _n(iri)
        if self.once(iri):
            self.add(node, A, C_INSTRUMENT)
            self.add(node, A, C_FOI)
            self.add(node, A, C_PRODUCT)
            self.add(node, A, C_SENSOR)
            if manufacturer:
                maker_iri = named_organization_iri(manufacturer)
                maker = _n(maker_iri)
                self.add(node, P_MANUFACTURER, maker)
                if self.once(maker_iri):
                    self.add(maker, A, C_MANUFACTURER)
                    self.add(maker, A, C_ORGANIZATION)
                    self.text(maker, P_NAME, manufacturer)
            self.text(node, P_MODEL, model)
            self.text(node, P_SERIAL, serial)
            if ref.get("asset_id"):
                self.text(node, P_ASSET_ID, f"asset: {ref['asset_id']}")
        return node

    def value(self, observation: str, value: Any, unit: str | None, uncertainty: Any = None) -> None:
        node = f"{observation[:-1]}/value>"
        self.add(observation, P_RESULT, node)
        self.add(node, A, C_QUANTITY_VALUE)
        self.add(node, P_NUMERIC, _decimal(value))
        self.text(node, P_LEXICAL, value)
        if unit:
            qudt = qudt_unit_iri(unit)
            self.add(node, P_UNIT, _checked(qudt) if qudt else None)
            self.text(node, P_UCUM, unit)
        if uncertainty is not None:
            self.add(node, P_UNCERTAINTY, _decimal(uncertainty))


# --- one function per record kind ---------------------------------------------------------------------------


def _sample(w: _Writer, r: dict[str, Any]) -> str:
    lab_number = r.get("lab_id")
    node = _n(ai.sample_iri(lab_number, str(r.get("sample_id") or "")))
    w.add(node, A, C_SAMPLE)
    w.add(node, A, C_LAB_SAMPLE)
    w.text(node, IDENTIFIER, r.get("sample_id"))
    w.add(node, P_LAB, w.lab(lab_number))
    if r.get("order_id"):
        order = _n(ai.order_iri(lab_number, r["order_id"]))
        w.add(node, P_ORDER, order)
        if w.once(_value_of(order)):
            w.add(order, A, C_TEST_ORDER)
            w.text(order, IDENTIFIER, r["order_id"])
    if r.get("client_credit_code"):
        client = _n(ai.credit_code_organization_iri(r["client_credit_code"]))
        w.add(node, P_CLIENT, client)
        if w.once(_value_of(client)):
            w.add(client, A, C_ORGANIZATION)
            w.text(client, P_CREDIT_CODE, r["client_credit_code"].upper())
            w.text(client, P_NAME, r.get("client"))
    w.text(node, P_CLIENT_NAME, r.get("client"))
    w.text(node, P_SAMPLE_TYPE, r.get("sample_type"))
    w.add(node, P_RECEIVED_AT, _time(r.get("received_at")))
    w.concept(node, SAMPLE_STATUS, r.get("status"), r.get("source_status"))
    return node


def _test_result(w: _Writer, r: dict[str, Any]) -> str:
    lab_number = r.get("lab_id")
    node = _n(ai.result_iri(lab_number, str(r.get("result_id") or "")))
    w.add(node, A, C_OBSERVATION)
    w.add(node, A, C_TEST_RESULT)
    w.text(node, IDENTIFIER, r.get("result_id"))
    sample = _n(ai.sample_iri(lab_number, str(r.get("sample_id") or "")))
    w.add(node, P_FOI, sample)
    if w.once(_value_of(sample)):
        w.add(sample, A, C_SAMPLE)
        w.add(sample, A, C_LAB_SAMPLE)
        w.text(sample, IDENTIFIER, r.get("sample_id"))
    item = r.get("test_item")
    if item:
        w.add(node, P_PROPERTY, w.observable_property(ai.item_property_iri(lab_number, item), item))
    if r.get("method"):
        w.add(node, P_PROCEDURE, _checked(standard_iri(r["method"])))
    w.add(node, P_SENSOR, w.instrument(r.get("instrument")))
    w.add(node, P_ROOM, w.room(r.get("room")))
    w.add(node, P_LAB, w.lab(lab_number))
    w.text(node, P_ANALYST, r.get("analyst"))
    w.add(node, P_STARTED_AT, _time(r.get("started_at")))
    w.add(node, P_RESULT_TIME, _time(r.get("measured_at")))
    if r.get("value") is not None:
        w.value(node, r["value"], r.get("unit"), r.get("expanded_uncertainty"))
        if r.get("operator"):
            w.text(node, P_CENSORING, r["operator"])
    if r.get("text_value"):
        w.text(node, P_SIMPLE_RESULT, r["text_value"])
    w.concept(node, RESULT_STATUS, r.get("status"), r.get("source_status"))
    return node


def _environment_reading(w: _Writer, r: dict[str, Any]) -> str:
    sensor_id, quantity, observed_at = str(r.get("sensor_id") or ""), str(r.get("quantity") or ""), r.get("observed_at")
    node = _n(ai.environment_observation_iri(sensor_id, quantity, str(observed_at)))
    w.add(node, A, C_OBSERVATION)
    w.add(node, A, C_ENV_OBSERVATION)
    if sensor_id:
        w.add(node, P_SENSOR, w.sensor(sensor_id))
    w.add(node, P_FOI, w.room(r.get("room")))
    if quantity:
        prop = w.observable_property(ai.observable_property_iri(quantity), quantity, QUANTITY_KINDS.get(quantity))
        w.add(node, P_PROPERTY, prop)
    w.add(node, P_RESULT_TIME, _time(observed_at))
    w.value(node, r.get("value"), r.get("unit"))
    return node


def _equipment_status(w: _Writer, r: dict[str, Any]) -> str:
    instrument = w.instrument(r.get("instrument"))
    node = _n(ai.equipment_status_iri(_value_of(instrument) if instrument else "", str(r.get("observed_at"))))
    w.add(node, A, C_OBSERVATION)
    w.add(node, A, C_EQUIPMENT_STATUS)
    w.add(node, P_FOI, instrument)
    w.add(node, P_PROPERTY, w.observable_property(EQUIPMENT_STATE_PROPERTY, "equipment state"))
    w.add(node, P_RESULT_TIME, _time(r.get("observed_at")))
    w.text(node, P_SIMPLE_RESULT, r.get("status"))
    w.concept(node, EQUIPMENT_STATUS, r.get("status"), r.get("source_status"))
    w.add(node, P_ROOM, w.room(r.get("room")))
    return node


def _video_event(w: _Writer, r: dict[str, Any]) -> str:
    camera_id = str(r.get("camera_id") or "")
    node = _n(ai.video_event_iri(camera_id, str(r.get("event_id") or "")))
    w.add(node, A, C_OBSERVATION)
    w.add(node, A, C_VIDEO_EVENT)
    w.text(node, IDENTIFIER, r.get("event_id"))
    if camera_id:
        w.add(node, P_SENSOR, w.sensor(camera_id, camera=True))
    w.add(node, P_FOI, w.room(r.get("room")))
    w.add(node, P_PROPERTY, w.observable_property(VIDEO_ACTIVITY_PROPERTY, "video activity"))
    w.add(node, P_RESULT_TIME, _time(r.get("observed_at")))
    w.concept(node, VIDEO_EVENT_TYPE, r.get("event_type"), r.get("source_event_type"))
    if r.get("snapshot_uri"):
        w.add(node, P_SNAPSHOT, f"{_quoted(str(r['snapshot_uri']))}^^{T_ANY_URI}")
    w.text(node, P_SHA256, r.get("snapshot_sha256"))
    return node


def _calibration_event(w: _Writer, r: dict[str, Any]) -> str:
    node = _n(ai.calibration_event_iri(str(r.get("certificate_number") or "")))
    w.add(node, A, C_CALIBRATION_EVENT)
    w.add(node, P_CALIBRATED_INSTRUMENT, w.instrument(r.get("instrument")))
    w.text(node, P_CERTIFICATE_NUMBER, r.get("certificate_number"))
    if r.get("calibration_lab"):
        lab = _n(named_organization_iri(r["calibration_lab"]))
        w.add(node, P_ASSOCIATED_WITH, lab)
        if w.once(_value_of(lab)):
            w.add(lab, A, C_ORGANIZATION)
            w.text(lab, P_NAME, r["calibration_lab"])
    w.add(node, P_ENDED_AT, _time(r.get("calibrated_on")))
    w.add(node, P_VALID_FROM, _time(r.get("calibrated_on")))
    w.add(node, P_VALID_UNTIL, _time(r.get("valid_until")))
    w.concept(node, CALIBRATION_RESULT, r.get("result"))
    return node


def _complaint(w: _Writer, r: dict[str, Any]) -> str:
    node = _n(ai.complaint_iri(str(r.get("complaint_id") or "")))
    w.add(node, A, C_COMPLAINT)
    w.text(node, IDENTIFIER, r.get("complaint_id"))
    w.add(node, P_CONCERNS_LAB, w.lab(r.get("against_lab_id")))
    w.text(node, DESCRIPTION, r.get("subject"))
    w.text(node, P_CHANNEL, r.get("channel"))
    w.add(node, P_RECEIVED_AT, _time(r.get("received_at")))
    w.add(node, P_DUE_AT, _time(r.get("due_at")))
    w.concept(node, COMPLAINT_STATUS, r.get("status"), r.get("source_status"))
    return node


_BUILDERS = {
    "sample": _sample,
    "test-result": _test_result,
    "environment-reading": _environment_reading,
    "equipment-status": _equipment_status,
    "video-event": _video_event,
    "calibration-event": _calibration_event,
    "complaint": _complaint,
}


@dataclass(frozen=True)
class FusionSource:
    """Who produced a record: the instance (its graph) and the plug-in at the version that landed it."""

    instance_id: str
    organization_id: str | None
    adapter: str
    adapter_version: str


def record_nquads(
    kind: str, record: dict[str, Any], *, source: FusionSource, message_id: int, recorded_at: datetime | None
) -> str:
    """The statements of one canonical record (its JSON as stored) in its instance's graph, as N-Quads text."""
    batch = _Batch()
    _build(batch, kind, record, source=source, message_id=message_id, recorded_at=recorded_at)
    return batch.text()


def record_quads(
    kind: str, record: dict[str, Any], *, source: FusionSource, message_id: int, recorded_at: datetime | None
) -> list[ox.Quad]:
    """The quads of one canonical record (its JSON as stored) in its instance's graph, with provenance."""
    text = record_nquads(kind, record, source=source, message_id=message_id, recorded_at=recorded_at)
    return list(ox.parse(text, format=ox.RdfFormat.N_QUADS))


@lru_cache(maxsize=1024)
def _agent(adapter: str, version: str) -> tuple[str, str, str]:
    """The plug-in at a version as a prov:SoftwareAgent: its IRI, its term and its label."""
    iri = ai.adapter_software_iri(adapter, version)
    return iri, _n(iri), f"{adapter} {version}"


def _build(
    batch: _Batch,
    kind: str,
    record: dict[str, Any],
    *,
    source: FusionSource,
    message_id: int,
    recorded_at: datetime | None,
    earlier_messages: Iterable[int] = (),
) -> str:
    """Append one record's statements to the batch; returns the record's main node (an IRI term)."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"No fusion for record kind {kind!r}")
    writer = batch.writers.get(source.instance_id)
    if writer is None:
        writer = batch.writers[source.instance_id] = _Writer(batch, ai.adapter_graph_iri(source.instance_id))
    node = builder(writer, record)
    writer.add(node, P_DERIVED_FROM, _n(ai.landing_message_iri(message_id)))
    for earlier in earlier_messages:
        writer.add(node, P_INFLUENCED_BY, _n(ai.landing_message_iri(earlier)))
    software, agent, label = _agent(source.adapter, source.adapter_version)
    writer.add(node, P_ATTRIBUTED_TO, agent)
    if writer.once(software):
        writer.add(agent, A, C_SOFTWARE_AGENT)
        writer.text(agent, LABEL, label)
    if recorded_at is not None:
        writer.add(node, P_GENERATED_AT, _generated_at(recorded_at))
    return node


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the hub stores UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _sources(session: Session, rows: Sequence[Any]) -> dict[int, FusionSource]:
    """Adapter and version of each row's landing message (the version that parsed it), by message id.

    The rows carry their message's `adapter` and `adapter_version` (read with them in one join).
    """
    instance_ids = sorted({row.instance_id for row in rows})
    organizations = dict(
        session.exec(
            select(AdapterInstance.id, AdapterInstance.organization_id).where(col(AdapterInstance.id).in_(instance_ids))
        ).all()
    )
    shared: dict[tuple[str, str, str], FusionSource] = {}
    sources: dict[int, FusionSource] = {}
    for row in rows:
        key = (row.instance_id, row.adapter, row.adapter_version)
        source = shared.get(key)
        if source is None:
            source = shared[key] = FusionSource(key[0], organizations.get(key[0]), key[1], key[2])
        sources[row.message_id] = source
    return sources


_PENDING_COLUMNS = (
    "id",
    "instance_id",
    "message_id",
    "kind",
    "natural_key",
    "source_time",
    "record",
    "recorded_at",
)
REPLACE_TIMEOUT_S = 120.0
# Records per fusion batch (one transaction, one store load each). The embedded store's bulk load costs less per
# quad in bigger loads (fewer, larger files for RocksDB to compact): 5,000 readings load with ~30% less CPU
# per record than 2,000, and render in a few tenths of a second.
FUSION_BATCH = 5000
_RECORDS = CanonicalRecordRow.__table__  # type: ignore[attr-defined]
_MESSAGES = LandingMessage.__table__  # type: ignore[attr-defined]
_VersionKey = tuple[str, str, str]  # instance, kind, natural key
_VersionOrder = tuple[bool, datetime, int]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def version_order(source_time: datetime | None, row_id: int | None) -> _VersionOrder:
    """Sort key of the versions of one subject: by source time, then arrival; versions without a time first."""
    return (source_time is not None, _utc(source_time) if source_time else _EPOCH, row_id or 0)


@dataclass
class _Versions:
    """What is known of one subject's versions: the newest fused and the messages of all of them."""

    newest: _VersionOrder | None = None
    messages: list[tuple[_VersionOrder, int]] = field(default_factory=list)


def _unindexed(column: Any) -> Any:
    """The column as an expression no index serves, so the (kind, natural key) index is the one used.

    Without statistics SQLite prefers an equality on `instance_id` (or a range on `fused_at`) to the IN list on
    the key, and so reads every row of the instance for each probe.
    """
    return func.coalesce(column, column)


def _fused_versions(session: Session, rows: Sequence[Any]) -> dict[_VersionKey, _Versions]:
    """Fused versions of the batch's subjects by (instance, kind, natural key): one indexed look-up per kind."""
    keys: dict[str, set[str]] = {}
    for row in rows:
        keys.setdefault(row.kind, set()).add(row.natural_key)
    instance_ids = sorted({row.instance_id for row in rows})
    found: dict[_VersionKey, _Versions] = {}
    for kind, natural_keys in keys.items():
        ordered = sorted(natural_keys)
        for chunk_start in range(0, len(ordered), 1000):
            chunk = ordered[chunk_start : chunk_start + 1000]
            earlier = session.execute(
                sa_select(
                    col(CanonicalRecordRow.instance_id),
                    col(CanonicalRecordRow.natural_key),
                    col(CanonicalRecordRow.id),
                    col(CanonicalRecordRow.source_time),
                    col(CanonicalRecordRow.message_id),
                ).where(
                    col(CanonicalRecordRow.kind) == kind,
                    col(CanonicalRecordRow.natural_key).in_(chunk),
                    _unindexed(col(CanonicalRecordRow.instance_id)).in_(instance_ids),
                    _unindexed(col(CanonicalRecordRow.fused_at)).is_not(None),
                )
            ).all()
            for instance_id, natural_key, row_id, source_time, message_id in earlier:
                versions = found.setdefault((instance_id, kind, natural_key), _Versions())
                order = version_order(source_time, row_id)
                versions.messages.append((order, message_id))
                versions.newest = order if versions.newest is None else max(versions.newest, order)
    return found


@dataclass
class _Plan:
    """Which rows of a batch reach the graph: added as they are, or replacing an earlier version's statements."""

    fresh: list[Any] = field(default_factory=list)
    revised: list[tuple[Any, list[int]]] = field(default_factory=list)  # row, messages of the earlier versions


def plan_batch(rows: Sequence[Any], fused: dict[_VersionKey, _Versions]) -> _Plan:
    """Per subject, the newest version of the batch if it is newer than the fused one; others stay out of the graph."""
    groups: dict[_VersionKey, list[Any]] = {}
    for row in rows:
        groups.setdefault((row.instance_id, row.kind, row.natural_key), []).append(row)
    plan = _Plan()
    for key, group in groups.items():
        known = fused.get(key)
        if known is None and len(group) == 1:
            plan.fresh.append(group[0])  # the common case: a subject seen for the first time
            continue
        ordered = sorted(group, key=lambda row: version_order(row.source_time, row.id))
        newest = ordered[-1]
        if known is not None and known.newest and version_order(newest.source_time, newest.id) < known.newest:
            continue  # out of order: the graph already shows a newer version
        # Every other version (fused or in this batch) is older than the newest, so it is history.
        earlier = list(known.messages) if known else []
        earlier += [(version_order(row.source_time, row.id), row.message_id) for row in ordered[:-1]]
        plan.revised.append((newest, [message for _order, message in sorted(earlier)]))
    return plan


def _replacement_update(lines: Sequence[str], subjects: set[tuple[str, str]]) -> str:
    """One SPARQL update: drop every statement about the revised subjects, then insert their new version."""
    values = " ".join(f"(<{graph}> <{subject}>)" for graph, subject in sorted(subjects))
    by_graph: dict[str, list[str]] = {}
    for line in lines:
        # "s p o <graph> .\n": IRIs hold no spaces, so the last two spaces part the graph off.
        statement, graph, _end = line.rsplit(" ", 2)
        by_graph.setdefault(graph, []).append(f"{statement} .")
    inserts = " ".join(f"GRAPH {graph} {{ {' '.join(lines)} }}" for graph, lines in sorted(by_graph.items()))
    return (
        f"DELETE {{ GRAPH ?g {{ ?s ?p ?o }} }} WHERE {{ VALUES (?g ?s) {{ {values} }} GRAPH ?g {{ ?s ?p ?o }} }} ;\n"
        f"INSERT DATA {{ {inserts} }}"
    )


def _add(store: GraphStore, data: bytes) -> None:
    # A batch need not be atomic: fusion is idempotent, and a half-written batch is written again in full
    # because its rows are only marked fused afterwards. The embedded store's bulk loader is several times
    # faster than a transaction for batches this size. Stores without an N-Quads path get pyoxigraph quads.
    if isinstance(store, NQuadsLoader):
        store.add_nquads(data, atomic=False)
    else:
        store.add_quads(ox.parse(data, format=ox.RdfFormat.N_QUADS))


def _replace(store: GraphStore, rows: Sequence[tuple[Any, list[int]]], sources: dict[int, FusionSource]) -> None:
    """Write the revised subjects' newest versions over their earlier ones (one atomic update)."""
    batch = _Batch()
    subjects: set[tuple[str, str]] = set()
    for row, earlier in rows:
        source = sources[row.message_id]
        node = _value_of(
            _build(
                batch,
                row.kind,
                row.record,
                source=source,
                message_id=row.message_id,
                recorded_at=row.recorded_at,
                earlier_messages=earlier,
            )
        )
        graph = ai.adapter_graph_iri(source.instance_id)
        # The record's own nodes: its main node and its value; shared nodes (rooms, labs, …) stay.
        subjects.update({(graph, node), (graph, node + "/value")})
    store.update(_replacement_update(batch.lines, subjects), timeout_s=REPLACE_TIMEOUT_S)


def _select_pending(session: Session, *, limit: int, after_id: int | None = None) -> list[Any]:
    """Up to `limit` unfused rows (after `after_id`), oldest first, with their message's adapter and version.

    Columns, not ORM objects: nothing enters the identity map, so marking the batch fused is one UPDATE.
    `has_versions` tells whether another row of the instance describes the same subject (versions are per
    instance: two instances describing one subject write two graphs): one index probe per row, so only the
    (rare) rows that have versions pay for looking them up. On PostgreSQL the rows are locked with SKIP LOCKED,
    so two fusers never take the same batch.
    """
    records, messages = _RECORDS, _MESSAGES
    other = records.alias("other")
    has_versions = (
        sa_select(other.c.id)
        .where(
            other.c.kind == records.c.kind,
            other.c.natural_key == records.c.natural_key,
            _unindexed(other.c.instance_id) == records.c.instance_id,
            other.c.id != records.c.id,
        )
        .exists()
        .label("has_versions")
    )
    conditions = [records.c.fused_at.is_(None)]
    if after_id is not None:
        conditions.append(records.c.id > after_id)
    statement = (
        sa_select(
            *(records.c[name] for name in _PENDING_COLUMNS),
            messages.c.adapter,
            messages.c.adapter_version,
            has_versions,
        )
        .join_from(records, messages, messages.c.id == records.c.message_id)
        .where(*conditions)
        .order_by(records.c.id)
        .limit(limit)
        .with_for_update(of=records, skip_locked=True)  # the records only: landing goes on with its messages
    )
    return list(session.execute(statement).all())


@dataclass
class _Prepared:
    """A batch read for fusion: its row ids by graph, and the N-Quads of the rows that have no other version."""

    ids_by_graph: dict[str, list[int]]  # what is marked fused once the store has the quads
    last_id: int
    sources: dict[int, FusionSource]
    batch: _Batch
    versioned: list[Any]  # rows whose subject has other versions: planned once earlier batches are committed


def _prepare(session: Session, rows: list[Any]) -> _Prepared:
    sources = _sources(session, rows)
    batch = _Batch()
    ids_by_graph: dict[str, list[int]] = {}
    versioned = []
    for row in rows:
        source = sources[row.message_id]
        ids_by_graph.setdefault(ai.adapter_graph_iri(source.instance_id), []).append(row.id)
        if row.has_versions:
            versioned.append(row)
            continue
        # No other row describes its subject (the common case): it goes into the graph as it is.
        _build(batch, row.kind, row.record, source=source, message_id=row.message_id, recorded_at=row.recorded_at)
    return _Prepared(ids_by_graph, rows[-1].id, sources, batch, versioned)


def _write_versions(session: Session, store: GraphStore, prepared: _Prepared) -> bytes:
    """Replace the revised subjects in the store (first, so nothing added after is dropped); the N-Quads to add.

    The batch's lines and rows are let go: a batch being loaded keeps only its ids (two batches live at once).
    """
    versioned, prepared.versioned = prepared.versioned, []
    if versioned:
        plan = plan_batch(versioned, _fused_versions(session, versioned))
        if plan.revised:
            _replace(store, plan.revised, prepared.sources)
        for row in plan.fresh:
            _build(
                prepared.batch,
                row.kind,
                row.record,
                source=prepared.sources[row.message_id],
                message_id=row.message_id,
                recorded_at=row.recorded_at,
            )
    data = prepared.batch.text().encode()
    prepared.batch = _Batch()
    return data


def _mark_fused(session: Session, ids_by_graph: dict[str, list[int]], *, now: datetime | None) -> int:
    fused_at = now or datetime.now(UTC)
    for graph, ids in ids_by_graph.items():
        session.execute(update(_RECORDS).where(_RECORDS.c.id.in_(ids)).values(fused_at=fused_at, graph_iri=graph))
    return sum(len(ids) for ids in ids_by_graph.values())


def fuse_pending(session: Session, *, store: GraphStore, limit: int = 1000, now: datetime | None = None) -> int:
    """Fuse up to `limit` unfused canonical records (oldest first) into their instances' graphs; returns how many.

    New subjects are added with one N-Quads load; subjects with an earlier version are replaced in one update
    (first, so nothing just added is dropped). Then every row of the batch is marked fused (`fused_at`,
    `graph_iri`) in the caller's transaction, including versions older than the graph's, which add nothing.
    On PostgreSQL the rows are locked with SKIP LOCKED, so two fusers never take the same batch.
    """
    rows = _select_pending(session, limit=limit)
    if not rows:
        return 0
    prepared = _prepare(session, rows)
    nquads = _write_versions(session, store, prepared)
    if nquads:
        _add(store, nquads)
    return _mark_fused(session, prepared.ids_by_graph, now=now)


def _end_session(session: Session, *, commit: bool) -> None:
    """Commit or roll back, and close (fusion's sessions carry no audit events: no after-commit listeners)."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


@dataclass
class _Loading:
    """A batch whose quads the store is loading; its rows are marked fused once the load has succeeded."""

    session: Session
    ids_by_graph: dict[str, list[int]]
    last_id: int
    load: "Future[None] | None"

    def finish(self) -> int:
        """Wait for the load, mark the rows fused and commit; the number of rows (rolled back on any failure)."""
        try:
            if self.load is not None:
                self.load.result()
            count = _mark_fused(self.session, self.ids_by_graph, now=None)
        except BaseException:
            _end_session(self.session, commit=False)
            raise
        _end_session(self.session, commit=True)
        return count

    def abandon(self) -> None:
        """Let the load end (a load is idempotent: its rows stay pending and are fused again) and roll back."""
        try:
            if self.load is not None:
                with contextlib.suppress(Exception):
                    self.load.result()
        finally:
            _end_session(self.session, commit=False)


def fuse_backlog(
    engine: Engine, *, store: GraphStore, limit: int = FUSION_BATCH, stop: threading.Event | None = None
) -> int:
    """Fuse every pending record, batch after batch, until none is left or `stop` is set; returns how many.

    The store loads one batch while the next one is read and rendered: the store's writer (its own process)
    and this process work at once. Each batch has its own transaction, committed only after the store has the
    batch's quads. The next batch takes rows after the loading one's (on PostgreSQL also skipping its locked
    rows); a row committed out of id order that this passes over is fused by a later pass. Rows with other
    versions are planned only once the batch before theirs is committed, as their plan reads the fused versions.
    """
    total = 0
    loading: _Loading | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qihub-fusion-load") as loader:
        try:
            while stop is None or not stop.is_set():
                session = Session(engine, expire_on_commit=False)
                try:
                    rows = _select_pending(session, limit=limit, after_id=loading.last_id if loading else None)
                    more = len(rows) == limit
                    prepared = _prepare(session, rows) if rows else None
                    del rows  # the records are rendered: only one batch's rows are kept at a time
                    if loading is not None:
                        done, loading = loading, None
                        total += done.finish()
                    if prepared is None:
                        _end_session(session, commit=False)
                        break
                    if prepared.versioned:
                        # Planned now that the batch before is committed, on what is committed now (a session
                        # of its own: this batch's may read a snapshot from before that commit).
                        with Session(engine) as current:
                            nquads = _write_versions(current, store, prepared)
                    else:
                        nquads = _write_versions(session, store, prepared)
                except BaseException:
                    _end_session(session, commit=False)
                    raise
                load = loader.submit(_add, store, nquads) if nquads else None
                loading = _Loading(session, prepared.ids_by_graph, prepared.last_id, load)
                del nquads, prepared
                if not more:
                    break  # the backlog is done: what lands from now on waits for the next pass
            if loading is not None:
                done, loading = loading, None
                total += done.finish()
        except BaseException:
            if loading is not None:
                loading.abandon()
            raise
    return total


# --- environment limits as RDF (read by the cross-source query) ----------------------------------------------


@lru_cache(maxsize=64)
def _node(term: str) -> ox.NamedNode:
    """An IRI term as a pyoxigraph node."""
    return ox.NamedNode(_value_of(term))


def limit_triples(limits: Iterable[EnvironmentLimit]) -> Iterator[ox.Triple]:
    """The environment limits as triples: room, limited property, minimum/maximum, unit, method."""
    decimal = _node(T_DECIMAL)
    for limit in limits:
        node = ox.NamedNode(f"{ai.room_iri(limit.room)}/limit/{limit.quantity}")
        room = ox.NamedNode(ai.room_iri(limit.room))
        yield ox.Triple(node, _node(A), _node(C_ENVIRONMENT_LIMIT))
        yield ox.Triple(node, _node(P_ROOM), room)
        yield ox.Triple(room, _node(A), _node(C_ROOM))
        yield ox.Triple(room, _node(LABEL), ox.Literal(limit.room))
        yield ox.Triple(node, _node(P_LIMITED_PROPERTY), ox.NamedNode(ai.observable_property_iri(limit.quantity)))
        yield ox.Triple(node, _node(P_UCUM), ox.Literal(limit.unit))
        qudt = qudt_unit_iri(limit.unit)
        if qudt:
            yield ox.Triple(node, _node(P_UNIT), ox.NamedNode(qudt))
        if limit.minimum is not None:
            yield ox.Triple(node, _node(P_MINIMUM), ox.Literal(_decimal_text(str(limit.minimum)), datatype=decimal))
        if limit.maximum is not None:
            yield ox.Triple(node, _node(P_MAXIMUM), ox.Literal(_decimal_text(str(limit.maximum)), datatype=decimal))
        if limit.method:
            yield ox.Triple(node, _node(P_METHOD), ox.NamedNode(standard_iri(limit.method)))


def publish_environment_limits(session: Session, *, store: GraphStore) -> int:
    """Rewrite the environment-limits graph from the table; returns how many limits it holds."""
    limits = list(session.exec(select(EnvironmentLimit).order_by(col(EnvironmentLimit.id))).all())
    store.replace_graph(ENVIRONMENT_LIMITS_GRAPH, list(limit_triples(limits)))
    return len(limits)
