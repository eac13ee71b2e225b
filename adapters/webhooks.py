"""Webhook subscriptions: who receives which events, the Standard Webhooks signature, and the fan-out.

Each subscription belongs to an organization and receives the events of that organization's adapter instances
(an admin organization's subscriptions receive every event), optionally only some event types. Its secret is
`whsec_` + base64 of 32 random bytes, shown once at creation. A delivery is signed per the Standard Webhooks
spec: headers `webhook-id` (the CloudEvents id, the same on every retry, so receivers de-duplicate),
`webhook-timestamp` (Unix seconds) and `webhook-signature` = `v1,` + base64 HMAC-SHA256 under the decoded
secret of `{webhook-id}.{webhook-timestamp}.{body}`.

Deliveries are created in the transaction that writes the event (the fan-out), so an event and the promise
to deliver it exist together; `adapters.delivery` sends them after commit.
"""

import base64
import hashlib
import hmac
import ipaddress
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field as PydanticField
from sqlmodel import Session, col, select

from adapters.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookSubscription
from certificates.service import Actor
from organizations.models import Organization, OrganizationKind
from storage.errors import InvalidInputError, NotFoundError
from storage.schemas import ApiSchema

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_SUBSCRIPTIONS_PER_ORGANIZATION = 50
_SUBSCRIBERS_KEY = "qihub.webhooks.subscribers"


class WebhookSubscriptionCreate(ApiSchema):
    """Subscribe an HTTPS (or, for local receivers, HTTP) endpoint to events."""

    url: str = PydanticField(min_length=1, max_length=2000, description="Endpoint the events are POSTed to")
    event_types: list[str] = PydanticField(
        default_factory=list, max_length=50, description="Event types to receive (empty: all)"
    )


class WebhookSubscriptionRead(ApiSchema):
    """A subscription as stored (its secret is never shown again)."""

    id: str
    organization_id: str
    url: str
    event_types: list[str]
    enabled: bool
    created_at: datetime


class WebhookSubscriptionCreated(WebhookSubscriptionRead):
    """A new subscription with its signing secret, shown this once."""

    secret: str = PydanticField(description="Standard Webhooks secret ('whsec_' + base64); verify signatures with it")


class WebhookDeliveryRead(ApiSchema):
    """The delivery state of one event to one subscription."""

    id: int
    event_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


def new_secret() -> str:
    """A fresh Standard Webhooks secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value of one delivery (Standard Webhooks v1, HMAC-SHA256)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(*, secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of a signed delivery (structured-mode CloudEvents JSON body)."""
    return {
        "content-type": "application/cloudevents+json; charset=utf-8",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=timestamp, body=body),
    }


def validate_url(url: str) -> str:
    """The endpoint URL if usable (absolute http(s), a host, no credentials, no fragment); else `InvalidInputError`."""
    parts = urlsplit(url.strip())
    problems: list[str] = []
    if parts.scheme not in ("http", "https"):
        problems.append("the scheme must be http or https")
    if not parts.hostname:
        problems.append("a host is required")
    if parts.username or parts.password:
        problems.append("credentials must not be in the URL (the signature authenticates the hub)")
    if parts.fragment:
        problems.append("a fragment is meaningless to a server")
    if parts.hostname:
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            address = None
        if address is not None and (address.is_multicast or address.is_unspecified):
            problems.append("the host must be a unicast address")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        problems.append("the port is not a number in 1-65535")
    if problems:
        raise InvalidInputError(f"The webhook URL is not usable: {'; '.join(problems)}.", extra={"url": url})
    return url.strip()


