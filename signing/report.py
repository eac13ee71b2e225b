"""The verification report, modelled on ETSI EN 319 102-1 as the EU DSS library reports it.

`indication` and `subIndication` answer the signature question (EN 319 102-1 §5.1.3); the ordered `checks`
say why, each with the policy level applied; the rest is what a hub adds: who signed, when (claimed and
proven), the policy, the document digest, its registry status and its transparency-log inclusion.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from signing.policy import Constraint, Level
from storage.schemas import ApiSchema


class Indication(StrEnum):
    """Main status of a signature validation (EN 319 102-1 table 4)."""

    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


class SubIndication(StrEnum):
    """Why a validation failed or stayed indeterminate (EN 319 102-1 table 5)."""

    # TOTAL_FAILED
    FORMAT_FAILURE = "FORMAT_FAILURE"
    HASH_FAILURE = "HASH_FAILURE"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    # INDETERMINATE
    SIG_CONSTRAINTS_FAILURE = "SIG_CONSTRAINTS_FAILURE"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    CERTIFICATE_CHAIN_GENERAL_FAILURE = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    NO_SIGNING_CERTIFICATE_FOUND = "NO_SIGNING_CERTIFICATE_FOUND"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    REVOKED_NO_POE = "REVOKED_NO_POE"
    REVOKED_CA_NO_POE = "REVOKED_CA_NO_POE"
    OUT_OF_BOUNDS_NO_POE = "OUT_OF_BOUNDS_NO_POE"
    TRY_LATER = "TRY_LATER"
    SIGNED_DATA_NOT_FOUND = "SIGNED_DATA_NOT_FOUND"
    GENERIC = "GENERIC"


# The indication a sub-indication belongs to (EN 319 102-1 table 5).
TOTAL_FAILED_SUBINDICATIONS = frozenset(
    {
        SubIndication.FORMAT_FAILURE,
        SubIndication.HASH_FAILURE,
        SubIndication.SIG_CRYPTO_FAILURE,
        SubIndication.REVOKED,
        SubIndication.EXPIRED,
        SubIndication.NOT_YET_VALID,
    }
)


def indication_of(sub_indication: SubIndication) -> Indication:
    """The main indication a sub-indication implies."""
    if sub_indication in TOTAL_FAILED_SUBINDICATIONS:
        return Indication.TOTAL_FAILED
    return Indication.INDETERMINATE


class CheckResult(StrEnum):
    """Outcome of one check once the policy level is applied."""

    PASSED = "PASSED"
    FAILED = "FAILED"  # failed at level FAIL: decides the indication
    WARNING = "WARNING"  # failed at level WARN
    INFORMATION = "INFORMATION"  # failed (or noteworthy) at level INFORM
    SKIPPED = "SKIPPED"  # level IGNORE, or not executable because an earlier check failed


class Check(ApiSchema):
    """One check of the report."""

    id: Constraint
    result: CheckResult
    level: Level
    message: str
    sub_indication: SubIndication | None = Field(
        default=None, description="What this check contributes when it fails at level FAIL."
    )


class SignatureScope(StrEnum):
    """What the signature covers: the whole document, or less (a hub must refuse PARTIAL)."""

    FULL = "FULL"
    PARTIAL = "PARTIAL"


class SignerIdentity(ApiSchema):
    """The signing certificate as the report shows it."""

    subject: str
    issuer: str
    serial_number: str
    sha256_fingerprint: str
    organization: str | None = None
    organization_identifier: str | None = None
    not_before: datetime
    not_after: datetime
    public_key: str = Field(description="Key type and size, e.g. 'EC secp256r1' or 'RSA 3072'.")
    bound_lab: str | None = Field(default=None, description="Name of the lab the hub binds this certificate to.")


class TimestampInfo(ApiSchema):
    """The signature timestamp (XAdES SignatureTimeStamp), when present."""

    valid: bool
    time: datetime | None = None
    tsa_name: str | None = None
    reason: str | None = None


class RegistryEntry(ApiSchema):
    """What the hub's registry says about the document's exact bytes."""

    status: str = Field(description="unknown, issued, revoked or superseded.")
    certificate_id: str | None = None
    organization_id: str | None = None
    organization_name: str | None = None
    reason: str | None = None
    superseded_by_id: str | None = None
    updated_at: datetime | None = None


class TransparencyInfo(ApiSchema):
    """Whether, and where, the registration is included in the hub's transparency log."""

    included: bool
    proof: dict[str, object] | None = None


class VerificationReport(ApiSchema):
    """The result of verifying one signed document."""

    indication: Indication
    sub_indication: SubIndication | None = None
    signature_format: str | None = Field(default=None, description="e.g. XAdES-B-B, XAdES-B-T, XAdES-B-LT, XMLDSig.")
    signature_scope: SignatureScope | None = None
    checks: list[Check]
    signer: SignerIdentity | None = None
    claimed_signing_time: datetime | None = Field(default=None, description="xades:SigningTime: a claim, no proof.")
    best_signature_time: datetime = Field(description="Earliest proven time the signature existed (timestamp).")
    validation_time: datetime
    timestamp: TimestampInfo | None = None
    policy: str
    document_sha256: str
    registry: RegistryEntry | None = None
    transparency: TransparencyInfo | None = None

    @property
    def passed(self) -> bool:
        """True only for TOTAL_PASSED."""
        return self.indication == Indication.TOTAL_PASSED

    def check(self, constraint: Constraint) -> Check | None:
        """The check for one constraint, if it is in the report."""
        return next((check for check in self.checks if check.id == constraint), None)
