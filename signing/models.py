"""Trust tables (trust anchors, signing certificates, hub-held signing keys) and their API schemas."""

from datetime import datetime
from enum import StrEnum

from pydantic import Field as PydanticField
from pydantic import model_validator
from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from organizations.models import new_id
from storage.models import utc_now
from storage.schemas import ApiSchema


class TrustAnchorKind(StrEnum):
    """Whether an anchor is the hub's own root CA or a CA the hub was told to trust."""

    hub_root = "hub-root"
    external = "external"


class SigningCertificateSource(StrEnum):
    """How a signing certificate came into the registry."""

    enrolled = "enrolled"  # issued by the hub CA from the lab's CSR
    registered = "registered"  # issued elsewhere (e.g. an accreditation body's seal) and registered by the lab
    hub_key = "hub-key"  # issued by the hub CA for a key the hub holds for the lab


class SigningCertificateStatus(StrEnum):
    """Whether a signing certificate may still sign."""

    active = "active"
    revoked = "revoked"


class RevocationReason(StrEnum):
    """RFC 5280 CRL reason codes a lab or admin may give."""

    unspecified = "unspecified"
    key_compromise = "keyCompromise"
    affiliation_changed = "affiliationChanged"
    superseded = "superseded"
    cessation_of_operation = "cessationOfOperation"
    certificate_hold = "certificateHold"
    privilege_withdrawn = "privilegeWithdrawn"


class HubKeyAlgorithm(StrEnum):
    """Algorithms of keys the hub generates and holds."""

    ecdsa_p256 = "ecdsa-p256"
    ecdsa_p384 = "ecdsa-p384"
    rsa_pss_3072 = "rsa-pss-3072"


class TrustAnchor(SQLModel, table=True):
    """A CA certificate verifications trust: the hub root, or an external CA (e.g. an accreditation body)."""

    __tablename__ = "trust_anchors"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=300)
    kind: str = Field(max_length=20, index=True)
    certificate_pem: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint_sha256: str = Field(max_length=64, unique=True)
    crl_url: str | None = Field(default=None, max_length=2000)
    crl_pem: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    added_by_organization_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(default_factory=utc_now)


class SigningCertificate(SQLModel, table=True):
    """A certificate a lab signs DCCs with; its fingerprint binds it to the lab."""

    __tablename__ = "signing_certificates"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=36)
    certificate_pem: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint_sha256: str = Field(max_length=64, unique=True)
    serial: str = Field(max_length=64)  # hex: serials are up to 20 bytes, beyond any integer column
    subject: str = Field(max_length=2000)
    issuer: str = Field(max_length=2000)
    not_before: datetime
    not_after: datetime
    source: str = Field(max_length=20)
    # The anchor the certificate chains to (the hub root for enrolled ones); None when pinned by fingerprint.
    trust_anchor_id: str | None = Field(default=None, foreign_key="trust_anchors.id", max_length=36)
    status: str = Field(default=SigningCertificateStatus.active, index=True, max_length=20)
    revoked_at: datetime | None = None
    revocation_reason: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utc_now)


class HubSigningKey(SQLModel, table=True):
    """A private key the hub holds for a lab, sealed with the master key (AES-256-GCM); never leaves the hub."""

    __tablename__ = "hub_signing_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=36)
    signing_certificate_id: str = Field(foreign_key="signing_certificates.id", unique=True, max_length=36)
    algorithm: str = Field(max_length=20)
    encrypted_private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)


# --- API schemas ---------------------------------------------------------------------------------------------

PEM_MAX_CHARS = 200_000


class TrustAnchorCreate(ApiSchema):
    """What an admin gives to trust an external CA."""

    name: str = PydanticField(min_length=1, max_length=300)
    certificate: str = PydanticField(min_length=1, max_length=PEM_MAX_CHARS, description="CA certificate (PEM).")
    crl_url: str | None = PydanticField(default=None, max_length=2000)
    crl: str | None = PydanticField(default=None, max_length=5_000_000, description="Current CRL (PEM).")


