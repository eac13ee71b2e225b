"""Private keys the hub holds: generation, master-key encryption at rest, and an in-memory cache of parsed keys.

Hub-held keys (the CA's, labs' hub signing keys) are stored sealed with AES-256-GCM under a key derived
(scrypt) from the master key: `QIHUB_MASTER_KEY`, or the file named by `QIHUB_MASTER_KEY_FILE`. Without a
master key the hub refuses to create or store hub-held keys. For local trials (`make serve`) and tests,
`qihub pki init --dev-master-key` writes a random master key to `<pki dir>/master.key` (mode 0600); the hub
uses that file when nothing else is configured. It keeps keys out of database dumps, but it lives beside the
data: production sets `QIHUB_MASTER_KEY` or `QIHUB_MASTER_KEY_FILE` from a secret store instead.
"""

import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from storage.errors import ConflictError, DomainError
from storage.settings import Settings

KeyAlgorithm = Literal["ecdsa-p256", "ecdsa-p384", "rsa-pss-3072"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = ("ecdsa-p256", "ecdsa-p384", "rsa-pss-3072")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEV_MASTER_KEY_FILENAME = "master.key"
_SEALED_MAGIC = b"QHK1"  # format version of sealed keys: magic | master-key id (8) | nonce (12) | ciphertext+tag
_NONCE_BYTES = 12
_KEY_ID_BYTES = 8
# A fixed salt is deliberate: the master key is one secret per hub, and its derived key is cached per process.
_KDF_SALT = b"qihub master key v1"


class MasterKeyMissingError(ConflictError):
    """The hub was asked to hold a private key but no master key is configured."""

    code = "master-key-not-configured"
    title = "No master key configured"


class MasterKeyMismatchError(DomainError):
    """A sealed key could not be opened: wrong master key, or the stored bytes were altered."""

    code = "master-key-mismatch"
    title = "Sealed key cannot be opened"


@dataclass(frozen=True)
class MasterKey:
    """The AES-256 key derived from the configured master key, and a short id that names it in sealed blobs."""

    aes_key: bytes
    key_id: bytes

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Encrypt bytes with AES-256-GCM; `context` (e.g. the row's purpose) is authenticated, not stored."""
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED_MAGIC + self.key_id + nonce + AESGCM(self.aes_key).encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """Decrypt what `seal` produced with the same context; any mismatch raises MasterKeyMismatchError."""
        header = len(_SEALED_MAGIC) + _KEY_ID_BYTES
        if len(sealed) < header + _NONCE_BYTES + 16 or not sealed.startswith(_SEALED_MAGIC):
            raise MasterKeyMismatchError("The stored key is not in the sealed-key format.")
        if sealed[len(_SEALED_MAGIC) : header] != self.key_id:
            raise MasterKeyMismatchError("The stored key was sealed with a different master key.")
        nonce = sealed[header : header + _NONCE_BYTES]
        try:
            return AESGCM(self.aes_key).decrypt(nonce, sealed[header + _NONCE_BYTES :], context)
        except InvalidTag as error:
            raise MasterKeyMismatchError("The stored key fails authentication (altered or wrong context).") from error


@lru_cache(maxsize=8)
def derive_master_key(secret: bytes) -> MasterKey:
    """Derive the AES key from a master secret (scrypt: a passphrase-grade secret stays expensive to guess)."""
    if len(secret) < 16:
        raise MasterKeyMissingError("The master key must be at least 16 characters long.")
    aes_key = Scrypt(salt=_KDF_SALT, length=32, n=2**14, r=8, p=1).derive(secret)
    key_id = hashlib.sha256(b"qihub master key id" + aes_key).digest()[:_KEY_ID_BYTES]
    return MasterKey(aes_key=aes_key, key_id=key_id)


def dev_master_key_path(settings: Settings) -> Path:
    """Where `qihub pki init --dev-master-key` writes a generated master key for local trials."""
    return settings.resolved_pki_dir / DEV_MASTER_KEY_FILENAME


def master_secret(settings: Settings) -> bytes | None:
    """The configured master secret (env value, key file, or the generated dev file), or None."""
    if settings.master_key:
        return settings.master_key.encode()
    if settings.master_key_file is not None:
        try:
            return settings.master_key_file.read_bytes().strip()
        except OSError as error:
            raise MasterKeyMissingError(f"Cannot read the master key file {settings.master_key_file}.") from error
    dev_file = dev_master_key_path(settings)
    if dev_file.is_file():
        return dev_file.read_bytes().strip()
    return None


def resolve_master_key(settings: Settings) -> MasterKey | None:
    """The derived master key, or None when none is configured."""
    secret = master_secret(settings)
    return derive_master_key(secret) if secret is not None else None


def require_master_key(settings: Settings) -> MasterKey:
    """The derived master key; refuses (MasterKeyMissingError) when none is configured."""
    master = resolve_master_key(settings)
    if master is None:
        raise MasterKeyMissingError(
            "The hub holds private keys only encrypted: set QIHUB_MASTER_KEY or QIHUB_MASTER_KEY_FILE "
            "(for local trials: `qihub pki init --dev-master-key`)."
        )
    return master


def create_dev_master_key(settings: Settings) -> Path:
    """Write a random master key to `<pki dir>/master.key` (0600) unless it exists; returns its path."""
    path = dev_master_key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32).encode() + b"\n")
    return path


def write_private_file(path: Path, content: bytes) -> None:
    """Create a file readable by its owner only (0600 from the start, never briefly world-readable)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def generate_private_key(algorithm: KeyAlgorithm = "ecdsa-p256") -> PrivateKey:
    """A new signing key: ECDSA P-256 (default), P-384, or RSA 3072 (used with PSS padding)."""
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == "rsa-pss-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unknown key algorithm {algorithm!r}")


def private_key_der(private_key: PrivateKey) -> bytes:
    """The unencrypted PKCS#8 DER of a key (only ever handed to `MasterKey.seal`)."""
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def seal_private_key(master: MasterKey, private_key: PrivateKey, *, context: bytes) -> bytes:
    """Encrypt a private key for storage."""
    return master.seal(private_key_der(private_key), context=context)


class _ParsedKeyCache:
    """Parsed private keys by sealed blob and master key: re-parsing an RSA key costs ~40x a signature."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[bytes, PrivateKey] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_open(self, master: MasterKey, sealed: bytes, *, context: bytes) -> PrivateKey:
        """The parsed key of a sealed blob, opened and parsed only on first use."""
        # The master key id and the context are part of the cache key, so a wrong key never hits the cache.
        cache_key = hashlib.sha256(master.key_id + b"\0" + context + b"\0" + sealed).digest()
        with self._lock:
            found = self._keys.get(cache_key)
            if found is not None:
                self._keys.move_to_end(cache_key)
                return found
        parsed = serialization.load_der_private_key(master.open(sealed, context=context), password=None)
        if not isinstance(parsed, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise MasterKeyMismatchError("The stored key is neither an EC nor an RSA key.")
        with self._lock:
            self._keys[cache_key] = parsed
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)
        return parsed


_PARSED_KEYS = _ParsedKeyCache()


def open_private_key(master: MasterKey, sealed: bytes, *, context: bytes) -> PrivateKey:
    """Decrypt and parse a sealed private key (cached in memory after the first use)."""
    return _PARSED_KEYS.get_or_open(master, sealed, context=context)
