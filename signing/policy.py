"""Signature validation policy: which checks decide, warn or inform, and which algorithms and key sizes pass.

The policy is YAML (`signing/default-policy.yaml` unless `QIHUB_POLICY_FILE` names another). Every check of
a verification report has a constraint with a level, as in the EU DSS validation policy: FAIL decides the
indication, WARN and INFORM only report, IGNORE skips the check.
"""

import functools
from enum import StrEnum
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from signxml.algorithms import DigestAlgorithm, SignatureMethod

DEFAULT_POLICY_FILE: Final = Path(__file__).resolve().parent / "default-policy.yaml"


class Level(StrEnum):
    """What a failed check does to the indication."""

    FAIL = "FAIL"
    WARN = "WARN"
    INFORM = "INFORM"
    IGNORE = "IGNORE"


class Constraint(StrEnum):
    """The checks of a verification report, in report order; each is one constraint of the policy."""

    format = "format"  # type: ignore[assignment]  # the check's name; shadows str.format on purpose
    dcc_schema = "dcc-schema"
    signing_certificate = "signing-certificate"
    signature_scope = "signature-scope"
    unsigned_content = "unsigned-content"
    crypto = "crypto"
    chain = "chain"
    key_usage = "key-usage"
    extended_key_usage = "extended-key-usage"
    revocation = "revocation"
    revocation_data = "revocation-data"
    lab_binding = "lab-binding"
    lab_binding_known = "lab-binding-known"
    claimed_signing_time = "claimed-signing-time"
    timestamp = "timestamp"
    algorithms = "algorithms"
    registry_status = "registry-status"
    registry_superseded = "registry-superseded"
    registry_known = "registry-known"
    transparency = "transparency"


# The level of a constraint a policy file leaves out: integrity checks fail, the rest only inform.
_DEFAULT_LEVELS: Final[dict[Constraint, Level]] = {
    constraint: Level.FAIL
    for constraint in (
        Constraint.format,
        Constraint.signing_certificate,
        Constraint.signature_scope,
        Constraint.unsigned_content,
        Constraint.crypto,
        Constraint.chain,
        Constraint.key_usage,
        Constraint.revocation,
        Constraint.lab_binding,
        Constraint.algorithms,
    )
}


class _PolicyModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class CryptoConstraints(_PolicyModel):
    """Accepted algorithms and minimum key sizes (everything not listed is refused)."""

    signature_algorithms: frozenset[str] = Field(alias="signature-algorithms")
    digest_algorithms: frozenset[str] = Field(alias="digest-algorithms")
    rsa_min_bits: int = Field(alias="rsa-min-bits", ge=1024)
    ec_curves: frozenset[str] = Field(alias="ec-curves")
    weak_certificate_hashes: frozenset[str] = Field(
        default=frozenset({"md2", "md5", "sha1"}), alias="weak-certificate-hashes"
    )

    @field_validator("signature_algorithms")
    @classmethod
    def _known_signature_methods(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(name for name in value if name not in SignatureMethod.__members__)
        if unknown:
            raise ValueError(f"unknown signature algorithm(s): {', '.join(unknown)}")
        if any(name.startswith("HMAC") for name in value):
            # A shared secret proves nothing to a third party: the hub never accepts HMAC signatures.
            raise ValueError("HMAC signature algorithms cannot be accepted")
        return value

    @field_validator("digest_algorithms")
    @classmethod
    def _known_digests(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(name for name in value if name not in DigestAlgorithm.__members__)
        if unknown:
            raise ValueError(f"unknown digest algorithm(s): {', '.join(unknown)}")
        return value


class KeyUsageConstraints(_PolicyModel):
    """Purposes the signing certificate must allow when it restricts them."""

    signer_key_usage: frozenset[str] = Field(
        default=frozenset({"digital_signature", "non_repudiation"}), alias="signer-key-usage"
    )
    signer_extended_key_usage: frozenset[str] = Field(default=frozenset(), alias="signer-extended-key-usage")


class ValidationPolicy(_PolicyModel):
    """A named signature validation policy."""

    name: str
    description: str = ""
    constraints: dict[Constraint, Level] = Field(default_factory=dict)
    crypto: CryptoConstraints
    key_usage: KeyUsageConstraints = Field(default_factory=KeyUsageConstraints, alias="key-usage")

    def level(self, constraint: Constraint) -> Level:
        """The level of a constraint (integrity checks default to FAIL, others to INFORM)."""
        return self.constraints.get(constraint, _DEFAULT_LEVELS.get(constraint, Level.INFORM))


class PolicyError(ValueError):
    """The policy file cannot be read or does not describe a valid policy."""


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> ValidationPolicy:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PolicyError(f"cannot read policy {path}: {error}") from error
    if not isinstance(raw, dict):
        raise PolicyError(f"policy {path} is not a YAML mapping")
    try:
        return ValidationPolicy.model_validate(raw)
    except ValueError as error:
        raise PolicyError(f"invalid policy {path}: {error}") from error


def load_policy(path: Path | str | None = None) -> ValidationPolicy:
    """Load a policy file (default: the hub's default policy); parsed once per file version."""
    resolved = Path(path) if path is not None else DEFAULT_POLICY_FILE
    try:
        mtime_ns = resolved.stat().st_mtime_ns
    except OSError as error:
        raise PolicyError(f"cannot read policy {resolved}: {error}") from error
    # absolute(), not resolve(): it keys the cache without a file-system walk on every verification.
    return _load(resolved.absolute(), mtime_ns)
