"""DCC → RDF mapping over the whole DCC corpus (2.1.0–3.3.0): shapes, lexical values, units, determinism."""

import json
import warnings
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import pyoxigraph as ox
import pytest
from lxml import etree
from rdflib import Graph
from rdflib.compare import isomorphic

from certificates.models import Certificate
from certificates.summary import summarize_certificate
from certificates.xml import XmlRejected, parse_xml
from graph import iris
from graph.mapping import (
    EquipmentIdentity,
    KnownInstrument,
    iter_values,
    map_certificate,
    map_certificate_ntriples,
    recognise_standard_codes,
)
from graph.metadata import describe_certificate_graph, metadata_update
from graph.shapes import CONTEXT_FILE, ONTOLOGY_FILE, validate_graph
from graph.units import map_dsi_unit, quantity_kind_iri
from tests.paths import DCC_CORPUS

QH = iris.QH
QUDT = "http://qudt.org/schema/qudt/"
UNIT = "http://qudt.org/vocab/unit/"
SIRP = "https://si-digital-framework.org/SI/units/"
SIS = "https://ptb.de/sis/"
SOSA = "http://www.w3.org/ns/sosa/"
PROV = "http://www.w3.org/ns/prov#"
VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
OLDEST = DCC_CORPUS / "ptb-xsd-dcc/examples/v2.1.0/example.xml"


@cache
def corpus() -> tuple[Path, ...]:
    """Every DCC root in the shared corpus (valid or not: the registry's rules judge validity, not the mapping)."""
    found = []
    for path in sorted(DCC_CORPUS.rglob("*.xml")):
        try:
            root = parse_xml(path.read_bytes())
        except XmlRejected:
            continue
        if etree.QName(root).localname == "digitalCalibrationCertificate":
            found.append(path)
    return tuple(found)


def registered(path: Path, *, certificate_id: str = "01900000-0000-7000-8000-000000000001", **fields) -> Certificate:
    """A registry row for a corpus file, filled the way `submit_certificate` fills it."""
    summary = summarize_certificate(parse_xml(path.read_bytes()))
    values = {
        "id": certificate_id,
        "organization_id": "lab-1",
        "sha256": "0" * 64,
        "content_type": "application/xml",
        "size": 1,
        "unique_identifier": summary.unique_identifier,
        "item_name": summary.item_name,
        "item_manufacturer": summary.item_manufacturer,
        "item_model": summary.item_model,
        "item_serial": summary.item_serial,
        "performance_begin": summary.performance_begin,
        "performance_end": summary.performance_end,
        "issue_date": summary.issue_date,
        "status": "issued",
        "updated_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    values.update(fields)
    return Certificate(**values)


def mapped(path: Path, **fields) -> list[ox.Triple]:
    return map_certificate(parse_xml(path.read_bytes()), certificate=registered(path, **fields), lab_name="Lab")


def store_of(triples: list[ox.Triple]) -> ox.Store:
    store = ox.Store()
    store.extend(ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples)
    return store


def objects(triples: list[ox.Triple], predicate: str) -> list[str]:
    return [t.object.value for t in triples if t.predicate.value == predicate]


def test_the_corpus_holds_every_dcc_release():
    versions = {parse_xml(path.read_bytes()).get("schemaVersion") for path in corpus()}
    assert len(corpus()) >= 40
    assert {"2.4.0", "3.0.0", "3.1.1", "3.2.0", "3.3.0"} <= versions
    assert "intranet.ptb.de" in etree.QName(parse_xml(OLDEST.read_bytes())).namespace  # DCC 2.1.0


@pytest.mark.parametrize("path", corpus(), ids=lambda path: str(path.relative_to(DCC_CORPUS)))
def test_every_corpus_certificate_maps_and_conforms_to_the_shapes(path):
    triples = mapped(path)
    assert any(t.predicate.value == f"{QH}status" for t in triples)
    report = validate_graph(triples)
    assert report.conforms, "\n".join(f"{r.focus} {r.path}: {r.message}" for r in report.violations)


def test_the_ntriples_text_is_what_pyoxigraph_writes_for_the_same_triples():
    # The store loads the text as it is: escaping must match pyoxigraph's, quotes and control characters too.
    certificate = registered(VALID, status="revoked", status_reason='a "quoted"\tline\nwith \\ and \x01')
    text = map_certificate_ntriples(parse_xml(VALID.read_bytes()), certificate=certificate, lab_name="Lab")
    triples = [quad.triple for quad in ox.parse(text.encode(), format=ox.RdfFormat.N_TRIPLES)]
    assert ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES).decode() == text
    assert text.count("\n") == len(triples) > 100


