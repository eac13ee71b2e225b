"""The transparency log: an append-only Merkle log of certificate events in the style of RFC 9162 (CT v2).

Every certificate that becomes issued, revoked or superseded appends one leaf, so anyone can check that a
certificate was registered (inclusion proof) and that the log's history was never rewritten (consistency
proof between two signed tree heads).

Leaf encoding (the bytes a leaf hash covers): the UTF-8 JSON object

    {"event":"issued","lab":"<organization id>","sha256":"<64 lowercase hex>","time":"2026-11-22T10:00:00.123456Z"}

with the keys sorted and no whitespace, i.e. RFC 8785 (JCS) canonical JSON of four ASCII strings.
`event` is one of issued, revoked, superseded; `time` is RFC 3339 UTC with exactly six fraction digits.

Hashes (RFC 9162 §2.1.1, SHA-256): leaf hash = SHA-256(0x00 || leaf bytes), node hash =
SHA-256(0x01 || left || right), the empty tree's hash = SHA-256(""). MTH, PATH and PROOF follow §2.1 to
the letter; `verify_inclusion` and `verify_consistency` are the algorithms of §2.1.3.2 and §2.1.4.2.

Signed tree head: an ECDSA P-256 / SHA-256 signature (DER, base64 on the wire) over the TLS encoding of
RFC 9162's TreeHeadDataV2 with no extensions:

    uint64 timestamp (ms since the Unix epoch) || uint64 tree_size || uint8 32 || root hash (32) || uint16 0

The key id is the base64 SHA-256 of the log key's DER SubjectPublicKeyInfo (as RFC 6962 log ids). The
key lives in `<pki dir>/transparency-log.key` (PKCS#8 PEM, 0600), created on first use; every hub worker
must share that directory.

Storage: leaves keep their fields and leaf hash; every complete subtree (2**level leaves, aligned) keeps its
hash, so a root or proof needs O(log n) lookups and an append O(1) amortised hashes. A tree head is stored
per tree size, signed when the log reaches that size. Appends are serialised: PostgreSQL takes a
transaction-scoped advisory lock, SQLite takes its single write lock, both before reading the tree size.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field as PydanticField
from sqlalchemy import and_, func, or_, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from certificates.models import Certificate, CertificateStatus
from signing.models import LogLeaf, LogNode, LogTreeHead
from storage.errors import DomainError, InvalidInputError
from storage.events import EventHooks
from storage.models import AuditEvent
from storage.schemas import ApiSchema
from storage.settings import Settings

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
LOGGED_EVENTS = ("issued", "revoked", "superseded")
LOG_KEY_FILENAME = "transparency-log.key"
SIGNATURE_ALGORITHM = "ecdsa-p256-sha256"
# pg_advisory_xact_lock key of the log's single writer: the ASCII bytes "qihub_lg" as a bigint.
LOG_LOCK_ID = int.from_bytes(b"qihub_lg")
MAX_REPORTED_PROBLEMS = 100
_LOCKED_KEY = "qihub.transparency_log.locked_by"  # the transaction holding the writer lock
_T = TypeVar("_T")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_LAB_ID = re.compile(r"[\x21-\x7e]{1,36}")
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


# --- errors -----------------------------------------------------------------------------------------------


class InvalidTreeRangeError(InvalidInputError):
    """Tree sizes or a leaf index outside what the log holds (or in the wrong order)."""

    code = "invalid-tree-range"
    title = "Tree sizes out of range"


class LogCorruptedError(DomainError):
    """The stored log lacks a leaf or node it must have: someone changed the tables behind its back."""

    code = "log-corrupted"
    title = "Transparency log corrupted"


class LogKeyError(DomainError):
    """The log key file exists but is not a P-256 private key."""

    code = "log-key-invalid"
    title = "Transparency log key unusable"


# --- API schemas ------------------------------------------------------------------------------------------


class SignedTreeHead(ApiSchema):
    """A signed statement of the log's size and root hash at one moment."""

    tree_size: int = PydanticField(description="Number of leaves the tree covers.")
    root_hash: str = PydanticField(description="Base64 Merkle tree hash (RFC 9162 MTH) of those leaves.")
    timestamp: int = PydanticField(description="When the head was signed, in ms since the Unix epoch.")
    signature: str = PydanticField(
        description="Base64 DER ECDSA P-256/SHA-256 signature over the TreeHeadDataV2 encoding "
        "(timestamp u64 || tree_size u64 || u8 32 || root hash || u16 0)."
    )
    key_id: str = PydanticField(description="Base64 SHA-256 of the log key's DER SubjectPublicKeyInfo.")
    signature_algorithm: str = SIGNATURE_ALGORITHM


