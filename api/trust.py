"""Wiring of the trust domain into an app: keys, listeners (transparency log) and state."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.errors import problem_response
from signing.hsm import Pkcs11UnavailableError
from signing.keys import MasterKeyMismatchError
from signing.pki import CertificateAuthorityError, HubCertificateAuthority, load_or_create_hub_ca
from signing.transparency import LogCorruptedError, LogKeyError, install_transparency_log
from storage.errors import DomainError
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
