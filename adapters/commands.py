"""Write-back commands (L4.2, L4.4): queued with an idempotency key, sent once, acknowledged, retried or dead-lettered.

A command is created once per `(instance, idempotency key)`: asking again with the same key and the same
content returns the stored command and writes nothing; the same key with other content is a 409. Before it is
queued the cross-domain rules may block it (an expired instrument calibration blocks issuing a report that used
the instrument): it is then stored `blocked` with the reasons and never sent.

The worker's `dispatch_pending` claims due commands with a conditional UPDATE (status and attempt count must be
what it read), so two dispatchers never send the same command; sends it through the adapter's
`execute_command`; and records the outcome only if its claim still holds. An acknowledged command is never
claimed again. A retryable failure waits an exponential backoff (`adapter_retry_base_s` doubled per attempt,
capped at `adapter_retry_max_s`) up to `command_max_attempts`, then is dead-lettered; a refusal the source says
is final dead-letters at once, or, when the command carries a compensation, queues that compensating command
and is marked `compensated`. A dispatcher that dies after sending leaves the command `sent`; its claim lapses
after `COMMAND_LEASE_S` and it is sent again with the same idempotency key, which the adapter uses to avoid a
second write (SENAITE reads the object's state first; OPC UA passes the key to the method).
"""

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import Field as PydanticField
from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from adapters import events, rules, service
from adapters.discovery import get_adapter_class_or_raise
from adapters.evidence import record_evidence
from adapters.framework import Adapter, Clock, CommandFailedError, CommandRequest
from adapters.models import AdapterAttempt, AdapterCommand, AdapterInstance, CommandStatus
from certificates.service import Actor
from storage.database import session_scope
from storage.errors import ConflictError, InvalidInputError, NotFoundError
from storage.schemas import ApiSchema
from storage.settings import Settings

log = structlog.get_logger("qihub.adapters.commands")

COMMAND_LEASE_S = 300.0  # a command sent but never recorded (dispatcher died) is claimable again after this
COMMAND_TIMEOUT_S = 60.0  # longest wait for one execute_command
DISPATCH_BATCH = 50
DISPATCH_CONCURRENCY = 8
COMPENSATION_SUFFIX = ":compensation"
_CLAIMABLE = (CommandStatus.pending.value, CommandStatus.failed.value)


# --- API schemas -------------------------------------------------------------------------------------------


class CommandCompensation(ApiSchema):
    """The command to run instead when the source refuses a command for good (e.g. undo a hub-side step)."""

    kind: str = PydanticField(min_length=1, max_length=60)
    target: str = PydanticField(min_length=1, max_length=500)
    payload: dict[str, Any] = PydanticField(default_factory=dict)


class CommandCreate(ApiSchema):
    """A write-back to an adapter instance's source; the idempotency key may come as a header instead."""

    instance_id: str = PydanticField(min_length=1, max_length=36)
    kind: str = PydanticField(min_length=1, max_length=60, description="A command kind the plug-in declares")
    target: str = PydanticField(min_length=1, max_length=500, description="What it acts on (e.g. a SENAITE uid)")
    payload: dict[str, Any] = PydanticField(default_factory=dict)
    idempotency_key: str | None = PydanticField(default=None, min_length=1, max_length=255)
    compensation: CommandCompensation | None = None


class CommandRead(ApiSchema):
    """A command with its delivery state and the source's acknowledgement."""

    id: str
    instance_id: str
    kind: str
    target: str
    payload: dict[str, Any]
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    ack: dict[str, Any] | None
    reasons: list[str] | None
    compensation: dict[str, Any] | None
    compensates_id: str | None
    requested_by: str | None
    created_at: datetime
    acknowledged_at: datetime | None


class CommandPage(ApiSchema):
    """One page of commands, newest first."""

    items: list[CommandRead]
    total: int
    limit: int
    offset: int


class IdempotencyKeyReusedError(ConflictError):
    """The idempotency key was used before for a different command."""

    code = "idempotency-key-reused"
    title = "Idempotency key reused"


class UnsupportedCommandError(InvalidInputError):
    """The instance's plug-in does not execute this kind of command."""

    code = "unsupported-command"
    title = "Unsupported command"


# --- creating ----------------------------------------------------------------------------------------------


def _fingerprint(kind: str, target: str, payload: dict[str, Any], compensation: dict[str, Any] | None) -> str:
    return json.dumps([kind, target, payload, compensation], sort_keys=True, default=str)


