"""Registry tables of the standards, accreditations and product conformity certificates, and their API schemas.

The relational rows are the system of record (search, upsert, audit); each row is also mapped into its own
named graph of the knowledge graph (`graph.registry_mapping`) so SPARQL joins it with certificates.
"""

import re
import unicodedata
import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import utc_now
from storage.schemas import ApiSchema

QUDT_QUANTITY_KIND = "http://qudt.org/vocab/quantitykind/"
QUDT_UNIT = "http://qudt.org/vocab/unit/"
# Dashes and spaces vary between sources ('GB/T 27025—2019', 'GB/T 27025-2019', 'GB/T　27025-2019').
_DASHES = re.compile(r"[\u2010-\u2015\u2212\uFE58\uFE63\uFF0D]")
_SPACES = re.compile(r"\s+")
_QUDT_LOCAL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
_SAFE_IRI = re.compile(r"^https?://[^\s<>\"{}|\\^`]+$")


def normalize_standard_code(code: str) -> str:
    """The canonical spelling of a standard code: NFKC, ASCII hyphens, single spaces, no padding."""
    text = unicodedata.normalize("NFKC", code)
    text = _DASHES.sub("-", text)
    return _SPACES.sub(" ", text).strip()


def _code(value: Any) -> Any:
    return normalize_standard_code(value) if isinstance(value, str) else value


def _qudt_iri(base: str) -> Any:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if _QUDT_LOCAL_NAME.match(value):
            return base + value
        if _SAFE_IRI.match(value):
            return value
        raise ValueError(f"neither a QUDT local name (e.g. 'Temperature') nor an http(s) IRI: {value!r}")

    return convert


StandardCode = Annotated[str, BeforeValidator(_code), PydanticField(min_length=1, max_length=100)]
QuantityKindIri = Annotated[str, BeforeValidator(_qudt_iri(QUDT_QUANTITY_KIND)), PydanticField(max_length=500)]
UnitIri = Annotated[str, BeforeValidator(_qudt_iri(QUDT_UNIT)), PydanticField(max_length=500)]


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


CodeList = Annotated[list[StandardCode], AfterValidator(_unique), PydanticField(max_length=50)]


def new_id() -> str:
    """A fresh random identifier."""
    return str(uuid.uuid4())


# --- standards ------------------------------------------------------------------------------------------


class GraphFollowPosition(SQLModel, table=True):
    """How far a follower of the audit trail has mapped changes into the graph (kept across restarts)."""

    __tablename__ = "graph_follow_positions"

    name: str = Field(primary_key=True, max_length=60)  # the follower, e.g. "registry"
    audit_event_id: int  # the last audit event it mapped
    updated_at: datetime = Field(default_factory=utc_now)


class StandardStatus(StrEnum):
    """Where a standard is in its life: drafted, in force, replaced by a newer edition, or withdrawn."""

    draft = "draft"
    current = "current"
    replaced = "replaced"
    withdrawn = "withdrawn"


