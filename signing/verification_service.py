"""Verification against the hub: its trust context, the registry status, the issuing lab, the transparency log.

`verify_document` (signing/verification.py) knows nothing of the database; this module looks up what the hub
knows about a document's exact bytes and hands it over, and guards submissions of signed documents.
"""

import hashlib
import os
import threading
import time
from datetime import datetime
from typing import Final

from lxml import etree
from sqlalchemy import bindparam, or_
from sqlmodel import Session, col, select

from certificates.models import Certificate, CertificateStatus
from organizations.models import Organization
from signing.policy import Constraint, ValidationPolicy, load_policy
from signing.report import CheckResult, RegistryEntry, VerificationReport
from signing.trust import LabIdentity, TrustContext
from signing.verification import SIGNATURE_TAG, verify_document
from storage.errors import InvalidInputError, NotFoundError
from storage.models import StoredDocument
from storage.settings import Settings

# Statuses a third party may learn about: a draft is not yet published by its lab.
PUBLIC_STATUSES = (CertificateStatus.issued, CertificateStatus.revoked, CertificateStatus.superseded)


class SignatureInvalidError(InvalidInputError):
    """A signed submission whose signature does not verify (TOTAL_PASSED) under the hub's policy."""

    code = "signature-invalid"
    title = "The document's signature is not valid"


class SignerNotBoundToLabError(InvalidInputError):
    """A signed submission whose signing certificate belongs to another lab."""

    code = "signer-not-bound-to-lab"
    title = "The signer is bound to another lab"


# Building the trust context reads the trust registry and signs a fresh hub CRL (about 3 ms): public
# verifications reuse it for a few seconds. A change to the trust registry made by this process (a new anchor,
# a revoked signing certificate, a lab's accreditation) drops it at once (`forget_trust_contexts`, wired in
# api/trust.py), and the API process's verification processes at their next job (`follow_generations`); other
# API processes see it within TRUST_CACHE_SECONDS. Submissions always build a fresh one.
TRUST_CACHE_SECONDS: Final = 5.0
_trust_cache: dict[tuple[str | None, str, str, str], tuple[float, TrustContext]] = {}
_trust_cache_lock = threading.Lock()
_trust_generation = 0  # bumped by every forget: a context built from older data is not cached


def _trust_cache_key(settings: Settings) -> tuple[str | None, str, str, str]:
    # The configured values, not the resolved ones (resolving touches the file system on every verification);
    # the working directory pins what relative paths mean.
    return settings.database_url, str(settings.data_dir), str(settings.pki_dir), os.getcwd()


def forget_trust_contexts() -> None:
    """Drop every cached trust context (after the trust registry changed)."""
    global _trust_generation
    with _trust_cache_lock:
        _trust_generation += 1
        _trust_cache.clear()


def hub_trust_context(session: Session, *, settings: Settings, max_age: float = 0.0) -> TrustContext:
    """The hub's trust context (hub root, external anchors, CRLs, lab bindings), at most `max_age` s old."""
    from signing.service import trust_context_for

    key = _trust_cache_key(settings)
    now = time.monotonic()
    cached = _trust_cache.get(key)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    generation = _trust_generation
    trust = trust_context_for(session, settings=settings)
    with _trust_cache_lock:
        if generation == _trust_generation:
            _trust_cache[key] = (now, trust)
    return trust


def hub_policy(settings: Settings) -> ValidationPolicy:
    """The configured validation policy (QIHUB_POLICY_FILE), else the default one."""
    return load_policy(settings.policy_file)


def lab_identity(organization: Organization) -> LabIdentity:
    """A registered organization as the verifier sees a lab (bindings come from the trust context)."""
    return LabIdentity(
        organization_id=organization.id, name=organization.name, accreditation_number=organization.accreditation_number
    )


# Built once: constructing the ORM statement costs more than running it (the lookup is on every verification).
_REGISTRY_LOOKUP: Final = (
    select(  # type: ignore[call-overload]
        Certificate.id,
        Certificate.status,
        Certificate.status_reason,
        Certificate.superseded_by_id,
        Certificate.updated_at,
        Certificate.organization_id,
        Organization.name,
        Organization.accreditation_number,
    )
    .select_from(Certificate)
    .outerjoin(Organization, col(Organization.id) == col(Certificate.organization_id))
    .where(
        col(Certificate.sha256) == bindparam("sha256"),
        # Plain comparisons, not IN: an IN list is re-rendered on every execution, these compile once.
        or_(*(col(Certificate.status) == str(status) for status in PUBLIC_STATUSES)),
    )
    .order_by(col(Certificate.created_at), col(Certificate.id))
    .limit(1)
)


def registry_entry_for(session: Session, *, sha256: str) -> tuple[RegistryEntry, LabIdentity | None]:
    """What the registry says about these exact bytes (first published registration) and its issuing lab."""
    row = session.connection().execute(_REGISTRY_LOOKUP, {"sha256": sha256.lower()}).first()
    if row is None:
        return RegistryEntry(status="unknown"), None
    certificate_id, status, reason, superseded_by_id, updated_at, organization_id, name, accreditation = row
    entry = RegistryEntry(
        status=status,
        certificate_id=certificate_id,
        organization_id=organization_id,
        organization_name=name,
        reason=reason if status != CertificateStatus.issued else None,
        superseded_by_id=superseded_by_id,
        updated_at=updated_at,
    )
    if name is None:  # no such organization (cannot happen with the foreign key; say so rather than guess)
        return entry, None
    return entry, LabIdentity(organization_id=organization_id, name=name, accreditation_number=accreditation)


