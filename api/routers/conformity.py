"""Accreditations of labs and product conformity certificates: import (upsert) and list.

Writing is for the hub's admins (`admin` scope) and for platform or regulator organizations whose key has
`certificates:write` (they publish these registers); reading needs `certificates:read`. A batch is stored
whole or not at all, and every stored item is mapped into its own named graph of the knowledge graph.
"""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from api.deps import ReaderDep, SessionDep, require_scopes
from api.errors import ProblemError, problem_responses
from certificates.service import Actor
from graph import service
from graph.models import (
    AccreditationIn,
    AccreditationRead,
    AccreditationStatus,
    ConformityCertificateIn,
    ConformityCertificateRead,
    ConformityCertificateStatus,
    ImportReport,
)
from organizations.models import OrganizationKind, Scope

router = APIRouter(prefix="/api/v1", tags=["conformity"])

PUBLISHER_KINDS = {OrganizationKind.platform, OrganizationKind.regulator}
MAX_BATCH = service.MAX_IMPORT_ROWS


def require_register_writer(actor: Annotated[Actor, Depends(require_scopes())]) -> Actor:
    """Admins, or platforms and regulators with `certificates:write`, may write these registers."""
    scopes = actor.key.scopes if actor.key else []
    if Scope.admin in scopes:
        return actor
    if actor.organization.kind in PUBLISHER_KINDS and Scope.certificates_write in scopes:
        return actor
    raise ProblemError(
        403, "forbidden", "Only admins, or platforms and regulators with certificates:write, may write registers."
    )


RegisterWriterDep = Annotated[Actor, Depends(require_register_writer)]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.post(
    "/accreditations",
    summary="Import accreditations (upsert by body and number; a batch with a bad item stores nothing)",
    response_model=ImportReport,
    responses=problem_responses(400, 401, 403, 422),
)
def import_accreditations(
    items: Annotated[list[AccreditationIn], Body(min_length=1, max_length=MAX_BATCH)],
    session: SessionDep,
    actor: RegisterWriterDep,
) -> ImportReport:
    """Each scope entry names a QUDT quantity kind with an optional range and unit, or a method/standard code."""
    return service.import_accreditations(session, items=items, actor=actor)


@router.get(
    "/accreditations",
    summary="List accreditations by body, holder, status or a method named in their scope",
    response_model=list[AccreditationRead],
    responses=problem_responses(401, 403, 422),
)
def list_accreditations(
    session: SessionDep,
    _reader: ReaderDep,
    body: Annotated[str | None, Query(max_length=100, description="Accreditation body, e.g. 'CNAS'")] = None,
    holder: Annotated[str | None, Query(max_length=36, description="Holder organization id")] = None,
    status: AccreditationStatus | None = None,
    method: Annotated[str | None, Query(max_length=100, description="Method or standard code in the scope")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[AccreditationRead]:
    """Ordered by body and number."""
    return service.list_accreditations(
        session,
        body=body,
        holder_organization_id=holder,
        status=status,
        method_code=method,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/conformity-certificates",
    summary="Import product conformity certificates (upsert by scheme and number; all or nothing)",
    response_model=ImportReport,
    responses=problem_responses(400, 401, 403, 422),
)
def import_conformity_certificates(
    items: Annotated[list[ConformityCertificateIn], Body(min_length=1, max_length=MAX_BATCH)],
    session: SessionDep,
    actor: RegisterWriterDep,
) -> ImportReport:
    """E.g. CCC certificates: holder, product and model, the standards certified against, dates and status."""
    return service.import_conformity_certificates(session, items=items, actor=actor)


@router.get(
    "/conformity-certificates",
    summary="List product conformity certificates by scheme, holder, status or a standard they cite",
    response_model=list[ConformityCertificateRead],
    responses=problem_responses(401, 403, 422),
)
def list_conformity_certificates(
    session: SessionDep,
    _reader: ReaderDep,
    scheme: Annotated[str | None, Query(max_length=100, description="e.g. 'CCC'")] = None,
    holder: Annotated[str | None, Query(max_length=36, description="Holder organization id")] = None,
    status: ConformityCertificateStatus | None = None,
    standard: Annotated[str | None, Query(max_length=100, description="A standard code the certificate cites")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[ConformityCertificateRead]:
    """Ordered by scheme and number."""
    return service.list_conformity_certificates(
        session,
        scheme=scheme,
        holder_organization_id=holder,
        status=status,
        standard_code=standard,
        limit=limit,
        offset=offset,
    )
