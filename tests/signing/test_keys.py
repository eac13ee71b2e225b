"""Hub-held private keys: master-key encryption at rest, generation, caching, and the PKCS#11 key store."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import text

from certificates.service import Actor
from organizations.models import Organization
from signing import service
from signing.keys import (
    MasterKeyMismatchError,
    MasterKeyMissingError,
    create_dev_master_key,
    derive_master_key,
    generate_private_key,
    open_private_key,
    private_key_der,
    require_master_key,
    seal_private_key,
)
from signing.pki import organization_identifier_of
from storage.database import session_scope
from storage.errors import NotFoundError
from storage.settings import Settings
from tests.signing.pki_helpers import MASTER_KEY, make_lab

IN_CI = os.environ.get("CI", "").lower() == "true"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


def _pem(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- sealing with the master key --------------------------------------------------------------------------------


def test_sealed_key_opens_with_the_same_master_key_and_hides_the_key_bytes():
    master = derive_master_key(MASTER_KEY.encode())
    key = generate_private_key("ecdsa-p256")
    sealed = seal_private_key(master, key, context=b"row-1")
    assert private_key_der(key) not in sealed
    assert b"PRIVATE KEY" not in sealed
    opened = open_private_key(master, sealed, context=b"row-1")
    assert private_key_der(opened) == private_key_der(key)


def test_a_wrong_master_key_cannot_open_a_sealed_key():
    key = generate_private_key("ecdsa-p256")
    sealed = seal_private_key(derive_master_key(MASTER_KEY.encode()), key, context=b"row-1")
    with pytest.raises(MasterKeyMismatchError):
        open_private_key(derive_master_key(b"a-different-master-key-42"), sealed, context=b"row-1")


def test_a_sealed_key_cannot_be_moved_to_another_row_or_altered():
    master = derive_master_key(MASTER_KEY.encode())
    sealed = seal_private_key(master, generate_private_key("ecdsa-p256"), context=b"row-1")
    with pytest.raises(MasterKeyMismatchError):
        open_private_key(master, sealed, context=b"row-2")
    tampered = bytearray(sealed)
    tampered[-1] ^= 0x01
    with pytest.raises(MasterKeyMismatchError):
        open_private_key(master, bytes(tampered), context=b"row-1")


def test_opened_keys_are_parsed_once_and_kept_in_memory():
    master = derive_master_key(MASTER_KEY.encode())
    sealed = seal_private_key(master, generate_private_key("rsa-pss-3072"), context=b"cached")
    assert open_private_key(master, sealed, context=b"cached") is open_private_key(master, sealed, context=b"cached")


def test_short_master_keys_are_refused():
    with pytest.raises(MasterKeyMissingError, match="at least 16"):
        derive_master_key(b"short")


def test_no_master_key_configured_means_refusal(tmp_path):
    with pytest.raises(MasterKeyMissingError, match="QIHUB_MASTER_KEY"):
        require_master_key(Settings(data_dir=tmp_path))


def test_master_key_comes_from_the_key_file(tmp_path):
    key_file = tmp_path / "master.secret"
    key_file.write_text(MASTER_KEY + "\n")
    from_file = require_master_key(Settings(data_dir=tmp_path, master_key_file=key_file))
    assert from_file == require_master_key(Settings(data_dir=tmp_path, master_key=MASTER_KEY))


def test_generated_dev_master_key_is_owner_only_and_used_when_nothing_else_is_configured(tmp_path):
    settings = Settings(data_dir=tmp_path)
    path = create_dev_master_key(settings)
    assert path == tmp_path / "pki" / "master.key"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert require_master_key(settings).key_id == derive_master_key(path.read_bytes().strip()).key_id
    assert create_dev_master_key(settings).read_bytes() == path.read_bytes()  # never overwritten


def test_generated_keys_follow_the_signing_profile():
    p256 = generate_private_key()
    assert isinstance(p256, ec.EllipticCurvePrivateKey) and p256.curve.name == "secp256r1"
    rsa_key = generate_private_key("rsa-pss-3072")
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 3072
    signature = rsa_key.sign(b"data", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    rsa_key.public_key().verify(
        signature, b"data", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )


# --- hub-held signing keys in the database (SQLite and PostgreSQL) ---------------------------------------------


def _actor(hub, organization_id: str) -> Actor:
    with session_scope(hub.engine) as session:
        organization = session.get(Organization, organization_id)
        assert organization is not None
        return Actor(organization=organization)


def test_hub_signing_keys_are_encrypted_at_rest_and_usable_for_signing(hub):
    hub.settings.master_key = MASTER_KEY
    lab_id, _ = make_lab(hub, "Lab A", "D-K-12345-01-00")
    with session_scope(hub.engine) as session:
        key_row, certificate_row = service.create_hub_signing_key(
            session, actor=_actor(hub, lab_id), organization_id=lab_id, settings=hub.settings
        )
    with hub.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT encrypted_private_key FROM hub_signing_keys WHERE id = :id"), {"id": key_row.id}
        ).scalar_one()
    stored = bytes(stored)

    with session_scope(hub.engine) as session:
        private_key, chain = service.get_hub_signing_key_or_raise(
            session, settings=hub.settings, organization_id=lab_id
        )
    assert private_key_der(private_key) not in stored
    assert _pem(private_key) not in stored and b"PRIVATE KEY" not in stored
    leaf, ca = chain
    assert leaf.public_key() == private_key.public_key()
    assert organization_identifier_of(leaf) == "D-K-12345-01-00"
    leaf.verify_directly_issued_by(ca)
    signature = private_key.sign(b"<dcc/>", ec.ECDSA(hashes.SHA256()))
    leaf.public_key().verify(signature, b"<dcc/>", ec.ECDSA(hashes.SHA256()))
    assert certificate_row.source == "hub-key"

    other = Settings(data_dir=hub.settings.data_dir, master_key="another-master-key-0123456789")
    with pytest.raises(MasterKeyMismatchError), session_scope(hub.engine) as session:
        service.get_hub_signing_key_or_raise(session, settings=other, organization_id=lab_id)


def test_no_hub_key_is_created_without_a_master_key(hub):
    lab_id, _ = make_lab(hub, "Lab A", "D-K-12345-01-00")
    with pytest.raises(MasterKeyMissingError), session_scope(hub.engine) as session:
        service.create_hub_signing_key(
            session, actor=_actor(hub, lab_id), organization_id=lab_id, settings=hub.settings
        )
    with session_scope(hub.engine) as session:
        assert session.exec(text("SELECT count(*) FROM hub_signing_keys")).one()[0] == 0  # type: ignore[call-overload]
        assert session.exec(text("SELECT count(*) FROM signing_certificates")).one()[0] == 0  # type: ignore[call-overload]


def test_a_revoked_hub_key_is_no_longer_handed_out(hub):
    hub.settings.master_key = MASTER_KEY
    lab_id, _ = make_lab(hub, "Lab A", "D-K-12345-01-00")
    actor = _actor(hub, lab_id)
    with session_scope(hub.engine) as session:
        _, certificate_row = service.create_hub_signing_key(
            session, actor=actor, organization_id=lab_id, settings=hub.settings, algorithm="rsa-pss-3072"
        )
        service.revoke_signing_certificate(
            session, actor=actor, organization_id=lab_id, certificate_id=certificate_row.id
        )
    with pytest.raises(NotFoundError), session_scope(hub.engine) as session:
        service.get_hub_signing_key_or_raise(session, settings=hub.settings, organization_id=lab_id)


# --- PKCS#11 (SoftHSM2) -------------------------------------------------------------------------------------


def _pkcs11_ready() -> str | None:
    """Why the PKCS#11 test cannot run here, or None when it can."""
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed"
    if not SOFTHSM_MODULE.exists() or shutil.which("softhsm2-util") is None:
        return "SoftHSM2 is not installed (apt-get install softhsm2; `make test` does it where it can)"
    return None


