"""Delivery of outbox events after commit: signed webhooks (retried, then dead) and MQTT publication.

Webhooks: each due `WebhookDelivery` is first leased (its `next_attempt_at` pushed past the request timeout and
committed), then POSTed with the Standard Webhooks headers (`adapters.webhooks.signed_headers`), then its
outcome recorded. A worker that dies mid-delivery leaves a lease that expires, so the event is sent again
(at-least-once; receivers de-duplicate on `webhook-id`, the CloudEvents id). A 2xx answer delivers it; any
other answer or a network error schedules the next attempt after an exponential backoff
(`settings.webhook_retry_base_s` doubled per failure, at most `settings.webhook_retry_max_s`); after
`settings.webhook_max_attempts` failures the delivery is dead.

MQTT: when `settings.events_mqtt_url` is set, every event not yet published goes, in outbox order, to
`{settings.events_mqtt_topic_prefix}/{type}` as its CloudEvents JSON with QoS 1, and is marked
`mqtt_published_at` once the broker acknowledged it. A broker that is down leaves them for the next tick.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiomqtt
import httpx
import structlog
from sqlalchemy import Engine, update
from sqlmodel import col, select

from adapters.events import cloudevent_bytes
from adapters.framework import Clock
from adapters.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookSubscription
from adapters.webhooks import signed_headers
from storage.database import session_scope
from storage.settings import Settings

log = structlog.get_logger("qihub.delivery")

WEBHOOK_CONCURRENCY = 8
_ERROR_LENGTH = 500


def webhook_backoff_s(failures: int, settings: Settings) -> float:
    """Seconds to wait after the n-th failed attempt (by default 5 s, 10 s, 20 s, … up to 6 h)."""
    return float(min(settings.webhook_retry_base_s * 2 ** max(failures - 1, 0), settings.webhook_retry_max_s))


@dataclass(frozen=True)
class _Job:
    delivery_id: int
    url: str
    secret: str
    message_id: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class _Outcome:
    delivery_id: int
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def deliver_pending(engine: Engine, *, settings: Settings, clock: Clock, limit: int = 200) -> int:
    """Send the due webhook deliveries and publish unpublished events to MQTT; returns how many succeeded."""
    delivered = await deliver_webhooks(engine, settings=settings, clock=clock, limit=limit)
    published = 0
    if settings.events_mqtt_url:
        published = await publish_mqtt(engine, settings=settings, clock=clock, limit=limit)
    return delivered + published


# --- webhooks ----------------------------------------------------------------------------------------------


def _lease(engine: Engine, *, settings: Settings, now: datetime, limit: int) -> list[_Job]:
    """Claim the due deliveries (committed), so no other worker sends them while this one does."""
    lease_until = now + timedelta(seconds=settings.webhook_timeout_s * 2 + 5)
    with session_scope(engine) as session:
        rows = session.exec(
            select(WebhookDelivery, WebhookSubscription, OutboxEvent)
            .join(WebhookSubscription, col(WebhookSubscription.id) == col(WebhookDelivery.subscription_id))
            .join(OutboxEvent, col(OutboxEvent.id) == col(WebhookDelivery.event_id))
            .where(
                col(WebhookDelivery.status).in_([DeliveryStatus.pending.value, DeliveryStatus.failed.value]),
                col(WebhookDelivery.next_attempt_at) <= now,
                col(WebhookSubscription.enabled).is_(True),
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).all()
        jobs: list[_Job] = []
        for delivery, subscription, event in rows:
            assert delivery.id is not None
            delivery.next_attempt_at = lease_until
            session.add(delivery)
            jobs.append(
                _Job(
                    delivery_id=delivery.id,
                    url=subscription.url,
                    secret=subscription.secret,
                    message_id=event.id,
                    body=cloudevent_bytes(event),
                    attempts=delivery.attempts,
                )
            )
    return jobs


async def _send(client: httpx.AsyncClient, job: _Job, *, timestamp: int) -> _Outcome:
    headers = signed_headers(secret=job.secret, message_id=job.message_id, timestamp=timestamp, body=job.body)
    try:
        response = await client.post(job.url, content=job.body, headers=headers)
    except httpx.HTTPError as error:
        return _Outcome(job.delivery_id, None, f"{type(error).__name__}: {error}"[:_ERROR_LENGTH])
    failure = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}: {response.text[:200]}"
    return _Outcome(job.delivery_id, response.status_code, failure)


def _record(engine: Engine, *, outcomes: list[_Outcome], settings: Settings, now: datetime) -> None:
    with session_scope(engine) as session:
        for outcome in outcomes:
            delivery = session.get(WebhookDelivery, outcome.delivery_id)
            if delivery is None:  # the subscription was deleted meanwhile
                continue
            delivery.attempts += 1
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.ok:
                delivery.status = DeliveryStatus.delivered
                delivery.delivered_at = now
            elif delivery.attempts >= settings.webhook_max_attempts:
                delivery.status = DeliveryStatus.dead
                log.warning("webhook delivery dead", delivery=delivery.id, attempts=delivery.attempts)
            else:
                delivery.status = DeliveryStatus.failed
                delivery.next_attempt_at = now + timedelta(seconds=webhook_backoff_s(delivery.attempts, settings))
            session.add(delivery)


async def deliver_webhooks(engine: Engine, *, settings: Settings, clock: Clock, limit: int = 200) -> int:
    """Send every due webhook delivery once; returns how many were delivered (2xx)."""
    now = clock.now()
    jobs = await asyncio.to_thread(_lease, engine, settings=settings, now=now, limit=limit)
    if not jobs:
        return 0
    timestamp = int(now.timestamp())
    gate = asyncio.Semaphore(WEBHOOK_CONCURRENCY)

    async def send(job: _Job) -> _Outcome:
        async with gate:
            return await _send(client, job, timestamp=timestamp)

    # No redirects: a subscriber's endpoint is the URL it registered, nothing it points elsewhere.
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
        outcomes = list(await asyncio.gather(*(send(job) for job in jobs)))
    await asyncio.to_thread(_record, engine, outcomes=outcomes, settings=settings, now=clock.now())
    return sum(1 for outcome in outcomes if outcome.ok)


# --- MQTT --------------------------------------------------------------------------------------------------


def topic_of(prefix: str, event_type: str) -> str:
    """The MQTT topic an event type is published to."""
    return f"{prefix.rstrip('/')}/{event_type}"


def _unpublished(engine: Engine, *, limit: int) -> list[tuple[int, str, bytes]]:
    with session_scope(engine) as session:
        events = session.exec(
            select(OutboxEvent)
            .where(col(OutboxEvent.mqtt_published_at).is_(None))
            .order_by(col(OutboxEvent.seq))
            .limit(limit)
        ).all()
        return [(event.seq, event.type, cloudevent_bytes(event)) for event in events if event.seq is not None]


def _mark_published(engine: Engine, *, seqs: list[int], now: datetime) -> None:
    if not seqs:
        return
    with session_scope(engine) as session:
        session.execute(update(OutboxEvent).where(col(OutboxEvent.seq).in_(seqs)).values(mqtt_published_at=now))


async def publish_mqtt(engine: Engine, *, settings: Settings, clock: Clock, limit: int = 200) -> int:
    """Publish the unpublished events to the broker in outbox order; returns how many the broker acknowledged."""
    if not settings.events_mqtt_url:
        return 0
    pending = await asyncio.to_thread(_unpublished, engine, limit=limit)
    if not pending:
        return 0
    url = urlsplit(settings.events_mqtt_url)
    published: list[int] = []
    try:
        async with aiomqtt.Client(
            hostname=url.hostname or "127.0.0.1",
            port=url.port or 1883,
            username=url.username,
            password=url.password,
            timeout=settings.webhook_timeout_s,
        ) as client:
            for seq, event_type, body in pending:
                await client.publish(topic_of(settings.events_mqtt_topic_prefix, event_type), body, qos=1)
                published.append(seq)
    except aiomqtt.MqttError as error:
        log.warning("event publication to MQTT failed", error=str(error), published=len(published))
    await asyncio.to_thread(_mark_published, engine, seqs=published, now=clock.now())
    return len(published)
