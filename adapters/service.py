"""Adapter instances and what they landed: configuration, catalog, health, counters, messages and records.

An admin manages every instance; a lab or platform organization manages and reads only the instances it owns
(`organization_id`). Instances of other organizations answer 404, as unknown ids do. Configuration is checked
against the plug-in's own JSON Schema; the instance's `adapter_version` is the manifest's version.
"""

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field as PydanticField
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from adapters.discovery import adapter_catalog, get_adapter_class_or_raise
from adapters.framework import Adapter, AdapterManifest
from adapters.models import (
    AdapterCounters,
    AdapterCountersRead,
    AdapterHealth,
    AdapterHealthRead,
    AdapterInstance,
    AdapterInstanceCreate,
    AdapterInstanceRead,
    AdapterInstanceUpdate,
    CanonicalRecordRead,
    CanonicalRecordRow,
    LandingMessage,
    LandingMessageRead,
    LandingOutcome,
)
from certificates.service import Actor
from organizations.models import Organization, OrganizationKind
from storage.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from storage.models import utc_now
from storage.schemas import ApiSchema

MANAGING_KINDS = {OrganizationKind.lab.value, OrganizationKind.platform.value}


# --- API schemas of this module ----------------------------------------------------------------------------


class CatalogEntry(ApiSchema):
    """A usable plug-in: its entry point, the distribution that ships it and its manifest."""

    name: str
    target: str = PydanticField(description="Entry point, 'module:Class'")
    distribution: str | None
    manifest: AdapterManifest


class CatalogLoadError(ApiSchema):
    """A plug-in that is installed but cannot be used, and why."""

    name: str
    target: str
    distribution: str | None
    error: str


class CatalogRead(ApiSchema):
    """Plug-ins discovered through the `qihub.adapters` entry-point group."""

    adapters: list[CatalogEntry]
    errors: list[CatalogLoadError]


class LandingMessagePage(ApiSchema):
    """Landed messages in id order; pass `next` as `after` for the following page."""

    items: list[LandingMessageRead]
    next: int | None


class CanonicalRecordPage(ApiSchema):
    """Canonical records in id order; pass `next` as `after` for the following page."""

    items: list[CanonicalRecordRead]
    next: int | None


# --- catalog -----------------------------------------------------------------------------------------------


def read_catalog(*, refresh: bool = False) -> CatalogRead:
    """The discovered plug-ins with their manifests, and the load errors of the broken ones."""
    catalog = adapter_catalog(refresh=refresh)
    return CatalogRead(
        adapters=[
            CatalogEntry(
                name=info.name, target=info.target, distribution=info.distribution, manifest=info.adapter.manifest
            )
            for info in catalog.plugins.values()
        ],
        errors=[
            CatalogLoadError(name=error.name, target=error.target, distribution=error.distribution, error=error.error)
            for error in catalog.errors
        ],
    )


def build_adapter(adapter: str, config: dict[str, Any]) -> Adapter:
    """A plug-in object for a configuration; InvalidInputError when the configuration does not fit."""
    adapter_class = get_adapter_class_or_raise(adapter)
    try:
        return adapter_class(config)
    except InvalidInputError:
        raise
    except Exception as error:  # the plug-in's own checks in __init__, reported as bad configuration
        raise InvalidInputError(f"{adapter} refused the configuration: {type(error).__name__}: {error}") from error


# --- instances ---------------------------------------------------------------------------------------------


def _may_see(actor: Actor, instance: AdapterInstance) -> bool:
    return actor.is_admin or (
        instance.organization_id is not None and instance.organization_id == actor.organization.id
    )


def _owner_for_new_instance(session: Session, *, actor: Actor, requested: str | None) -> str | None:
    if actor.is_admin:
        if requested is not None and session.get(Organization, requested) is None:
            raise InvalidInputError(f"No organization {requested!r} exists.", extra={"organizationId": requested})
        return requested
    if actor.organization.kind not in MANAGING_KINDS:
        raise PermissionDeniedError("Only labs, platforms and admins configure adapters.")
    if requested is not None and requested != actor.organization.id:
        raise PermissionDeniedError("An organization configures adapters only for itself.")
    return actor.organization.id


def create_instance(session: Session, *, actor: Actor, data: AdapterInstanceCreate) -> AdapterInstance:
    """Configure an instance of a discovered plug-in (config checked by its schema)."""
    organization_id = _owner_for_new_instance(session, actor=actor, requested=data.organization_id)
    adapter = build_adapter(data.adapter, data.config)
    if session.exec(select(AdapterInstance.id).where(AdapterInstance.name == data.name)).first() is not None:
        raise ConflictError(f"An adapter instance named {data.name!r} exists already.", extra={"name": data.name})
    now = utc_now()
    instance = AdapterInstance(
        name=data.name,
        adapter=data.adapter,
        adapter_version=adapter.manifest.version,
        organization_id=organization_id,
        config=data.config,
        enabled=data.enabled,
        created_at=now,
        updated_at=now,
    )
    session.add(instance)
    try:
        session.flush()
    except IntegrityError as error:  # the same name created concurrently
        raise ConflictError(f"An adapter instance named {data.name!r} exists already.") from error
    return instance


def list_instances(
    session: Session, *, actor: Actor, adapter: str | None = None, enabled: bool | None = None
) -> list[AdapterInstance]:
    """Instances the actor may see, by name."""
    query = select(AdapterInstance).order_by(col(AdapterInstance.name))
    if not actor.is_admin:
        query = query.where(AdapterInstance.organization_id == actor.organization.id)
    if adapter is not None:
        query = query.where(AdapterInstance.adapter == adapter)
    if enabled is not None:
        query = query.where(AdapterInstance.enabled == enabled)
    return list(session.exec(query).all())


