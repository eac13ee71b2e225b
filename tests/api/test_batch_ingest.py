"""Batch submission (`POST /api/v1/certificates/batch`, a ZIP of DCC XML files), on SQLite and PostgreSQL.

The hub examines a batch's documents (parse, XSD, rules, signatures) in its document processes by default, and in
the API process when it has none (`QIHUB_DOCUMENT_PROCESSES=0`): `batch_hub` runs the behaviour tests both ways,
on both databases, and the processes' failure paths are driven for real (a process killed mid-batch).
"""

import hashlib
import io
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from api.routers.certificates import EXAMINATION_JOB_BYTES, EXAMINATION_JOB_DOCUMENTS, _examination_jobs
from certificates.service import DocumentRejectedError
from certificates.validation import validate_document
from certificates.xml import XmlRejected
from graph import iris
from organizations.models import Scope
from signing.trust import LabIdentity
from signing.verification_service import SignatureInvalidError
from signing.xades import sign_dcc
from tests.api.document_pool_support import answer_with_process_killed_mid_job
from tests.api.test_verification_api import DCC, DCC_NS, _signing_lab
from tests.conftest import Hub, running_hub
from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
INVALID_SCHEMA = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/invalid_schema.xml"
GEMIMEG = sorted((DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples").glob("*.xml"))
SIEMENS = DCC_CORPUS / "siemens-pydcc/examples/dcc_gp_temperature_typical_v12.xml"
ZIP = {"Content-Type": "application/zip"}
PROBLEM = "application/problem+json"
BATCH = "/api/v1/certificates/batch"


@pytest.fixture(params=["sqlite", "postgres", "sqlite-pool", "postgres-pool"])
def batch_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub examining batches in the API process, or ("-pool") in two document processes; SQLite and PostgreSQL."""
    backend, _, pool = request.param.partition("-")
    with running_hub(request, tmp_path, backend, document_processes=2 if pool else 0) as hub:
        yield hub
    if pool:  # the batches really went through the processes
        assert hub.client.app.state.document_pool.completed > 0  # type: ignore[attr-defined]


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


def test_valid_entries_are_registered_and_invalid_ones_refused_with_findings(batch_hub):
    _, lab = batch_hub.make_org()
    entries = [*corpus_entries(), ("export/README.txt", b"exported by LIMS")]
    response = post_batch(batch_hub, lab, make_zip(entries))
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
        stored = batch_hub.client.get(
            f"/api/v1/certificates/{items[name]['id']}", headers={**lab, "Accept": "application/xml"}
        )
        assert stored.status_code == 200
        assert stored.content == contents[name]
        history = batch_hub.client.get(f"/api/v1/certificates/{items[name]['id']}/history", headers=lab).json()
        assert [event["action"] for event in history] == ["submitted"]
    invalid = items["export/invalid_schema.xml"]
    assert invalid["status"] == "refused" and "id" not in invalid
    assert invalid["problem"]["code"] == "invalid-document"
    assert any(finding["rule"] == "xsd" and finding["line"] for finding in invalid["problem"]["findings"])
    assert items["export/README.txt"]["problem"]["code"] == "not-xml"
    assert count_certificates(batch_hub, lab) == len(valid_names)


def test_duplicates_within_the_batch_and_against_the_registry_are_conflicts(batch_hub):
    _, lab = batch_hub.make_org()
    gauge = GEMIMEG[0].read_bytes()
    assert (
        batch_hub.client.post(
            "/api/v1/certificates", content=gauge, headers={**lab, "Content-Type": "application/xml"}
        ).status_code
        == 201
    )
    entries = [("a.xml", VALID.read_bytes()), ("b.xml", VALID.read_bytes()), ("c.xml", gauge)]
    response = post_batch(batch_hub, lab, make_zip(entries))
    assert response.status_code == 200, response.text
    items = by_name(response.json())
    assert items["a.xml"]["status"] == "registered"
    assert items["b.xml"]["problem"]["code"] == "conflict"
    assert "a.xml" in items["b.xml"]["problem"]["detail"]
    assert items["c.xml"]["problem"]["code"] == "conflict"
    assert "already registered" in items["c.xml"]["problem"]["detail"]
    assert response.json()["registered"] == 1
    assert count_certificates(batch_hub, lab) == 2
    # Another lab may register the same bytes: duplicates are per organization (the stored bytes are shared).
    _, other = batch_hub.make_org("Other lab")
    again = post_batch(batch_hub, other, make_zip(entries[:1]))
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


def test_an_idempotent_replay_returns_the_first_answer_and_registers_nothing_more(batch_hub):
    _, lab = batch_hub.make_org()
    body = make_zip(corpus_entries())
    key = {"Idempotency-Key": "batch-2026-11-22"}
    first = post_batch(batch_hub, {**lab, **key}, body)
    assert first.status_code == 200, first.text
    replay = post_batch(batch_hub, {**lab, **key}, body)
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert count_certificates(batch_hub, lab) == first.json()["registered"]
    reused = post_batch(batch_hub, {**lab, **key}, make_zip([("valid.xml", VALID.read_bytes())]))
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


def test_issued_batch_entries_get_transparency_log_leaves_and_reach_the_graph(batch_hub):
    _, lab = batch_hub.make_org()
    response = post_batch(batch_hub, lab, make_zip(corpus_entries()), issue="true", public="true")
    assert response.status_code == 200, response.text
    registered = [item for item in response.json()["items"] if item["status"] == "registered"]
    assert len(registered) >= 3
    for item in registered:
        certificate = batch_hub.client.get(f"/api/v1/certificates/{item['id']}", headers=lab).json()
        assert certificate["status"] == "issued" and certificate["public"] is True
        proof = batch_hub.client.get("/api/v1/log/proof", params={"hash": item["sha256"]})
        assert proof.status_code == 200, proof.text
    refused = [item for item in response.json()["items"] if item["status"] == "refused"]
    assert batch_hub.client.get("/api/v1/log/proof", params={"hash": refused[0]["sha256"]}).status_code == 404
    assert batch_hub.client.app.state.graph_mapper.wait_idle(timeout=60)
    store = batch_hub.client.app.state.graph_store
    graphs = set(store.graph_names())
    assert {iris.certificate_graph_iri(item["id"]) for item in registered} <= graphs


def test_signed_entries_are_verified_each_on_its_own(batch_hub):
    _, lab, key, chain = _signing_lab(batch_hub, "Lab Batch Signer")
    _, _, other_key, other_chain = _signing_lab(batch_hub, "Lab Batch Other")
    own = sign_dcc(DCC, private_key=key, certificate_chain=chain)
    tampered_root = etree.fromstring(sign_dcc(DCC, private_key=key, certificate_chain=chain))
    tampered_root.find(f".//{{{DCC_NS}}}uniqueIdentifier").text = "FORGED-7"
    entries = [
        ("own.xml", own),
        ("tampered.xml", etree.tostring(tampered_root)),
        ("other-lab.xml", sign_dcc(DCC, private_key=other_key, certificate_chain=other_chain)),
        ("unsigned.xml", VALID.read_bytes()),
    ]
    response = post_batch(batch_hub, lab, make_zip(entries))
    assert response.status_code == 200, response.text
    items = by_name(response.json())
    assert items["own.xml"]["status"] == "registered"
    assert items["unsigned.xml"]["status"] == "registered"
    assert items["tampered.xml"]["problem"]["code"] == "signature-invalid"
    assert items["other-lab.xml"]["problem"]["code"] == "signer-not-bound-to-lab"
    assert response.json()["registered"] == count_certificates(batch_hub, lab) == 2


def test_a_pool_process_killed_mid_batch_answers_503_and_stores_nothing(request, tmp_path):
    with running_hub(request, tmp_path, "sqlite", document_processes=1) as hub:
        _, lab = hub.make_org()
        warm = post_batch(hub, lab, make_zip(corpus_entries()))
        assert warm.status_code == 200, warm.text
        pool = hub.client.app.state.document_pool  # type: ignore[attr-defined]
        [pid] = pool.process_ids()
        registered = count_certificates(hub, lab)
        body = make_zip([(f"copy-{index}.xml", VALID.read_bytes() + b"<!-- %d -->" % index) for index in range(3)])
        killed = answer_with_process_killed_mid_job(pool, pid, lambda: post_batch(hub, lab, body))
        assert killed.status_code == 503
        assert killed.headers["content-type"] == PROBLEM
        assert killed.json()["code"] == "batch-examination-unavailable"
        assert count_certificates(hub, lab) == registered  # nothing of the batch was stored

        again = post_batch(hub, lab, body)
        assert again.status_code == 200 and again.json()["registered"] == 3
        assert pool.lost == 1 and pool.process_ids() not in ([], [pid])


def test_examination_jobs_hold_a_bounded_number_of_documents_and_bytes():
    small, large = b"x" * 1000, b"y" * (EXAMINATION_JOB_BYTES // 2 + 1)
    contents = [small] * (EXAMINATION_JOB_DOCUMENTS + 1) + [large, large, small]
    jobs = _examination_jobs(contents, max_bytes=25 << 20, lab=LabIdentity(organization_id="org", name="Lab"))
    assert [len(job.contents) for job in jobs] == [EXAMINATION_JOB_DOCUMENTS, 2, 2]
    assert [content for job in jobs for content in job.contents] == contents  # every document, in order
    assert all(sum(map(len, job.contents)) <= EXAMINATION_JOB_BYTES or len(job.contents) == 1 for job in jobs)


def test_refusals_cross_the_process_boundary_with_their_details():
    rejected = DocumentRejectedError(validate_document(INVALID_SCHEMA.read_bytes()))
    copy = pickle.loads(pickle.dumps(rejected))
    assert type(copy) is DocumentRejectedError
    assert (copy.detail, copy.extra, copy.report) == (rejected.detail, rejected.extra, rejected.report)
    signature = pickle.loads(pickle.dumps(SignatureInvalidError("bad", extra={"report": {"indication": "X"}})))
    assert type(signature) is SignatureInvalidError and signature.extra == {"report": {"indication": "X"}}
    xml = pickle.loads(pickle.dumps(XmlRejected("too-deep", "deeper than 256", line=7)))
    assert (type(xml), xml.code, xml.detail, xml.line, str(xml)) == (
        XmlRejected,
        "too-deep",
        "deeper than 256",
        7,
        str(XmlRejected("too-deep", "deeper than 256", line=7)),
    )
