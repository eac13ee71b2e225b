"""RFC 9162 Merkle tree algorithms of the transparency log, against published vectors and a reference."""

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from signing.transparency import (
    EMPTY_ROOT,
    LogEntry,
    MerkleTree,
    decode_hash,
    encode_leaf,
    hash_children,
    hash_leaf,
    rfc3339_utc,
    verify_consistency,
    verify_inclusion,
)

# The certificate-transparency / transparency-dev test tree of 8 leaves and its roots for sizes 0..8.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size) -> audit path, from the same test suites.
CT_INCLUSION = {
    (0, 1): [],
    (0, 2): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
    (1, 2): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
# (first, second) -> consistency path.
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
# transparency-dev/merkle compact-range golden roots; leaf i is the two bytes i & 0xff, (i >> 8) & 0xff.
GOLDEN_ROOTS = {
    10: "VjWMPSYNtCuCNlF/RLnQy6HcwSk6CIipfxm+hettA+4=",
    255: "SmdsuKUqiod3RX2jyF2M6JnbdE4QuTwwipfAowI4/i0=",
    256: "qFI0t/tZ1MdOYgyPpPzHFiZVw86koScXy9q3FU5casA=",
    1000: "RXrgb8xHd55Y48FbfotJwCbV82Kx22LZfEbmBGAvwlQ=",
    4095: "cWRFdQhPcjn9WyBXE/r1f04ejxIm5lvg40DEpRBVS0w=",
    10000: "VZcav65F9haHVRk3wre2axFoBXRNeUh/1d9d5FQfxIg=",
    65535: "iPuVYJhP6SEE4gUFp8qbafd2rYv9YTCDYqAxCj8HdLM=",
}
MAX_EXHAUSTIVE = 20


# --- an independent, straightforward transcription of RFC 9162 §2.1 over the raw entries ---------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: list[bytes]) -> bytes:
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = _k(len(entries))
    return hashlib.sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:])).digest()


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    if len(entries) == 1:
        return []
    k = _k(len(entries))
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    if m == len(entries):
        return [] if complete else [ref_mth(entries)]
    k = _k(len(entries))
    if m <= k:
        return [*ref_subproof(m, entries[:k], complete), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def hexes(values: list[bytes]) -> list[str]:
    return [value.hex() for value in values]


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x08]) + value[1:]


# --- published vectors ------------------------------------------------------------------------------------


