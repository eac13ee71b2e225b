"""Request dependencies: database session, settings, and the authenticated actor with its scopes."""

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from api.errors import ProblemError
from certificates.service import Actor
from organizations.models import ApiKey, Organization, Scope
from organizations.service import authenticate_api_key
from storage.database import end_session, needs_ending, open_session
from storage.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[Session]:
    """The session of one request: committed when the block succeeds, rolled back when it fails."""
    # Async, so opening the session (no I/O) and closing one its handler already committed cost no threadpool
    # hop; whatever still needs the database (commit, rollback, after-commit listeners) runs in the threadpool.
    session = open_session(request.app.state.engine, hooks=request.app.state.hooks)
    try:
        yield session
    except Exception:
        await run_in_threadpool(end_session, session, commit=False)
        raise
    except BaseException:  # cancelled: nothing may be awaited any more; closing rolls back what is open
        session.close()
        raise
    if needs_ending(session):
        await run_in_threadpool(end_session, session, commit=True)
    else:
        session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the handler succeeds, rolled back when it fails."""
    async with request_session(request) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 201 always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _bearer_token(request: Request) -> str:
    token = _token(request)
    if token is None:
        raise ProblemError(401, "unauthenticated", "Send an API key as 'Authorization: Bearer <key>'.")
    return token


KEY_CACHE_SECONDS = 30.0
KeyCache = dict[str, tuple[float, ApiKey, Organization]]


def _cache_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cached(request: Request, token: str) -> tuple[ApiKey, Organization] | None:
    # Keys are checked on every request; a short per-app cache of successful look-ups saves a query and a
    # hash per request. Only hits are cached, so a new key works at once; a revoked key stops within 30 s.
    cache: KeyCache = request.app.state.key_cache
    cached = cache.get(_cache_key(token))
    if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
        return cached[1], cached[2]
    return None


def _authenticate(request: Request, session: Session, token: str) -> tuple[ApiKey, Organization] | None:
    found = _cached(request, token)
    if found is not None:
        return found
    found = authenticate_api_key(session, key=token)
    if found is not None:
        cache: KeyCache = request.app.state.key_cache
        if len(cache) > 10_000:
            cache.clear()
        api_key, organization = found
        # Detached copies: the session's instances expire on rollback and must not outlive it.
        cache[_cache_key(token)] = (
            time.monotonic(),
            ApiKey(**api_key.model_dump()),
            Organization(**organization.model_dump()),
        )
    return found


def _actor(request: Request, found: tuple[ApiKey, Organization] | None, scopes: tuple[Scope, ...]) -> Actor:
    if found is None:
        raise ProblemError(401, "invalid-key", "The API key is unknown or revoked.")
    api_key, organization = found
    missing = [str(scope) for scope in scopes if str(scope) not in api_key.scopes]
    if missing:
        raise ProblemError(403, "missing-scope", f"The key lacks the scope(s): {', '.join(missing)}.")
    request.state.organization_id = organization.id
    return Actor(organization=organization, key=api_key)


def cached_actor(request: Request, *scopes: Scope) -> Actor | None:
    """The caller, when its key was looked up in the last 30 s and holds every scope given; else None."""
    token = _token(request)
    found = _cached(request, token) if token is not None else None
    if found is None or any(str(scope) not in found[0].scopes for scope in scopes):
        return None
    return _actor(request, found, scopes)


def require_scopes(*scopes: Scope) -> Callable[[Request, Session], Actor]:
    """A dependency (or plain check) that authenticates the caller and checks it holds every scope given."""

    def dependency(request: Request, session: SessionDep) -> Actor:
        return _actor(request, _authenticate(request, session, _bearer_token(request)), scopes)

    return dependency


def scoped_actor(*scopes: Scope) -> Callable[[Request, Session], Awaitable[Actor]]:
    """`require_scopes` as an async dependency: a cached key is checked without a threadpool hop."""

    async def dependency(request: Request, session: SessionDep) -> Actor:
        token = _bearer_token(request)
        found = _cached(request, token)
        if found is None:
            found = await run_in_threadpool(_authenticate, request, session, token)
        return _actor(request, found, scopes)

    return dependency


ReaderDep = Annotated[Actor, Depends(scoped_actor(Scope.certificates_read))]
WriterDep = Annotated[Actor, Depends(scoped_actor(Scope.certificates_write))]
AdminDep = Annotated[Actor, Depends(scoped_actor(Scope.admin))]
