"""Adapter plug-ins and their configured instances: catalog, configuration, health, landing zone, records.

Admins manage every instance; a lab or platform organization manages (`certificates:write`) and reads
(`certificates:read`) only its own. Others' instances answer 404 like unknown ids.
"""

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from adapters import service
from adapters.canonical import RecordKind
from adapters.models import (
    AdapterCountersRead,
    AdapterHealthRead,
    AdapterInstanceCreate,
    AdapterInstanceRead,
    AdapterInstanceUpdate,
    LandingMessageRead,
    LandingOutcome,
)
from adapters.service import CanonicalRecordPage, CatalogRead, LandingMessagePage
from api.deps import ReaderDep, SessionDep, WriterDep
from api.errors import problem_responses
from storage.models import utc_now

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])

InstanceId = Annotated[str, Path(min_length=1, max_length=36, description="Adapter instance id")]
MessageId = Annotated[int, Path(ge=1, le=2**62, description="Landed message id")]
After = Annotated[int | None, Query(ge=0, le=2**62, description="Continue after this id (the previous page's `next`)")]
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get(
    "/catalog",
    summary="Adapter plug-ins discovered through the `qihub.adapters` entry points, and plug-ins that failed to load",
    response_model=CatalogRead,
    responses=problem_responses(401, 403),
)
def read_catalog(_reader: ReaderDep) -> CatalogRead:
    """Every usable plug-in with its manifest; broken plug-ins are listed under `errors` with the reason."""
    return service.read_catalog()


@router.post(
    "",
    status_code=201,
    summary="Configure an adapter instance (the configuration is checked by the plug-in's JSON Schema)",
    response_model=AdapterInstanceRead,
    responses=problem_responses(400, 401, 403, 409, 422),
)
def create_instance(body: AdapterInstanceCreate, session: SessionDep, actor: WriterDep) -> AdapterInstanceRead:
    """422 `unknown-adapter` for a plug-in that is not installed, 422 `invalid-input` for a bad configuration."""
    return service.instance_read(service.create_instance(session, actor=actor, data=body))


@router.get(
    "",
    summary="List the adapter instances the caller may see",
    response_model=list[AdapterInstanceRead],
    responses=problem_responses(401, 403, 422),
)
def list_instances(
    session: SessionDep,
    actor: ReaderDep,
    adapter: Annotated[str | None, Query(max_length=100, description="Only instances of this plug-in")] = None,
    enabled: bool | None = None,
) -> list[AdapterInstanceRead]:
    """Admins see all instances, organizations their own."""
    return [
        service.instance_read(instance)
        for instance in service.list_instances(session, actor=actor, adapter=adapter, enabled=enabled)
    ]


@router.get(
    "/{instance_id}",
    summary="Read one adapter instance",
    response_model=AdapterInstanceRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_instance(instance_id: InstanceId, session: SessionDep, actor: ReaderDep) -> AdapterInstanceRead:
    """The configuration, plug-in version and state of an instance."""
    return service.instance_read(service.get_instance_or_raise(session, actor=actor, instance_id=instance_id))


@router.patch(
    "/{instance_id}",
    summary="Change an instance's configuration or switch it on/off",
    response_model=AdapterInstanceRead,
    responses=problem_responses(400, 401, 403, 404, 422),
)
def update_instance(
    instance_id: InstanceId, body: AdapterInstanceUpdate, session: SessionDep, actor: WriterDep
) -> AdapterInstanceRead:
    """A new configuration replaces the old one whole; the worker restarts the instance with it."""
    return service.instance_read(service.update_instance(session, actor=actor, instance_id=instance_id, data=body))


@router.get(
    "/{instance_id}/health",
    summary="Connection state as the runtime last reported it, judged against the health timeout",
    response_model=AdapterHealthRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_health(request: Request, instance_id: InstanceId, session: SessionDep, actor: ReaderDep) -> AdapterHealthRead:
    """Healthy = connected and heard from within `adapter_health_timeout_s`."""
    return service.read_health(
        session,
        actor=actor,
        instance_id=instance_id,
        now=utc_now(),
        timeout_s=request.app.state.settings.adapter_health_timeout_s,
    )


@router.get(
    "/{instance_id}/counters",
    summary="Landing totals: received = accepted + quarantined + duplicates",
    response_model=AdapterCountersRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_counters(instance_id: InstanceId, session: SessionDep, actor: ReaderDep) -> AdapterCountersRead:
    """`reconciled` tells whether the totals add up."""
    return service.read_counters(session, actor=actor, instance_id=instance_id)


@router.get(
    "/{instance_id}/messages",
    summary="Envelopes of landed messages; `outcome=quarantined` is the quarantine view",
    response_model=LandingMessagePage,
    responses=problem_responses(401, 403, 404, 422),
)
def list_messages(
    instance_id: InstanceId,
    session: SessionDep,
    actor: ReaderDep,
    outcome: LandingOutcome | None = None,
    error_code: Annotated[str | None, Query(alias="errorCode", max_length=60)] = None,
    after: After = None,
    limit: Limit = 100,
) -> LandingMessagePage:
    """In landing order; the raw bytes of each are at `…/messages/{id}/raw`."""
    return service.list_messages(
        session,
        actor=actor,
        instance_id=instance_id,
        outcome=outcome,
        error_code=error_code,
        after=after,
        limit=limit,
    )


@router.get(
    "/{instance_id}/messages/{message_id}",
    summary="The provenance envelope of one landed message",
    response_model=LandingMessageRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_message(
    instance_id: InstanceId, message_id: MessageId, session: SessionDep, actor: ReaderDep
) -> LandingMessageRead:
    """Source, adapter and version, transport, times, content type, size, sha256, cursor and outcome."""
    message = service.get_message_or_raise(session, actor=actor, instance_id=instance_id, message_id=message_id)
    return LandingMessageRead.model_validate(message)


@router.get(
    "/{instance_id}/messages/{message_id}/raw",
    summary="The exact bytes as received, with their original content type",
    response_class=Response,
    responses={
        200: {"description": "The payload as received", "content": {"application/octet-stream": {}}},
        **problem_responses(401, 403, 404, 422),
    },
)
def read_message_raw(instance_id: InstanceId, message_id: MessageId, session: SessionDep, actor: ReaderDep) -> Response:
    """`Repr-Digest` carries the sha256 of the envelope; the bytes are served as a download, never rendered."""
    message = service.get_message_or_raise(session, actor=actor, instance_id=instance_id, message_id=message_id)
    digest = base64.b64encode(bytes.fromhex(message.sha256)).decode()
    return Response(
        content=message.raw,
        media_type=message.content_type,
        headers={
            "ETag": f'"{message.sha256}"',
            "Repr-Digest": f"sha-256=:{digest}:",
            # Payloads come from outside: a browser must not sniff or render them as the hub's own pages.
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="message-{message.id}"',
        },
    )


@router.get(
    "/{instance_id}/records",
    summary="Canonical records parsed from an instance's messages",
    response_model=CanonicalRecordPage,
    responses=problem_responses(401, 403, 404, 422),
)
def list_records(
    instance_id: InstanceId,
    session: SessionDep,
    actor: ReaderDep,
    kind: RecordKind | None = None,
    message_id: Annotated[int | None, Query(alias="messageId", ge=1, le=2**62)] = None,
    after: After = None,
    limit: Limit = 100,
) -> CanonicalRecordPage:
    """Each record carries its schema version and the id of the raw message it came from."""
    return service.list_records(
        session,
        actor=actor,
        instance_id=instance_id,
        kind=kind.value if kind else None,
        message_id=message_id,
        after=after,
        limit=limit,
    )