def test_leaf_and_node_hashes_follow_rfc_6962_vectors():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_leaf(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert hash_leaf(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert hash_children(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


def test_roots_of_the_ct_test_tree_match_the_published_roots_for_every_size():
    tree = MerkleTree.from_leaves(CT_LEAVES)
    assert [tree.root(size).hex() for size in range(9)] == CT_ROOTS
    assert [ref_mth(CT_LEAVES[:size]).hex() for size in range(9)] == CT_ROOTS


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_inclusion_paths_match_the_published_vectors_and_verify(index, size):
    tree = MerkleTree.from_leaves(CT_LEAVES)
    path = tree.inclusion_path(index, size)
    assert hexes(path) == CT_INCLUSION[(index, size)]
    root = bytes.fromhex(CT_ROOTS[size])
    leaf_hash = hash_leaf(CT_LEAVES[index])
    assert verify_inclusion(leaf_hash=leaf_hash, leaf_index=index, tree_size=size, audit_path=path, root_hash=root)


@pytest.mark.parametrize(("first", "second"), sorted(CT_CONSISTENCY))
def test_consistency_paths_match_the_published_vectors_and_verify(first, second):
    tree = MerkleTree.from_leaves(CT_LEAVES)
    path = tree.consistency_path(first, second)
    assert hexes(path) == CT_CONSISTENCY[(first, second)]
    assert verify_consistency(
        first=first,
        second=second,
        first_hash=bytes.fromhex(CT_ROOTS[first]),
        second_hash=bytes.fromhex(CT_ROOTS[second]),
        consistency_path=path,
    )


def test_roots_of_large_trees_match_the_golden_roots_computed_incrementally():
    tree = MerkleTree()
    for index in range(max(GOLDEN_ROOTS)):
        tree.append(hash_leaf(bytes([index & 0xFF, (index >> 8) & 0xFF])))
    for size, root in GOLDEN_ROOTS.items():
        assert base64.b64encode(tree.root(size)).decode() == root


# --- agreement with the reference, and verification of every proof --------------------------------------


def test_roots_paths_and_proofs_equal_the_reference_implementation_for_every_size_up_to_32():
    data = entries(32)
    tree = MerkleTree.from_leaves(data)
    for n in range(1, 33):
        assert tree.root(n) == ref_mth(data[:n])
        for m in range(n):
            assert tree.inclusion_path(m, n) == ref_path(m, data[:n])
        for m in range(1, n + 1):
            assert tree.consistency_path(m, n) == ref_subproof(m, data[:n], True)


def _inclusion_tampers(index, size, path, leaf_hash, root):
    """Variations of a valid inclusion proof that must all fail (after transparency-dev's probe set)."""
    yield "wrong leaf", {"leaf_hash": hash_leaf(b"not this leaf")}
    yield "empty-tree root", {"root_hash": EMPTY_ROOT}
    yield "flipped root", {"root_hash": flip(root)}
    yield "trailing root", {"audit_path": [*path, root]}
    yield "preceding root", {"audit_path": [root, *path]}
    yield "size * 2", {"tree_size": size * 2}
    yield "size / 2", {"tree_size": size // 2}
    for other in range(size):
        if other != index:
            yield f"index {other}", {"leaf_index": other}
    for position in range(len(path)):
        tampered = list(path)
        tampered[position] = flip(tampered[position])
        yield f"flipped path[{position}]", {"audit_path": tampered}
    if path:
        yield "removed last", {"audit_path": path[:-1]}
        yield "inserted", {"audit_path": [path[0], hash_leaf(b"x"), *path[1:]]}


def test_every_inclusion_proof_verifies_and_every_tampered_one_fails():
    data = entries(MAX_EXHAUSTIVE)
    tree = MerkleTree.from_leaves(data)
    for size in range(1, MAX_EXHAUSTIVE + 1):
        root = tree.root(size)
        for index in range(size):
            proof = {
                "leaf_hash": hash_leaf(data[index]),
                "leaf_index": index,
                "tree_size": size,
                "audit_path": tree.inclusion_path(index, size),
                "root_hash": root,
            }
            assert verify_inclusion(**proof), (index, size)
            for name, change in _inclusion_tampers(index, size, proof["audit_path"], proof["leaf_hash"], root):
                assert not verify_inclusion(**{**proof, **change}), (index, size, name)


def _consistency_tampers(first, second, path, first_hash, second_hash):
    yield "swapped roots", {"first_hash": second_hash, "second_hash": first_hash}
    yield "flipped first root", {"first_hash": flip(first_hash)}
    yield "flipped second root", {"second_hash": flip(second_hash)}
    yield "trailing hash", {"consistency_path": [*path, second_hash]}
    yield "preceding hash", {"consistency_path": [first_hash, *path]}
    for position in range(len(path)):
        tampered = list(path)
        tampered[position] = flip(tampered[position])
        yield f"flipped path[{position}]", {"consistency_path": tampered}
    if path:
        yield "removed last", {"consistency_path": path[:-1]}
        yield "removed first", {"consistency_path": path[1:]}


def test_every_consistency_proof_verifies_and_every_tampered_one_fails():
    tree = MerkleTree.from_leaves(entries(MAX_EXHAUSTIVE))
    for second in range(1, MAX_EXHAUSTIVE + 1):
        for first in range(1, second + 1):
            proof = {
                "first": first,
                "second": second,
                "first_hash": tree.root(first),
                "second_hash": tree.root(second),
                "consistency_path": tree.consistency_path(first, second),
            }
            assert verify_consistency(**proof), (first, second)
            tampers = _consistency_tampers(
                first, second, proof["consistency_path"], proof["first_hash"], proof["second_hash"]
            )
            for name, change in tampers:
                if first == second and name == "swapped roots":
                    continue  # equal trees: swapping equal roots changes nothing
                assert not verify_consistency(**{**proof, **change}), (first, second, name)


def test_consistency_from_a_tree_that_is_not_a_prefix_fails():
    tree = MerkleTree.from_leaves(entries(12))
    forked = MerkleTree.from_leaves([*entries(5), b"rewritten history", *entries(12)[6:]])
    for first in range(6, 12):
        assert not verify_consistency(
            first=first,
            second=12,
            first_hash=forked.root(first),
            second_hash=tree.root(12),
            consistency_path=tree.consistency_path(first, 12),
        )


def test_verification_refuses_impossible_sizes_and_malformed_hashes():
    tree = MerkleTree.from_leaves(entries(4))
    leaf, root = hash_leaf(entries(4)[0]), tree.root()
    path = tree.inclusion_path(0)
    assert not verify_inclusion(leaf_hash=leaf, leaf_index=4, tree_size=4, audit_path=path, root_hash=root)
    assert not verify_inclusion(leaf_hash=leaf, leaf_index=-1, tree_size=4, audit_path=path, root_hash=root)
    assert not verify_inclusion(leaf_hash=leaf[:31], leaf_index=0, tree_size=4, audit_path=path, root_hash=root)
    assert not verify_inclusion(leaf_hash=leaf, leaf_index=0, tree_size=4, audit_path=[*path[:-1], b""], root_hash=root)
    first = tree.root(2)
    assert not verify_consistency(first=0, second=4, first_hash=EMPTY_ROOT, second_hash=root, consistency_path=[])
    assert not verify_consistency(first=4, second=2, first_hash=root, second_hash=first, consistency_path=[])
    assert not verify_consistency(first=2, second=4, first_hash=first, second_hash=root, consistency_path=[])
    with pytest.raises(ValueError):
        tree.inclusion_path(4)
    with pytest.raises(ValueError):
        tree.consistency_path(0, 4)
    with pytest.raises(ValueError):
        tree.root(5)


# --- the leaf encoding ------------------------------------------------------------------------------------


def test_leaf_encoding_is_sorted_compact_json_of_the_four_fields():
    sha = "ab" * 32
    entry = LogEntry(sha256=sha, event="issued", time="2026-11-22T10:00:00.123456Z", lab="lab-1")
    expected = f'{{"event":"issued","lab":"lab-1","sha256":"{sha}","time":"2026-11-22T10:00:00.123456Z"}}'
    assert encode_leaf(entry) == expected.encode()


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "AB" * 32},
        {"sha256": "ab" * 31},
        {"event": "drafted"},
        {"lab": ""},
        {"lab": "x" * 37},
        {"lab": "with space"},
        {"time": "2026-11-22T10:00:00Z"},
        {"time": "2026-11-22T10:00:00.123456+00:00"},
        {"time": "2026-13-22T10:00:00.123456Z"},
    ],
)
def test_leaf_encoding_refuses_fields_outside_their_formats(change):
    fields = {"sha256": "ab" * 32, "event": "revoked", "time": "2026-11-22T10:00:00.000000Z", "lab": "lab"}
    with pytest.raises(ValueError):
        encode_leaf(LogEntry(**{**fields, **change}))


def test_times_are_written_in_utc_with_microseconds():
    moment = datetime(2026, 11, 22, 18, 0, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339_utc(moment) == "2026-11-22T10:00:00.000005Z"
    assert rfc3339_utc(datetime(2026, 11, 22, 10, 0)) == "2026-11-22T10:00:00.000000Z"
    assert rfc3339_utc(datetime(2026, 11, 22, 10, 0, tzinfo=UTC)) == "2026-11-22T10:00:00.000000Z"


def test_hashes_are_read_as_hex_or_base64():
    digest = hashlib.sha256(b"x").digest()
    assert decode_hash(digest.hex()) == digest
    assert decode_hash(base64.b64encode(digest).decode()) == digest
    assert decode_hash(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest
    assert decode_hash("zz" * 32) is None
    assert decode_hash(base64.b64encode(digest[:31]).decode()) is None