@pytest.fixture(scope="module")
def softhsm_token(tmp_path_factory) -> dict[str, str]:
    reason = _pkcs11_ready()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"PKCS#11 test is mandatory in CI: {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    config = directory / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    # SoftHSM reads its configuration when the module is first initialized in this process.
    os.environ["SOFTHSM2_CONF"] = str(config)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "qihub-test", "--pin", "1234", "--so-pin", "5678"],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(config)},
    )
    return {"module": str(SOFTHSM_MODULE), "label": "qihub-test", "pin": "1234"}


def test_pkcs11_keys_sign_on_the_token_and_cannot_be_exported(softhsm_token, tmp_path):
    from signing.hsm import Pkcs11KeyStore
    from signing.pki import forget_cached_hub_cas, load_or_create_hub_ca

    store = Pkcs11KeyStore(
        module_path=softhsm_token["module"], token_label=softhsm_token["label"], pin=softhsm_token["pin"]
    )
    key = store.generate_ec_key(label="signer-1")
    signature = key.sign(b"payload", ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, b"payload", ec.ECDSA(hashes.SHA256()))
    assert store.ec_private_key(label="signer-1").public_key() == key.public_key()
    with pytest.raises(TypeError):
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    # The hub CA can keep its key on the token: nothing but the certificate is written to the pki dir.
    settings = Settings(
        data_dir=tmp_path,
        pkcs11_module=softhsm_token["module"],
        pkcs11_token_label=softhsm_token["label"],
        pkcs11_pin=softhsm_token["pin"],
    )
    ca = load_or_create_hub_ca(settings)
    assert sorted(path.name for path in (tmp_path / "pki").iterdir()) == ["hub-ca.pem"]
    issued = ca.issue_certificate(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "log")]),
        public_key=generate_private_key().public_key(),
        profile="log",
    )
    issued.verify_directly_issued_by(ca.certificate)
    forget_cached_hub_cas()
    assert load_or_create_hub_ca(settings).fingerprint == ca.fingerprint  # same token key, same certificate
