"""Request dependencies: database session, settings, and the authenticated actor with its scopes."""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.errors import ProblemError
from certificates.service import Actor
from organizations.models import Scope
from organizations.service import authenticate_api_key
from storage.database import session_scope
from storage.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the handler succeeds."""
    with session_scope(request.app.state.engine, hooks=request.app.state.hooks) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Send an API key as 'Authorization: Bearer <key>'.")
    return token.strip()


def require_scopes(*scopes: Scope) -> Callable[..., Actor]:
    """A dependency that authenticates the caller and checks it holds every scope given."""

    def dependency(request: Request, session: SessionDep) -> Actor:
        found = authenticate_api_key(session, key=_bearer_token(request))
        if found is None:
            raise ProblemError(401, "invalid-key", "The API key is unknown or revoked.")
        api_key, organization = found
        missing = [str(scope) for scope in scopes if str(scope) not in api_key.scopes]
        if missing:
            raise ProblemError(403, "missing-scope", f"The key lacks the scope(s): {', '.join(missing)}.")
        request.state.organization_id = organization.id
        return Actor(organization=organization, key=api_key)

    return dependency


ReaderDep = Annotated[Actor, Depends(require_scopes(Scope.certificates_read))]
WriterDep = Annotated[Actor, Depends(require_scopes(Scope.certificates_write))]
AdminDep = Annotated[Actor, Depends(require_scopes(Scope.admin))]
