"""Generic LIMS push: labs without a LIMS API send results as JSON or CSV with a mapping."""

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from adapters import service
from adapters.builtin.lims_push import CSV_TYPES, JSON_TYPES, PushReport, land_push
from adapters.framework import SystemClock
from api.body import media_type_of, read_body_limited
from api.deps import SessionDep, WriterDep
from api.errors import ProblemError, problem_responses
from certificates.service import Actor

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])

InstanceId = Annotated[str, Path(min_length=1, max_length=36, description="Adapter instance id")]
PUSH_DESCRIPTION = """For LIMS without an API (an instance of the `lims-push` plug-in, or any plug-in with the
`http-push` transport). Send a JSON array of row objects (`application/json`) or a CSV file with a header row
(`text/csv`, UTF-8). The instance's configuration maps columns to canonical fields (`mapping`: column →
`{field, unit, transform}`); without one, columns named like canonical fields are used as they are.

Every row is landed as its own message: rows that cannot become a canonical record are quarantined with a
machine-readable `errorCode` (missing-identifier, unknown-unit, invalid-value, unknown-code, schema-violation,
malformed-payload) while the others are accepted; a row pushed before is counted as a duplicate. The answer
lists each row's outcome. A body that cannot be split into rows stores nothing (400 `invalid-push-body`,
415 for other media types, 413 when too large)."""
PUSH_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "text/csv": {"schema": {"type": "string", "description": "CSV with a header row"}},
    },
}


def _push(
    session: Session, actor: Actor, instance_id: str, body: bytes, media_type: str, source: str, max_bytes: int
) -> PushReport:
    instance = service.get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    adapter = service.build_adapter(instance.adapter, instance.config)
    return land_push(
        session,
        instance=instance,
        adapter=adapter,
        body=body,
        media_type=media_type,
        source=source,
        clock=SystemClock(),
        max_message_bytes=max_bytes,
    )


@router.post(
    "/{instance_id}/push",
    summary="Push results (JSON array or CSV) from a LIMS without an API; each row lands or is quarantined",
    response_model=PushReport,
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
    openapi_extra={"requestBody": PUSH_BODY},
    description=PUSH_DESCRIPTION,
)
async def push(request: Request, instance_id: InstanceId, session: SessionDep, actor: WriterDep) -> PushReport:
    """Land the rows in one transaction: the report, the rows and their records are stored together."""
    media_type = media_type_of(request)
    if media_type not in JSON_TYPES + CSV_TYPES:
        raise ProblemError(415, "unsupported-media-type", "Send application/json (an array) or text/csv.")
    settings = request.app.state.settings
    body = await read_body_limited(request, max_bytes=settings.max_document_bytes)
    return await run_in_threadpool(
        _push,
        session,
        actor,
        instance_id,
        body,
        media_type,
        str(request.url.path),
        settings.adapter_max_message_bytes,
    )
