"""The certificate registry through the HTTP API, on SQLite and PostgreSQL."""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

from organizations.models import OrganizationKind, Scope
from tests.paths import DCC_CORPUS, REPO_ROOT

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples/DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"
VACUUM = DCC_CORPUS / "ptb-xsd-dcc/examples/v3.1.1/dcc-vacuumlab-CDG.xml"
INVALID_SCHEMA = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/invalid_schema.xml"
SUBMISSION = REPO_ROOT / "tests/certificates/data/submission-thermometer.json"
XML = {"Content-Type": "application/xml"}


def submit(hub, headers, path, **params):
    return hub.client.post("/api/v1/certificates", content=path.read_bytes(), headers={**headers, **XML}, params=params)


def count_certificates(hub, headers) -> int:
    return len(hub.client.get("/api/v1/certificates", headers=headers).json()["items"])


def test_valid_xml_is_registered_as_draft_with_its_exact_bytes(hub):
    _, lab = hub.make_org()
    response = submit(hub, lab, VALID)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "draft"
    assert body["schemaVersion"] == "3.3.0"
    assert body["uniqueIdentifier"] == "1234"
    assert response.headers["location"] == f"/api/v1/certificates/{body['id']}"
    exact = hub.client.get(f"/api/v1/certificates/{body['id']}", headers={**lab, "Accept": "application/xml"})
    assert exact.status_code == 200
    assert exact.content == VALID.read_bytes()


def test_invalid_document_is_refused_with_findings_and_nothing_is_stored(hub):
    _, lab = hub.make_org()
    response = submit(hub, lab, INVALID_SCHEMA)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "invalid-document"
    assert problem["schemaValid"] is False
    assert any(finding["rule"] == "xsd" and finding["line"] for finding in problem["findings"])
    assert count_certificates(hub, lab) == 0


def test_json_submission_is_built_into_dcc_330_and_exported_back(hub):
    _, lab = hub.make_org()
    submission = json.loads(SUBMISSION.read_text())
    response = hub.client.post("/api/v1/certificates", json=submission, headers=lab)
    assert response.status_code == 201, response.text
    certificate_id = response.json()["id"]
    xml = hub.client.get(f"/api/v1/certificates/{certificate_id}", headers={**lab, "Accept": "application/xml"})
    assert etree.fromstring(xml.content).get("schemaVersion") == "3.3.0"
    exported = hub.client.get(f"/api/v1/certificates/{certificate_id}", headers={**lab, "Accept": "application/json"})
    assert exported.json()["content"] == submission


def test_json_submission_breaking_the_schema_is_refused_with_pointers(hub):
    _, lab = hub.make_org()
    submission = json.loads(SUBMISSION.read_text())
    del submission["administrativeData"]["coreData"]["uniqueIdentifier"]
    response = hub.client.post("/api/v1/certificates", json=submission, headers=lab)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid-submission"
    assert response.json()["findings"]
    assert count_certificates(hub, lab) == 0