class LogEntry(ApiSchema):
    """The fields of one leaf, exactly as its leaf hash covers them."""

    sha256: str = PydanticField(description="Hex SHA-256 of the certificate's exact bytes.")
    event: str = PydanticField(description="issued, revoked or superseded.")
    time: str = PydanticField(description="RFC 3339 UTC time of the event.")
    lab: str = PydanticField(description="Organization id of the issuing lab.")


class InclusionProof(ApiSchema):
    """Proof (RFC 9162 §2.1.3) that a leaf is in the tree a signed tree head commits to."""

    leaf_index: int
    tree_size: int
    leaf: LogEntry
    leaf_hash: str = PydanticField(description="Base64 SHA-256(0x00 || canonical leaf bytes).")
    audit_path: list[str] = PydanticField(description="Base64 node hashes, leaf side first (RFC 9162 PATH).")
    signed_tree_head: SignedTreeHead


class ConsistencyProof(ApiSchema):
    """Proof (RFC 9162 §2.1.4) that the tree of size `first` is a prefix of the tree of size `second`."""

    first: int
    second: int
    consistency_path: list[str] = PydanticField(description="Base64 node hashes (RFC 9162 PROOF).")


class AuditResult(ApiSchema):
    """Outcome of recomputing the whole log offline from its stored leaves."""

    ok: bool
    tree_size: int
    root_hash: str = PydanticField(description="Base64 root recomputed from the leaf fields.")
    leaves_checked: int
    nodes_checked: int
    tree_heads_checked: int
    problem_count: int
    problems: list[str] = PydanticField(description=f"The first {MAX_REPORTED_PROBLEMS} problems found.")


# --- hashing and the leaf encoding ------------------------------------------------------------------------


