"""Code lists (L3.5): source statuses, flags and alarm types map onto hub vocabularies the ontology defines."""

from pathlib import Path

import pyoxigraph as ox
import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import SH, SKOS

from adapters.codelists import SOURCE_CODE_LISTS, VOCABULARIES, fold_code, map_code, source_code_list
from adapters.framework import UNKNOWN_CODE, QuarantineError
from adapters.shapes import SHAPES_FILE

ONTOLOGY = Path(__file__).resolve().parents[2] / "ontologies" / "qihub.ttl"

MAPPINGS = [
    ("senaite.sample", "sample_received", "received"),
    ("senaite.sample", "sample_due", "due"),
    ("senaite.sample", "to_be_verified", "in-testing"),
    ("senaite.sample", "published", "published"),
    ("senaite.sample", "invalid", "invalidated"),
    ("senaite.analysis", "to_be_verified", "unverified"),
    ("senaite.analysis", "verified", "verified"),
    ("senaite.analysis", "retracted", "retracted"),
    ("generic.sample", "已接收", "received"),
    ("generic.sample", "In Testing", "in-testing"),
    ("generic.result", "Approved", "verified"),
    ("generic.equipment", "RUNNING", "running"),
    ("generic.equipment", "Execute", "running"),
    ("generic.equipment", "故障", "fault"),
    ("generic.equipment", "Alarm", "fault"),
    ("generic.equipment", "standby", "idle"),
    ("generic.video-alarm", "regionEntrance", "person-entered"),
    ("generic.video-alarm", "fieldDetection", "intrusion"),
    ("generic.video-alarm", "shelterAlarm", "camera-tampering"),
    ("generic.video-alarm", "VMD", "motion"),
    ("generic.calibration", "合格", "pass"),
    ("generic.calibration", "降级使用", "limited"),
    ("generic.complaint", "In-Progress", "in-progress"),
    ("generic.environment-quantity", "Temperature", "temperature"),
    ("generic.environment-quantity", "HumidityRatio", "humidity-ratio"),
    ("generic.environment-quantity", "Light", "illuminance"),
    ("generic.environment-quantity", "PM2.5", "pm2-5"),
    ("generic.environment-quantity", "相对湿度", "relative-humidity"),
]


@pytest.mark.parametrize(("code_list", "source", "hub"), MAPPINGS)
def test_source_codes_map_to_hub_terms(code_list: str, source: str, hub: str) -> None:
    assert map_code(code_list, source) == hub


@pytest.mark.parametrize(
    ("code_list", "source"), [("senaite.sample", "sample_lost"), ("generic.equipment", "exploded")]
)
def test_unmapped_codes_are_quarantined_as_unknown_code(code_list: str, source: str) -> None:
    with pytest.raises(QuarantineError) as caught:
        map_code(code_list, source)
    assert caught.value.code == UNKNOWN_CODE


def test_codes_match_regardless_of_case_width_spaces_dashes_and_underscores() -> None:
    assert fold_code("Sample_Received") == fold_code("sample received") == fold_code("ＳＡＭＰＬＥ-RECEIVED")


def test_every_source_code_maps_to_a_term_of_its_vocabulary() -> None:
    for code_list in SOURCE_CODE_LISTS.values():
        assert set(code_list.codes.values()) <= code_list.vocabulary.codes, code_list.name
        assert source_code_list(code_list.name) == code_list.codes


def test_no_two_source_codes_of_a_list_fold_to_different_terms() -> None:
    for code_list in SOURCE_CODE_LISTS.values():
        folded: dict[str, str] = {}
        for source, hub in code_list.codes.items():
            assert folded.setdefault(fold_code(source), hub) == hub, (code_list.name, source)


def test_every_hub_term_is_a_skos_concept_of_the_ontology_with_english_and_chinese_labels() -> None:
    graph = Graph().parse(ONTOLOGY, format="turtle")
    for vocabulary in VOCABULARIES.values():
        scheme = URIRef(vocabulary.scheme_iri)
        assert (scheme, SKOS.prefLabel, Literal(vocabulary.zh, lang="zh")) in graph
        for term in vocabulary.terms:
            concept = URIRef(vocabulary.iri(term.code))
            assert (concept, SKOS.inScheme, scheme) in graph
            assert (concept, SKOS.notation, Literal(term.code)) in graph
            languages = {label.language for label in graph.objects(concept, SKOS.prefLabel)}
            assert languages == {"en", "zh"}, concept


def test_the_shapes_allow_exactly_the_hub_vocabularies() -> None:
    shapes = Graph().parse(SHAPES_FILE, format="turtle")
    allowed: set[str] = set()
    for listing in shapes.objects(None, SH["in"]):
        allowed |= {str(item) for item in Collection(shapes, listing) if isinstance(item, URIRef)}
    terms = {vocabulary.iri(term.code) for vocabulary in VOCABULARIES.values() for term in vocabulary.terms}
    quantities = {
        VOCABULARIES["environmentQuantity"].iri(term.code) for term in VOCABULARIES["environmentQuantity"].terms
    }
    assert allowed == terms - quantities  # quantities are observed properties, not states


def test_the_ontology_still_parses_with_the_adapter_terms() -> None:
    store = ox.Store()
    store.load(path=str(ONTOLOGY), format=ox.RdfFormat.TURTLE)
    labels = store.query(
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> SELECT ?label WHERE { "
        "<https://qihub.example/ns#EnvironmentObservation> rdfs:label ?label } ORDER BY ?label"
    )
    assert sorted(row["label"].value for row in labels) == ["environment observation", "环境监测观测"]  # type: ignore[union-attr]
