"""Batch submission (`POST /api/v1/certificates/batch`, a ZIP of DCC XML files), on SQLite and PostgreSQL."""

import hashlib
import io
import zipfile

from graph import iris
from organizations.models import Scope
from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
INVALID_SCHEMA = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/invalid_schema.xml"
GEMIMEG = sorted((DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples").glob("*.xml"))
SIEMENS = DCC_CORPUS / "siemens-pydcc/examples/dcc_gp_temperature_typical_v12.xml"
ZIP = {"Content-Type": "application/zip"}
PROBLEM = "application/problem+json"
BATCH = "/api/v1/certificates/batch"


def make_zip(entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


def corpus_entries() -> list[tuple[str, bytes]]:
    valid = [VALID, *GEMIMEG, SIEMENS]
    return [(f"export/{path.name}", path.read_bytes()) for path in valid] + [
        ("export/invalid_schema.xml", INVALID_SCHEMA.read_bytes())
    ]


def post_batch(hub, headers, body: bytes, **params):
    return hub.client.post(BATCH, content=body, headers={**headers, **ZIP}, params=params)


def count_certificates(hub, headers) -> int:
    return len(hub.client.get("/api/v1/certificates", headers=headers, params={"limit": 200}).json()["items"])


def by_name(body: dict) -> dict[str, dict]:
    return {item["name"]: item for item in body["items"]}


def test_valid_entries_are_registered_and_invalid_ones_refused_with_findings(hub):
    _, lab = hub.make_org()
    entries = [*corpus_entries(), ("export/README.txt", b"exported by LIMS")]
    response = post_batch(hub, lab, make_zip(entries))
    assert response.status_code == 200, response.text
    body = response.json()
    valid_names = [name for name, _ in entries[:-2]]
    assert body["registered"] == len(valid_names) >= 3
    assert body["refused"] == 2
    assert [item["name"] for item in body["items"]] == [name for name, _ in entries]  # archive order
    items = by_name(body)
    contents = dict(entries)
    for name in valid_names:
        assert items[name]["status"] == "registered"
        assert items[name]["sha256"] == hashlib.sha256(contents[name]).hexdigest()
        stored = hub.client.get(
            f"/api/v1/certificates/{items[name]['id']}", headers={**lab, "Accept": "application/xml"}
        )
        assert stored.status_code == 200
        assert stored.content == contents[name]
        history = hub.client.get(f"/api/v1/certificates/{items[name]['id']}/history", headers=lab).json()
        assert [event["action"] for event in history] == ["submitted"]
    invalid = items["export/invalid_schema.xml"]
    assert invalid["status"] == "refused" and "id" not in invalid
    assert invalid["problem"]["code"] == "invalid-document"
    assert any(finding["rule"] == "xsd" and finding["line"] for finding in invalid["problem"]["findings"])
    assert items["export/README.txt"]["problem"]["code"] == "not-xml"
    assert count_certificates(hub, lab) == len(valid_names)


def test_duplicates_within_the_batch_and_against_the_registry_are_conflicts(hub):
    _, lab = hub.make_org()
    gauge = GEMIMEG[0].read_bytes()
    assert (
        hub.client.post(
            "/api/v1/certificates", content=gauge, headers={**lab, "Content-Type": "application/xml"}
        ).status_code
        == 201
    )
    entries = [("a.xml", VALID.read_bytes()), ("b.xml", VALID.read_bytes()), ("c.xml", gauge)]
    response = post_batch(hub, lab, make_zip(entries))
    assert response.status_code == 200, response.text
    items = by_name(response.json())
    assert items["a.xml"]["status"] == "registered"
    assert items["b.xml"]["problem"]["code"] == "conflict"
    assert "a.xml" in items["b.xml"]["problem"]["detail"]
    assert items["c.xml"]["problem"]["code"] == "conflict"
    assert "already registered" in items["c.xml"]["problem"]["detail"]
    assert response.json()["registered"] == 1
    assert count_certificates(hub, lab) == 2
    # Another lab may register the same bytes: duplicates are per organization (the stored bytes are shared).
    _, other = hub.make_org("Other lab")
    again = post_batch(hub, other, make_zip(entries[:1]))
    assert again.json()["registered"] == 1


def test_a_zip_bomb_is_refused_before_decompression_and_nothing_is_stored(hub):
    _, lab = hub.make_org()
    cap = hub.settings.max_document_bytes
    bomb = b"<a>" + b" " * (cap + 1) + b"</a>"
    response = post_batch(hub, lab, make_zip([("valid.xml", VALID.read_bytes()), ("bomb.xml", bomb)]))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "entry-too-large"
    # Under the per-entry cap but expanding thousands of times: still a bomb.
    ratio_bomb = b" " * (cap // 2)
    response = post_batch(hub, lab, make_zip([("valid.xml", VALID.read_bytes()), ("bomb.xml", ratio_bomb)]))
    assert response.status_code == 413
    assert response.json()["code"] == "compression-ratio"
    assert count_certificates(hub, lab) == 0


def test_too_many_entries_is_413(hub, monkeypatch):
    _, lab = hub.make_org()
    monkeypatch.setattr("api.routers.certificates.MAX_BATCH_ENTRIES", 3)
    response = post_batch(hub, lab, make_zip([(f"{index}.xml", b"<a/>") for index in range(4)]))
    assert response.status_code == 413
    assert response.json()["code"] == "too-many-entries"


def test_not_a_zip_is_400_and_other_media_types_415(hub):
    _, lab = hub.make_org()
    response = post_batch(hub, lab, VALID.read_bytes())
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "invalid-zip"
    empty = post_batch(hub, lab, make_zip([]))
    assert empty.status_code == 400
    wrong = hub.client.post(BATCH, content=VALID.read_bytes(), headers={**lab, "Content-Type": "application/xml"})
    assert wrong.status_code == 415
    assert count_certificates(hub, lab) == 0


def test_an_idempotent_replay_returns_the_first_answer_and_registers_nothing_more(hub):
    _, lab = hub.make_org()
    body = make_zip(corpus_entries())
    key = {"Idempotency-Key": "batch-2026-11-22"}
    first = post_batch(hub, {**lab, **key}, body)
    assert first.status_code == 200, first.text
    replay = post_batch(hub, {**lab, **key}, body)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert count_certificates(hub, lab) == first.json()["registered"]
    reused = post_batch(hub, {**lab, **key}, make_zip([("valid.xml", VALID.read_bytes())]))
    assert reused.status_code == 409


def test_batch_needs_a_key_with_write_scope(hub):
    _, reader = hub.make_org("Reader", scopes=[Scope.certificates_read])
    body = make_zip([("valid.xml", VALID.read_bytes())])
    anonymous = hub.client.post(BATCH, content=body, headers=ZIP)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    forbidden = post_batch(hub, reader, body)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == PROBLEM


def test_issued_batch_entries_get_transparency_log_leaves_and_reach_the_graph(hub):
    _, lab = hub.make_org()
    response = post_batch(hub, lab, make_zip(corpus_entries()), issue="true", public="true")
    assert response.status_code == 200, response.text
    registered = [item for item in response.json()["items"] if item["status"] == "registered"]
    assert len(registered) >= 3
    for item in registered:
        certificate = hub.client.get(f"/api/v1/certificates/{item['id']}", headers=lab).json()
        assert certificate["status"] == "issued" and certificate["public"] is True
        proof = hub.client.get("/api/v1/log/proof", params={"hash": item["sha256"]})
        assert proof.status_code == 200, proof.text
    refused = [item for item in response.json()["items"] if item["status"] == "refused"]
    assert hub.client.get("/api/v1/log/proof", params={"hash": refused[0]["sha256"]}).status_code == 404
    assert hub.client.app.state.graph_mapper.wait_idle(timeout=60)
    store = hub.client.app.state.graph_store
    graphs = set(store.graph_names())
    assert {iris.certificate_graph_iri(item["id"]) for item in registered} <= graphs