class TrustAnchorRead(ApiSchema):
    """A trust anchor as the API shows it."""

    id: str
    name: str
    kind: TrustAnchorKind
    certificate_pem: str
    fingerprint_sha256: str
    crl_url: str | None
    has_crl: bool = False
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _crl_presence(cls, data: object) -> object:
        if isinstance(data, TrustAnchor):
            return {**data.model_dump(), "has_crl": data.crl_pem is not None}
        return data


class TrustAnchorCrlUpdate(ApiSchema):
    """A newer CRL of an external trust anchor."""

    crl: str = PydanticField(min_length=1, max_length=5_000_000, description="CRL (PEM) signed by the anchor.")


class SigningCertificateCreate(ApiSchema):
    """Either a CSR to enrol (the hub CA issues the certificate) or an external certificate to register."""

    csr: str | None = PydanticField(default=None, max_length=PEM_MAX_CHARS, description="PKCS#10 request (PEM).")
    certificate: str | None = PydanticField(
        default=None,
        max_length=PEM_MAX_CHARS,
        description="External certificate (PEM), optionally followed by its intermediate CA certificates.",
    )
    pinned_fingerprint: str | None = PydanticField(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Admins only: trust this exact certificate (SHA-256 of its DER) without a trusted chain.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "SigningCertificateCreate":
        if (self.csr is None) == (self.certificate is None):
            raise ValueError("give exactly one of 'csr' (to enrol) or 'certificate' (to register)")
        if self.pinned_fingerprint is not None and self.certificate is None:
            raise ValueError("'pinnedFingerprint' applies to a registered 'certificate' only")
        return self


class SigningCertificateRead(ApiSchema):
    """A signing certificate as the API shows it."""

    id: str
    organization_id: str
    certificate_pem: str
    fingerprint_sha256: str
    serial: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    source: SigningCertificateSource
    status: SigningCertificateStatus
    revoked_at: datetime | None
    revocation_reason: RevocationReason | None


class RevocationRequest(ApiSchema):
    """Why a signing certificate is revoked."""

    reason: RevocationReason = RevocationReason.unspecified
    comment: str | None = PydanticField(default=None, max_length=2000)


class HubKeyCreate(ApiSchema):
    """Which algorithm the hub-held key uses."""

    algorithm: HubKeyAlgorithm = HubKeyAlgorithm.ecdsa_p256


class HubKeyRead(ApiSchema):
    """A hub-held key: its id, algorithm and certificate (the private key never leaves the hub)."""

    id: str
    organization_id: str
    algorithm: HubKeyAlgorithm
    signing_certificate: SigningCertificateRead
    ca_certificate_pem: str
    created_at: datetime


# --- transparency log tables (signing/transparency.py) ---
# Appended below the trust tables, so the import sits here rather than at the top of the module.
from sqlalchemy import BigInteger  # noqa: E402


class LogLeaf(SQLModel, table=True):
    """One leaf of the append-only transparency log: exactly the fields its leaf hash covers, and that hash."""

    __tablename__ = "transparency_log_leaves"

    leaf_index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    certificate_sha256: str = Field(max_length=64, index=True)
    event: str = Field(max_length=20)
    # The RFC 3339 text exactly as hashed: no database time-zone round trip can change a leaf's bytes.
    logged_at: str = Field(max_length=40)
    lab_id: str = Field(max_length=36)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False, index=True))


class LogNode(SQLModel, table=True):
    """A cached hash of a complete subtree: 2**level leaves starting at leaf node_index * 2**level (level ≥ 1)."""

    __tablename__ = "transparency_log_nodes"

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    node_index: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogTreeHead(SQLModel, table=True):
    """The signed tree head of one tree size, signed when the log first reached that size."""

    __tablename__ = "transparency_log_tree_heads"

    tree_size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))  # ms since the Unix epoch (RFC 9162)
    key_id: str = Field(max_length=64)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
