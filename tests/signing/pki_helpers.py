"""Helpers for PKI tests: CSRs, labs with accreditation numbers, settings with a master key."""

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from organizations.models import OrganizationCreate, OrganizationKind, Scope
from organizations.service import create_api_key, create_organization
from storage.database import session_scope

MASTER_KEY = "test-master-key-0123456789abcdef"


def make_csr(
    *,
    common_name: str = "Calibration signer",
    organization_identifier: str | None = None,
    organization: str | None = None,
    key=None,
    hash_algorithm=None,
) -> tuple[bytes, object]:
    """A PEM CSR and its private key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if organization_identifier is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organization_identifier))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attributes))
        .sign(key, hash_algorithm if hash_algorithm is not None else hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), key


def make_lab(hub, name: str, accreditation_number: str | None) -> tuple[str, dict[str, str]]:
    """A lab with an accreditation number and a read/write key; returns its id and auth header."""
    with session_scope(hub.engine) as session:
        lab = create_organization(
            session,
            data=OrganizationCreate(name=name, kind=OrganizationKind.lab, accreditation_number=accreditation_number),
        )
        created = create_api_key(
            session,
            organization_id=lab.id,
            name="test",
            scopes=[Scope.certificates_read, Scope.certificates_write],
        )
    return lab.id, {"Authorization": f"Bearer {created.key}"}
