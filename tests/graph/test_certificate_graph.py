"""The registry keeps the knowledge graph in step: each certificate event re-maps its named graph.

New submissions are mapped by the app's background mapper (`app.state.graph_mapper`), so `submit` waits for
it to be idle; status changes are mapped before their request returns, so nothing waits after those.
"""

import json

import pytest

from graph import iris
from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples/DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"
XML = {"Content-Type": "application/xml"}
PREFIXES = """PREFIX qh: <https://qihub.example/ns#> PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX dcat: <http://www.w3.org/ns/dcat#> PREFIX dcterms: <http://purl.org/dc/terms/>
PREFIX void: <http://rdfs.org/ns/void#>
"""


def submit(hub, lab, content: bytes, **params) -> str:
    response = hub.client.post("/api/v1/certificates", content=content, headers={**lab, **XML}, params=params)
    assert response.status_code == 201, response.text
    assert hub.client.app.state.graph_mapper.wait_idle(timeout=30)
    return response.json()["id"]


def ask(hub, pattern: str) -> bool:
    outcome = hub.client.app.state.graph_store.query(PREFIXES + f"ASK {{ {pattern} }}", timeout_s=10, result_cap=100)
    return outcome.boolean()


def select(hub, query: str) -> list[dict]:
    outcome = hub.client.app.state.graph_store.query(PREFIXES + query, timeout_s=10, result_cap=1000)
    return outcome.rows()


def in_graph(certificate_id: str, pattern: str) -> str:
    return f"GRAPH <{iris.certificate_graph_iri(certificate_id)}> {{ {pattern} }}"


def test_a_submitted_certificate_is_in_its_own_graph_with_its_lab_and_values(hub):
    _, lab = hub.make_org("Kalibrierfirma GmbH")
    certificate_id = submit(hub, lab, VALID.read_bytes())
    certificate = f"<{iris.certificate_iri(certificate_id)}>"
    assert ask(hub, in_graph(certificate_id, f'{certificate} qh:status qh:Draft ; dcterms:identifier "1234"'))
    assert ask(
        hub, in_graph(certificate_id, f'{certificate} qh:issuedBy/<https://schema.org/name> "Kalibrierfirma GmbH"')
    )
    assert ask(hub, in_graph(certificate_id, '?value qh:lexicalValue "0.20"'))


def test_revoked_status_is_visible_in_the_graph_right_after_the_revoke_request(hub):
    _, lab = hub.make_org()
    certificate_id = submit(hub, lab, VALID.read_bytes(), issue="true")
    certificate = f"<{iris.certificate_iri(certificate_id)}>"
    assert ask(hub, in_graph(certificate_id, f"{certificate} qh:status qh:Issued"))
    response = hub.client.post(
        f"/api/v1/certificates/{certificate_id}/revoke", json={"reason": "wrong serial number"}, headers=lab
    )
    assert response.status_code == 200, response.text
    assert ask(
        hub, in_graph(certificate_id, f'{certificate} qh:status qh:Revoked ; qh:statusReason "wrong serial number"')
    )
    assert not ask(hub, f"GRAPH ?g {{ {certificate} qh:status qh:Issued }}")
    graph = f"<{iris.certificate_graph_iri(certificate_id)}>"
    assert ask(hub, f"GRAPH <{iris.METADATA_GRAPH}> {{ {graph} a dcat:Dataset ; qh:status qh:Revoked }}")


def test_supersede_links_the_original_and_its_amendment_both_ways(hub):
    _, lab = hub.make_org()
    original = submit(hub, lab, VALID.read_bytes(), issue="true")
    amendment = submit(hub, lab, VALID.read_bytes().replace(b">1234<", b">1234-A1<"))
    response = hub.client.post(
        f"/api/v1/certificates/{original}/supersede",
        json={"replacementId": amendment, "reason": "amended serial number"},
        headers=lab,
    )
    assert response.status_code == 200, response.text
    old, new = f"<{iris.certificate_iri(original)}>", f"<{iris.certificate_iri(amendment)}>"
    assert ask(hub, in_graph(original, f"{old} qh:status qh:Superseded ; qh:supersededBy {new}"))
    assert ask(hub, in_graph(amendment, f"{new} qh:status qh:Issued ; qh:supersedes {old}"))


def test_a_reference_standard_the_hub_knows_is_traced_to_its_certificate(hub):
    _, lab = hub.make_org()
    # The reference thermometer's own certificate: its item serial is the serial the later DCC's equipment has.
    reference_xml = (
        VALID.read_bytes()
        .replace(b">1234<", b">REF-0001<")
        .replace(b">string-manufacturer-item<", b">string-manufacturer-measuringEquipment-1<")
    )
    reference = submit(hub, lab, reference_xml, issue="true")
    calibrated = submit(hub, lab, VALID.read_bytes(), issue="true")
    chain = f"<{iris.certificate_iri(calibrated)}> prov:wasDerivedFrom+ <{iris.certificate_iri(reference)}>"
    assert ask(hub, f"GRAPH ?g {{ {chain} }}")
    rows = select(
        hub,
        f"""SELECT ?equipment WHERE {{ GRAPH ?g {{ <{iris.certificate_iri(calibrated)}> prov:wasGeneratedBy
            / qh:usedEquipment ?equipment }} GRAPH ?h {{ ?reference qh:calibratedItem ?equipment }} }}""",
    )
    assert [row["equipment"] for row in rows] == [
        iris.instrument_iri("String", "String", "string-manufacturer-measuringEquipment-1")
    ]


