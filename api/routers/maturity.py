"""Integration maturity (L1–L5) of an adapter instance, computed from the hub's own evidence.

`GET /api/v1/adapters/{id}/maturity` assesses every criterion of levels.md now (operational tables, recorded
observations and active probes), stores the assessment for the trend and returns it. `…/service-levels`
returns the L4.5 metrics alone. Both read only instances the key's organization may see (admins: all).
"""

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from adapters import maturity, service
from adapters.maturity import MaturityReport, ServiceLevels
from api.deps import ReaderDep, SessionDep
from api.errors import problem_responses
from storage.models import utc_now

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])

InstanceId = Annotated[str, Path(min_length=1, max_length=36, description="Adapter instance id")]


@router.get(
    "/{instance_id}/maturity",
    summary="Every L1–L5 criterion with pass/fail, evidence and links; the achieved level and its trend",
    response_model=MaturityReport,
    responses=problem_responses(401, 403, 404, 422),
)
async def read_maturity(
    request: Request, instance_id: InstanceId, session: SessionDep, actor: ReaderDep
) -> MaturityReport:
    """Assess the instance now from the evidence the hub collected (never from declarations) and record it."""
    instance = service.get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    # Probes (health, the conformance kit, SHACL) block: they run off the event loop.
    return await run_in_threadpool(
        maturity.assess_instance,
        session,
        instance=instance,
        settings=request.app.state.settings,
        store=getattr(request.app.state, "graph_store", None),
    )


@router.get(
    "/{instance_id}/service-levels",
    summary="L4.5 service levels: end-to-end latency, completeness and timeliness",
    response_model=ServiceLevels,
    responses=problem_responses(401, 403, 404, 422),
)
def read_service_levels(instance_id: InstanceId, session: SessionDep, actor: ReaderDep) -> ServiceLevels:
    """Measured from the instance's records, counters, commands and deliveries."""
    instance = service.get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    return maturity.service_levels_of(session, instance=instance, now=utc_now())
