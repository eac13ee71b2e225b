"""The saved competency queries over fixture data, and the safety of their parameter binding."""

import pyoxigraph as ox
import pytest

from graph.queries import (
    SAVED_QUERIES,
    InvalidQueryParameterError,
    bind_parameters,
    get_saved_query_or_raise,
    render_query,
    term_to_json,
)
from storage.errors import NotFoundError

ID = "https://qihub.example/id/"


def run(store: ox.Store, name: str, **parameters: str) -> list[dict]:
    query = get_saved_query_or_raise(name)
    sparql = render_query(query, bind_parameters(query, parameters))
    solutions = store.query(sparql, use_default_graph_as_union=True)
    return [{variable: term_to_json(row[variable]) for variable in query.variables} for row in solutions]


def test_instruments_used_after_their_calibration_expired_are_found(knowledge_graph):
    rows = run(knowledge_graph, "expired-calibration-at-use")
    found = [(row["reportIdentifier"], row["instrument"].rsplit("/", 1)[1], row["certificate"]) for row in rows]
    # r1: #1001's last calibration before 2025-03-10 expired 2025-01-10 (the revoked 2025-03-01 one does not
    # count, the 2025-04-01 one came later). r3: #1002's 2024-01-01 calibration has no expiry date and is
    # older than 365 days on 2025-01-20. r2 and r4 used instruments within their calibration.
    assert found == [
        ("TR-2025-0120", "th100-1002", f"{ID}certificate/cert-1002a"),
        ("TR-2025-0310", "th100-1001", f"{ID}certificate/cert-1001a"),
    ]
    assert rows[1]["validUntil"] == "2025-01-10"
    assert rows[0]["validUntil"] is None


def test_a_longer_assumed_interval_keeps_a_calibration_without_expiry_valid(knowledge_graph):
    rows = run(knowledge_graph, "expired-calibration-at-use", intervalDays="400")
    assert [row["reportIdentifier"] for row in rows] == ["TR-2025-0310"]
    one = run(knowledge_graph, "expired-calibration-at-use", instrument=f"{ID}instrument/th100-1002")
    assert [row["reportIdentifier"] for row in one] == ["TR-2025-0120"]


def test_certificates_methods_and_scopes_citing_a_replaced_edition_are_found(knowledge_graph):
    rows = run(knowledge_graph, "replaced-standard-cited")
    found = {(row["citingKind"], row["code"], row["replacementCode"]) for row in rows}
    assert found == {
        ("conformity-certificate", "GB 4706.1-2005", "GB 4706.1-2024"),
        ("method", "JJF 1059-1999", "JJF 1059.1-2012"),
        ("accreditation-scope", "JJF 1059-1999", "JJF 1059.1-2012"),
    }
    method = next(row for row in rows if row["citingKind"] == "method")
    assert method["document"] == f"{ID}certificate/cert-1001a"


def test_a_successor_not_yet_in_force_does_not_count_as_of_an_earlier_day(knowledge_graph):
    rows = run(knowledge_graph, "replaced-standard-cited", asOf="2025-01-01")
    assert {row["code"] for row in rows} == {"JJF 1059-1999"}
    only = run(knowledge_graph, "replaced-standard-cited", code="GB 4706.1-2005")
    assert [row["citing"] for row in only] == [f"{ID}conformity-certificate/CCC/2019010701000001"]


@pytest.mark.parametrize(
    ("parameters", "numbers"),
    [
        ({"quantityKind": "Temperature"}, ["CNAS L0001", "CNAS L0002"]),
        ({"quantityKind": "Temperature", "min": "200", "max": "500", "unit": "DEG_C"}, ["CNAS L0002"]),
        # 400 K … 500 K is 126.85 °C … 226.85 °C: inside both labs' ranges once converted.
        ({"quantityKind": "Temperature", "min": "400", "max": "500", "unit": "K"}, ["CNAS L0001", "CNAS L0002"]),
        ({"quantityKind": "Temperature", "min": "-100", "unit": "DEG_F"}, ["CNAS L0002"]),
        ({"quantityKind": "Pressure", "min": "0", "max": "50", "unit": "BAR"}, ["CNAS L0001"]),
        ({"quantityKind": "Pressure", "min": "0", "max": "150", "unit": "BAR"}, []),
        ({"quantityKind": "Temperature", "on": "2028-12-31"}, ["CNAS L0001"]),
    ],
)
def test_labs_accredited_for_a_quantity_kind_and_range(knowledge_graph, parameters, numbers):
    rows = run(knowledge_graph, "labs-accredited-for", **parameters)
    assert sorted({row["number"] for row in rows}) == numbers