class Standard(SQLModel, table=True):
    """One edition of a standard (the code carries the edition year, e.g. 'GB/T 27025-2019')."""

    __tablename__ = "standards"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    code: str = Field(unique=True, index=True, max_length=100)
    title: str | None = Field(default=None, max_length=1000)
    title_zh: str | None = Field(default=None, max_length=1000)
    edition: str | None = Field(default=None, max_length=50)
    status: str = Field(default=StandardStatus.current, index=True, max_length=20)
    published_on: date | None = None
    implemented_on: date | None = None
    withdrawn_on: date | None = None
    issuing_body: str | None = Field(default=None, max_length=300)
    ics_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    replaces: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    replaced_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    clauses: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class Clause(ApiSchema):
    """A numbered clause of a standard (e.g. '7.2 Selection, verification and validation of methods')."""

    number: str = PydanticField(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")
    title: str | None = PydanticField(default=None, max_length=500)


class StandardIn(ApiSchema):
    """One standard as imported (JSON object, or one CSV row with the same column names)."""

    code: StandardCode
    title: str | None = PydanticField(default=None, min_length=1, max_length=1000)
    title_zh: str | None = PydanticField(default=None, min_length=1, max_length=1000)
    edition: str | None = PydanticField(default=None, min_length=1, max_length=50)
    status: StandardStatus = StandardStatus.current
    published_on: date | None = None
    implemented_on: date | None = None
    withdrawn_on: date | None = None
    issuing_body: str | None = PydanticField(default=None, min_length=1, max_length=300)
    ics_codes: list[Annotated[str, PydanticField(pattern=r"^\d{2}(\.\d{3}(\.\d{2})?)?$")]] = PydanticField(
        default_factory=list, max_length=20
    )
    replaces: CodeList = PydanticField(default_factory=list)
    replaced_by: CodeList = PydanticField(default_factory=list)
    clauses: list[Clause] = PydanticField(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> "StandardIn":
        if self.code in self.replaces or self.code in self.replaced_by:
            raise ValueError("a standard cannot replace itself")
        if self.published_on and self.implemented_on and self.implemented_on < self.published_on:
            raise ValueError("implementedOn is before publishedOn")
        return self


class StandardRead(StandardIn):
    """A registered standard."""

    id: str
    created_at: datetime
    updated_at: datetime


class StandardPage(ApiSchema):
    """One page of a standards search."""

    items: list[StandardRead]
    total: int
    limit: int
    offset: int


class ImportProblem(ApiSchema):
    """Why one row or item of an import was refused (row numbers count from 1; the CSV header is row 0)."""

    row: int
    code: str | None = None
    field: str | None = None
    message: str


class ImportAction(StrEnum):
    """What an import did to one item."""

    created = "created"
    updated = "updated"


class ImportedItem(ApiSchema):
    """One item an import stored, with the named graph it was mapped into."""

    id: str
    key: str = PydanticField(description="The natural key: a standard code, or body/scheme and number.")
    action: ImportAction
    graph: str = PydanticField(description="The named graph (re)written in the knowledge graph after the commit.")


class ImportReport(ApiSchema):
    """What an import did: every item was created or updated (a refused batch stores nothing)."""

    created: int
    updated: int
    items: list[ImportedItem]


class StandardLink(ApiSchema):
    """One standard on a replacement chain (unregistered successors are named but carry no status)."""

    code: str
    registered: bool
    status: StandardStatus | None = None
    title: str | None = None
    implemented_on: date | None = None
    replaced_by: list[str] = PydanticField(default_factory=list)


class CurrentStandardAnswer(ApiSchema):
    """Whether a standard is in force, and, if not, which standard(s) replaced it."""

    code: str
    status: StandardStatus
    is_current: bool = PydanticField(description="In force: status current and no in-force successor yet.")
    chain: list[StandardLink] = PydanticField(description="The standard and its successors, breadth first.")
    current_codes: list[str] = PydanticField(description="The in-force standard(s) at the end of the chain.")


# --- accreditations ---------------------------------------------------------------------------------------


class AccreditationStatus(StrEnum):
    """State of an accreditation as its body publishes it."""

    active = "active"
    suspended = "suspended"
    withdrawn = "withdrawn"
    expired = "expired"


class ScopeEntry(ApiSchema):
    """One line of an accreditation scope: a quantity kind over a range, or a test method / standard."""

    quantity_kind: QuantityKindIri | None = PydanticField(
        default=None, description="QUDT quantity kind IRI or local name, e.g. 'Temperature'."
    )
    range_min: Decimal | None = None
    range_max: Decimal | None = None
    unit: UnitIri | None = PydanticField(default=None, description="QUDT unit IRI or local name, e.g. 'DEG_C'.")
    method_code: StandardCode | None = PydanticField(
        default=None, description="The standard or method the scope names, e.g. 'JJG 160-2007'."
    )
    description: str | None = PydanticField(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _complete(self) -> "ScopeEntry":
        if self.quantity_kind is None and self.method_code is None:
            raise ValueError("a scope entry names a quantityKind or a methodCode")
        has_range = self.range_min is not None or self.range_max is not None
        if has_range and (self.quantity_kind is None or self.unit is None):
            raise ValueError("a range needs its quantityKind and unit")
        if self.range_min is not None and self.range_max is not None and self.range_min > self.range_max:
            raise ValueError("rangeMin is above rangeMax")
        return self


class Accreditation(SQLModel, table=True):
    """An accreditation of a lab by an accreditation body (e.g. CNAS), with its scope."""

    __tablename__ = "accreditations"
    __table_args__ = (UniqueConstraint("body", "number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    body: str = Field(index=True, max_length=100)
    number: str = Field(index=True, max_length=100)
    holder_organization_id: str | None = Field(default=None, foreign_key="organizations.id", index=True, max_length=36)
    holder_name: str = Field(max_length=300)
    status: str = Field(default=AccreditationStatus.active, index=True, max_length=20)
    valid_from: date | None = None
    valid_to: date | None = None
    scope: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class AccreditationIn(ApiSchema):
    """An accreditation as imported; (body, number) identifies it, so importing again updates it."""

    body: str = PydanticField(min_length=1, max_length=100, description="Accreditation body, e.g. 'CNAS'.")
    number: str = PydanticField(min_length=1, max_length=100, description="e.g. 'CNAS L0001'.")
    holder_organization_id: str | None = PydanticField(default=None, min_length=1, max_length=36)
    holder_name: str | None = PydanticField(default=None, min_length=1, max_length=300)
    status: AccreditationStatus = AccreditationStatus.active
    valid_from: date | None = None
    valid_to: date | None = None
    scope: list[ScopeEntry] = PydanticField(default_factory=list, max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> "AccreditationIn":
        if self.holder_organization_id is None and self.holder_name is None:
            raise ValueError("name the holder: holderOrganizationId or holderName")
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("validTo is before validFrom")
        return self


class AccreditationRead(ApiSchema):
    """A registered accreditation."""

    id: str
    body: str
    number: str
    holder_organization_id: str | None
    holder_name: str
    status: AccreditationStatus
    valid_from: date | None
    valid_to: date | None
    scope: list[ScopeEntry]
    created_at: datetime
    updated_at: datetime


# --- product conformity certificates ---------------------------------------------------------------------


class ConformityCertificateStatus(StrEnum):
    """State of a product certificate (CCC and voluntary schemes publish these)."""

    valid = "valid"
    suspended = "suspended"
    withdrawn = "withdrawn"
    expired = "expired"


class ConformityCertificate(SQLModel, table=True):
    """A product conformity certificate (e.g. a CCC certificate) of a holder for a product."""

    __tablename__ = "conformity_certificates"
    __table_args__ = (UniqueConstraint("scheme", "number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    scheme: str = Field(index=True, max_length=100)
    number: str = Field(index=True, max_length=100)
    holder_organization_id: str | None = Field(default=None, foreign_key="organizations.id", index=True, max_length=36)
    holder_name: str = Field(max_length=300)
    issuer: str | None = Field(default=None, max_length=300)
    product: str = Field(max_length=500)
    product_model: str | None = Field(default=None, max_length=500)
    standard_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=ConformityCertificateStatus.valid, index=True, max_length=20)
    issued_on: date | None = None
    expires_on: date | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)


class ConformityCertificateIn(ApiSchema):
    """A product certificate as imported; (scheme, number) identifies it."""

    scheme: str = PydanticField(min_length=1, max_length=100, description="Certification scheme, e.g. 'CCC'.")
    number: str = PydanticField(min_length=1, max_length=100)
    holder_organization_id: str | None = PydanticField(default=None, min_length=1, max_length=36)
    holder_name: str | None = PydanticField(default=None, min_length=1, max_length=300)
    issuer: str | None = PydanticField(
        default=None, min_length=1, max_length=300, description="The certification body."
    )
    product: str = PydanticField(min_length=1, max_length=500)
    product_model: str | None = PydanticField(default=None, min_length=1, max_length=500)
    standard_codes: CodeList = PydanticField(default_factory=list)
    status: ConformityCertificateStatus = ConformityCertificateStatus.valid
    issued_on: date | None = None
    expires_on: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ConformityCertificateIn":
        if self.holder_organization_id is None and self.holder_name is None:
            raise ValueError("name the holder: holderOrganizationId or holderName")
        if self.issued_on and self.expires_on and self.expires_on < self.issued_on:
            raise ValueError("expiresOn is before issuedOn")
        return self


class ConformityCertificateRead(ApiSchema):
    """A registered product conformity certificate."""

    id: str
    scheme: str
    number: str
    holder_organization_id: str | None
    holder_name: str
    issuer: str | None
    product: str
    product_model: str | None
    standard_codes: list[str]
    status: ConformityCertificateStatus
    issued_on: date | None
    expires_on: date | None
    created_at: datetime
    updated_at: datetime