def test_mapping_twice_gives_identical_triples():
    first = mapped(VALID)
    second = mapped(VALID)
    assert first == second
    assert len(set(first)) == len(first)  # no duplicates either
    assert not any(isinstance(term, ox.BlankNode) for t in first for term in (t.subject, t.object))


def test_lexical_values_survive_next_to_the_numeric_literal_in_the_store():
    store = store_of(mapped(VALID))
    rows = list(
        store.query(
            """PREFIX qudt: <http://qudt.org/schema/qudt/> PREFIX qh: <https://qihub.example/ns#>
            SELECT ?numeric WHERE { ?value qh:lexicalValue "0.20" ; qudt:numericValue ?numeric }"""
        )
    )
    # Oxigraph normalises the decimal (0.20 → 0.2); the lexical form keeps the resolution the lab stated.
    assert [row["numeric"].value for row in rows] == ["0.2"]


def test_corpus_units_map_to_qudt_and_the_si_reference_point():
    values = qudt = sirp = 0
    for path in corpus():
        triples = mapped(path)
        nodes = set(iter_values(triples))
        values += len(nodes)
        qudt += len(nodes & {t.subject for t in triples if t.predicate.value == f"{QUDT}hasUnit"})
        sirp += len(nodes & {t.subject for t in triples if t.predicate.value == f"{SIS}hasSIMeasurementUnit"})
    print(f"\n{values} quantity values: {qudt / values:.1%} with a QUDT unit, {sirp / values:.1%} with an SI RP unit")
    # What stays unmapped: template placeholders, '\kelvin\tothe{-2}'-like units QUDT lacks, 'degreeFahrenheit'
    # without backslash, and units outside the SI Reference Point (\percent, \bar).
    assert qudt / values >= 0.99
    assert sirp / values >= 0.95


@pytest.mark.parametrize(
    ("dsi", "kind", "qudt", "sirp"),
    [
        ("\\one", None, "UNITLESS", "one"),
        ("\\percent", None, "PERCENT", None),
        ("\\bar", None, "BAR", None),
        ("\\milli\\bar", None, "MilliBAR", None),
        ("\\degreecelsius", None, "DEG_C", "degreeCelsius"),
        ("\\degreeCelsius", None, "DEG_C", "degreeCelsius"),  # common wrong case, mapped as meant
        ("\\milli\\kelvin", None, "MilliK", "millikelvin"),
        ("\\kilogram\\metre\\tothe{-3}", None, "KiloGM-PER-M3", "kilogram.metre-3"),
        ("\\micro\\metre\\per\\metre", None, "MicroM-PER-M", "micrometre.metre-1"),
        ("\\kilogram\\metre\\tothe{2}\\second\\tothe{-3}\\ampere\\tothe{-2}", None, "OHM", None),
        ("\\newton\\metre", None, "N-M", "newton.metre"),
        ("\\newton\\metre", "Energy", "J", "newton.metre"),
        ("\\percent", "RelativeHumidity", "PERCENT_RH", None),
        ("\\volt\\tothe{0.5}", None, None, "volt1_2"),
        ("|kgf", None, None, None),
        ("\\kgf", None, None, None),
    ],
)
def test_units_map_curated_then_by_quantity_kind_then_by_spelling(dsi, kind, qudt, sirp):
    mapping = map_dsi_unit(dsi, quantity_kind_iri(kind))
    assert mapping.qudt == (f"{UNIT}{qudt}" if qudt else None)
    if sirp is not None or dsi.startswith(("|", "\\kgf", "\\percent", "\\bar", "\\milli\\bar")):
        assert mapping.sirp == (f"{SIRP}{sirp}" if sirp else None)


