"""What a verification trusts: anchors, intermediates, revocation data, and which lab a signer is bound to."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization


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
    # DER of each CRL object, encoded once (a context is reused by many verifications); keyed by id, and the
    # object is kept so that a reused id never answers for another CRL.
    _crl_ders: dict[int, tuple[x509.CertificateRevocationList, bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def crl_ders(self) -> list[bytes]:
        """The DER encoding of every CRL in `crls`."""
        encoded = []
        for crl in self.crls:
            cached = self._crl_ders.get(id(crl))
            if cached is None or cached[0] is not crl:
                cached = self._crl_ders[id(crl)] = (crl, crl.public_bytes(serialization.Encoding.DER))
            encoded.append(cached[1])
        return encoded
