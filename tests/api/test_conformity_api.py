"""Accreditation and conformity-certificate routes: who may write, all-or-nothing batches, mapping into the graph."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.registry_graph import install_registry_graph
from graph.store import open_graph_store
from organizations.models import OrganizationKind, Scope

DATA = Path(__file__).parents[1] / "graph" / "data"
PROBLEM = "application/problem+json"
ASK_PREFIXES = "PREFIX qh: <https://qihub.example/ns#> PREFIX schema: <https://schema.org/> "


@pytest.fixture
def graph_hub(hub) -> Iterator:
    """The hub with its graph store and the registry listeners (wired here too in case the app does not yet)."""
    app = hub.client.app
    if getattr(app.state, "graph_store", None) is None:
        app.state.graph_store = open_graph_store(hub.settings)
    install_registry_graph(app)
    yield hub
    app.state.graph_store.close()


def _ask(hub, pattern: str) -> bool:
    outcome = hub.client.app.state.graph_store.query(
        f"{ASK_PREFIXES} ASK {{ {pattern} }}", timeout_s=30, result_cap=10, union_default_graph=True
    )
    return outcome.boolean()


def _accreditations() -> list[dict]:
    return json.loads((DATA / "accreditations.json").read_text())


def _certificates() -> list[dict]:
    return json.loads((DATA / "conformity-certificates.json").read_text())


def test_an_admin_imports_accreditations_and_they_are_listed(hub, admin_headers):
    response = hub.client.post("/api/v1/accreditations", json=_accreditations(), headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    listed = hub.client.get("/api/v1/accreditations", params={"method": "JJG 160-2007"}, headers=admin_headers)
    assert [item["number"] for item in listed.json()] == ["CNAS L0001"]
    assert listed.json()[0]["scope"][1]["unit"] == "http://qudt.org/vocab/unit/MegaPA"


def test_platforms_and_regulators_with_write_scope_may_write_registers_labs_may_not(hub, admin_headers):
    _, platform = hub.make_org("Platform", kind=OrganizationKind.platform)
    _, regulator = hub.make_org("Regulator", kind=OrganizationKind.regulator)
    _, reading_regulator = hub.make_org("Reader", kind=OrganizationKind.regulator, scopes=[Scope.certificates_read])
    _, lab = hub.make_org("Lab")
    certificates = _certificates()
    assert (
        hub.client.post("/api/v1/conformity-certificates", json=certificates[:1], headers=platform).status_code == 200
    )
    assert (
        hub.client.post("/api/v1/conformity-certificates", json=certificates[1:], headers=regulator).status_code == 200
    )
    for headers in (lab, reading_regulator):
        refused = hub.client.post("/api/v1/conformity-certificates", json=certificates, headers=headers)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == PROBLEM
    anonymous = hub.client.post("/api/v1/accreditations", json=_accreditations())
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    assert len(hub.client.get("/api/v1/conformity-certificates", headers=lab).json()) == 3
    assert hub.client.get("/api/v1/conformity-certificates").status_code == 401


def test_a_bad_item_refuses_the_whole_batch_as_a_problem(hub, admin_headers):
    items = _accreditations()
    items[1]["scope"][0]["rangeMin"] = "2000"  # above its rangeMax
    response = hub.client.post("/api/v1/accreditations", json=items, headers=admin_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["location"][:3] == ["body", 1, "scope"]
    duplicate = hub.client.post("/api/v1/accreditations", json=[items[0], items[0]], headers=admin_headers)
    assert duplicate.status_code == 422
    assert duplicate.json()["code"] == "import-rejected"
    unknown_holder = [{**items[0], "holderOrganizationId": "no-such-organization"}]
    assert hub.client.post("/api/v1/accreditations", json=unknown_holder, headers=admin_headers).status_code == 422
    assert hub.client.get("/api/v1/accreditations", headers=admin_headers).json() == []


def test_listing_filters_by_scheme_status_and_cited_standard(hub, admin_headers):
    hub.client.post("/api/v1/conformity-certificates", json=_certificates(), headers=admin_headers)

    def numbers(**params) -> list[str]:
        response = hub.client.get("/api/v1/conformity-certificates", params=params, headers=admin_headers)
        return [item["number"] for item in response.json()]

    assert numbers(scheme="CCC") == ["2019010701000001", "2024010701000002"]
    assert numbers(status="suspended") == ["CQC22001234567"]
    assert numbers(standard="GB 4706.1-2024") == ["2024010701000002"]
    assert (
        hub.client.get("/api/v1/conformity-certificates", params={"status": "bogus"}, headers=admin_headers).status_code
        == 422
    )


def test_imported_registers_are_mapped_into_their_named_graphs(graph_hub, admin_headers):
    hub = graph_hub
    lab_id, _ = hub.make_org("Shenzhen Metrology Lab")
    accreditations = _accreditations()
    accreditations[0]["holderOrganizationId"] = lab_id
    report = hub.client.post("/api/v1/accreditations", json=accreditations, headers=admin_headers).json()
    hub.client.post("/api/v1/conformity-certificates", json=_certificates(), headers=admin_headers)
    hub.client.post(
        "/api/v1/standards/import",
        content=(DATA / "standards.csv").read_bytes(),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    lab = f"<https://qihub.example/id/organization/{lab_id}>"
    assert report["items"][0]["graph"] == "https://qihub.example/graph/accreditation/CNAS/CNAS_L0001"
    assert _ask(
        hub,
        f"GRAPH <{report['items'][0]['graph']}> {{ {lab} qh:hasAccreditation ?a . ?a qh:hasScope ?s . "
        "?s qh:scopeQuantityKind <http://qudt.org/vocab/quantitykind/Temperature> ; qh:rangeMax ?max "
        "FILTER (?max = 300) }",
    )
    assert _ask(
        hub,
        "?c a qh:ConformityCertificate ; qh:scheme 'CCC' ; qh:status qh:Valid ; "
        "qh:certifiedAgainst/qh:code 'GB 4706.1-2005' ; qh:certifiedProduct/schema:model 'EK-17'",
    )
    assert _ask(hub, "?old qh:code 'GB/T 27025-2008' ; qh:replacedBy/qh:code 'GB/T 27025-2019'")
    # Re-importing replaces the graph: the old status is gone, not duplicated.
    changed = [{**_certificates()[0], "status": "withdrawn"}]
    hub.client.post("/api/v1/conformity-certificates", json=changed, headers=admin_headers)
    number = "'2019010701000001'"
    assert _ask(hub, f"?c qh:certificateNumber {number} ; qh:status qh:Withdrawn")
    assert not _ask(hub, f"?c qh:certificateNumber {number} ; qh:status qh:Valid")
