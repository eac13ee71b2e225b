"""The saved-query routes over the hub's own graph store: listing, running, auth and bad parameters."""

import json
from collections.abc import Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest

from api.registry_graph import install_registry_graph
from graph.queries import SAVED_QUERIES
from graph.store import open_graph_store

DATA = Path(__file__).parents[1] / "graph" / "data"
PROBLEM = "application/problem+json"
CERTIFICATE = "https://qihub.example/id/certificate/cert-1001a"


@pytest.fixture
def loaded_hub(hub, admin_headers) -> Iterator:
    """A hub whose graph holds the competency fixture and the registry fixtures imported through the API."""
    app = hub.client.app
    if getattr(app.state, "graph_store", None) is None:
        app.state.graph_store = open_graph_store(hub.settings)
    install_registry_graph(app)
    app.state.graph_store.add_quads(ox.parse(path=str(DATA / "competency.trig"), format=ox.RdfFormat.TRIG))
    for name, media_type in (("standards.csv", "text/csv"), ("standards.json", "application/json")):
        response = hub.client.post(
            "/api/v1/standards/import",
            content=(DATA / name).read_bytes(),
            headers={**admin_headers, "Content-Type": media_type},
        )
        assert response.status_code == 200, response.text
    accreditations = json.loads((DATA / "accreditations.json").read_text())
    assert hub.client.post("/api/v1/accreditations", json=accreditations, headers=admin_headers).status_code == 200
    yield hub
    app.state.graph_store.close()


def test_the_listing_names_every_query_with_its_parameters(hub, admin_headers):
    response = hub.client.get("/api/v1/queries", headers=admin_headers)
    assert response.status_code == 200
    listed = {query["name"]: query for query in response.json()}
    assert set(listed) == {
        "expired-calibration-at-use",
        "replaced-standard-cited",
        "labs-accredited-for",
        "traceability-chain",
        "model-results-in-unit",
        "results-with-valid-conditions",
    }
    chain = listed["traceability-chain"]["parameters"][0]
    assert (chain["name"], chain["kind"], chain["required"]) == ("certificate", "iri", True)


def test_the_adapter_query_joins_the_api_catalogue_without_changing_the_graphs_own_table(hub, admin_headers):
    response = hub.client.get("/api/v1/queries/results-with-valid-conditions", headers=admin_headers)
    # Known to the API (a missing required parameter, not an unknown query) …
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "instrument: required."
    # … while graph.queries' own table still holds only the knowledge graph's competency queries.
    assert "results-with-valid-conditions" not in SAVED_QUERIES
    assert len(SAVED_QUERIES) == 5


def test_a_saved_query_runs_over_the_hubs_graph(loaded_hub, admin_headers):
    response = loaded_hub.client.get(
        "/api/v1/queries/traceability-chain", params={"certificate": CERTIFICATE}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["truncated"] is False
    assert [(row["depth"], row["isRoot"]) for row in answer["rows"]] == [(0, False), (1, False), (2, True)]
    labs = loaded_hub.client.get(
        "/api/v1/queries/labs-accredited-for",
        params={"quantityKind": "Temperature", "min": "400", "max": "500", "unit": "K"},
        headers=admin_headers,
    ).json()
    assert sorted({row["number"] for row in labs["rows"]}) == ["CNAS L0001", "CNAS L0002"]
    assert labs["parameters"]["unit"] == "http://qudt.org/vocab/unit/K"
    cited = loaded_hub.client.get("/api/v1/queries/replaced-standard-cited", headers=admin_headers).json()
    assert {row["code"] for row in cited["rows"]} == {"JJF 1059-1999"}  # no conformity certificates imported
    expired = loaded_hub.client.get("/api/v1/queries/expired-calibration-at-use", headers=admin_headers).json()
    assert [row["reportIdentifier"] for row in expired["rows"]] == ["TR-2025-0120", "TR-2025-0310"]
    results = loaded_hub.client.get(
        "/api/v1/queries/model-results-in-unit", params={"model": "TH-100", "unit": "DEG_C"}, headers=admin_headers
    ).json()
    assert sorted({round(row["valueInUnit"], 6) for row in results["rows"]}) == [20.0, 20.1, 100.0]


def test_bad_parameters_and_unknown_queries_are_problems(hub, admin_headers):
    injected = hub.client.get(
        "/api/v1/queries/traceability-chain",
        params={"certificate": "https://x.example/a> } ; DROP ALL ; { <b"},
        headers=admin_headers,
    )
    assert injected.status_code == 422
    assert injected.headers["content-type"] == PROBLEM
    assert injected.json()["code"] == "invalid-query-parameter"
    unknown_parameter = hub.client.get(
        "/api/v1/queries/traceability-chain", params={"certificate": CERTIFICATE, "limit": "5"}, headers=admin_headers
    )
    assert unknown_parameter.status_code == 422
    missing = hub.client.get("/api/v1/queries/drop-everything", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM


def test_queries_need_a_reading_key(hub):
    assert hub.client.get("/api/v1/queries").status_code == 401
    assert hub.client.get("/api/v1/queries/traceability-chain", params={"certificate": CERTIFICATE}).status_code == 401
