"""Cross-domain rules on fused data: environment limits per room, the flags the rules raised, report-issue check.

Limits are managed by admins and readable by any key (they are the methods' requirements, not lab data).
Flags name samples, rooms and instruments of any tenant, so listing them is for admins. The report-issue check
answers, for the samples asked about, whether a report may be issued now (instrument calibrations), with the
same reasons that block a report-issuing write-back command.
"""

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlmodel import Session

from adapters import rules
from adapters.framework import SystemClock
from api.deps import AdminDep, SessionDep, require_scopes
from api.errors import problem_responses
from certificates.service import Actor
from organizations.models import Scope

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])
log = structlog.get_logger("qihub.rules")

AnyKeyDep = Annotated[Actor, Depends(require_scopes())]
ReaderDep = Annotated[Actor, Depends(require_scopes(Scope.certificates_read))]


def _publish_limits(request: Request, session: Session) -> None:
    # The SPARQL cross-source query reads the limits from the graph; a graph failure must not fail the change.
    store = getattr(request.app.state, "graph_store", None)
    if store is None:
        return
    from adapters.fusion import publish_environment_limits

    try:
        publish_environment_limits(session, store=store)
    except Exception:
        log.exception("rules.limits_graph_failed")


@router.get(
    "/environment-limits",
    summary="The environment limits per room and quantity",
    response_model=list[rules.EnvironmentLimitRead],
    responses=problem_responses(401),
)
def list_environment_limits(
    session: SessionDep,
    _reader: AnyKeyDep,
    room: Annotated[str | None, Query(max_length=200)] = None,
) -> list[rules.EnvironmentLimitRead]:
    """Every limit (or one room's), by room and quantity."""
    return [
        rules.EnvironmentLimitRead.model_validate(limit) for limit in rules.list_environment_limits(session, room=room)
    ]


@router.put(
    "/environment-limits",
    summary="Create or replace the limit of one quantity in one room (admin)",
    response_model=rules.EnvironmentLimitRead,
    responses=problem_responses(401, 403, 422),
)
def put_environment_limit(
    data: rules.EnvironmentLimitWrite,
    request: Request,
    response: Response,
    session: SessionDep,
    _admin: AdminDep,
) -> rules.EnvironmentLimitRead:
    """Upsert by (room, quantity); the unit is normalised to UCUM; 201 when created, 200 when replaced."""
    limit, created = rules.upsert_environment_limit(session, data=data)
    response.status_code = 201 if created else 200
    _publish_limits(request, session)
    return rules.EnvironmentLimitRead.model_validate(limit)


@router.delete(
    "/environment-limits/{limit_id}",
    summary="Remove an environment limit (admin)",
    status_code=204,
    responses=problem_responses(401, 403, 404),
)
def delete_environment_limit(
    limit_id: Annotated[int, Path(ge=1)], request: Request, session: SessionDep, _admin: AdminDep
) -> Response:
    """Later readings of that room and quantity are no longer checked."""
    rules.delete_environment_limit_or_raise(session, limit_id=limit_id)
    _publish_limits(request, session)
    return Response(status_code=204)


@router.get(
    "/flags",
    summary="Findings of the cross-domain rules, newest first (admins see all, organizations their own)",
    response_model=list[rules.RuleFlagRead],
    responses=problem_responses(401, 403, 422),
)
def list_rule_flags(
    session: SessionDep,
    actor: ReaderDep,
    rule: Annotated[str | None, Query(max_length=60, description="e.g. environment-excursion")] = None,
    room: Annotated[str | None, Query(max_length=200)] = None,
    subject_key: Annotated[str | None, Query(alias="subjectKey", max_length=300)] = None,
    open_only: Annotated[bool, Query(alias="open", description="Only flags not cleared")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[rules.RuleFlagRead]:
    """Rules: environment-excursion, test-during-excursion, calibration-expired, test-on-unavailable-instrument.

    A flag belongs to the organization owning the adapter instance that landed the flagged record.
    """
    flags = rules.list_rule_flags(
        session,
        organization_id=None if actor.is_admin else actor.organization.id,
        rule=rule,
        room=room,
        subject_key=subject_key,
        open_only=open_only,
        limit=limit,
        offset=offset,
    )
    return [rules.RuleFlagRead.model_validate(flag) for flag in flags]


@router.post(
    "/report-issue-check",
    summary="May a report on these samples be issued now? (instrument calibrations)",
    response_model=rules.ReportIssueAnswer,
    responses=problem_responses(401, 403, 422),
)
def report_issue_check(
    check: rules.ReportIssueCheck, request: Request, session: SessionDep, _reader: ReaderDep
) -> rules.ReportIssueAnswer:
    """`allowed` is false with the reasons when a result was measured with an instrument out of calibration."""
    clock = getattr(request.app.state, "clock", None) or SystemClock()
    return rules.check_report_issue(session, check=check, clock=clock)
