"""Optional PKCS#11 key store (SoftHSM2, a network HSM): keys are generated and used on the token, never exported.

Configured by `QIHUB_PKCS11_MODULE`, `QIHUB_PKCS11_TOKEN_LABEL` and `QIHUB_PKCS11_PIN`; needs the
`python-pkcs11` package. A key on the token is handed out as a `cryptography` EC private key whose `sign`
runs on the token, so the hub CA (`HubCertificateAuthority`) and signers can use it like any other key.
"""

import threading
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key

from storage.errors import DomainError
from storage.settings import Settings

CURVES = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}


class Pkcs11UnavailableError(DomainError):
    """The PKCS#11 key store is not configured, its module cannot be loaded, or the token is missing."""

    code = "pkcs11-unavailable"
    title = "PKCS#11 key store unavailable"


def pkcs11_installed() -> bool:
    """True when the python-pkcs11 package can be imported."""
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return False
    return True


_LIBRARIES: dict[str, Any] = {}
_LIBRARY_LOCK = threading.Lock()


def _library(module_path: str) -> Any:
    # C_Initialize may run once per process and module: share one loaded library per path.
    import pkcs11

    with _LIBRARY_LOCK:
        if module_path not in _LIBRARIES:
            try:
                _LIBRARIES[module_path] = pkcs11.lib(module_path)
            except pkcs11.PKCS11Error as error:
                raise Pkcs11UnavailableError(f"Cannot load the PKCS#11 module {module_path}: {error}") from error
        return _LIBRARIES[module_path]


class Pkcs11KeyStore:
    """EC signing keys on one PKCS#11 token, found by label."""

    def __init__(self, *, module_path: str, token_label: str, pin: str) -> None:
        if not pkcs11_installed():
            raise Pkcs11UnavailableError("The python-pkcs11 package is not installed.")
        import pkcs11

        try:
            self._token = _library(module_path).get_token(token_label=token_label)
        except (pkcs11.NoSuchToken, pkcs11.PKCS11Error) as error:
            raise Pkcs11UnavailableError(f"No PKCS#11 token labelled {token_label!r}.") from error
        self._pin = pin
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Pkcs11KeyStore | None":
        """The configured key store, or None when no PKCS#11 module is configured."""
        if not settings.pkcs11_module:
            return None
        if not settings.pkcs11_token_label or settings.pkcs11_pin is None:
            raise Pkcs11UnavailableError("Set QIHUB_PKCS11_TOKEN_LABEL and QIHUB_PKCS11_PIN with the module.")
        return cls(module_path=settings.pkcs11_module, token_label=settings.pkcs11_token_label, pin=settings.pkcs11_pin)

    def _session(self) -> Any:
        return self._token.open(user_pin=self._pin, rw=True)

    def generate_ec_key(self, *, label: str, curve: str = "secp256r1") -> "Pkcs11EcPrivateKey":
        """Generate a non-extractable EC key pair on the token under a new label."""
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.ec import encode_named_curve_parameters

        if curve not in CURVES:
            raise ValueError(f"unsupported curve {curve!r}")
        with self._lock, self._session() as session:
            if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})):
                raise ValueError(f"a key labelled {label!r} exists on the token")
            parameters = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
            )
            parameters.generate_keypair(
                store=True,
                label=label,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
        return self.ec_private_key(label=label)

    def ec_private_key(self, *, label: str) -> "Pkcs11EcPrivateKey":
        """The token's EC key with this label, as a `cryptography` private key."""
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.exceptions import NoSuchKey
        from pkcs11.util.ec import encode_ec_public_key

        with self._lock, self._session() as session:
            try:
                public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=label)
            except NoSuchKey as error:
                raise Pkcs11UnavailableError(f"No EC key labelled {label!r} on the token.") from error
            public_key = load_der_public_key(encode_ec_public_key(public))
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        return Pkcs11EcPrivateKey(store=self, label=label, public=public_key)

    def sign_digest(self, *, label: str, digest: bytes) -> bytes:
        """Raw ECDSA over a digest on the token; returns the DER (ECDSA-Sig-Value) signature."""
        from pkcs11 import KeyType, Mechanism, ObjectClass
        from pkcs11.util.ec import encode_ecdsa_signature

        with self._lock, self._session() as session:
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=label)
            return encode_ecdsa_signature(key.sign(digest, mechanism=Mechanism.ECDSA))


class Pkcs11EcPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC private key that lives on a PKCS#11 token: it signs there and cannot be serialized."""

    def __init__(self, *, store: Pkcs11KeyStore, label: str, public: ec.EllipticCurvePublicKey) -> None:
        self._store = store
        self._label = label
        self._public = public

    @property
    def label(self) -> str:
        """The key's label on the token."""
        return self._label

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve."""
        return self._public.curve

    @property
    def key_size(self) -> int:
        """Bit length of the curve order."""
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half (read from the token)."""
        return self._public

    def sign(
        self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        """ECDSA-sign data: hashed here, signed on the token."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise ValueError("only ECDSA signatures are supported")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(bytes(data))
            digest = hasher.finalize()
        return self._store.sign_digest(label=self._label, digest=digest)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Not offered: hub keys only sign."""
        raise NotImplementedError("PKCS#11 keys of the hub only sign")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        """Refused: the key never leaves the token."""
        raise TypeError("a PKCS#11 key cannot be exported")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        """Refused: the key never leaves the token."""
        raise TypeError("a PKCS#11 key cannot be exported")

    def __copy__(self) -> "Pkcs11EcPrivateKey":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Pkcs11EcPrivateKey":
        return self
