"""Wiring of the trust domain into an app: keys, listeners (transparency log) and state."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.errors import problem_response
from signing.hsm import Pkcs11UnavailableError
from signing.keys import MasterKeyMismatchError
from signing.pki import CertificateAuthorityError, HubCertificateAuthority, load_or_create_hub_ca
from signing.service import ANCHOR_SUBJECT, CERTIFICATE_SUBJECT
from signing.transparency import LogCorruptedError, LogKeyError, install_transparency_log
from signing.verification_service import forget_registry_entries, forget_trust_contexts
from storage.errors import DomainError
from storage.models import AuditEvent
from storage.settings import Settings


class LazyHubCertificateAuthority:
    """The hub CA of one app, created or loaded on first use (a hub that never signs never makes one)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def get(self) -> HubCertificateAuthority:
        """The CA (cached per pki dir by `load_or_create_hub_ca`)."""
        return load_or_create_hub_ca(self._settings)


def install_trust(app: FastAPI) -> None:
    """Attach trust services to the app: the lazily created hub CA, and 503s for an unusable CA or master key."""
    app.state.hub_ca = LazyHubCertificateAuthority(app.state.settings)

    async def _unavailable(request: Request, error: Exception) -> JSONResponse:
        # A broken CA or master key is the hub's configuration, not the caller's request: 503, not 4xx.
        assert isinstance(error, DomainError)
        return problem_response(request, status=503, code=error.code, title=error.title, detail=error.detail)

    app.add_exception_handler(CertificateAuthorityError, _unavailable)
    app.add_exception_handler(MasterKeyMismatchError, _unavailable)
    app.add_exception_handler(Pkcs11UnavailableError, _unavailable)
    app.add_exception_handler(LogKeyError, _unavailable)
    app.add_exception_handler(LogCorruptedError, _unavailable)
    # Issued, revoked and superseded certificates append to the transparency log in their own transaction.
    install_transparency_log(app.state.hooks, settings=app.state.settings)
    # Anchors, signing certificates (enrolled, revoked) and organizations (accreditation numbers) make up the
    # verifier's trust context: once such a change is committed, public verifications must not use a cached one.
    for subject_kind in (ANCHOR_SUBJECT, CERTIFICATE_SUBJECT, "organization"):
        app.state.hooks.on_event(subject_kind, _forget_trust_contexts, after_commit=True)
    # Likewise the registry status of documents (issued, revoked, superseded; the issuing lab's name).
    for subject_kind in ("certificate", "organization"):
        app.state.hooks.on_event(subject_kind, _forget_registry_entries, after_commit=True)


def _forget_trust_contexts(session: Session, event: AuditEvent) -> None:
    forget_trust_contexts()


def _forget_registry_entries(session: Session, event: AuditEvent) -> None:
    forget_registry_entries()