def _check_kind(instance: AdapterInstance, kind: str) -> None:
    supported = get_adapter_class_or_raise(instance.adapter).manifest.commands
    if kind not in supported:
        raise UnsupportedCommandError(
            f"{instance.adapter} executes {', '.join(supported) or 'no commands'}, not {kind!r}.",
            extra={"supported": supported},
        )


def find_command(session: Session, *, instance_id: str, idempotency_key: str) -> AdapterCommand | None:
    """The command an instance holds under an idempotency key, if any."""
    query = select(AdapterCommand).where(
        AdapterCommand.instance_id == instance_id, AdapterCommand.idempotency_key == idempotency_key
    )
    return session.exec(query).first()


def _same_or_raise(existing: AdapterCommand, fingerprint: str) -> AdapterCommand:
    if _fingerprint(existing.kind, existing.target, existing.payload, existing.compensation) != fingerprint:
        raise IdempotencyKeyReusedError(
            f"The idempotency key {existing.idempotency_key!r} was used for a different command ({existing.id}).",
            extra={"commandId": existing.id},
        )
    return existing


def create_command(
    session: Session,
    *,
    instance: AdapterInstance,
    kind: str,
    target: str,
    payload: dict[str, Any],
    idempotency_key: str,
    requested_by: str | None,
    clock: Clock,
    compensation: dict[str, Any] | None = None,
) -> AdapterCommand:
    """Queue a write-back once per idempotency key (the same request again returns the stored command)."""
    fingerprint = _fingerprint(kind, target, payload, compensation)
    existing = find_command(session, instance_id=instance.id, idempotency_key=idempotency_key)
    if existing is not None:
        return _same_or_raise(existing, fingerprint)
    _check_kind(instance, kind)
    if compensation is not None:
        _check_kind(instance, compensation["kind"])
    now = clock.now()
    reasons = rules.command_blockers(session, instance=instance, kind=kind, target=target, payload=payload, clock=clock)
    command = AdapterCommand(
        instance_id=instance.id,
        kind=kind,
        target=target,
        payload=payload,
        idempotency_key=idempotency_key,
        status=CommandStatus.blocked if reasons else CommandStatus.pending,
        reasons=list(reasons) or None,
        compensation=compensation,
        requested_by=requested_by,
        created_at=now,
        next_attempt_at=now,
    )
    try:
        with session.begin_nested():  # a concurrent request with the same key wins the unique constraint
            session.add(command)
    except IntegrityError:
        raced = find_command(session, instance_id=instance.id, idempotency_key=idempotency_key)
        if raced is None:
            raise
        return _same_or_raise(raced, fingerprint)
    return command


def _may_see(actor: Actor, instance: AdapterInstance) -> bool:
    return actor.is_admin or (
        instance.organization_id is not None and instance.organization_id == actor.organization.id
    )


def request_command(
    session: Session, *, actor: Actor, data: CommandCreate, idempotency_key: str, clock: Clock
) -> tuple[AdapterCommand, bool]:
    """Create a command for an instance the actor may see; returns it and whether it is new."""
    instance = service.get_instance_or_raise(session, actor=actor, instance_id=data.instance_id)
    existed = find_command(session, instance_id=instance.id, idempotency_key=idempotency_key) is not None
    command = create_command(
        session,
        instance=instance,
        kind=data.kind,
        target=data.target,
        payload=data.payload,
        idempotency_key=idempotency_key,
        requested_by=actor.organization.id,
        clock=clock,
        compensation=data.compensation.model_dump() if data.compensation else None,
    )
    return command, not existed


def get_command_or_raise(session: Session, *, actor: Actor, command_id: str) -> AdapterCommand:
    """A command of an instance the actor may see, else NotFoundError (others' commands look unknown)."""
    command = session.get(AdapterCommand, command_id)
    if command is not None:
        instance = session.get(AdapterInstance, command.instance_id)
        if instance is not None and _may_see(actor, instance):
            return command
    raise NotFoundError(f"No command {command_id!r}.")


def list_commands(
    session: Session,
    *,
    actor: Actor,
    instance_id: str | None = None,
    status: CommandStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> CommandPage:
    """Commands of the instances the actor may see, newest first."""
    query = select(AdapterCommand)
    if not actor.is_admin:
        owned = select(AdapterInstance.id).where(AdapterInstance.organization_id == actor.organization.id)
        query = query.where(col(AdapterCommand.instance_id).in_(owned))
    if instance_id is not None:
        query = query.where(AdapterCommand.instance_id == instance_id)
    if status is not None:
        query = query.where(AdapterCommand.status == status.value)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(AdapterCommand.created_at).desc(), col(AdapterCommand.id)).offset(offset).limit(limit)
    ).all()
    return CommandPage(items=[command_read(row) for row in rows], total=total, limit=limit, offset=offset)


