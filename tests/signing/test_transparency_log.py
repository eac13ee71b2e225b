"""The stored transparency log on SQLite and PostgreSQL: appends, tree heads, proofs, concurrency, audit."""

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlmodel import select

from certificates.service import Actor, issue_certificate
from organizations.models import Organization
from signing.models import LogLeaf, LogNode, LogTreeHead
from signing.transparency import (
    InvalidTreeRangeError,
    LogEntry,
    MerkleTree,
    append_leaf,
    audit_log,
    consistency_proof,
    entry_leaf_hash,
    hash_leaf,
    inclusion_proof_by_hash,
    inclusion_proof_for,
    log_key_path,
    log_public_key,
    signed_tree_head,
    tree_size,
    verify_consistency,
    verify_inclusion_proof,
    verify_tree_head,
)
from storage.database import session_scope
from storage.errors import InvalidInputError
from tests.paths import DCC_CORPUS

VALID = DCC_CORPUS / "lutaml-dcc/fixtures/dcclib/valid.xml"
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def sha(label: object) -> str:
    return hashlib.sha256(str(label).encode()).hexdigest()


def append(hub, count, *, start=0, lab="lab-a", sign=False, at=AT):
    with session_scope(hub.engine) as session:
        for number in range(start, start + count):
            event = ("issued", "revoked", "superseded")[number % 3]
            append_leaf(session, certificate_sha256=sha(number), event=event, lab_id=lab, at=at)
            if sign:
                signed_tree_head(session, settings=hub.settings)


def b64d(value: str) -> bytes:
    return base64.b64decode(value)


def test_appends_get_consecutive_indices_and_store_the_completed_subtrees(hub):
    append(hub, 7)
    with session_scope(hub.engine) as session:
        leaves = list(session.exec(select(LogLeaf).order_by(LogLeaf.leaf_index)))
        nodes = {(node.level, node.node_index) for node in session.exec(select(LogNode))}
        assert [leaf.leaf_index for leaf in leaves] == list(range(7))
        assert leaves[0].logged_at == "2026-11-22T10:00:00.000000Z"
        assert nodes == {(1, 0), (1, 1), (1, 2), (2, 0)}  # the complete subtrees of 7 leaves
        assert tree_size(session) == 7


def test_signed_tree_head_commits_to_the_root_and_verifies_with_the_log_key(hub):
    append(hub, 5)
    with session_scope(hub.engine) as session:
        head = signed_tree_head(session, settings=hub.settings)
        again = signed_tree_head(session, settings=hub.settings)
        hashes = [leaf.leaf_hash for leaf in session.exec(select(LogLeaf).order_by(LogLeaf.leaf_index))]
    assert head == again  # one head per size: asking twice signs once
    assert head.tree_size == 5
    assert b64d(head.root_hash) == MerkleTree(hashes).root()
    public_key = log_public_key(hub.settings)
    assert verify_tree_head(head, public_key=public_key)
    assert not verify_tree_head(head.model_copy(update={"tree_size": 4}), public_key=public_key)
    assert not verify_tree_head(head.model_copy(update={"timestamp": head.timestamp + 1}), public_key=public_key)
    key_file = log_key_path(hub.settings)
    assert key_file.parent == hub.settings.resolved_pki_dir
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_inclusion_proofs_by_certificate_and_by_leaf_hash_verify(hub):
    append(hub, 9)
    append(
        hub, 1, start=4, at=datetime(2026, 11, 23, tzinfo=UTC)
    )  # a later event for certificate 4: its latest leaf is index 9
    with session_scope(hub.engine) as session:
        latest = inclusion_proof_for(session, certificate_sha256=sha(4), settings=hub.settings)
        first = inclusion_proof_by_hash(session, leaf_hash=b64d(latest.leaf_hash), settings=hub.settings)
        older = session.exec(select(LogLeaf).where(LogLeaf.leaf_index == 4)).one()
        by_hash = inclusion_proof_by_hash(session, leaf_hash=older.leaf_hash, settings=hub.settings)
        unknown = inclusion_proof_for(session, certificate_sha256=sha("never logged"), settings=hub.settings)
    assert (latest.leaf_index, latest.tree_size) == (9, 10)
    assert latest.leaf.sha256 == sha(4)
    assert first == latest
    assert by_hash.leaf_index == 4
    assert unknown is None
    for proof in (latest, by_hash):
        assert verify_inclusion_proof(proof)
        assert verify_tree_head(proof.signed_tree_head, public_key=log_public_key(hub.settings))
    forged = latest.model_copy(update={"leaf": latest.leaf.model_copy(update={"lab": "lab-b"})})
    assert not verify_inclusion_proof(forged)