def test_the_traceability_chain_reaches_the_national_standard(knowledge_graph):
    rows = run(knowledge_graph, "traceability-chain", certificate=f"{ID}certificate/cert-1001a")
    assert [(row["depth"], row["identifier"], row["isRoot"]) for row in rows] == [
        (0, "SZ-2024-0010", False),
        (1, "SZ-2024-0005", False),
        (2, "NIM-2023-0501", True),
    ]
    assert rows[-1]["issuerName"] == "National Institute of Metrology, China"


def test_results_of_one_model_come_back_in_one_unit(knowledge_graph):
    rows = run(knowledge_graph, "model-results-in-unit", model="TH-100", unit="DEG_C")
    by_certificate: dict[str, list[float]] = {}
    for row in rows:
        by_certificate.setdefault(row["identifier"], []).append(round(row["valueInUnit"], 9))
    assert by_certificate == {
        "SZ-2024-0010": [20.0, 100.0],  # °C as given; the ambient temperature is not a result
        "SZ-2025-0401": [20.0, 100.0],  # from 68 °F and 212 °F
        "WH-2024-0001": [20.1],
        "WH-2025-0201": [100.0],  # from 373.15 K
    }
    fahrenheit = next(row for row in rows if row["identifier"] == "SZ-2025-0401" and row["value"] == 68.0)
    assert fahrenheit["uncertaintyInUnit"] == pytest.approx(0.05)
    assert fahrenheit["status"] == "issued"
    in_kelvin = run(knowledge_graph, "model-results-in-unit", model="TH-100", unit="K", manufacturer="acme INSTRUMENTS")
    assert sorted(round(row["valueInUnit"], 6) for row in in_kelvin)[:2] == [293.15, 293.15]
    assert run(knowledge_graph, "model-results-in-unit", model="TH-100", unit="K", manufacturer="Other") == []


def test_every_saved_query_lists_its_parameters_and_variables():
    for name, query in SAVED_QUERIES.items():
        info = query.info()
        assert info.name == name
        assert info.variables
        assert all(parameter.description for parameter in info.parameters)


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("traceability-chain", {"certificate": "https://x.example/a> } ; DROP ALL ; { <b"}),
        ("traceability-chain", {"certificate": "javascript:alert(1)"}),
        ("traceability-chain", {}),
        ("model-results-in-unit", {"model": "TH-100", "unit": "DEG_C> . ?s ?p ?o"}),
        ("model-results-in-unit", {"model": "TH-100", "unit": "NOT_A_UNIT"}),
        ("labs-accredited-for", {"quantityKind": "Temperature", "min": "1e999"}),
        ("labs-accredited-for", {"quantityKind": "Temperature", "min": "10"}),  # a range needs its unit
        ("labs-accredited-for", {"quantityKind": "Temperature", "colour": "red"}),
        ("replaced-standard-cited", {"asOf": "2025-13-01"}),
        ("expired-calibration-at-use", {"intervalDays": "1.5"}),
    ],
)
def test_bad_parameters_are_refused_before_any_query_is_built(name, parameters):
    query = get_saved_query_or_raise(name)
    with pytest.raises(InvalidQueryParameterError):
        render_query(query, bind_parameters(query, parameters))


def test_string_parameters_are_escaped_into_literals(knowledge_graph):
    hostile = 'TH-100" } } ; DELETE WHERE { ?s ?p ?o } ; SELECT * { { "'
    query = get_saved_query_or_raise("model-results-in-unit")
    sparql = render_query(query, bind_parameters(query, {"model": hostile, "unit": "DEG_C"}))
    assert '"TH-100\\" } } ; DELETE WHERE' in sparql
    assert run(knowledge_graph, "model-results-in-unit", model=hostile, unit="DEG_C") == []
    assert len(knowledge_graph) > 0


def test_an_unknown_query_is_not_found():
    with pytest.raises(NotFoundError):
        get_saved_query_or_raise("drop-everything")
