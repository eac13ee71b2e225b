"""Hostile and broken input at every XML entry point: a 4xx problem, nothing stored, the service still up."""

import pytest

from tests.paths import DCC_CORPUS, XMLDSIG_CORPUS

ATTACKS = sorted((XMLDSIG_CORPUS / "xml-attacks-defusedxml").glob("*.xml"))
VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
XML_ENTRY_POINTS = ["/api/v1/validate", "/api/v1/certificates"]


def assert_problem(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["title"] and problem["type"] and problem["code"]
    return problem


def assert_nothing_stored_and_alive(hub, lab):
    assert hub.client.get("/healthz").status_code == 200
    assert hub.client.get("/api/v1/certificates", headers=lab).json()["items"] == []


@pytest.mark.parametrize("path", ATTACKS, ids=[path.name for path in ATTACKS])
@pytest.mark.parametrize("endpoint", XML_ENTRY_POINTS)
def test_attack_file_is_refused_with_a_problem(hub, endpoint, path):
    _, lab = hub.make_org()
    response = hub.client.post(endpoint, content=path.read_bytes(), headers={**lab, "Content-Type": "application/xml"})
    if endpoint == "/api/v1/validate" and response.status_code == 200:
        # Harmless well-formed XML without a DTD may be read; it is still no valid certificate.
        assert response.json()["valid"] is False
    else:
        assert_problem(response, 400, 422)
    assert_nothing_stored_and_alive(hub, lab)


def test_attacks_with_a_dtd_are_refused_at_the_parser(hub):
    hub.make_org()
    with_dtd = [path for path in ATTACKS if b"<!DOCTYPE" in path.read_bytes()]
    assert with_dtd, "the attack corpus should contain DTD-based attacks"
    for path in with_dtd:
        response = hub.client.post(
            "/api/v1/validate", content=path.read_bytes(), headers={"Content-Type": "application/xml"}
        )
        problem = assert_problem(response, 400)
        assert problem["code"].startswith("xml-")


@pytest.mark.parametrize("endpoint", XML_ENTRY_POINTS)
def test_truncated_xml_is_a_400_problem(hub, endpoint):
    _, lab = hub.make_org()
    truncated = VALID.read_bytes()[:5000]
    response = hub.client.post(endpoint, content=truncated, headers={**lab, "Content-Type": "application/xml"})
    problem = assert_problem(response, 400)
    assert problem["code"] == "xml-malformed"
    assert_nothing_stored_and_alive(hub, lab)


@pytest.mark.parametrize("endpoint", XML_ENTRY_POINTS)
def test_wrong_content_type_is_a_415_problem(hub, endpoint):
    _, lab = hub.make_org()
    response = hub.client.post(endpoint, content=VALID.read_bytes(), headers={**lab, "Content-Type": "image/png"})
    assert_problem(response, 415)
    assert_nothing_stored_and_alive(hub, lab)


@pytest.mark.parametrize("endpoint", XML_ENTRY_POINTS)
def test_a_30_mb_body_is_a_413_problem(hub, endpoint):
    _, lab = hub.make_org()
    body = b"<a>" + b"x" * (30 * 1024 * 1024) + b"</a>"
    response = hub.client.post(endpoint, content=body, headers={**lab, "Content-Type": "application/xml"})
    assert_problem(response, 413)
    assert_nothing_stored_and_alive(hub, lab)


def test_empty_body_is_a_400_problem(hub):
    _, lab = hub.make_org()
    response = hub.client.post("/api/v1/certificates", content=b"", headers={**lab, "Content-Type": "application/xml"})
    assert_problem(response, 400)


def test_unknown_ids_and_wrong_types_are_problems(hub):
    _, lab = hub.make_org()
    assert_problem(hub.client.get("/api/v1/certificates/does-not-exist", headers=lab), 404)
    assert_problem(hub.client.get("/api/v1/certificates", params={"limit": "many"}, headers=lab), 422)
    assert_problem(hub.client.get("/api/v1/certificates", params={"calibratedFrom": "yesterday"}, headers=lab), 422)
    assert_problem(hub.client.post("/api/v1/certificates/x/revoke", json={"reason": 5}, headers=lab), 404, 422)
    assert_problem(hub.client.get("/no/such/route"), 404)