def _reference_thermometer_xml() -> bytes:
    return (
        VALID.read_bytes()
        .replace(b">1234<", b">REF-0001<")
        .replace(b">string-manufacturer-item<", b">string-manufacturer-measuringEquipment-1<")
    )


def test_a_reference_certificate_registered_later_links_the_certificates_that_used_its_item(hub):
    _, lab = hub.make_org()
    calibrated = submit(hub, lab, VALID.read_bytes(), issue="true")
    derived = f"<{iris.certificate_iri(calibrated)}> prov:wasDerivedFrom ?reference"
    assert not ask(hub, f"GRAPH ?g {{ {derived} }}")  # nothing known about the reference thermometer yet
    reference = submit(hub, lab, _reference_thermometer_xml(), issue="true")
    link = f"<{iris.certificate_iri(calibrated)}> prov:wasDerivedFrom <{iris.certificate_iri(reference)}>"
    assert ask(hub, in_graph(calibrated, link))


def test_issuing_a_draft_reference_certificate_links_its_dependents_before_the_request_returns(hub):
    _, lab = hub.make_org()
    reference = submit(hub, lab, _reference_thermometer_xml())  # a draft is not yet a known reference
    calibrated = submit(hub, lab, VALID.read_bytes(), issue="true")
    link = f"<{iris.certificate_iri(calibrated)}> prov:wasDerivedFrom <{iris.certificate_iri(reference)}>"
    assert not ask(hub, in_graph(calibrated, link))
    response = hub.client.post(f"/api/v1/certificates/{reference}/issue", headers=lab)
    assert response.status_code == 200, response.text
    assert ask(hub, in_graph(calibrated, link))
    # Re-mapping a dependent keeps its own status and values.
    assert ask(hub, in_graph(calibrated, f"<{iris.certificate_iri(calibrated)}> qh:status qh:Issued"))
    assert ask(hub, in_graph(calibrated, '?value qh:lexicalValue "0.20"'))


def test_the_metadata_graph_describes_each_certificate_graph(hub):
    _, lab = hub.make_org()
    first = submit(hub, lab, VALID.read_bytes())
    second = submit(hub, lab, GAUGE_BLOCK.read_bytes())
    rows = select(
        hub,
        f"""SELECT ?graph ?source ?triples WHERE {{ GRAPH <{iris.METADATA_GRAPH}> {{
            ?catalog dcat:dataset ?graph . ?graph dcterms:source ?source ; void:triples ?triples ;
            prov:generatedAtTime ?time ; qh:mappingVersion ?version ; qh:sha256 ?sha }} }} ORDER BY ?graph""",
    )
    assert sorted((row["graph"], row["source"]) for row in rows) == sorted(
        (iris.certificate_graph_iri(identifier), iris.certificate_iri(identifier)) for identifier in (first, second)
    )
    assert all(int(row["triples"]) > 100 for row in rows)


def test_a_mapping_failure_is_logged_and_the_registry_request_still_succeeds(hub, monkeypatch, capsys):
    _, lab = hub.make_org()
    certificate_id = submit(hub, lab, VALID.read_bytes(), issue="true")

    def broken(*args, **kwargs):
        raise RuntimeError("mapping exploded")

    monkeypatch.setattr("graph.publish.map_certificate_ntriples", broken)
    capsys.readouterr()
    response = hub.client.post(f"/api/v1/certificates/{certificate_id}/revoke", json={"reason": "typo"}, headers=lab)
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    failures = [entry for entry in logged if entry.get("event") == "graph.certificate_mapping_failed"]
    assert [(entry["certificate_id"], entry["action"]) for entry in failures] == [(certificate_id, "revoked")]
    assert "mapping exploded" in failures[0]["exception"]


@pytest.mark.parametrize("action", ["issue"])
def test_issuing_a_draft_updates_its_status_in_the_graph(hub, action):
    _, lab = hub.make_org()
    certificate_id = submit(hub, lab, VALID.read_bytes())
    assert hub.client.post(f"/api/v1/certificates/{certificate_id}/{action}", headers=lab).status_code == 200
    assert ask(hub, in_graph(certificate_id, f"<{iris.certificate_iri(certificate_id)}> qh:status qh:Issued"))


def test_queued_certificates_are_mapped_as_one_batch_with_their_descriptions(hub):
    _, lab = hub.make_org()
    identifiers = [submit(hub, lab, content) for content in (VALID.read_bytes(), GAUGE_BLOCK.read_bytes())]
    mapper = hub.client.app.state.graph_mapper
    store = hub.client.app.state.graph_store
    for identifier in identifiers:
        store.drop_graph(iris.certificate_graph_iri(identifier))
    mapper.map_batch([*identifiers, "01900000-0000-7000-8000-00000000dead"])  # a gone one is only removed
    for identifier in identifiers:
        assert ask(hub, in_graph(identifier, f"<{iris.certificate_iri(identifier)}> qh:status qh:Draft"))
    rows = select(
        hub,
        f"""SELECT ?graph WHERE {{ GRAPH <{iris.METADATA_GRAPH}> {{ ?graph void:triples ?triples }} }}""",
    )
    assert {row["graph"] for row in rows} >= {iris.certificate_graph_iri(identifier) for identifier in identifiers}