def hash_leaf(leaf_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(LEAF_PREFIX + leaf_bytes).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def rfc3339_utc(at: datetime) -> str:
    """A time as RFC 3339 UTC with six fraction digits (naive times are taken as UTC, as SQLite returns them)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_leaf(entry: LogEntry) -> bytes:
    """The canonical leaf bytes (RFC 8785 JSON of the four fields); refuses fields outside their formats."""
    if not _SHA256_HEX.fullmatch(entry.sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    if entry.event not in LOGGED_EVENTS:
        raise ValueError(f"event must be one of {', '.join(LOGGED_EVENTS)}")
    if not _LAB_ID.fullmatch(entry.lab):
        raise ValueError("lab must be 1 to 36 printable ASCII characters")
    if not _RFC3339_UTC.fullmatch(entry.time):
        raise ValueError("time must be RFC 3339 UTC with six fraction digits")
    try:
        datetime.fromisoformat(entry.time[:-1])  # the pattern fixes the layout; this checks the values
    except ValueError as error:
        raise ValueError(f"time is not a real moment: {error}") from error
    fields = {"event": entry.event, "lab": entry.lab, "sha256": entry.sha256, "time": entry.time}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_leaf_hash(entry: LogEntry) -> bytes:
    """The leaf hash of a log entry."""
    return hash_leaf(encode_leaf(entry))


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def decode_hash(value: str) -> bytes | None:
    """A 32-byte hash given as hex or (standard or URL-safe) base64, or None if it is neither."""
    value = value.strip()
    if len(value) == 2 * HASH_SIZE:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == HASH_SIZE else None


# --- RFC 9162 §2.1: Merkle tree hash, PATH and PROOF over any store of complete subtrees -------------------


class SubtreeSource(Protocol):
    """Where tree algorithms read hashes of complete, aligned subtrees (level 0 = leaf hashes)."""

    def perfect(self, level: int, index: int) -> bytes:
        """Hash of the 2**level leaves starting at leaf index * 2**level."""
        ...


def _split(n: int) -> int:
    """RFC 9162's k: the largest power of two smaller than n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(source: SubtreeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) per RFC 9162 §2.1.1, reading complete aligned subtrees from the source."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return source.perfect(n.bit_length() - 1, start // n)
    k = _split(n)
    return hash_children(subtree_hash(source, start, start + k), subtree_hash(source, start + k, end))


def _path(source: SubtreeSource, m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(source, m, start, start + k), subtree_hash(source, start + k, end)]
    return [*_path(source, m - k, start + k, end), subtree_hash(source, start, start + k)]


def inclusion_path(source: SubtreeSource, *, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) per RFC 9162 §2.1.3.1."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _path(source, index, 0, size)


def _subproof(source: SubtreeSource, m: int, start: int, end: int, complete: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [subtree_hash(source, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(source, m, start, start + k, complete), subtree_hash(source, start + k, end)]
    return [*_subproof(source, m - k, start + k, end, False), subtree_hash(source, start, start + k)]


def consistency_path(source: SubtreeSource, *, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]) per RFC 9162 §2.1.4.1 (empty when first == second)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    return _subproof(source, first, 0, second, True)


class MerkleTree:
    """An in-memory RFC 9162 tree that keeps every level, so roots and proofs of any past size are O(log n)."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf_hash in leaf_hashes:
            self.append(leaf_hash)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> "MerkleTree":
        """A tree over raw leaf data (each hashed with the 0x00 prefix)."""
        return cls(hash_leaf(leaf) for leaf in leaves)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        """Add a leaf hash and every complete subtree it closes."""
        node, index, level = leaf_hash, len(self._levels[0]), 0
        self._levels[0].append(leaf_hash)
        while index % 2 == 1:
            node = hash_children(self._levels[level][index - 1], node)
            level, index = level + 1, index // 2
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(node)

    def perfect(self, level: int, index: int) -> bytes:
        """Hash of a complete aligned subtree."""
        return self._levels[level][index]

    def complete_subtrees(self) -> Iterator[tuple[int, int, bytes]]:
        """Every complete subtree above the leaves, as (level, index, hash)."""
        for level in range(1, len(self._levels)):
            for index, node in enumerate(self._levels[level]):
                yield level, index, node

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        if size == 0:
            return EMPTY_ROOT
        # MTH folds the complete subtrees of size's binary decomposition, smallest (rightmost) first.
        node: bytes | None = None
        for level in range(size.bit_length()):
            if size >> level & 1:
                subtree = self._levels[level][(size >> level) - 1]
                node = subtree if node is None else hash_children(subtree, node)
        assert node is not None
        return node

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size])."""
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")
        return inclusion_path(self, index=index, size=size)

    def consistency_path(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second])."""
        second = self.size if second is None else second
        if second > self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {second}")
        return consistency_path(self, first=first, second=second)


# --- RFC 9162 §2.1.3.2 and §2.1.4.2: verification -------------------------------------------------------


def _is_hash(value: bytes) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def verify_inclusion(
    *, leaf_hash: bytes, leaf_index: int, tree_size: int, audit_path: list[bytes], root_hash: bytes
) -> bool:
    """True when the audit path proves the leaf hash sits at leaf_index in the tree with that root (§2.1.3.2)."""
    if not (_is_hash(leaf_hash) and _is_hash(root_hash) and all(_is_hash(p) for p in audit_path)):
        return False
    if not 0 <= leaf_index < tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in audit_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hash_children(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and secrets.compare_digest(r, root_hash)


def verify_consistency(
    *, first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: list[bytes]
) -> bool:
    """True when the path proves the tree (first, first_hash) is a prefix of (second, second_hash) (§2.1.4.2).

    RFC 9162 covers 0 < first < second; for first == second the proof must be empty and the roots equal.
    """
    path = list(consistency_path)
    if not (_is_hash(first_hash) and _is_hash(second_hash) and all(_is_hash(c) for c in path)):
        return False
    if not 0 < first <= second:
        return False
    if first == second:
        return not path and secrets.compare_digest(first_hash, second_hash)
    if not path:
        return False
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_children(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and secrets.compare_digest(fr, first_hash) and secrets.compare_digest(sr, second_hash)


def verify_inclusion_proof(proof: InclusionProof) -> bool:
    """Check an API inclusion proof against its own tree head's root (the head's signature is separate)."""
    try:
        leaf_hash = entry_leaf_hash(proof.leaf)
        path = [base64.b64decode(node, validate=True) for node in proof.audit_path]
        root = base64.b64decode(proof.signed_tree_head.root_hash, validate=True)
    except (ValueError, binascii.Error):
        return False
    return (
        b64(leaf_hash) == proof.leaf_hash
        and proof.tree_size == proof.signed_tree_head.tree_size
        and verify_inclusion(
            leaf_hash=leaf_hash, leaf_index=proof.leaf_index, tree_size=proof.tree_size, audit_path=path, root_hash=root
        )
    )


# --- the log key and signed tree heads --------------------------------------------------------------------

_KEYS: dict[Path, ec.EllipticCurvePrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def log_key_path(settings: Settings) -> Path:
    """Where the log's private key lives."""
    return settings.resolved_pki_dir / LOG_KEY_FILENAME


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise LogKeyError(f"{path} is not a readable, unencrypted PEM private key.") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise LogKeyError(f"{path} is not an ECDSA P-256 private key.")
    return key