def command_read(command: AdapterCommand) -> CommandRead:
    """The API view of a command."""
    return CommandRead.model_validate(command)


# --- dispatching -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    command_id: str
    instance_id: str
    kind: str
    target: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int  # after this claim


def backoff_s(settings: Settings, attempts: int) -> float:
    """The wait before the next try after `attempts` failed ones."""
    return float(min(settings.adapter_retry_max_s, settings.adapter_retry_base_s * 2 ** max(attempts - 1, 0)))


def _claim_due(engine: Engine, *, instance_ids: list[str], now: datetime, limit: int) -> list[_Claim]:
    claims: list[_Claim] = []
    with session_scope(engine) as session:
        due = session.exec(
            select(AdapterCommand)
            .where(
                col(AdapterCommand.instance_id).in_(instance_ids),
                col(AdapterCommand.next_attempt_at) <= now,
                or_(
                    col(AdapterCommand.status).in_(_CLAIMABLE),
                    col(AdapterCommand.status) == CommandStatus.sent.value,  # a lapsed claim
                ),
            )
            .order_by(col(AdapterCommand.next_attempt_at), col(AdapterCommand.created_at))
            .limit(limit)
        ).all()
        for command in due:
            # Claimed only if nobody changed it since it was read: status and attempts still as seen.
            result = session.execute(
                update(AdapterCommand)
                .where(
                    col(AdapterCommand.id) == command.id,
                    col(AdapterCommand.status) == command.status,
                    col(AdapterCommand.attempts) == command.attempts,
                )
                .values(
                    status=CommandStatus.sent.value,
                    attempts=command.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=COMMAND_LEASE_S),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claims.append(
                    _Claim(
                        command.id,
                        command.instance_id,
                        command.kind,
                        command.target,
                        dict(command.payload),
                        command.idempotency_key,
                        command.attempts + 1,
                    )
                )
    return claims


async def _execute(adapter: Adapter, claim: _Claim) -> tuple[dict[str, Any] | None, CommandFailedError | None]:
    request = CommandRequest(
        id=claim.command_id,
        kind=claim.kind,
        target=claim.target,
        payload=claim.payload,
        idempotency_key=claim.idempotency_key,
    )
    try:
        ack = await asyncio.wait_for(adapter.execute_command(request), timeout=COMMAND_TIMEOUT_S)
    except CommandFailedError as error:
        return None, error
    except TimeoutError:
        return None, CommandFailedError(f"No answer within {COMMAND_TIMEOUT_S:.0f} s")
    except Exception as error:  # a plug-in bug: retried like an outage, and visible in last_error
        return None, CommandFailedError(f"{type(error).__name__}: {error}")
    if not isinstance(ack, dict):
        return None, CommandFailedError(f"execute_command returned a {type(ack).__name__}, not a dict")
    # Stored as JSON: anything not JSON-native (datetimes, decimals) becomes text.
    return json.loads(json.dumps(ack, default=str)), None


def _still_claimed(session: Session, claim: _Claim) -> AdapterCommand | None:
    command = session.get(AdapterCommand, claim.command_id, with_for_update=True)
    if command is None or command.status != CommandStatus.sent or command.attempts != claim.attempts:
        return None
    return command


def _event(session: Session, *, type: str, command: AdapterCommand, instance: AdapterInstance, now: datetime) -> None:
    events.emit_event(
        session,
        type=type,
        source=events.instance_source(instance.id),
        subject=f"command/{command.id}",
        data={
            "commandId": command.id,
            "instanceId": instance.id,
            "kind": command.kind,
            "target": command.target,
            "idempotencyKey": command.idempotency_key,
            "status": command.status,
            "attempts": command.attempts,
            "ack": command.ack,
            "lastError": command.last_error,
        },
        time=now,
        instance_id=instance.id,
        organization_id=instance.organization_id,
    )


def _record_outcome(
    engine: Engine,
    *,
    claim: _Claim,
    ack: dict[str, Any] | None,
    failure: CommandFailedError | None,
    settings: Settings,
    now: datetime,
) -> None:
    with session_scope(engine) as session:
        command = _still_claimed(session, claim)
        if command is None:  # the claim lapsed and another dispatcher owns the command now
            log.warning("command outcome dropped: claim lapsed", command=claim.command_id)
            return
        instance = session.get(AdapterInstance, command.instance_id)
        assert instance is not None  # the foreign key guarantees it
        operation = f"command {command.kind}"[:60]
        if failure is None:
            command.status = CommandStatus.acknowledged
            command.ack = ack
            command.acknowledged_at = now
            command.last_error = None
            session.add(
                AdapterAttempt(
                    instance_id=instance.id, operation=operation, attempt=claim.attempts, succeeded=True, at=now
                )
            )
            _event(session, type=events.COMMAND_ACKNOWLEDGED, command=command, instance=instance, now=now)
            record_evidence(
                session,
                instance=instance,
                criterion="L4.2",
                passed=True,
                summary=f"{command.kind} on {command.target} acknowledged by the source (attempt {claim.attempts})",
                details={"commandId": command.id, "idempotencyKey": command.idempotency_key, "ack": ack},
            )
            if claim.attempts > 1:
                record_evidence(
                    session,
                    instance=instance,
                    criterion="L4.4",
                    passed=True,
                    summary=f"{command.kind} succeeded after {claim.attempts - 1} failed attempt(s)",
                    details={"commandId": command.id, "attempts": claim.attempts},
                )
            return
        command.last_error = failure.detail[:2000]
        exhausted = claim.attempts >= settings.command_max_attempts
        delay = None if (exhausted or not failure.retryable) else backoff_s(settings, claim.attempts)
        session.add(
            AdapterAttempt(
                instance_id=instance.id,
                operation=operation,
                attempt=claim.attempts,
                succeeded=False,
                error=failure.detail[:2000],
                delay_s=delay,
                at=now,
            )
        )
        if delay is not None:
            command.status = CommandStatus.failed
            command.next_attempt_at = now + timedelta(seconds=delay)
            return
        if not failure.retryable and command.compensation:
            _compensate(session, command=command, instance=instance, reason=failure.detail, now=now)
            return
        command.status = CommandStatus.dead_lettered
        why = "refused by the source" if not failure.retryable else f"gave up after {claim.attempts} attempts"
        command.reasons = [f"{why}: {failure.detail}"[:1000]]
        _event(session, type=events.COMMAND_DEAD_LETTERED, command=command, instance=instance, now=now)
        record_evidence(
            session,
            instance=instance,
            criterion="L4.4",
            passed=True,
            summary=f"{command.kind} on {command.target} dead-lettered after {claim.attempts} attempt(s)",
            details={"commandId": command.id, "attempts": claim.attempts, "error": failure.detail[:500]},
        )


def _compensate(
    session: Session, *, command: AdapterCommand, instance: AdapterInstance, reason: str, now: datetime
) -> None:
    spec = command.compensation or {}
    command.status = CommandStatus.compensated
    command.reasons = [f"refused by the source: {reason}"[:1000]]
    key = (command.idempotency_key + COMPENSATION_SUFFIX)[-255:]
    if find_command(session, instance_id=instance.id, idempotency_key=key) is None:
        session.add(
            AdapterCommand(
                instance_id=instance.id,
                kind=spec["kind"],
                target=spec["target"],
                payload=spec.get("payload", {}),
                idempotency_key=key,
                status=CommandStatus.pending,
                requested_by=command.requested_by,
                compensates_id=command.id,
                created_at=now,
                next_attempt_at=now,
            )
        )
    record_evidence(
        session,
        instance=instance,
        criterion="L4.4",
        passed=True,
        summary=f"{command.kind} on {command.target} refused; compensation {spec.get('kind')} queued",
        details={"commandId": command.id, "reason": reason[:500]},
    )


async def dispatch_pending(
    engine: Engine,
    *,
    adapters: Mapping[str, Adapter],
    settings: Settings,
    clock: Clock,
    limit: int = DISPATCH_BATCH,
) -> int:
    """Send the due commands of the given instances (instance id → running adapter); returns how many were sent."""
    if not adapters:
        return 0
    claims = await asyncio.to_thread(_claim_due, engine, instance_ids=list(adapters), now=clock.now(), limit=limit)
    if not claims:
        return 0
    gate = asyncio.Semaphore(DISPATCH_CONCURRENCY)

    async def one(claim: _Claim) -> None:
        async with gate:
            ack, failure = await _execute(adapters[claim.instance_id], claim)
        await asyncio.to_thread(
            _record_outcome, engine, claim=claim, ack=ack, failure=failure, settings=settings, now=clock.now()
        )

    await asyncio.gather(*(one(claim) for claim in claims))
    return len(claims)