def test_si_reference_point_identifiers_agree_with_ptb_dsiunits_for_the_corpus_units():
    dsi_unit = pytest.importorskip("dsi_unit")
    units = set()
    for path in corpus():
        units |= {t.object.value for t in mapped(path) if t.predicate.value == f"{SIS}hasUnitIdentifier"}
    compared = 0
    for unit in sorted(units):
        ours = map_dsi_unit(unit)
        if ours.sirp is None or not ours.valid:
            continue  # only valid D-SI: dsiunits turns '\kilo\Pascal' (wrong case) into 'kilo.Pascal'
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dsiunits warns about every '\per'
            assert ours.sirp == dsi_unit.DsiUnit(unit).to_sirp(pid=True), unit
        compared += 1
    assert compared >= 15


def test_hybrid_values_are_one_observation_with_an_equivalent_result_per_further_unit():
    store = store_of(mapped(VALID))
    rows = list(
        store.query(
            """PREFIX sosa: <http://www.w3.org/ns/sosa/> PREFIX qh: <https://qihub.example/ns#>
            PREFIX sis: <https://ptb.de/sis/>
            SELECT ?first ?other WHERE {
              ?quantity qh:refType "basic_referenceValue" ; sosa:hasMember ?observation .
              ?observation qh:listIndex 1 ; sosa:hasResult/qh:lexicalValue ?first ;
                           qh:equivalentResult/qh:lexicalValue ?other .
            }"""
        )
    )
    assert [(row["first"].value, row["other"].value) for row in rows] == [("306.248", "33.098")]


def test_expanded_uncertainty_keeps_value_coverage_factor_and_probability():
    store = store_of(mapped(VALID))
    rows = list(
        store.query(
            """PREFIX sis: <https://ptb.de/sis/> PREFIX qh: <https://qihub.example/ns#>
            PREFIX sosa: <http://www.w3.org/ns/sosa/>
            SELECT ?index ?u ?k ?p WHERE {
              ?quantity qh:refType "basic_measurementError" ; sosa:hasMember ?observation .
              ?observation qh:listIndex ?index ; sosa:hasResult/sis:hasExpandedMU ?mu .
              ?mu qh:lexicalValue ?u ; sis:hasCoverageFactor ?k ; sis:hasCoverageProbability ?p .
            } ORDER BY ?index"""
        )
    )
    # One uncertainty in the XML list applies to all five entries (D-SI broadcasting).
    assert [(row["u"].value, float(row["k"].value), float(row["p"].value)) for row in rows] == [("0.061", 2, 0.95)] * 5


def test_dcc_210_inline_uncertainty_and_per_language_names_are_read():
    triples = mapped(OLDEST)
    store = store_of(triples)
    rows = list(
        store.query(
            """PREFIX sis: <https://ptb.de/sis/> PREFIX qh: <https://qihub.example/ns#>
            SELECT ?lexical ?u ?k WHERE { ?value qh:lexicalValue ?lexical ; sis:hasUnitIdentifier "\\\\percent" ;
                                            sis:hasExpandedMU [ qh:lexicalValue ?u ; sis:hasCoverageFactor ?k ] }
            ORDER BY ?lexical"""
        )
    )
    assert [(row["lexical"].value, row["u"].value) for row in rows] == [("46", "5"), ("47", "5")]