def get_instance_or_raise(session: Session, *, actor: Actor, instance_id: str) -> AdapterInstance:
    """An instance the actor may see, else NotFoundError (others' instances look unknown)."""
    instance = session.get(AdapterInstance, instance_id)
    if instance is None or not _may_see(actor, instance):
        raise NotFoundError(f"No adapter instance {instance_id!r}.")
    return instance


def update_instance(
    session: Session, *, actor: Actor, instance_id: str, data: AdapterInstanceUpdate
) -> AdapterInstance:
    """Change configuration and/or enabled; the new configuration is checked by the plug-in's schema."""
    instance = get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    if data.config is not None:
        adapter = build_adapter(instance.adapter, data.config)
        instance.config = data.config
        instance.adapter_version = adapter.manifest.version
    if data.enabled is not None:
        instance.enabled = data.enabled
    instance.updated_at = utc_now()
    session.add(instance)
    return instance


def instance_read(instance: AdapterInstance) -> AdapterInstanceRead:
    """The API view of an instance."""
    return AdapterInstanceRead.model_validate(instance)


# --- counters and health -----------------------------------------------------------------------------------


def counters_of(session: Session, *, instance_id: str) -> AdapterCountersRead:
    """Landing totals of an instance and whether they reconcile."""
    counters = session.get(AdapterCounters, instance_id) or AdapterCounters(instance_id=instance_id)
    return AdapterCountersRead(
        received=counters.received,
        accepted=counters.accepted,
        quarantined=counters.quarantined,
        duplicates=counters.duplicates,
        reconciled=counters.received == counters.accepted + counters.quarantined + counters.duplicates,
    )


def read_counters(session: Session, *, actor: Actor, instance_id: str) -> AdapterCountersRead:
    """Landing totals of an instance the actor may see."""
    get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    return counters_of(session, instance_id=instance_id)


def health_of(session: Session, *, instance_id: str, now: datetime, timeout_s: float) -> AdapterHealthRead:
    """Health as last reported; healthy means connected and heard from within the timeout."""
    health = session.get(AdapterHealth, instance_id)
    if health is None:
        return AdapterHealthRead(
            connected=False, healthy=False, last_seen=None, lag_s=None, last_error=None, checked_at=None
        )
    fresh = health.last_seen is not None and now - health.last_seen <= timedelta(seconds=timeout_s)
    return AdapterHealthRead(
        connected=health.connected,
        healthy=health.connected and fresh,
        last_seen=health.last_seen,
        lag_s=health.lag_s,
        last_error=health.last_error,
        checked_at=health.checked_at,
    )


def read_health(
    session: Session, *, actor: Actor, instance_id: str, now: datetime, timeout_s: float
) -> AdapterHealthRead:
    """Health of an instance the actor may see."""
    get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    return health_of(session, instance_id=instance_id, now=now, timeout_s=timeout_s)


# --- landing zone and records ------------------------------------------------------------------------------


def list_messages(
    session: Session,
    *,
    actor: Actor,
    instance_id: str,
    outcome: LandingOutcome | None = None,
    error_code: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> LandingMessagePage:
    """Envelopes of landed messages (the quarantine view with `outcome=quarantined`), without their bytes."""
    get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    query = (
        select(LandingMessage)
        .options(defer(LandingMessage.raw))  # type: ignore[arg-type]
        .where(LandingMessage.instance_id == instance_id)
        .order_by(col(LandingMessage.id))
        .limit(limit + 1)
    )
    if outcome is not None:
        query = query.where(LandingMessage.outcome == outcome.value)
    if error_code is not None:
        query = query.where(LandingMessage.error_code == error_code)
    if after is not None:
        query = query.where(col(LandingMessage.id) > after)
    rows = list(session.exec(query).all())
    page = rows[:limit]
    return LandingMessagePage(
        items=[LandingMessageRead.model_validate(row) for row in page],
        next=page[-1].id if len(rows) > limit and page else None,
    )


def get_message_or_raise(session: Session, *, actor: Actor, instance_id: str, message_id: int) -> LandingMessage:
    """One landed message (with its raw bytes) of an instance the actor may see, else NotFoundError."""
    get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    message = session.get(LandingMessage, message_id)
    if message is None or message.instance_id != instance_id:
        raise NotFoundError(f"No message {message_id} in adapter instance {instance_id!r}.")
    return message


def list_records(
    session: Session,
    *,
    actor: Actor,
    instance_id: str,
    kind: str | None = None,
    message_id: int | None = None,
    after: int | None = None,
    limit: int = 100,
) -> CanonicalRecordPage:
    """Canonical records of an instance, optionally of one kind or from one message."""
    get_instance_or_raise(session, actor=actor, instance_id=instance_id)
    query = (
        select(CanonicalRecordRow)
        .where(CanonicalRecordRow.instance_id == instance_id)
        .order_by(col(CanonicalRecordRow.id))
        .limit(limit + 1)
    )
    if kind is not None:
        query = query.where(CanonicalRecordRow.kind == kind)
    if message_id is not None:
        query = query.where(CanonicalRecordRow.message_id == message_id)
    if after is not None:
        query = query.where(col(CanonicalRecordRow.id) > after)
    rows = list(session.exec(query).all())
    page = rows[:limit]
    return CanonicalRecordPage(
        items=[CanonicalRecordRead.model_validate(row) for row in page],
        next=page[-1].id if len(rows) > limit and page else None,
    )


def count_messages(session: Session, *, instance_id: str, outcome: LandingOutcome | None = None) -> int:
    """How many messages an instance has landed (of one outcome)."""
    query = select(func.count()).select_from(LandingMessage).where(LandingMessage.instance_id == instance_id)
    if outcome is not None:
        query = query.where(LandingMessage.outcome == outcome.value)
    return int(session.exec(query).one())