def test_consistency_proofs_link_every_pair_of_sizes(hub):
    append(hub, 13)
    with session_scope(hub.engine) as session:
        hashes = [leaf.leaf_hash for leaf in session.exec(select(LogLeaf).order_by(LogLeaf.leaf_index))]
        tree = MerkleTree(hashes)
        for second in range(1, 14):
            for first in range(1, second + 1):
                proof = consistency_proof(session, first=first, second=second)
                path = [b64d(node) for node in proof.consistency_path]
                assert path == tree.consistency_path(first, second)
                assert verify_consistency(
                    first=first,
                    second=second,
                    first_hash=tree.root(first),
                    second_hash=tree.root(second),
                    consistency_path=path,
                )
        for first, second in ((0, 3), (4, 3), (3, 14)):
            with pytest.raises(InvalidTreeRangeError):
                consistency_proof(session, first=first, second=second)


def test_entries_outside_the_leaf_format_are_refused(hub):
    with pytest.raises(InvalidInputError), session_scope(hub.engine) as session:
        append_leaf(session, certificate_sha256="not a hash", event="issued", lab_id="lab", at=AT)
    with pytest.raises(InvalidInputError), session_scope(hub.engine) as session:
        append_leaf(session, certificate_sha256=sha(1), event="drafted", lab_id="lab", at=AT)


def test_a_rolled_back_transaction_leaves_no_leaf_node_or_tree_head(hub):
    append(hub, 1, sign=True)
    with pytest.raises(RuntimeError), session_scope(hub.engine) as session:
        for number in range(1, 4):
            append_leaf(session, certificate_sha256=sha(number), event="issued", lab_id="lab", at=AT)
        signed_tree_head(session, settings=hub.settings)
        raise RuntimeError("the certificate change failed after logging")
    with session_scope(hub.engine) as session:
        assert tree_size(session) == 1
        assert list(session.exec(select(LogNode))) == []
        assert [head.tree_size for head in session.exec(select(LogTreeHead))] == [1]


def test_a_rolled_back_certificate_issue_removes_its_leaf(hub):
    org_id, lab = hub.make_org()
    response = hub.client.post(
        "/api/v1/certificates", content=VALID.read_bytes(), headers={**lab, "Content-Type": "application/xml"}
    )
    certificate_id = response.json()["id"]
    hooks = hub.client.app.state.hooks
    with pytest.raises(RuntimeError), session_scope(hub.engine, hooks=hooks) as session:
        actor = Actor(organization=session.get(Organization, org_id))
        issue_certificate(session, actor=actor, certificate_id=certificate_id)
        assert tree_size(session) == 1  # the listener logged it inside the transaction
        raise RuntimeError("rolled back")
    with session_scope(hub.engine) as session:
        assert tree_size(session) == 0
        assert list(session.exec(select(LogTreeHead))) == []
    with session_scope(hub.engine, hooks=hooks) as session:
        actor = Actor(organization=session.get(Organization, org_id))
        issue_certificate(session, actor=actor, certificate_id=certificate_id)
    with session_scope(hub.engine) as session:
        assert [leaf.event for leaf in session.exec(select(LogLeaf))] == ["issued"]


def test_concurrent_writers_get_unique_gap_free_indices_and_a_verifiable_tree(hub):
    threads, per_thread = 8, 10
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(number: int) -> None:
        try:
            start.wait()
            for round_ in range(per_thread):
                # Each append in its own transaction, as each certificate change is; some also sign a head.
                with session_scope(hub.engine) as session:
                    append_leaf(
                        session,
                        certificate_sha256=sha((number, round_)),
                        event="issued",
                        lab_id=f"lab-{number}",
                        at=datetime.now(UTC),
                    )
                    if round_ % 3 == 0:
                        signed_tree_head(session, settings=hub.settings)
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=writer, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []
    total = threads * per_thread
    with session_scope(hub.engine) as session:
        leaves = list(session.exec(select(LogLeaf).order_by(LogLeaf.leaf_index)))
        assert [leaf.leaf_index for leaf in leaves] == list(range(total))
        assert {leaf.certificate_sha256 for leaf in leaves} == {
            sha((number, round_)) for number in range(threads) for round_ in range(per_thread)
        }
        result = audit_log(session, settings=hub.settings)
        assert result.ok, result.problems
        assert result.tree_size == total
        assert result.tree_heads_checked >= 1
        head = signed_tree_head(session, settings=hub.settings)
        assert b64d(head.root_hash) == MerkleTree(entry_leaf_hash_of(leaf) for leaf in leaves).root()
        for leaf in leaves[::7]:
            assert verify_inclusion_proof(
                inclusion_proof_by_hash(session, leaf_hash=leaf.leaf_hash, settings=hub.settings)
            )