def test_certificate_links_lab_item_calibration_methods_and_standards():
    triples = mapped(VALID, supersedes_id="01900000-0000-7000-8000-00000000000a", status="draft")
    certificate = iris.certificate_iri("01900000-0000-7000-8000-000000000001")
    store = store_of(triples)
    ask = """PREFIX qh: <https://qihub.example/ns#> PREFIX prov: <http://www.w3.org/ns/prov#>
        PREFIX dcterms: <http://purl.org/dc/terms/> PREFIX schema: <https://schema.org/>
        ASK {{ <{c}> qh:status qh:Draft ; qh:issuedBy <{lab}> ; dcterms:identifier "1234" ;
                  qh:supersedes <{old}> ; qh:calibratedItem ?item ; prov:wasGeneratedBy ?calibration .
              ?item schema:serialNumber "string-manufacturer-item" .
              ?calibration prov:wasAssociatedWith <{lab}> ; prov:startedAtTime ?start ;
                  qh:usedMethod/dcterms:conformsTo <{dkd}> .
              <{dkd}> qh:editionOf <{dkd_work}> }}"""
    assert store.query(
        ask.format(
            c=certificate,
            lab=iris.organization_iri("lab-1"),
            old=iris.certificate_iri("01900000-0000-7000-8000-00000000000a"),
            dkd=iris.standard_iri("DKD-R 5-1:2018"),
            dkd_work=iris.standard_iri("DKD-R 5-1"),
        )
    )
    item = iris.instrument_iri("String", "String", "string-manufacturer-item")
    assert objects(triples, f"{QH}calibratedItem") == [item]


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("DKD-R 5-1:2018", ["DKD-R 5-1:2018"]),
        ("GB/T 27025—2019", ["GB/T 27025-2019"]),
        ("ISO/IEC 17025:2018-03", ["ISO/IEC 17025:2018-03"]),
        ("DIN EN ISO/IEC 17025", ["DIN EN ISO/IEC 17025"]),
        ("JJF 1059.1-2012 and JJG 160-2007", ["JJF 1059.1-2012", "JJG 160-2007"]),
        ("GUM", ["JCGM 100:2008"]),
        ("Calibration of temperature sensors", []),
    ],
)
def test_standard_codes_are_recognised_in_norm_references(text, codes):
    assert [code.code for code in recognise_standard_codes(text)] == codes


def test_reference_standards_known_to_the_hub_become_prov_derivations():
    reference = KnownInstrument(certificate_id="ref-1", instrument_iri=iris.instrument_iri("Acme", "PT", "S-1"))
    asked: list[EquipmentIdentity] = []

    def resolve(identity: EquipmentIdentity) -> list[KnownInstrument]:
        asked.append(identity)
        return [reference]

    path = VALID
    triples = map_certificate(parse_xml(path.read_bytes()), certificate=registered(path), resolve_reference=resolve)
    assert asked == [EquipmentIdentity(None, None, "string-manufacturer-measuringEquipment-1")]
    assert objects(triples, f"{PROV}wasDerivedFrom") == [iris.certificate_iri("ref-1")]
    assert reference.instrument_iri in objects(triples, f"{QH}usedEquipment")


def test_items_without_serial_number_stay_per_certificate():
    triples = mapped(VALID, item_serial=None)
    (item,) = objects(triples, f"{QH}calibratedItem")
    assert item.startswith(iris.certificate_iri("01900000-0000-7000-8000-000000000001"))


def test_shapes_report_a_broken_graph():
    triples = [t for t in mapped(VALID) if t.predicate.value != f"{SOSA}hasResult"]
    triples.append(
        ox.Triple(
            ox.NamedNode(iris.certificate_iri("01900000-0000-7000-8000-000000000001")),
            ox.NamedNode(f"{QH}status"),
            ox.NamedNode(f"{QH}Current"),
        )
    )
    report = validate_graph(triples)
    assert not report.conforms
    paths = {result.path for result in report.violations}
    assert {f"{SOSA}hasResult", f"{QH}status"} <= paths


