"""Registering organizations, minting and checking API keys."""

import hashlib
import hmac
import secrets

from sqlmodel import Session, select

from organizations.models import (
    ApiKey,
    ApiKeyCreated,
    Organization,
    OrganizationCreate,
    OrganizationKind,
    Scope,
)
from storage.errors import ConflictError, NotFoundError
from storage.service import record_event

KEY_PREFIX_LENGTH = 12


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_prefix(key: str) -> str:
    return key[:KEY_PREFIX_LENGTH]


def create_organization(session: Session, *, data: OrganizationCreate) -> Organization:
    """Register an organization."""
    if data.unified_social_credit_code:
        clash = session.exec(
            select(Organization).where(Organization.unified_social_credit_code == data.unified_social_credit_code)
        ).first()
        if clash is not None:
            raise ConflictError("An organization with this unified social credit code exists.")
    organization = Organization(**data.model_dump(mode="json"))
    session.add(organization)
    session.flush()
    record_event(session, subject_kind="organization", subject_id=organization.id, action="created")
    return organization


def get_organization_or_raise(session: Session, *, organization_id: str) -> Organization:
    """The organization with this id, or NotFoundError."""
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise NotFoundError(f"No organization {organization_id}.")
    return organization


def list_organizations(session: Session) -> list[Organization]:
    """Every organization, by name."""
    return list(session.exec(select(Organization).order_by(Organization.name)))


def create_api_key(
    session: Session, *, organization_id: str, name: str, scopes: list[Scope], key: str | None = None
) -> ApiKeyCreated:
    """Mint a key for an organization (random unless given); only its hash is stored."""
    get_organization_or_raise(session, organization_id=organization_id)
    secret = key or f"qh_{secrets.token_urlsafe(32)}"
    if len(secret) < 16:
        raise ConflictError("API keys must be at least 16 characters long.")
    if session.exec(select(ApiKey).where(ApiKey.prefix == _key_prefix(secret))).first() is not None:
        raise ConflictError("A key with the same prefix exists; choose another key.")
    api_key = ApiKey(
        organization_id=organization_id,
        name=name,
        prefix=_key_prefix(secret),
        key_sha256=_hash_key(secret),
        scopes=[str(scope) for scope in scopes],
    )
    session.add(api_key)
    session.flush()
    record_event(
        session,
        subject_kind="organization",
        subject_id=organization_id,
        action="api-key-created",
        details={"keyId": api_key.id, "scopes": api_key.scopes},
    )
    return ApiKeyCreated(id=api_key.id, organization_id=organization_id, name=name, scopes=list(scopes), key=secret)


def authenticate_api_key(session: Session, *, key: str) -> tuple[ApiKey, Organization] | None:
    """The key and its organization when the secret matches an active key, else None."""
    api_key = session.exec(select(ApiKey).where(ApiKey.prefix == _key_prefix(key))).first()
    if api_key is None or api_key.revoked_at is not None:
        return None
    if not hmac.compare_digest(api_key.key_sha256, _hash_key(key)):
        return None
    organization = session.get(Organization, api_key.organization_id)
    if organization is None:
        return None
    return api_key, organization


def ensure_bootstrap_admin(session: Session, *, key: str) -> bool:
    """Create the admin organization and key once, when no admin exists; True if created."""
    admin_exists = session.exec(select(Organization).where(Organization.kind == OrganizationKind.admin)).first()
    if admin_exists is not None:
        return False
    organization = create_organization(
        session, data=OrganizationCreate(name="qihub administration", kind=OrganizationKind.admin)
    )
    create_api_key(
        session,
        organization_id=organization.id,
        name="bootstrap admin key",
        scopes=[Scope.admin, Scope.certificates_read, Scope.certificates_write],
        key=key,
    )
    return True
