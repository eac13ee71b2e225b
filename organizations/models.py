"""Organization and API-key tables and their API schemas."""

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from storage.models import utc_now
from storage.schemas import ApiSchema


class OrganizationKind(StrEnum):
    """What role an organization plays in the quality infrastructure."""

    lab = "lab"
    regulator = "regulator"
    platform = "platform"
    admin = "admin"


class Scope(StrEnum):
    """What an API key may do."""

    certificates_read = "certificates:read"
    certificates_write = "certificates:write"
    admin = "admin"
    graph_update = "graph:update"


DEFAULT_LAB_SCOPES = [Scope.certificates_read, Scope.certificates_write]


def new_id() -> str:
    """A fresh random identifier."""
    return str(uuid.uuid4())


class Organization(SQLModel, table=True):
    """A lab, regulator, platform or the hub's admin organization."""

    __tablename__ = "organizations"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=300)
    kind: str = Field(max_length=20)
    accreditation_number: str | None = Field(default=None, max_length=100)
    # 统一社会信用代码: the 18-character unified social credit code of a Chinese legal entity.
    unified_social_credit_code: str | None = Field(default=None, max_length=18, unique=True)
    created_at: datetime = Field(default_factory=utc_now)


class ApiKey(SQLModel, table=True):
    """An API key, stored only as a hash; its prefix finds it without scanning."""

    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=36)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16, unique=True, index=True)
    key_sha256: str = Field(max_length=64)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)
    revoked_at: datetime | None = None


class OrganizationCreate(ApiSchema):
    """What an admin gives to register an organization."""

    name: str = PydanticField(min_length=1, max_length=300)
    kind: OrganizationKind
    accreditation_number: str | None = PydanticField(default=None, max_length=100)
    unified_social_credit_code: str | None = PydanticField(
        default=None, pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"
    )


class OrganizationRead(ApiSchema):
    """An organization as the API shows it."""

    id: str
    name: str
    kind: OrganizationKind
    accreditation_number: str | None
    unified_social_credit_code: str | None
    created_at: datetime


class ApiKeyCreate(ApiSchema):
    """What an admin gives to mint a key."""

    name: str = PydanticField(min_length=1, max_length=200)
    scopes: list[Scope] = PydanticField(default_factory=lambda: list(DEFAULT_LAB_SCOPES), min_length=1)


class ApiKeyCreated(ApiSchema):
    """A newly minted key: the secret is shown this once and never again."""

    id: str
    organization_id: str
    name: str
    scopes: list[Scope]
    key: str
