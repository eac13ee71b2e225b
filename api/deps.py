"""Request dependencies: database session, settings, and the authenticated actor with its scopes."""

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from api.errors import ProblemError
from certificates.service import Actor
from organizations.models import ApiKey, Organization, Scope
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


# scope="function": the commit happens before the response is sent, so a 201 always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthenticated", "Send an API key as 'Authorization: Bearer <key>'.")
    return token.strip()


KEY_CACHE_SECONDS = 30.0


def _authenticate(request: Request, session: Session, token: str) -> tuple[ApiKey, Organization] | None:
    # Keys are checked on every request; a short per-app cache of successful look-ups saves a query and a
    # hash per request. Only hits are cached, so a new key works at once; a revoked key stops within 30 s.
    cache: dict[str, tuple[float, ApiKey, Organization]] = request.app.state.key_cache
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = time.monotonic()
    cached = cache.get(digest)
    if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1], cached[2]
    found = authenticate_api_key(session, key=token)
    if found is not None:
        if len(cache) > 10_000:
            cache.clear()
        api_key, organization = found
        # Detached copies: the session's instances expire on rollback and must not outlive it.
        cache[digest] = (now, ApiKey(**api_key.model_dump()), Organization(**organization.model_dump()))
    return found


def require_scopes(*scopes: Scope) -> Callable[..., Actor]:
    """A dependency that authenticates the caller and checks it holds every scope given."""

    def dependency(request: Request, session: SessionDep) -> Actor:
        found = _authenticate(request, session, _bearer_token(request))
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