def test_malformed_json_is_a_400_problem(hub):
    _, lab = hub.make_org()
    response = hub.client.post(
        "/api/v1/certificates",
        content=b'{"administrativeData": ',
        headers={**lab, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed-json"


def test_idempotency_key_replays_the_first_answer_and_stores_once(hub):
    _, lab = hub.make_org()
    headers = {**lab, **XML, "Idempotency-Key": "order-42"}
    first = hub.client.post("/api/v1/certificates", content=VALID.read_bytes(), headers=headers)
    second = hub.client.post("/api/v1/certificates", content=VALID.read_bytes(), headers=headers)
    assert first.status_code == second.status_code == 201
    # The first answer is serialised from the model, the replay from the stored JSON: byte for byte the same.
    assert first.content == second.content
    assert first.headers["location"] == second.headers["location"]
    assert count_certificates(hub, lab) == 1
    reused = hub.client.post("/api/v1/certificates", content=GAUGE_BLOCK.read_bytes(), headers=headers)
    assert reused.status_code == 409
    assert count_certificates(hub, lab) == 1


def test_a_submission_answers_with_the_entry_as_read_back_and_the_validation_findings(hub):
    _, lab = hub.make_org()
    response = submit(hub, lab, GAUGE_BLOCK)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    created = response.json()
    entry = hub.client.get(f"/api/v1/certificates/{created['id']}", headers={**lab, "Accept": "application/json"})
    assert {**entry.json(), "findings": created["findings"]} == {**created, "content": entry.json()["content"]}
    report = hub.client.post("/api/v1/validate", content=GAUGE_BLOCK.read_bytes(), headers=XML).json()
    assert created["findings"] == report["findings"] and report["findings"]


def test_plain_submissions_answer_as_those_with_parameters(hub):
    # Once its key is cached, a submission without query parameters or Idempotency-Key takes the route's
    # shortcut past FastAPI's dependency solving; with parameters it goes the usual way: same answers.
    _, lab = hub.make_org()
    _, reader = hub.make_org("Reader", scopes=[Scope.certificates_read])
    for headers in (lab, reader):
        assert hub.client.get("/api/v1/certificates", headers=headers).status_code == 200
    plain, usual = submit(hub, lab, VALID), submit(hub, lab, GAUGE_BLOCK, issue="false", public="false")
    assert plain.status_code == usual.status_code == 201
    assert plain.headers["content-type"] == usual.headers["content-type"] == "application/json"
    assert plain.json().keys() == usual.json().keys()
    assert plain.json()["status"] == usual.json()["status"] == "draft"
    refused, refused_usual = submit(hub, lab, INVALID_SCHEMA), submit(hub, lab, INVALID_SCHEMA, issue="false")
    assert refused.status_code == refused_usual.status_code == 422
    assert refused.json() == refused_usual.json()
    again, again_usual = submit(hub, lab, VALID), submit(hub, lab, VALID, public="false")
    assert again.status_code == again_usual.status_code == 409
    assert again.json() == again_usual.json()
    unsupported = hub.client.post("/api/v1/certificates", content=b"x", headers={**lab, "Content-Type": "text/plain"})
    assert unsupported.status_code == 415 and unsupported.json()["code"] == "unsupported-media-type"
    assert submit(hub, reader, VACUUM).json()["code"] == "missing-scope"
    unknown = {"Authorization": "Bearer qh_not_a_key"}
    assert submit(hub, unknown, VACUUM).json()["code"] == "invalid-key"
    assert count_certificates(hub, lab) == 2


def test_concurrent_submissions_all_register_each_with_its_event(hub):
    _, lab = hub.make_org()
    contents = [VALID.read_bytes() + f"<!-- copy {index} -->".encode() for index in range(8)]

    def post(content: bytes) -> int:
        return hub.client.post("/api/v1/certificates", content=content, headers={**lab, **XML}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(post, contents))
    assert statuses == [201] * len(contents)
    items = hub.client.get("/api/v1/certificates", headers=lab).json()["items"]
    digests = sorted(hashlib.sha256(content).hexdigest() for content in contents)
    assert sorted(item["sha256"] for item in items) == digests
    for item in items:
        history = hub.client.get(f"/api/v1/certificates/{item['id']}/history", headers=lab).json()
        assert [event["action"] for event in history] == ["submitted"]


def test_the_same_document_twice_is_a_conflict_naming_the_first(hub):
    _, lab = hub.make_org()
    first = submit(hub, lab, VALID).json()
    again = submit(hub, lab, VALID)
    assert again.status_code == 409
    assert again.json()["certificateId"] == first["id"]


def test_listing_filters_and_paginates_with_a_cursor(hub):
    _, lab = hub.make_org()
    ids = [submit(hub, lab, path).json()["id"] for path in (VALID, GAUGE_BLOCK, VACUUM)]
    page = hub.client.get("/api/v1/certificates", headers=lab, params={"limit": 2}).json()
    assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
    rest = hub.client.get("/api/v1/certificates", headers=lab, params={"limit": 2, "cursor": page["nextCursor"]})
    assert [item["id"] for item in rest.json()["items"]] == [ids[0]]
    assert rest.json()["nextCursor"] is None
    gauge = hub.client.get(f"/api/v1/certificates/{ids[1]}", headers=lab).json()
    by_serial = hub.client.get(
        "/api/v1/certificates",
        headers=lab,
        params={"serial": gauge["itemSerial"], "manufacturer": gauge["itemManufacturer"]},
    ).json()
    assert [item["id"] for item in by_serial["items"]] == [ids[1]]
    assert gauge["itemSerial"]
    by_date = hub.client.get(
        "/api/v1/certificates", headers=lab, params={"calibratedFrom": "2000-01-01", "status": "draft"}
    ).json()
    assert ids[0] not in {item["id"] for item in by_date["items"]}  # valid.xml was calibrated in 1957
    assert hub.client.get("/api/v1/certificates", headers=lab, params={"cursor": "%%%"}).status_code == 422


def test_reading_negotiates_json_xml_and_html(hub):
    _, lab = hub.make_org()
    certificate_id = submit(hub, lab, GAUGE_BLOCK).json()["id"]
    url = f"/api/v1/certificates/{certificate_id}"
    as_json = hub.client.get(url, headers={**lab, "Accept": "text/html;q=0.5, application/json"})
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json()["content"]["administrativeData"]["coreData"]["uniqueIdentifier"]
    as_html = hub.client.get(url, headers={**lab, "Accept": "text/html"})
    assert as_html.headers["content-type"].startswith("text/html")
    assert as_json.json()["uniqueIdentifier"] in as_html.text
    refused = hub.client.get(url, headers={**lab, "Accept": "image/png"})
    assert refused.status_code == 406


def test_lifecycle_issue_revoke_with_history(hub):
    _, lab = hub.make_org()
    certificate_id = submit(hub, lab, VALID).json()["id"]
    base = f"/api/v1/certificates/{certificate_id}"
    assert hub.client.post(f"{base}/revoke", json={"reason": "typo"}, headers=lab).status_code == 409
    assert hub.client.post(f"{base}/issue", headers=lab).json()["status"] == "issued"
    revoked = hub.client.post(f"{base}/revoke", json={"reason": "wrong serial number"}, headers=lab)
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["statusReason"] == "wrong serial number"
    assert hub.client.post(f"{base}/issue", headers=lab).status_code == 409
    history = hub.client.get(f"{base}/history", headers=lab).json()
    assert [event["action"] for event in history] == ["submitted", "issued", "revoked"]
    assert history[2]["reason"] == "wrong serial number"
    assert all(event["actorOrganizationId"] for event in history)


def test_supersede_links_the_amendment_and_issues_it(hub):
    _, lab = hub.make_org()
    original = submit(hub, lab, VALID, issue="true").json()["id"]
    amendment = submit(hub, lab, GAUGE_BLOCK).json()["id"]
    response = hub.client.post(
        f"/api/v1/certificates/{original}/supersede",
        json={"replacementId": amendment, "reason": "corrected uncertainty"},
        headers=lab,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "superseded"
    assert response.json()["supersededById"] == amendment
    replacement = hub.client.get(f"/api/v1/certificates/{amendment}", headers=lab).json()
    assert replacement["status"] == "issued"
    assert replacement["supersedesId"] == original
    again = hub.client.post(
        f"/api/v1/certificates/{original}/supersede",
        json={"replacementId": amendment, "reason": "again"},
        headers=lab,
    )
    assert again.status_code == 409


def test_certificates_are_confidential_to_their_lab_unless_public(hub):
    _, lab_a = hub.make_org("Lab A")
    _, lab_b = hub.make_org("Lab B")
    private = submit(hub, lab_a, VALID).json()["id"]
    public = submit(hub, lab_a, GAUGE_BLOCK, public="true").json()["id"]
    assert hub.client.get(f"/api/v1/certificates/{private}", headers=lab_b).status_code == 404
    assert hub.client.get(f"/api/v1/certificates/{public}", headers=lab_b).status_code == 200
    listed = {item["id"] for item in hub.client.get("/api/v1/certificates", headers=lab_b).json()["items"]}
    assert listed == {public}
    # Public means readable, not changeable by others.
    hub.client.post(f"/api/v1/certificates/{public}/issue", headers=lab_a)
    steal = hub.client.post(f"/api/v1/certificates/{public}/revoke", json={"reason": "not mine"}, headers=lab_b)
    assert steal.status_code == 403


ROUTES = [
    ("get", "/api/v1/certificates", None),
    ("post", "/api/v1/certificates", "xml"),
    ("get", "/api/v1/certificates/{id}", None),
    ("get", "/api/v1/certificates/{id}/history", None),
    ("post", "/api/v1/certificates/{draft}/issue", {}),
    ("post", "/api/v1/certificates/{id}/revoke", {"reason": "test reason"}),
    ("post", "/api/v1/certificates/{id}/supersede", {"replacementId": "{other}", "reason": "amended"}),
]


@pytest.mark.parametrize(("method", "template", "payload"), ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES])
def test_every_route_answers_401_403_404_and_success(hub, method, template, payload):
    _, owner = hub.make_org("Owner lab")
    _, stranger = hub.make_org("Other lab")
    _, read_only = hub.make_org("Reader", scopes=[Scope.certificates_read])
    _, no_scope = hub.make_org("Scopeless", kind=OrganizationKind.platform, scopes=[Scope.admin])
    certificate_id = submit(hub, owner, VALID, issue="true").json()["id"]
    other_id = submit(hub, owner, GAUGE_BLOCK).json()["id"]
    url = template.replace("{id}", certificate_id).replace("{draft}", other_id)

    def call(headers):
        if payload == "xml":
            return hub.client.post(url, content=VACUUM.read_bytes(), headers={**headers, **XML})
        if payload is None:
            return getattr(hub.client, method)(url, headers=headers)
        body = json.loads(json.dumps(payload).replace("{other}", other_id))
        return hub.client.post(url, json=body, headers=headers)

    unauthenticated = call({})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith("application/problem+json")
    assert call({"Authorization": "Bearer qh_not_a_real_key_at_all"}).status_code == 401
    forbidden = call(read_only if method == "post" else no_scope)
    assert forbidden.status_code == 403
    if "{id}" in template or "{draft}" in template:
        assert call(stranger).status_code == 404
    success = call(owner)
    assert success.status_code in (200, 201), success.text
