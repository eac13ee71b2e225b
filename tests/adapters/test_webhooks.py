"""Webhook subscriptions and deliveries: signed per Standard Webhooks, retried with backoff, dead at the limit."""

import asyncio
import json
from datetime import UTC, datetime

import pytest
from sqlmodel import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.delivery import deliver_pending, webhook_backoff_s
from adapters.framework import ManualClock
from adapters.models import DeliveryStatus, WebhookDelivery
from storage.database import session_scope
from storage.settings import Settings
from tests.adapters.events_support import WebhookReceiver, land, make_instance, sample


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def now_clock() -> ManualClock:
    # Real time: the receiver checks the signature timestamp against its own clock (5 minutes' tolerance).
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def _subscribe(hub, headers, url, types=None) -> dict:
    response = hub.client.post("/api/v1/webhooks", json={"url": url, "eventTypes": types or []}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _deliver(hub, clock, settings=None) -> int:
    return asyncio.run(deliver_pending(hub.engine, settings=settings or hub.settings, clock=clock))


def _deliveries(hub) -> list[WebhookDelivery]:
    with session_scope(hub.engine) as session:
        return list(session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_subscriber_receives_signed_cloudevents_that_verify(hub, receiver, now_clock):
    org, headers = hub.make_org("Hooked lab")
    created = _subscribe(hub, headers, receiver.url)
    assert created["secret"].startswith("whsec_")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, now_clock, sample("received"))
    land(hub.engine, instance, now_clock, sample("published"))

    assert _deliver(hub, now_clock) == 2
    assert len(receiver.requests) == 2
    types = []
    for request in receiver.requests:
        payload = Webhook(created["secret"]).verify(request["body"], request["headers"])
        assert payload["specversion"] == "1.0"
        assert request["headers"]["webhook-id"] == payload["id"]
        assert request["headers"]["content-type"].startswith("application/cloudevents+json")
        types.append(payload["type"])
    assert sorted(types) == ["report.issued", "sample.received"]
    # A forged body does not verify.
    forged = receiver.requests[0]["body"].replace(b"sample", b"sampel")
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(forged, receiver.requests[0]["headers"])
    assert [d.status for d in _deliveries(hub)] == [DeliveryStatus.delivered] * 2
    assert _deliver(hub, now_clock) == 0  # delivered once


def test_failed_delivery_is_retried_after_backoff_with_the_same_id(hub, receiver, now_clock):
    org, headers = hub.make_org("Flaky lab")
    created = _subscribe(hub, headers, receiver.url)
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, now_clock, sample("received"))
    receiver.statuses = [500, 503]

    assert _deliver(hub, now_clock) == 0
    (delivery,) = _deliveries(hub)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 1, 500)
    assert _deliver(hub, now_clock) == 0 and len(receiver.requests) == 1  # not due before its backoff
    now_clock.advance(seconds=webhook_backoff_s(1, hub.settings))
    assert _deliver(hub, now_clock) == 0
    now_clock.advance(seconds=webhook_backoff_s(2, hub.settings))
    assert _deliver(hub, now_clock) == 1

    assert len(receiver.requests) == 3
    assert len({request["headers"]["webhook-id"] for request in receiver.requests}) == 1
    for request in receiver.requests:
        Webhook(created["secret"]).verify(request["body"], request["headers"])
    (delivery,) = _deliveries(hub)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.delivered, 3, 200)
    assert webhook_backoff_s(2, hub.settings) == 2 * webhook_backoff_s(1, hub.settings)


def test_delivery_is_dead_after_the_maximum_attempts(hub, receiver, now_clock):
    org, headers = hub.make_org("Broken receiver lab")
    _subscribe(hub, headers, receiver.url)
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, now_clock, sample("received"))
    receiver.statuses = [500] * 10
    settings = hub.settings.model_copy(update={"webhook_max_attempts": 3})
    for attempt in range(1, 6):
        _deliver(hub, now_clock, settings)
        now_clock.advance(seconds=webhook_backoff_s(attempt, settings))
    (delivery,) = _deliveries(hub)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.dead, 3)
    assert len(receiver.requests) == 3