def _inclusion_proof(session: Session, *, sha256: str, settings: Settings) -> object | None:
    from signing.transparency import inclusion_proof_for, log_public_key, verify_tree_head

    proof = inclusion_proof_for(session, certificate_sha256=sha256, settings=settings)
    if proof is None:
        return None
    # A tree head the log key did not sign proves nothing: report it as no proof at all.
    public_key = log_public_key(settings, create=False)
    if public_key is None or not verify_tree_head(proof.signed_tree_head, public_key=public_key):
        return None
    return proof


# Public verifications look the same bytes up again and again (a report page, a client re-checking): the answer
# is kept for as long as a trust context, and dropped at once when this process commits a change to a
# certificate or an organization (`forget_registry_entries`, wired in api/trust.py).
REGISTRY_CACHE_SECONDS: Final = TRUST_CACHE_SECONDS
_REGISTRY_CACHE_MAX: Final = 4096
_registry_cache: dict[tuple[object, str], tuple[float, RegistryEntry, LabIdentity | None]] = {}
_registry_generation = 0


def forget_registry_entries() -> None:
    """Drop every cached registry lookup (after a certificate or an organization changed)."""
    global _registry_generation
    with _trust_cache_lock:
        _registry_generation += 1
        _registry_cache.clear()


def cache_generations() -> tuple[int, int]:
    """How many times this process dropped its trust contexts and its registry lookups (see `follow_generations`)."""
    return _trust_generation, _registry_generation


_followed_generations: tuple[int, int] | None = None


def follow_generations(generations: tuple[int, int]) -> None:
    """Drop what this process cached before a change that another process (its `cache_generations`) committed."""
    # A verification process gets the API process's generations with every job (api/document_pool.py), so
    # a change committed through the API reaches the very next verification.
    global _followed_generations
    previous, _followed_generations = _followed_generations, generations
    if previous is None:
        return  # nothing cached yet that predates a change
    if previous[0] != generations[0]:
        forget_trust_contexts()
    if previous[1] != generations[1]:
        forget_registry_entries()


def _recent_registry_entry(
    session: Session, *, settings: Settings, sha256: str
) -> tuple[RegistryEntry, LabIdentity | None]:
    key = (_trust_cache_key(settings), sha256)
    now = time.monotonic()
    cached = _registry_cache.get(key)
    if cached is None or now - cached[0] >= REGISTRY_CACHE_SECONDS:
        generation = _registry_generation
        entry, lab = registry_entry_for(session, sha256=sha256)
        cached = (now, entry, lab)
        with _trust_cache_lock:
            if generation == _registry_generation:  # not built from data older than a change just committed
                if len(_registry_cache) >= _REGISTRY_CACHE_MAX:
                    _registry_cache.clear()
                _registry_cache[key] = cached
    # A copy: the report holds it, and no report may change what the next verification is told.
    return cached[1].model_copy(), cached[2]


def verify_for_registry(
    session: Session,
    *,
    settings: Settings,
    data: bytes,
    at: datetime | None = None,
    trust: TrustContext | None = None,
    policy: ValidationPolicy | None = None,
) -> VerificationReport:
    """Verify a document with the hub's trust, its registry status, issuing lab and transparency-log proof."""
    digest = hashlib.sha256(data).hexdigest()
    entry, lab = _recent_registry_entry(session, settings=settings, sha256=digest)
    proof = _inclusion_proof(session, sha256=digest, settings=settings) if entry.status != "unknown" else None
    return verify_document(
        data,
        trust=trust
        if trust is not None
        else hub_trust_context(session, settings=settings, max_age=TRUST_CACHE_SECONDS),
        policy=policy or hub_policy(settings),
        at=at,
        registry=entry,
        expected_lab=lab,
        inclusion_proof=proof,
    )


def registered_content(session: Session, *, sha256: str) -> bytes:
    """The stored bytes of a published registry entry with this digest, else NotFoundError."""
    entry, _ = registry_entry_for(session, sha256=sha256)
    document = session.get(StoredDocument, sha256.lower()) if entry.status != "unknown" else None
    if document is None:
        raise NotFoundError(f"No registered document has the SHA-256 {sha256}.")
    return document.content


def verify_signed_submission(
    session: Session, *, settings: Settings, content: bytes, root: etree._Element, lab: LabIdentity
) -> VerificationReport | None:
    """Refuse a submitted document whose ds:Signature is not TOTAL_PASSED or whose signer is not `lab`'s."""
    if root.find(SIGNATURE_TAG) is None and root.tag != SIGNATURE_TAG:
        return None
    report = verify_document(
        content, trust=hub_trust_context(session, settings=settings), policy=hub_policy(settings), expected_lab=lab
    )
    extra = {"report": report.model_dump(mode="json", by_alias=True)}
    binding = report.check(Constraint.lab_binding)
    if binding is not None and binding.result == CheckResult.FAILED:
        raise SignerNotBoundToLabError(f"{binding.message}; nothing was stored.", extra=extra)
    if not report.passed:
        sub = f"/{report.sub_indication}" if report.sub_indication else ""
        raise SignatureInvalidError(
            f"The signature verifies as {report.indication}{sub}; nothing was stored.", extra=extra
        )
    return report