def _create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # link() publishes the complete file atomically and fails if another worker's key got there first.
        os.link(draft, path)
    except FileExistsError:
        return _read_key(path)
    finally:
        draft.unlink(missing_ok=True)
    return key


def log_signing_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """The log's private key, created (0600) under the PKI dir on first use."""
    path = log_key_path(settings).absolute()
    with _KEYS_LOCK:
        key = _KEYS.get(path)
        if key is None:
            key = _read_key(path) if path.exists() else _create_key(path)
            _KEYS[path] = key
        return key


def log_public_key(settings: Settings, *, create: bool = True) -> ec.EllipticCurvePublicKey | None:
    """The log's public key (None when it does not exist and `create` is false)."""
    if not create and not log_key_path(settings).exists():
        return None
    return log_signing_key(settings).public_key()


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    """A public key as SubjectPublicKeyInfo PEM."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(
        "ascii"
    )


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Base64 SHA-256 of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64(hashlib.sha256(der).digest())


def tree_head_signature_input(*, timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The signed bytes: TLS encoding of RFC 9162 TreeHeadDataV2 without extensions."""
    return struct.pack(">QQB", timestamp, tree_size, len(root_hash)) + root_hash + struct.pack(">H", 0)


def _signature_valid(
    public_key: ec.EllipticCurvePublicKey, *, tree_size: int, timestamp: int, root_hash: bytes, signature: bytes
) -> bool:
    if len(root_hash) != HASH_SIZE:
        return False
    try:
        message = tree_head_signature_input(timestamp=timestamp, tree_size=tree_size, root_hash=root_hash)
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, struct.error):
        return False
    return True


def verify_tree_head(head: SignedTreeHead, *, public_key: ec.EllipticCurvePublicKey) -> bool:
    """True when the head's signature is the log key's over its size, root and timestamp."""
    try:
        root = base64.b64decode(head.root_hash, validate=True)
        signature = base64.b64decode(head.signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    return head.key_id == key_id(public_key) and _signature_valid(
        public_key, tree_size=head.tree_size, timestamp=head.timestamp, root_hash=root, signature=signature
    )


def _head_schema(row: LogTreeHead) -> SignedTreeHead:
    return SignedTreeHead(
        tree_size=row.tree_size,
        root_hash=b64(row.root_hash),
        timestamp=row.timestamp,
        signature=b64(row.signature),
        key_id=row.key_id,
    )


# --- the stored log ---------------------------------------------------------------------------------------


class _Recorder:
    """A stand-in source that notes which subtrees an algorithm reads (the shape depends on sizes only)."""

    def __init__(self) -> None:
        self.wanted: set[tuple[int, int]] = set()

    def perfect(self, level: int, index: int) -> bytes:
        self.wanted.add((level, index))
        return EMPTY_ROOT


class _Known:
    """A source over subtree hashes already loaded."""

    def __init__(self, known: dict[tuple[int, int], bytes]) -> None:
        self._known = known

    def perfect(self, level: int, index: int) -> bytes:
        return self._known[(level, index)]


def _load_subtrees(session: Session, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of these subtrees in at most two queries; a missing one means a corrupted log."""
    found: dict[tuple[int, int], bytes] = {}
    leaves = [index for level, index in wanted if level == 0]
    if leaves:
        rows = session.exec(select(LogLeaf.leaf_index, LogLeaf.leaf_hash).where(col(LogLeaf.leaf_index).in_(leaves)))
        found.update(((0, index), bytes(leaf_hash)) for index, leaf_hash in rows)
    by_level: dict[int, list[int]] = {}
    for level, index in wanted:
        if level > 0:
            by_level.setdefault(level, []).append(index)
    if by_level:
        # One primary-key range per level: a row-value IN would make SQLite scan the whole table.
        condition = or_(
            *(
                and_(col(LogNode.level) == level, col(LogNode.node_index).in_(indices))
                for level, indices in by_level.items()
            )
        )
        node_rows = session.exec(select(LogNode.level, LogNode.node_index, LogNode.hash).where(condition))
        found.update(((level, index), bytes(node)) for level, index, node in node_rows)
    missing = wanted - found.keys()
    if missing:
        raise LogCorruptedError(f"The log has no stored hash for subtree(s) {sorted(missing)[:5]}.")
    return found


def _from_storage(session: Session, compute: Callable[[SubtreeSource], _T]) -> _T:
    """Run a tree algorithm over the stored log, fetching every subtree it needs in one round."""
    recorder = _Recorder()
    compute(recorder)
    return compute(_Known(_load_subtrees(session, recorder.wanted)))


def _lock_log(session: Session) -> bool:
    """Become the log's single writer until the transaction ends; False if this transaction already is."""
    if session.info.get(_LOCKED_KEY) is not None and session.info[_LOCKED_KEY] is session.get_transaction():
        return False
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOG_LOCK_ID})
    elif dialect == "sqlite":
        # A write statement makes the driver BEGIN and take SQLite's one write lock (waiting on busy_timeout);
        # it matches no row. Reads after it see every committed leaf and no other writer can add one.
        session.execute(text("UPDATE transparency_log_leaves SET leaf_index = leaf_index WHERE 0 = 1"))
    # Any other database: the primary key on leaf_index still refuses a duplicate index.
    session.info[_LOCKED_KEY] = session.get_transaction()
    return True