def entry_leaf_hash_of(leaf: LogLeaf) -> bytes:
    return entry_leaf_hash(
        LogEntry(sha256=leaf.certificate_sha256, event=leaf.event, time=leaf.logged_at, lab=leaf.lab_id)
    )


# --- audit ------------------------------------------------------------------------------------------------


def test_audit_passes_on_a_clean_log_including_the_empty_one(hub):
    with session_scope(hub.engine) as session:
        empty = audit_log(session, settings=hub.settings)
    assert empty.ok and empty.tree_size == 0
    append(hub, 11, sign=True)
    with session_scope(hub.engine) as session:
        result = audit_log(session, settings=hub.settings)
    assert result.ok, result.problems
    assert (result.tree_size, result.leaves_checked, result.tree_heads_checked) == (11, 11, 11)
    assert result.nodes_checked == 5 + 2 + 1  # complete subtrees of 11 leaves above the leaves


TAMPERS = {
    "leaf field": ("UPDATE transparency_log_leaves SET lab_id = 'lab-evil' WHERE leaf_index = 3", "leaf 3"),
    "leaf event": ("UPDATE transparency_log_leaves SET event = 'issued' WHERE leaf_index = 4", "leaf 4"),
    "deleted leaf": ("DELETE FROM transparency_log_leaves WHERE leaf_index = 5", "leaf index"),
    "subtree hash": (
        "UPDATE transparency_log_nodes SET hash = :junk WHERE level = 1 AND node_index = 0",
        "node (1, 0)",
    ),
    "tree head root": ("UPDATE transparency_log_tree_heads SET root_hash = :junk WHERE tree_size = 6", "size 6"),
    "tree head time": ("UPDATE transparency_log_tree_heads SET timestamp = 1 WHERE tree_size = 7", "signature"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_audit_detects_rows_changed_behind_the_logs_back(hub, tamper):
    append(hub, 9, sign=True)
    statement, expected = TAMPERS[tamper]
    with session_scope(hub.engine) as session:
        session.execute(text(statement), {"junk": hashlib.sha256(b"junk").digest()})
    with session_scope(hub.engine) as session:
        result = audit_log(session, settings=hub.settings)
    assert not result.ok
    assert any(expected in problem for problem in result.problems), result.problems


def test_audit_detects_a_leaf_rewritten_together_with_its_leaf_hash(hub):
    append(hub, 8, sign=True)
    with session_scope(hub.engine) as session:
        leaf = session.exec(select(LogLeaf).where(LogLeaf.leaf_index == 2)).one()
        forged = leaf.model_copy(update={"lab_id": "lab-evil"})
        session.execute(
            text("UPDATE transparency_log_leaves SET lab_id = 'lab-evil', leaf_hash = :hash WHERE leaf_index = 2"),
            {"hash": entry_leaf_hash_of(forged)},
        )
    with session_scope(hub.engine) as session:
        result = audit_log(session, settings=hub.settings)
    assert not result.ok
    assert any("node (1, 1)" in problem for problem in result.problems)
    assert any("root does not match" in problem for problem in result.problems)


def run_cli(hub, *args):
    env = {"QIHUB_DATA_DIR": str(hub.settings.data_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    if hub.settings.database_url:
        env["QIHUB_DATABASE_URL"] = hub.settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "api", "log", "audit", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_qihub_log_audit_exits_0_on_a_clean_log_and_1_on_a_tampered_leaf(hub):
    append(hub, 6, sign=True)
    clean = run_cli(hub, "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = json.loads(clean.stdout)
    assert (summary["ok"], summary["treeSize"], summary["problems"]) == (True, 6, [])
    with session_scope(hub.engine) as session:
        session.execute(
            text("UPDATE transparency_log_leaves SET certificate_sha256 = :sha WHERE leaf_index = 1"),
            {"sha": sha("substituted")},
        )
    tampered = run_cli(hub)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "Transparency log audit" in tampered.stdout
    assert "leaf 1: stored leaf hash does not match its fields" in tampered.stdout


def test_leaf_hash_is_the_rfc_leaf_hash_of_the_canonical_bytes(hub):
    append(hub, 1)
    with session_scope(hub.engine) as session:
        leaf = session.exec(select(LogLeaf)).one()
    canonical = (
        f'{{"event":"issued","lab":"lab-a","sha256":"{sha(0)}","time":"2026-11-22T10:00:00.000000Z"}}'
    ).encode()
    assert leaf.leaf_hash == hash_leaf(canonical) == hashlib.sha256(b"\x00" + canonical).digest()
