"""Domain events (CloudEvents 1.0) and webhook subscriptions.

The events feed lists the outbox in order (`after` = the last `qihubseq` seen, `type` to filter); an
organization sees the events of its own adapter instances and registry, an admin every event. Webhook
subscriptions are per organization: deliveries are signed per the Standard Webhooks spec with the secret
returned once, at creation. The message schemas of every event type are in `openapi/asyncapi.yaml`.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from adapters import events, webhooks
from adapters.events import EventPage
from adapters.models import DeliveryStatus
from adapters.webhooks import (
    WebhookDeliveryRead,
    WebhookSubscriptionCreate,
    WebhookSubscriptionCreated,
    WebhookSubscriptionRead,
)
from api.deps import ReaderDep, SessionDep, WriterDep
from api.errors import problem_responses

router = APIRouter(prefix="/api/v1", tags=["events"])

SubscriptionId = Annotated[str, Path(min_length=1, max_length=36, description="Webhook subscription id")]
EVENT_TYPE_DESCRIPTION = "Only events of these types (repeat the parameter), e.g. `type=report.modified`"


@router.get(
    "/events",
    summary="The events feed: CloudEvents envelopes in outbox order, after a sequence number",
    response_model=EventPage,
    responses=problem_responses(401, 403, 422),
)
def list_events(
    session: SessionDep,
    actor: ReaderDep,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Continue after this `qihubseq`")] = None,
    type: Annotated[list[str] | None, Query(max_length=20, description=EVENT_TYPE_DESCRIPTION)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Oldest first; `next` is the `after` of the following page (null on the last page)."""
    return events.list_events(session, actor=actor, after=after, types=type or [], limit=limit)


@router.get(
    "/events/{event_id}",
    summary="One event as its CloudEvents envelope",
    responses=problem_responses(401, 403, 404, 422),
)
def read_event(
    session: SessionDep,
    actor: ReaderDep,
    event_id: Annotated[str, Path(min_length=1, max_length=36, description="CloudEvents id")],
) -> dict[str, object]:
    """Others' events answer 404 like unknown ids."""
    return events.to_cloudevent(events.get_event_or_raise(session, actor=actor, event_id=event_id))


@router.post(
    "/webhooks",
    status_code=201,
    summary="Subscribe an endpoint to events (the signing secret is returned this once)",
    response_model=WebhookSubscriptionCreated,
    responses=problem_responses(401, 403, 422),
)
def create_webhook(
    body: WebhookSubscriptionCreate, session: SessionDep, actor: WriterDep
) -> WebhookSubscriptionCreated:
    """422 for a URL that is not absolute http(s) or for unknown event types."""
    subscription, secret = webhooks.create_subscription(session, actor=actor, data=body)
    return WebhookSubscriptionCreated(**webhooks.subscription_read(subscription).model_dump(), secret=secret)


@router.get(
    "/webhooks",
    summary="The organization's webhook subscriptions (an admin's: all)",
    response_model=list[WebhookSubscriptionRead],
    responses=problem_responses(401, 403),
)
def list_webhooks(session: SessionDep, actor: ReaderDep) -> list[WebhookSubscriptionRead]:
    """Secrets are never listed."""
    return [webhooks.subscription_read(item) for item in webhooks.list_subscriptions(session, actor=actor)]


@router.get(
    "/webhooks/{subscription_id}",
    summary="One webhook subscription",
    response_model=WebhookSubscriptionRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_webhook(session: SessionDep, actor: ReaderDep, subscription_id: SubscriptionId) -> WebhookSubscriptionRead:
    """Others' subscriptions answer 404 like unknown ids."""
    return webhooks.subscription_read(
        webhooks.get_subscription_or_raise(session, actor=actor, subscription_id=subscription_id)
    )


@router.get(
    "/webhooks/{subscription_id}/deliveries",
    summary="Delivery state of the subscription's latest events (attempts, last answer, dead or delivered)",
    response_model=list[WebhookDeliveryRead],
    responses=problem_responses(401, 403, 404, 422),
)
def list_webhook_deliveries(
    session: SessionDep,
    actor: ReaderDep,
    subscription_id: SubscriptionId,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[WebhookDeliveryRead]:
    """Newest first."""
    rows = webhooks.list_deliveries(session, actor=actor, subscription_id=subscription_id, status=status, limit=limit)
    return [WebhookDeliveryRead.model_validate(row) for row in rows]


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=204,
    summary="Remove a webhook subscription (its pending deliveries are dropped)",
    responses=problem_responses(401, 403, 404, 422),
)
def delete_webhook(session: SessionDep, actor: WriterDep, subscription_id: SubscriptionId) -> Response:
    """Others' subscriptions answer 404 like unknown ids."""
    webhooks.delete_subscription(session, actor=actor, subscription_id=subscription_id)
    return Response(status_code=204)