def tree_size(session: Session) -> int:
    """Number of leaves in the log (committed, plus this transaction's own)."""
    highest = session.exec(select(func.max(LogLeaf.leaf_index))).one()
    return 0 if highest is None else int(highest) + 1


def append_leaf(session: Session, *, certificate_sha256: str, event: str, lab_id: str, at: datetime) -> LogLeaf:
    """Append one leaf (and the subtree hashes it completes) as the log's single writer."""
    entry = LogEntry(sha256=certificate_sha256, event=event, time=rfc3339_utc(at), lab=lab_id)
    try:
        leaf_hash = entry_leaf_hash(entry)
    except ValueError as error:
        raise InvalidInputError(f"Not a loggable entry: {error}.") from error
    _lock_log(session)
    index = tree_size(session)
    leaf = LogLeaf(
        leaf_index=index,
        certificate_sha256=entry.sha256,
        event=entry.event,
        logged_at=entry.time,
        lab_id=entry.lab,
        leaf_hash=leaf_hash,
    )
    # The new leaf closes one complete subtree per trailing 1 bit of its index; their left halves exist.
    left_halves = {(level, (index >> level) - 1) for level in range((~index & (index + 1)).bit_length() - 1)}
    known = _load_subtrees(session, left_halves)
    session.add(leaf)
    node, level, position = leaf_hash, 0, index
    while position % 2 == 1:
        node = hash_children(known[(level, position - 1)], node)
        level, position = level + 1, position // 2
        session.add(LogNode(level=level, node_index=position, hash=node))
    session.flush()
    return leaf


def signed_tree_head(session: Session, *, settings: Settings) -> SignedTreeHead:
    """The signed head of the log's current size (signed and stored the first time that size is asked for)."""
    size = tree_size(session)
    existing = session.get(LogTreeHead, size)
    if existing is None and _lock_log(session):
        size = tree_size(session)  # another writer may have grown the log before we held the lock
        existing = session.get(LogTreeHead, size)
    if existing is not None:
        return _head_schema(existing)
    root = _from_storage(session, lambda tree: subtree_hash(tree, 0, size))
    key = log_signing_key(settings)
    timestamp = time.time_ns() // 1_000_000
    signature = key.sign(
        tree_head_signature_input(timestamp=timestamp, tree_size=size, root_hash=root), ec.ECDSA(hashes.SHA256())
    )
    row = LogTreeHead(
        tree_size=size, root_hash=root, timestamp=timestamp, key_id=key_id(key.public_key()), signature=signature
    )
    session.add(row)
    session.flush()
    return _head_schema(row)


