"""What a verification trusts: anchors, intermediates, revocation data, and which lab a signer is bound to."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509


@dataclass(frozen=True)
class LabIdentity:
    """A lab as the verifier sees it: its id, accreditation number and registered signing-certificate fingerprints."""

    organization_id: str
    name: str
    accreditation_number: str | None = None
    registered_fingerprints: frozenset[str] = frozenset()  # SHA-256 hex of DER certificates


@dataclass
class TrustContext:
    """Everything a verification may rely on besides the document itself.

    Built by `signing.service.trust_context_for(...)` from the hub's stores, or directly by tests and the
    offline CLI (`qihub verify FILE --trust PEM`).
    """

    anchors: list[x509.Certificate] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)
    # Returns the lab a signing certificate is bound to, or None when the hub knows no binding.
    lab_of_certificate: Callable[[x509.Certificate], LabIdentity | None] | None = None
    # Certificates revoked in the hub's registry (SHA-256 hex → revocation time). Hub-issued ones are also on
    # the hub CRL; registered external ones are revoked only here, as their CA's CRL may not list them.
    revoked_fingerprints: dict[str, datetime] = field(default_factory=dict)
