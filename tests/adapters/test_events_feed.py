"""The events feed API: CloudEvents in outbox order, paged by sequence, filtered by type, isolated per tenant."""

from tests.adapters.events_support import equipment, land, make_instance, sample


def test_feed_pages_filters_and_isolates_tenants(hub, manual_clock, admin_headers):
    first, first_headers = hub.make_org("Feed lab")
    _second, second_headers = hub.make_org("Quiet lab")
    instance = make_instance(hub.engine, organization_id=first)
    land(hub.engine, instance, manual_clock, sample("received"))
    land(hub.engine, instance, manual_clock, equipment("idle", "2026-03-02T08:00:00+00:00"))
    land(hub.engine, instance, manual_clock, equipment("fault", "2026-03-02T08:01:00+00:00"))
    land(hub.engine, instance, manual_clock, sample("published"))

    page = hub.client.get("/api/v1/events?limit=2", headers=first_headers).json()
    assert [event["type"] for event in page["events"]] == ["sample.received", "equipment.status.changed"]
    assert page["next"] == page["events"][-1]["qihubseq"]
    rest = hub.client.get(f"/api/v1/events?after={page['next']}", headers=first_headers).json()
    assert [event["type"] for event in rest["events"]] == ["report.issued"] and rest["next"] is None

    filtered = hub.client.get("/api/v1/events?type=report.issued&type=sample.received", headers=first_headers).json()
    assert [event["type"] for event in filtered["events"]] == ["sample.received", "report.issued"]

    assert hub.client.get("/api/v1/events", headers=second_headers).json()["events"] == []
    assert len(hub.client.get("/api/v1/events", headers=admin_headers).json()["events"]) == 3

    one = page["events"][0]
    assert hub.client.get(f"/api/v1/events/{one['id']}", headers=first_headers).json() == one
    missing = hub.client.get(f"/api/v1/events/{one['id']}", headers=second_headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")


def test_feed_refuses_bad_cursors_and_anonymous_callers(hub):
    _, headers = hub.make_org("Strict lab")
    assert hub.client.get("/api/v1/events?after=-1", headers=headers).status_code == 422
    assert hub.client.get("/api/v1/events?limit=0", headers=headers).status_code == 422
    assert hub.client.get("/api/v1/events").status_code == 401