def _inclusion_proof(session: Session, leaf: LogLeaf, *, settings: Settings) -> InclusionProof:
    head = signed_tree_head(session, settings=settings)
    path = _from_storage(session, lambda tree: inclusion_path(tree, index=leaf.leaf_index, size=head.tree_size))
    return InclusionProof(
        leaf_index=leaf.leaf_index,
        tree_size=head.tree_size,
        leaf=LogEntry(sha256=leaf.certificate_sha256, event=leaf.event, time=leaf.logged_at, lab=leaf.lab_id),
        leaf_hash=b64(leaf.leaf_hash),
        audit_path=[b64(node) for node in path],
        signed_tree_head=head,
    )


def inclusion_proof_for(session: Session, *, certificate_sha256: str, settings: Settings) -> InclusionProof | None:
    """Proof for the latest leaf of a certificate (by its hex SHA-256), or None if it was never logged."""
    leaf = session.exec(
        select(LogLeaf)
        .where(LogLeaf.certificate_sha256 == certificate_sha256.lower())
        .order_by(col(LogLeaf.leaf_index).desc())
    ).first()
    return None if leaf is None else _inclusion_proof(session, leaf, settings=settings)


def inclusion_proof_by_hash(session: Session, *, leaf_hash: bytes, settings: Settings) -> InclusionProof | None:
    """Proof for the leaf with this leaf hash, or None if the log has no such leaf."""
    leaf = session.exec(select(LogLeaf).where(LogLeaf.leaf_hash == leaf_hash).order_by(col(LogLeaf.leaf_index))).first()
    return None if leaf is None else _inclusion_proof(session, leaf, settings=settings)


def consistency_proof(session: Session, *, first: int, second: int) -> ConsistencyProof:
    """Proof that the log at size `first` is a prefix of the log at size `second` (1 ≤ first ≤ second ≤ size)."""
    size = tree_size(session)
    if not 1 <= first <= second <= size:
        raise InvalidTreeRangeError(
            f"Need 1 ≤ first ≤ second ≤ {size} (the log's size); got first={first}, second={second}.",
            extra={"treeSize": size},
        )
    path = _from_storage(session, lambda tree: consistency_path(tree, first=first, second=second))
    return ConsistencyProof(first=first, second=second, consistency_path=[b64(node) for node in path])


# --- offline audit ----------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_REPORTED_PROBLEMS:
            self.shown.append(message)


def _audit_leaves(session: Session, problems: _Problems) -> MerkleTree:
    tree = MerkleTree()
    # Plain rows, not ORM objects: an audit reads every leaf, and there may be 100k of them.
    rows = session.execute(
        sa_select(
            col(LogLeaf.leaf_index),
            col(LogLeaf.certificate_sha256),
            col(LogLeaf.event),
            col(LogLeaf.logged_at),
            col(LogLeaf.lab_id),
            col(LogLeaf.leaf_hash),
        ).order_by(col(LogLeaf.leaf_index))
    )
    for expected, (index, sha256, event, logged_at, lab_id, stored_hash) in enumerate(rows):
        if index != expected:
            problems.add(f"leaf index {index} found where {expected} was expected (gap or reordering)")
        entry = LogEntry.model_construct(sha256=sha256, event=event, time=logged_at, lab=lab_id)
        try:
            leaf_hash = entry_leaf_hash(entry)
        except ValueError as error:
            problems.add(f"leaf {index}: fields are not a valid entry ({error})")
            leaf_hash = bytes(stored_hash)  # keep the tree's shape so later checks still mean something
        if bytes(stored_hash) != leaf_hash:
            problems.add(f"leaf {index}: stored leaf hash does not match its fields")
        tree.append(leaf_hash)
    return tree


def _audit_nodes(session: Session, tree: MerkleTree, problems: _Problems) -> int:
    expected = {(level, index): node for level, index, node in tree.complete_subtrees()}
    checked = 0
    for level, index, stored in session.exec(select(LogNode.level, LogNode.node_index, LogNode.hash)):
        checked += 1
        want = expected.pop((level, index), None)
        if want is None:
            problems.add(f"node ({level}, {index}) is stored but covers leaves the log does not have")
        elif bytes(stored) != want:
            problems.add(f"node ({level}, {index}) does not match the hash recomputed from the leaves")
    if expected:
        problems.add(f"{len(expected)} complete subtree hash(es) are missing, e.g. {min(expected)}")
    return checked