def test_metadata_describes_the_graph_and_is_replaced_not_duplicated():
    certificate = registered(VALID)
    graph = iris.certificate_graph_iri(certificate.id)
    store = ox.Store()
    for when, status in ((datetime(2026, 1, 1, tzinfo=UTC), "issued"), (datetime(2026, 1, 2, tzinfo=UTC), "revoked")):
        certificate.status = status
        description = describe_certificate_graph(
            certificate=certificate, graph_iri=graph, triple_count=42, generated_at=when
        )
        assert validate_graph(description).conforms
        store.update(metadata_update(graph, description))
    rows = list(
        store.query(
            f"""PREFIX qh: <https://qihub.example/ns#> PREFIX prov: <http://www.w3.org/ns/prov#>
            PREFIX dcat: <http://www.w3.org/ns/dcat#> PREFIX dcterms: <http://purl.org/dc/terms/>
            SELECT ?status ?time ?source WHERE {{ GRAPH <{iris.METADATA_GRAPH}> {{
              ?catalog dcat:dataset <{graph}> .
              <{graph}> a dcat:Dataset, prov:Entity ; qh:status ?status ; prov:generatedAtTime ?time ;
                  dcterms:source ?source ; qh:mappingVersion ?version ; qh:sha256 "{"0" * 64}" }} }}"""
        )
    )
    assert [(row["status"].value, row["time"].value[:10]) for row in rows] == [(f"{QH}Revoked", "2026-01-02")]
    assert rows[0]["source"].value == iris.certificate_iri(certificate.id)


def test_json_ld_context_round_trips_a_mapped_certificate():
    triples = mapped(VALID)
    graph = Graph().parse(data=ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES), format="nt")
    context = json.loads(CONTEXT_FILE.read_text())["@context"]
    document = graph.serialize(format="json-ld", context=context)
    assert '"lexicalValue": "0.20"' in document
    assert isomorphic(Graph().parse(data=document, format="json-ld"), graph)


def test_every_own_term_is_documented_in_english_and_chinese():
    store = ox.Store()
    store.load(path=str(ONTOLOGY_FILE), format=ox.RdfFormat.TURTLE)
    rows = store.query(
        """PREFIX owl: <http://www.w3.org/2002/07/owl#> PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
        SELECT ?term (SAMPLE(?en) AS ?english) (SAMPLE(?zh) AS ?chinese) WHERE {
          ?term a ?kind . VALUES ?kind { owl:Class owl:ObjectProperty owl:DatatypeProperty }
          FILTER STRSTARTS(STR(?term), "https://qihub.example/ns#")
          OPTIONAL { ?term rdfs:label ?en FILTER(LANG(?en) = "en") }
          OPTIONAL { ?term rdfs:label ?zh FILTER(LANG(?zh) = "zh") }
        } GROUP BY ?term"""
    )
    terms = {row["term"].value: (row["english"], row["chinese"]) for row in rows}
    assert len(terms) > 60
    assert [term for term, (english, chinese) in terms.items() if english is None or chinese is None] == []


def test_mapped_terms_are_declared_in_the_ontology_or_reused_vocabularies():
    store = ox.Store()
    store.load(path=str(ONTOLOGY_FILE), format=ox.RdfFormat.TURTLE)
    declared = {str(t.subject.value) for t in store.quads_for_pattern(None, None, None)}
    used = set()
    for path in corpus()[:10]:
        for t in mapped(path):
            used.add(t.predicate.value)
            if t.predicate.value.endswith("#type"):
                used.add(t.object.value)
    own = {term for term in used if term.startswith(QH)}
    assert own <= declared, own - declared


def test_performance_dates_become_prov_times_of_the_calibration():
    triples = mapped(VALID, performance_begin=date(2024, 3, 1), performance_end=date(2024, 3, 2))
    assert objects(triples, f"{PROV}startedAtTime") == ["2024-03-01T00:00:00"]
    assert objects(triples, f"{PROV}endedAtTime") == ["2024-03-02T23:59:59"]
