"""The standards routes: import (admin, CSV or JSON), search, read by code with '/' and spaces, current chain."""

from pathlib import Path
from urllib.parse import quote

from organizations.models import Scope

DATA = Path(__file__).parents[1] / "graph" / "data"
PROBLEM = "application/problem+json"


def _import(hub, admin_headers, name: str, media_type: str):
    return hub.client.post(
        "/api/v1/standards/import",
        content=(DATA / name).read_bytes(),
        headers={**admin_headers, "Content-Type": media_type},
    )


def _load(hub, admin_headers) -> None:
    assert _import(hub, admin_headers, "standards.csv", "text/csv").status_code == 200
    assert _import(hub, admin_headers, "standards.json", "application/json").status_code == 200


def test_an_admin_imports_csv_and_json_and_gets_a_report_with_the_graphs_written(hub, admin_headers):
    response = _import(hub, admin_headers, "standards.csv", "text/csv")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"]) == (6, 0)
    item = next(item for item in report["items"] if item["key"] == "GB/T 27025-2019")
    assert item["graph"] == "https://qihub.example/graph/standard/GB%2FT_27025-2019"
    again = _import(hub, admin_headers, "standards.csv", "text/csv").json()
    assert (again["created"], again["updated"]) == (0, 6)


def test_a_bad_batch_is_a_problem_listing_every_bad_row_and_nothing_is_stored(hub, admin_headers):
    body = b'[{"code": "GB/T 1-2020"}, {"code": "GB/T 2-2020", "status": "in-force"}, {"title": "no code"}]'
    response = hub.client.post(
        "/api/v1/standards/import", content=body, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "import-rejected"
    assert [error["row"] for error in problem["errors"]] == [2, 3]
    listed = hub.client.get("/api/v1/standards", headers=admin_headers).json()
    assert listed["total"] == 0


def test_import_refuses_other_media_types_and_empty_bodies(hub, admin_headers):
    xml = hub.client.post(
        "/api/v1/standards/import", content=b"<a/>", headers={**admin_headers, "Content-Type": "application/xml"}
    )
    empty = hub.client.post(
        "/api/v1/standards/import", content=b"", headers={**admin_headers, "Content-Type": "text/csv"}
    )
    not_json = hub.client.post(
        "/api/v1/standards/import", content=b"{", headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert (xml.status_code, empty.status_code, not_json.status_code) == (415, 400, 422)
    assert all(response.headers["content-type"] == PROBLEM for response in (xml, empty, not_json))


def test_only_admins_import_and_any_key_reads(hub, admin_headers):
    _, lab_headers = hub.make_org("Lab")
    _, bare_headers = hub.make_org("Integrator", scopes=[Scope.graph_update])
    csv = (DATA / "standards.csv").read_bytes()
    anonymous = hub.client.post("/api/v1/standards/import", content=csv, headers={"Content-Type": "text/csv"})
    lab = hub.client.post("/api/v1/standards/import", content=csv, headers={**lab_headers, "Content-Type": "text/csv"})
    assert anonymous.status_code == 401
    assert lab.status_code == 403
    assert lab.json()["code"] == "missing-scope"
    _load(hub, admin_headers)
    assert hub.client.get("/api/v1/standards").status_code == 401
    assert hub.client.get("/api/v1/standards", headers=bare_headers).json()["total"] == 8


def test_search_by_words_and_status(hub, admin_headers):
    _load(hub, admin_headers)
    response = hub.client.get("/api/v1/standards", params={"q": "不确定度", "status": "current"}, headers=admin_headers)
    assert [item["code"] for item in response.json()["items"]] == ["JJF 1059.1-2012"]
    assert response.json()["items"][0]["titleZh"] == "测量不确定度评定与表示"
    bad_status = hub.client.get("/api/v1/standards", params={"status": "in-force"}, headers=admin_headers)
    assert bad_status.status_code == 422
    assert bad_status.headers["content-type"] == PROBLEM


def test_a_code_with_slash_and_space_is_read_url_encoded_or_raw(hub, admin_headers):
    _load(hub, admin_headers)
    encoded = hub.client.get(f"/api/v1/standards/{quote('GB/T 27025-2019', safe='')}", headers=admin_headers)
    raw = hub.client.get("/api/v1/standards/GB/T 27025-2019", headers=admin_headers)
    assert encoded.status_code == 200, encoded.text
    assert encoded.json()["code"] == raw.json()["code"] == "GB/T 27025-2019"
    assert encoded.json()["clauses"][0] == {
        "number": "7.2",
        "title": "Selection, verification and validation of methods",
    }
    missing = hub.client.get(f"/api/v1/standards/{quote('GB/T 9-1999', safe='')}", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM


def test_is_this_standard_current_answers_with_the_chain(hub, admin_headers):
    _load(hub, admin_headers)
    response = hub.client.get("/api/v1/standards/current", params={"code": "GB/T 27025-2008"}, headers=admin_headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["isCurrent"] is False
    assert [link["code"] for link in answer["chain"]] == ["GB/T 27025-2008", "GB/T 27025-2019"]
    assert answer["currentCodes"] == ["GB/T 27025-2019"]
    upcoming = hub.client.get(
        "/api/v1/standards/current", params={"code": "GB 4706.1-2005", "on": "2025-06-01"}, headers=admin_headers
    ).json()
    assert upcoming["isCurrent"] is True


def test_a_replacement_cycle_is_a_conflict_problem(hub, admin_headers):
    from graph.models import Standard
    from storage.database import session_scope

    with session_scope(hub.engine) as session:
        session.add(Standard(code="T/C 1-2020", status="replaced", replaced_by=["T/C 1-2021"]))
        session.add(Standard(code="T/C 1-2021", status="replaced", replaced_by=["T/C 1-2020"]))
    response = hub.client.get("/api/v1/standards/current", params={"code": "T/C 1-2021"}, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["code"] == "replacement-cycle"
    assert response.json()["cycle"] == ["T/C 1-2021", "T/C 1-2020", "T/C 1-2021"]