def _audit_tree_heads(session: Session, tree: MerkleTree, settings: Settings, problems: _Problems) -> int:
    heads = session.execute(
        sa_select(
            col(LogTreeHead.tree_size),
            col(LogTreeHead.root_hash),
            col(LogTreeHead.timestamp),
            col(LogTreeHead.key_id),
            col(LogTreeHead.signature),
        ).order_by(col(LogTreeHead.tree_size))
    ).all()
    public_key = log_public_key(settings, create=False) if heads else None
    if heads and public_key is None:
        problems.add(f"no log key at {log_key_path(settings)}: tree head signatures cannot be checked")
    expected_key_id = key_id(public_key) if public_key is not None else None
    previous: tuple[int, bytes] | None = None
    for size, stored_root, timestamp, head_key_id, signature in heads:
        root = bytes(stored_root)
        if size > tree.size:
            problems.add(f"tree head of size {size} covers more leaves than the log has ({tree.size})")
            continue
        if root != tree.root(size):
            problems.add(f"tree head of size {size}: root does not match the leaves")
        if public_key is not None and not (
            head_key_id == expected_key_id
            and _signature_valid(
                public_key, tree_size=size, timestamp=timestamp, root_hash=root, signature=bytes(signature)
            )
        ):
            problems.add(f"tree head of size {size}: signature does not verify with the log key")
        # Clients only ever see pairs of heads: check each pair with the consistency proof the log would serve.
        if previous is not None and previous[0] > 0:
            consistent = verify_consistency(
                first=previous[0],
                second=size,
                first_hash=previous[1],
                second_hash=root,
                consistency_path=tree.consistency_path(previous[0], size),
            )
            if not consistent:
                problems.add(f"tree heads of sizes {previous[0]} and {size} are not consistent")
        previous = (size, root)
    return len(heads)


def audit_log(session: Session, *, settings: Settings) -> AuditResult:
    """Recompute the whole log from the leaf fields: leaf hashes, subtree hashes, tree heads and signatures."""
    problems = _Problems()
    tree = _audit_leaves(session, problems)
    nodes_checked = _audit_nodes(session, tree, problems)
    heads_checked = _audit_tree_heads(session, tree, settings, problems)
    return AuditResult(
        ok=problems.count == 0,
        tree_size=tree.size,
        root_hash=b64(tree.root()),
        leaves_checked=tree.size,
        nodes_checked=nodes_checked,
        tree_heads_checked=heads_checked,
        problem_count=problems.count,
        problems=problems.shown,
    )


# --- following the certificate registry -------------------------------------------------------------------


def _logged_event(event: AuditEvent) -> str | None:
    """Which log event a certificate audit event stands for, if any."""
    if event.action in {"issued", "revoked", "superseded"}:
        return event.action
    if event.action == "submitted" and str(event.details.get("status")) == CertificateStatus.issued:
        return "issued"
    if event.action == "amends":  # the replacement is issued now, if it was still a draft
        return "issued"
    return None


def log_certificate_event(session: Session, event: AuditEvent, *, settings: Settings) -> LogLeaf | None:
    """Append the leaf a certificate event calls for and sign the new tree head, in the caller's transaction."""
    logged = _logged_event(event)
    certificate = session.get(Certificate, event.subject_id) if logged else None
    if logged is None or certificate is None:
        return None
    if event.action == "amends":
        already_issued = session.exec(
            select(LogLeaf.leaf_index).where(
                LogLeaf.certificate_sha256 == certificate.sha256,
                LogLeaf.lab_id == certificate.organization_id,
                LogLeaf.event == "issued",
            )
        ).first()
        if already_issued is not None:
            return None
    leaf = append_leaf(
        session,
        certificate_sha256=certificate.sha256,
        event=logged,
        lab_id=certificate.organization_id,
        at=event.at,
    )
    signed_tree_head(session, settings=settings)
    return leaf


def install_transparency_log(hooks: EventHooks, *, settings: Settings) -> None:
    """Make a hub's certificate events append to its transparency log (same transaction as the change)."""

    def listener(session: Session, event: AuditEvent) -> None:
        log_certificate_event(session, event, settings=settings)

    hooks.on_event("certificate", listener)
