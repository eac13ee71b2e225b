"""Write-back commands to adapter sources, with idempotency keys and acknowledgements.

A lab or platform organization commands (`certificates:write`) and reads (`certificates:read`) the instances it
owns; admins all. Others' commands answer 404 like unknown ids.
"""

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from adapters import commands
from adapters.commands import CommandCreate, CommandPage, CommandRead
from adapters.framework import SystemClock
from adapters.models import CommandStatus
from api.deps import ReaderDep, SessionDep, WriterDep
from api.errors import ProblemError, problem_responses

router = APIRouter(prefix="/api/v1/commands", tags=["commands"])

CommandId = Annotated[str, Path(min_length=1, max_length=36, description="Command id")]
CREATE_DESCRIPTION = """Queue a write-back (e.g. `senaite.transition` with `{"uid", "transition"}`) for the worker to
send to the instance's source. Give an idempotency key as the `Idempotency-Key` header or the `idempotencyKey`
field: the same key with the same command answers 200 with the stored command and changes nothing (the header
`Idempotent-Replayed: true` says so); the same key with a different command is 409 `idempotency-key-reused`.

The cross-domain rules are asked first: a command they block (e.g. issuing a report whose instrument's
calibration had expired) is stored with status `blocked` and its `reasons`, and never sent. Otherwise the
command is `pending`, then `sent`, then `acknowledged` (the source's answer in `ack`, a `command.acknowledged`
event), or `failed` and retried with backoff, then `dead-lettered` (a `command.dead-lettered` event); a refusal
the source calls final runs the command's `compensation`, if it has one, and leaves it `compensated`."""


@router.post(
    "",
    status_code=201,
    summary="Queue a write-back command to an adapter's source (idempotent per key)",
    response_model=CommandRead,
    responses={
        200: {"model": CommandRead, "description": "The stored command (same key, same command)"},
        **problem_responses(400, 401, 403, 404, 409, 422),
    },
    description=CREATE_DESCRIPTION,
)
def create_command(
    body: CommandCreate,
    response: Response,
    session: SessionDep,
    actor: WriterDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> CommandRead:
    """201 for a new command, 200 when the key replays a stored one."""
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ProblemError(422, "idempotency-key-mismatch", "The Idempotency-Key header and body field differ.")
    key = idempotency_key or body.idempotency_key
    if not key:
        raise ProblemError(422, "idempotency-key-required", "Send an Idempotency-Key header or idempotencyKey.")
    command, created = commands.request_command(
        session, actor=actor, data=body, idempotency_key=key, clock=SystemClock()
    )
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/v1/commands/{command.id}"
    return commands.command_read(command)


@router.get(
    "",
    summary="List commands (of the caller's instances; admins see all), newest first",
    response_model=CommandPage,
    responses=problem_responses(401, 403, 422),
)
def list_commands(
    session: SessionDep,
    actor: ReaderDep,
    instance: Annotated[str | None, Query(min_length=1, max_length=36, description="Adapter instance id")] = None,
    status: CommandStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CommandPage:
    """Filter by instance and status."""
    return commands.list_commands(session, actor=actor, instance_id=instance, status=status, limit=limit, offset=offset)


@router.get(
    "/{command_id}",
    summary="Read one command: status, attempts, last error, the source's acknowledgement",
    response_model=CommandRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_command(command_id: CommandId, session: SessionDep, actor: ReaderDep) -> CommandRead:
    """404 for others' commands, as for unknown ids."""
    return commands.command_read(commands.get_command_or_raise(session, actor=actor, command_id=command_id))
