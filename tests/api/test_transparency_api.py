"""The public transparency log through the HTTP API: certificate lifecycle appends leaves, clients verify."""

import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization

from signing.transparency import SignedTreeHead, verify_consistency, verify_inclusion, verify_tree_head
from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
GAUGE_BLOCK = DCC_CORPUS / "dkd-gp-via-gemimeg-backend/examples/DKD-E_4-3_2024-12_DCC_GP_GaugeBlock1.xml"
VACUUM = DCC_CORPUS / "ptb-xsd-dcc/examples/v3.1.1/dcc-vacuumlab-CDG.xml"
PROBLEM = "application/problem+json"


def submit(hub, headers, path, *, issue=False):
    response = hub.client.post(
        "/api/v1/certificates",
        content=path.read_bytes(),
        headers={**headers, "Content-Type": "application/xml"},
        params={"issue": str(issue).lower()},
    )
    assert response.status_code == 201, response.text
    return response.json()


def sth(hub):
    response = hub.client.get("/api/v1/log/sth")  # public: no API key
    assert response.status_code == 200, response.text
    return response.json()


def public_key(hub):
    response = hub.client.get("/api/v1/log/public-key")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    return serialization.load_pem_public_key(response.content)


def proof_for(hub, value):
    response = hub.client.get("/api/v1/log/proof", params={"hash": value})
    assert response.status_code == 200, response.text
    return response.json()