def test_the_retry_schedule_follows_the_configured_base_and_cap():
    settings = Settings(webhook_retry_base_s=2, webhook_retry_max_s=10)
    assert [webhook_backoff_s(failures, settings) for failures in range(1, 6)] == [2, 4, 8, 10, 10]
    default = Settings()
    assert [webhook_backoff_s(failures, default) for failures in (1, 2, 3)] == [5, 10, 20]
    assert webhook_backoff_s(40, default) == 6 * 3600


def test_unreachable_endpoint_counts_as_a_failed_attempt(hub, now_clock):
    org, headers = hub.make_org("Nowhere lab")
    _subscribe(hub, headers, "http://127.0.0.1:9/hooks")
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, now_clock, sample("received"))
    assert _deliver(hub, now_clock) == 0
    (delivery,) = _deliveries(hub)
    assert delivery.status == DeliveryStatus.failed and delivery.last_status_code is None
    assert "ConnectError" in (delivery.last_error or "")


def test_subscribers_get_their_own_organizations_events_and_chosen_types(hub, receiver, now_clock, admin_headers):
    first, first_headers = hub.make_org("Lab one")
    _second, second_headers = hub.make_org("Lab two")
    _subscribe(hub, first_headers, receiver.url + "/one", ["report.issued"])
    _subscribe(hub, second_headers, receiver.url + "/two")
    _subscribe(hub, admin_headers, receiver.url + "/admin")
    instance = make_instance(hub.engine, organization_id=first)
    land(hub.engine, instance, now_clock, sample("received"))
    land(hub.engine, instance, now_clock, sample("published"))
    _deliver(hub, now_clock)
    by_path: dict[str, list[str]] = {}
    for request in receiver.requests:
        by_path.setdefault(request["path"], []).append(json.loads(request["body"])["type"])
    # Deliveries run concurrently, so arrival order is not guaranteed (subscribers order by `qihubseq`).
    assert {path: sorted(types) for path, types in by_path.items()} == {
        "/hooks/one": ["report.issued"],
        "/hooks/admin": ["report.issued", "sample.received"],
    }


def test_webhook_api_validates_lists_without_secrets_and_isolates_tenants(hub, receiver):
    _, headers = hub.make_org("API lab")
    _, other_headers = hub.make_org("Other API lab")
    for bad in ("ftp://example.org/x", "not a url", "http://user:pw@example.org/x", "http://0.0.0.0/x"):
        response = hub.client.post("/api/v1/webhooks", json={"url": bad}, headers=headers)
        assert response.status_code == 422, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    response = hub.client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "eventTypes": ["no.such.type"]}, headers=headers
    )
    assert response.status_code == 422 and response.json()["unknown"] == ["no.such.type"]
    created = _subscribe(hub, headers, receiver.url, ["report.modified"])

    listed = hub.client.get("/api/v1/webhooks", headers=headers).json()
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0] and listed[0]["eventTypes"] == ["report.modified"]
    assert hub.client.get("/api/v1/webhooks", headers=other_headers).json() == []
    assert hub.client.get(f"/api/v1/webhooks/{created['id']}", headers=other_headers).status_code == 404
    assert hub.client.delete(f"/api/v1/webhooks/{created['id']}", headers=other_headers).status_code == 404
    assert hub.client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers).status_code == 204
    assert hub.client.get("/api/v1/webhooks", headers=headers).json() == []


def test_delivery_state_is_readable_per_subscription(hub, receiver, now_clock):
    org, headers = hub.make_org("Curious lab")
    created = _subscribe(hub, headers, receiver.url)
    instance = make_instance(hub.engine, organization_id=org)
    land(hub.engine, instance, now_clock, sample("received"))
    receiver.statuses = [502]
    _deliver(hub, now_clock)
    response = hub.client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers)
    assert response.status_code == 200
    (delivery,) = response.json()
    assert delivery["status"] == "failed" and delivery["lastStatusCode"] == 502 and delivery["attempts"] == 1