def create_subscription(
    session: Session, *, actor: Actor, data: WebhookSubscriptionCreate
) -> tuple[WebhookSubscription, str]:
    """Store a subscription for the actor's organization; returns it and its secret (shown only now)."""
    from adapters.events import DOMAIN_EVENT_TYPES, EXTRA_EVENT_TYPES

    url = validate_url(data.url)
    known = set(DOMAIN_EVENT_TYPES) | set(EXTRA_EVENT_TYPES)
    unknown = sorted(set(data.event_types) - known)
    if unknown:
        raise InvalidInputError(
            f"Unknown event type(s): {', '.join(unknown)}.", extra={"unknown": unknown, "known": sorted(known)}
        )
    count = len(
        session.exec(
            select(WebhookSubscription.id).where(WebhookSubscription.organization_id == actor.organization.id)
        ).all()
    )
    if count >= MAX_SUBSCRIPTIONS_PER_ORGANIZATION:
        raise InvalidInputError(f"An organization may hold at most {MAX_SUBSCRIPTIONS_PER_ORGANIZATION} subscriptions.")
    secret = new_secret()
    subscription = WebhookSubscription(
        organization_id=actor.organization.id,
        url=url,
        secret=secret,
        event_types=sorted(set(data.event_types)),
    )
    session.add(subscription)
    session.flush()
    session.info.pop(_SUBSCRIBERS_KEY, None)
    return subscription, secret


def list_subscriptions(session: Session, *, actor: Actor) -> list[WebhookSubscription]:
    """The actor's subscriptions (an admin's: everyone's), oldest first."""
    query = select(WebhookSubscription).order_by(col(WebhookSubscription.created_at), col(WebhookSubscription.id))
    if not actor.is_admin:
        query = query.where(WebhookSubscription.organization_id == actor.organization.id)
    return list(session.exec(query))


def get_subscription_or_raise(session: Session, *, actor: Actor, subscription_id: str) -> WebhookSubscription:
    """One subscription the actor may see; others' answer not-found like unknown ids."""
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None or not (actor.is_admin or subscription.organization_id == actor.organization.id):
        raise NotFoundError(f"No webhook subscription {subscription_id}.")
    return subscription


def delete_subscription(session: Session, *, actor: Actor, subscription_id: str) -> None:
    """Remove a subscription and its delivery records; pending deliveries are not sent."""
    subscription = get_subscription_or_raise(session, actor=actor, subscription_id=subscription_id)
    for delivery in session.exec(select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)):
        session.delete(delivery)
    session.flush()
    session.delete(subscription)
    session.info.pop(_SUBSCRIBERS_KEY, None)


def list_deliveries(
    session: Session, *, actor: Actor, subscription_id: str, status: DeliveryStatus | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    """The latest deliveries of one subscription, newest first."""
    subscription = get_subscription_or_raise(session, actor=actor, subscription_id=subscription_id)
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status.value)
    return list(session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)))


def subscription_read(subscription: WebhookSubscription) -> WebhookSubscriptionRead:
    """The API view of a subscription (without its secret)."""
    return WebhookSubscriptionRead.model_validate(subscription)


# --- fan-out -----------------------------------------------------------------------------------------------


def _subscribers(session: Session) -> list[dict[str, Any]]:
    # Read once per transaction: a landing batch emitting many events asks the database once.
    cached: list[dict[str, Any]] | None = session.info.get(_SUBSCRIBERS_KEY)
    if cached is not None:
        return cached
    rows = session.exec(
        select(
            WebhookSubscription.id,
            WebhookSubscription.organization_id,
            WebhookSubscription.event_types,
            Organization.kind,
        )
        .join(Organization, col(Organization.id) == col(WebhookSubscription.organization_id))
        .where(col(WebhookSubscription.enabled).is_(True))
    ).all()
    subscribers = [
        {"id": id_, "organization_id": org, "types": set(types or []), "admin": kind == OrganizationKind.admin}
        for id_, org, types, kind in rows
    ]
    session.info[_SUBSCRIBERS_KEY] = subscribers
    return subscribers


def fan_out(session: Session, *, event: OutboxEvent) -> int:
    """Create a pending delivery of the event for every subscription that may and wants to receive it."""
    created = 0
    for subscriber in _subscribers(session):
        if subscriber["types"] and event.type not in subscriber["types"]:
            continue
        if not subscriber["admin"] and subscriber["organization_id"] != event.organization_id:
            continue
        session.add(
            WebhookDelivery(
                subscription_id=subscriber["id"],
                event_id=event.id,
                status=DeliveryStatus.pending,
                next_attempt_at=event.time,
            )
        )
        created += 1
    return created