def client_verifies(hub, proof) -> bool:
    """What an outside client does: rebuild the leaf bytes, check the path to the head, check the signature."""
    leaf = proof["leaf"]
    canonical = json.dumps(
        {"event": leaf["event"], "lab": leaf["lab"], "sha256": leaf["sha256"], "time": leaf["time"]},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    leaf_hash = hashlib.sha256(b"\x00" + canonical).digest()
    head = proof["signedTreeHead"]
    return (
        base64.b64encode(leaf_hash).decode() == proof["leafHash"]
        and proof["treeSize"] == head["treeSize"]
        and verify_inclusion(
            leaf_hash=leaf_hash,
            leaf_index=proof["leafIndex"],
            tree_size=proof["treeSize"],
            audit_path=[base64.b64decode(node) for node in proof["auditPath"]],
            root_hash=base64.b64decode(head["rootHash"]),
        )
        and verify_tree_head(SignedTreeHead.model_validate(head), public_key=public_key(hub))
    )


def consistent(hub, older, newer) -> bool:
    response = hub.client.get(
        "/api/v1/log/consistency", params={"first": older["treeSize"], "second": newer["treeSize"]}
    )
    assert response.status_code == 200, response.text
    return verify_consistency(
        first=older["treeSize"],
        second=newer["treeSize"],
        first_hash=base64.b64decode(older["rootHash"]),
        second_hash=base64.b64decode(newer["rootHash"]),
        consistency_path=[base64.b64decode(node) for node in response.json()["consistencyPath"]],
    )


def test_issue_and_revoke_append_leaves_whose_proofs_verify_client_side(hub):
    lab_id, lab = hub.make_org()
    empty = sth(hub)
    assert empty["treeSize"] == 0
    assert empty["rootHash"] == base64.b64encode(hashlib.sha256(b"").digest()).decode()
    draft = submit(hub, lab, VALID)
    assert sth(hub)["treeSize"] == 0  # drafts are not logged

    base = f"/api/v1/certificates/{draft['id']}"
    assert hub.client.post(f"{base}/issue", headers=lab).status_code == 200
    after_issue = sth(hub)
    assert after_issue["treeSize"] == 1
    issued = proof_for(hub, draft["sha256"])
    assert issued["leaf"] | {"time": None} == {
        "sha256": draft["sha256"],
        "event": "issued",
        "lab": lab_id,
        "time": None,
    }
    assert issued["leafIndex"] == 0
    assert client_verifies(hub, issued)

    assert hub.client.post(f"{base}/revoke", json={"reason": "wrong serial"}, headers=lab).status_code == 200
    after_revoke = sth(hub)
    assert after_revoke["treeSize"] == 2
    revoked = proof_for(hub, draft["sha256"])  # the certificate's latest leaf
    assert (revoked["leafIndex"], revoked["leaf"]["event"]) == (1, "revoked")
    assert client_verifies(hub, revoked)
    assert consistent(hub, after_issue, after_revoke)

    by_leaf_hash = proof_for(hub, issued["leafHash"])  # base64 leaf hash: the older leaf, proven in today's tree
    assert (by_leaf_hash["leafIndex"], by_leaf_hash["treeSize"]) == (0, 2)
    assert client_verifies(hub, by_leaf_hash)
    by_hex_leaf_hash = proof_for(hub, base64.b64decode(issued["leafHash"]).hex())
    assert by_hex_leaf_hash["leafIndex"] == 0


def test_submitting_issued_and_superseding_log_every_status_change(hub):
    _, lab = hub.make_org()
    original = submit(hub, lab, VALID, issue=True)
    amendment = submit(hub, lab, GAUGE_BLOCK)  # a draft: issued by the supersede
    first = sth(hub)
    assert first["treeSize"] == 1
    response = hub.client.post(
        f"/api/v1/certificates/{original['id']}/supersede",
        json={"replacementId": amendment["id"], "reason": "corrected uncertainty"},
        headers=lab,
    )
    assert response.status_code == 200, response.text
    second = sth(hub)
    assert second["treeSize"] == 3
    superseded, replacement = proof_for(hub, original["sha256"]), proof_for(hub, amendment["sha256"])
    assert (superseded["leafIndex"], superseded["leaf"]["event"]) == (1, "superseded")
    assert (replacement["leafIndex"], replacement["leaf"]["event"]) == (2, "issued")
    assert client_verifies(hub, superseded) and client_verifies(hub, replacement)
    assert consistent(hub, first, second)

    # An amendment that was already issued has its leaf: superseding adds only the original's leaf.
    again = submit(hub, lab, VACUUM, issue=True)
    response = hub.client.post(
        f"/api/v1/certificates/{amendment['id']}/supersede",
        json={"replacementId": again["id"], "reason": "second amendment"},
        headers=lab,
    )
    assert response.status_code == 200, response.text
    assert sth(hub)["treeSize"] == 5
    assert proof_for(hub, again["sha256"])["leaf"]["event"] == "issued"
    assert proof_for(hub, amendment["sha256"])["leaf"]["event"] == "superseded"


def test_a_refused_status_change_logs_nothing(hub):
    _, lab = hub.make_org()
    draft = submit(hub, lab, VALID)
    refused = hub.client.post(f"/api/v1/certificates/{draft['id']}/revoke", json={"reason": "typo"}, headers=lab)
    assert refused.status_code == 409
    assert sth(hub)["treeSize"] == 0


def test_unknown_and_malformed_hashes_are_problems(hub):
    unknown = hub.client.get("/api/v1/log/proof", params={"hash": "ab" * 32})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["code"] == "not-in-log"
    for bad in ("zz" * 32, "not-a-hash-at-all-but-long-enough-to-pass-length", "ab"):
        response = hub.client.get("/api/v1/log/proof", params={"hash": bad})
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == PROBLEM


def test_consistency_ranges_outside_the_log_are_problems(hub):
    _, lab = hub.make_org()
    submit(hub, lab, VALID, issue=True)
    submit(hub, lab, GAUGE_BLOCK, issue=True)
    ok = hub.client.get("/api/v1/log/consistency", params={"first": 2, "second": 2})
    assert ok.status_code == 200 and ok.json()["consistencyPath"] == []
    for params in ({"first": 2, "second": 1}, {"first": 1, "second": 3}, {"first": 0, "second": 2}, {"first": "x"}):
        response = hub.client.get("/api/v1/log/consistency", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM
    assert hub.client.get("/api/v1/log/consistency", params={"first": 2, "second": 1}).json()["code"] == (
        "invalid-tree-range"
    )


def test_the_public_key_signs_every_tree_head_and_stays_the_same(hub):
    key = public_key(hub)
    _, lab = hub.make_org()
    submit(hub, lab, VALID, issue=True)
    assert verify_tree_head(SignedTreeHead.model_validate(sth(hub)), public_key=key)
    assert public_key(hub).public_numbers() == key.public_numbers()


def test_an_unusable_log_key_is_a_503_and_the_certificate_change_is_not_made(hub):
    _, lab = hub.make_org()
    draft = submit(hub, lab, VALID)
    key_file = hub.settings.resolved_pki_dir / "transparency-log.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("not a key")
    issue = hub.client.post(f"/api/v1/certificates/{draft['id']}/issue", headers=lab)
    assert issue.status_code == 503
    assert issue.json()["code"] == "log-key-invalid"
    assert hub.client.get(f"/api/v1/certificates/{draft['id']}", headers=lab).json()["status"] == "draft"
    assert hub.client.get("/api/v1/log/sth").status_code == 503
    assert hub.client.get("/api/v1/log/proof", params={"hash": draft["sha256"]}).status_code == 404
