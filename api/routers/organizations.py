"""Organizations and their API keys (admin only)."""

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import AdminDep, SessionDep
from api.errors import problem_responses
from organizations import service
from organizations.models import ApiKeyCreate, ApiKeyCreated, OrganizationCreate, OrganizationRead

router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"])

OrganizationId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post(
    "",
    status_code=201,
    summary="Register an organization (lab, regulator, platform, admin)",
    response_model=OrganizationRead,
    responses=problem_responses(400, 401, 403, 409, 422),
)
def create_organization(body: OrganizationCreate, session: SessionDep, _admin: AdminDep) -> OrganizationRead:
    """Register an organization."""
    return OrganizationRead.model_validate(service.create_organization(session, data=body))


@router.get(
    "",
    summary="List organizations",
    response_model=list[OrganizationRead],
    responses=problem_responses(401, 403),
)
def list_organizations(session: SessionDep, _admin: AdminDep) -> list[OrganizationRead]:
    """Every organization, by name."""
    return [OrganizationRead.model_validate(item) for item in service.list_organizations(session)]


@router.get(
    "/{organization_id}",
    summary="Read an organization",
    response_model=OrganizationRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_organization(organization_id: OrganizationId, session: SessionDep, _admin: AdminDep) -> OrganizationRead:
    """One organization."""
    return OrganizationRead.model_validate(service.get_organization_or_raise(session, organization_id=organization_id))


@router.post(
    "/{organization_id}/keys",
    status_code=201,
    summary="Mint an API key for an organization (the secret is shown once)",
    response_model=ApiKeyCreated,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def create_api_key(
    organization_id: OrganizationId, body: ApiKeyCreate, session: SessionDep, _admin: AdminDep
) -> ApiKeyCreated:
    """Mint a scoped key."""
    return service.create_api_key(session, organization_id=organization_id, name=body.name, scopes=body.scopes)
