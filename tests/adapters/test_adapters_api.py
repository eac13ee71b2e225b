"""The adapters API: catalog (with broken plug-ins), instances and ownership, health, counters, landing zone."""

import base64
import hashlib
import uuid
from datetime import timedelta
from importlib.metadata import EntryPoint

import pytest

from adapters import discovery
from adapters.builtin.mqtt import MqttAdapter
from adapters.framework import InboundMessage, SystemClock, Transport
from adapters.landing import land_messages
from adapters.models import AdapterInstance
from adapters.runtime import write_health
from organizations.models import OrganizationKind, Scope
from storage.database import session_scope
from storage.models import utc_now

PROBLEM = "application/problem+json"
RW = [Scope.certificates_read, Scope.certificates_write]


def _config(**extra) -> dict:
    return {
        "broker": "mqtt://127.0.0.1:1883",
        "subscriptions": [{"topic": "lab/+/env", "kind": "environment"}],
        **extra,
    }


def _create(hub, headers, **body):
    payload = {"name": f"mqtt-{uuid.uuid4().hex[:8]}", "adapter": "mqtt", "config": _config(), **body}
    return hub.client.post("/api/v1/adapters", json=payload, headers=headers)


@pytest.fixture
def broken_plugins(monkeypatch):
    """The real entry points plus a plug-in that fails to import and one whose manifest names itself wrongly."""
    real = discovery.entry_points

    def fake_entry_points(*, group):
        extra = [
            EntryPoint("broken", "no_such_module.anywhere:Adapter", group),
            EntryPoint("renamed", "adapters.builtin.mqtt:MqttAdapter", group),
        ]
        return [*real(group=group), *extra]

    monkeypatch.setattr(discovery, "entry_points", fake_entry_points)
    discovery.adapter_catalog(refresh=True)
    yield
    monkeypatch.undo()
    discovery.adapter_catalog(refresh=True)


def test_the_catalog_lists_plugins_with_manifests_and_reports_broken_ones_without_failing(
    hub, admin_headers, broken_plugins
):
    response = hub.client.get("/api/v1/adapters/catalog", headers=admin_headers)
    assert response.status_code == 200
    catalog = response.json()
    mqtt = next(entry for entry in catalog["adapters"] if entry["name"] == "mqtt")
    assert mqtt["target"] == "adapters.builtin.mqtt:MqttAdapter"
    assert mqtt["manifest"]["version"] == MqttAdapter.manifest.version
    assert mqtt["manifest"]["config_schema"]["required"] == ["broker", "subscriptions"]
    errors = {error["name"]: error["error"] for error in catalog["errors"]}
    assert errors["broken"].startswith("ModuleNotFoundError")
    assert "names itself 'mqtt' but is published as 'renamed'" in errors["renamed"]
    refused = _create(hub, admin_headers, adapter="broken")
    assert refused.status_code == 422
    assert refused.json()["code"] == "unknown-adapter"
    assert "cannot be used" in refused.json()["detail"]


def test_an_admin_configures_reads_and_changes_an_instance(hub, admin_headers):
    created = _create(hub, admin_headers, name="room-sensors")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["adapter"], body["adapterVersion"], body["enabled"]) == (
        "room-sensors",
        "mqtt",
        MqttAdapter.manifest.version,
        True,
    )
    read = hub.client.get(f"/api/v1/adapters/{body['id']}", headers=admin_headers).json()
    assert read == body
    changed = hub.client.patch(
        f"/api/v1/adapters/{body['id']}", json={"enabled": False, "config": _config(room="R-1")}, headers=admin_headers
    )
    assert changed.status_code == 200
    assert changed.json()["enabled"] is False
    assert changed.json()["config"]["room"] == "R-1"
    assert changed.json()["updatedAt"] > body["updatedAt"]
    listed = hub.client.get("/api/v1/adapters", params={"enabled": "false"}, headers=admin_headers).json()
    assert [item["id"] for item in listed] == [body["id"]]


def test_bad_requests_are_problems_and_change_nothing(hub, admin_headers):
    unknown = _create(hub, admin_headers, adapter="no-such-adapter")
    bad_config = _create(hub, admin_headers, config={"broker": "http://x", "subscriptions": []})
    bad_topic = _create(hub, admin_headers, config=_config(subscriptions=[{"topic": "a/#/b", "kind": "environment"}]))
    wrong_type = _create(hub, admin_headers, enabled="sometimes")
    _create(hub, admin_headers, name="taken")
    duplicate = _create(hub, admin_headers, name="taken")
    for response, status, code in (
        (unknown, 422, "unknown-adapter"),
        (bad_config, 422, "invalid-input"),
        (bad_topic, 422, "invalid-input"),
        (wrong_type, 422, "invalid-request"),
        (duplicate, 409, "conflict"),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == code
    assert any("subscriptions" in error for error in bad_config.json()["errors"])
    listed = hub.client.get("/api/v1/adapters", headers=admin_headers).json()
    assert [item["name"] for item in listed] == ["taken"]
    instance_id = listed[0]["id"]
    patch = hub.client.patch(f"/api/v1/adapters/{instance_id}", json={"config": {"broker": 1}}, headers=admin_headers)
    assert patch.status_code == 422
    assert hub.client.get(f"/api/v1/adapters/{instance_id}", headers=admin_headers).json()["config"] == _config()
    missing = hub.client.get("/api/v1/adapters/nope", headers=admin_headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "not-found")


def test_organizations_manage_only_their_own_instances(hub, admin_headers):
    lab_id, lab = hub.make_org("Lab A", scopes=RW)
    _, other_lab = hub.make_org("Lab B", scopes=RW)
    _, reader = hub.make_org("Lab C", scopes=[Scope.certificates_read])
    _, regulator = hub.make_org("Regulator", kind=OrganizationKind.regulator, scopes=RW)
    created = _create(hub, lab)
    assert created.status_code == 201, created.text
    instance_id = created.json()["id"]
    assert created.json()["organizationId"] == lab_id
    for_other = _create(hub, lab, organization_id=str(uuid.uuid4()))
    assert (for_other.status_code, for_other.json()["code"]) == (403, "forbidden")
    assert _create(hub, reader).json()["code"] == "missing-scope"
    assert _create(hub, regulator).status_code == 403
    assert hub.client.get(f"/api/v1/adapters/{instance_id}", headers=other_lab).status_code == 404
    assert hub.client.get(f"/api/v1/adapters/{instance_id}/counters", headers=other_lab).status_code == 404
    assert (
        hub.client.patch(f"/api/v1/adapters/{instance_id}", json={"enabled": False}, headers=other_lab).status_code
        == 404
    )
    assert hub.client.get("/api/v1/adapters", headers=other_lab).json() == []
    assert [item["id"] for item in hub.client.get("/api/v1/adapters", headers=lab).json()] == [instance_id]
    assert instance_id in [item["id"] for item in hub.client.get("/api/v1/adapters", headers=admin_headers).json()]
    assert hub.client.get(f"/api/v1/adapters/{instance_id}").status_code == 401


def _land(hub, instance_id: str, payloads: list[bytes]):
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        adapter = MqttAdapter(instance.config)
        messages = [
            InboundMessage(
                payload=payload,
                content_type="application/json",
                source="mqtt://127.0.0.1:1883/lab/R-1/env",
                transport=Transport.mqtt,
                stream="lab/R-1/env",
                dedup_key=adapter.identity("lab/R-1/env", payload),
            )
            for payload in payloads
        ]
        return land_messages(
            session, instance=instance, adapter=adapter, messages=messages, clock=SystemClock(), max_message_bytes=4096
        )


READING = (
    b'{"sensor": "s1", "room": "R-1", "time": "2026-03-02T08:00:00+08:00", '
    b'"readings": {"temperature": {"value": 20.10, "unit": "\xc2\xb0C"}, "humidity": {"value": 45, "unit": "%"}}}'
)


def test_the_landing_zone_is_readable_envelopes_quarantine_raw_bytes_and_records(hub, admin_headers):
    instance_id = _create(hub, admin_headers).json()["id"]
    broken = b"\xff\xfe not json"
    report = _land(hub, instance_id, [READING, broken, READING])
    base = f"/api/v1/adapters/{instance_id}"
    assert hub.client.get(f"{base}/counters", headers=admin_headers).json() == {
        "received": 3,
        "accepted": 1,
        "quarantined": 1,
        "duplicates": 1,
        "reconciled": True,
    }
    quarantined = hub.client.get(f"{base}/messages", params={"outcome": "quarantined"}, headers=admin_headers).json()
    assert [(m["errorCode"], m["id"]) for m in quarantined["items"]] == [("malformed-payload", report.message_ids[1])]
    envelope = hub.client.get(f"{base}/messages/{report.message_ids[0]}", headers=admin_headers).json()
    assert envelope["sha256"] == hashlib.sha256(READING).hexdigest()
    assert envelope["dedupKey"] == "env/s1/2026-03-02T00:00:00+00:00"
    assert (envelope["adapter"], envelope["transport"], envelope["outcome"]) == ("mqtt", "mqtt", "accepted")
    raw = hub.client.get(f"{base}/messages/{report.message_ids[1]}/raw", headers=admin_headers)
    assert raw.status_code == 200
    assert raw.content == broken
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["repr-digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(broken).digest()).decode()}:"
    assert raw.headers["x-content-type-options"] == "nosniff"
    records = hub.client.get(f"{base}/records", params={"kind": "environment-reading"}, headers=admin_headers).json()
    assert [(r["record"]["quantity"], r["record"]["value"]) for r in records["items"]] == [
        ("temperature", "20.10"),
        ("relative-humidity", "45"),
    ]
    assert all(r["messageId"] == report.message_ids[0] == r["record"]["envelope_id"] for r in records["items"])
    assert all(r["schemaVersion"] == "1.0" for r in records["items"])
    assert hub.client.get(f"{base}/records", params={"kind": "sample"}, headers=admin_headers).json()["items"] == []
    page = hub.client.get(f"{base}/records", params={"limit": 1}, headers=admin_headers).json()
    following = hub.client.get(f"{base}/records", params={"limit": 1, "after": page["next"]}, headers=admin_headers)
    assert following.json()["items"][0]["record"]["quantity"] == "relative-humidity"
    assert following.json()["next"] is None


def test_messages_of_another_instance_are_not_found(hub, admin_headers):
    first = _create(hub, admin_headers).json()["id"]
    second = _create(hub, admin_headers).json()["id"]
    report = _land(hub, first, [READING])
    response = hub.client.get(f"/api/v1/adapters/{second}/messages/{report.message_ids[0]}/raw", headers=admin_headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_health_is_connected_and_recently_heard_from(hub, admin_headers):
    instance_id = _create(hub, admin_headers).json()["id"]
    url = f"/api/v1/adapters/{instance_id}/health"
    never = hub.client.get(url, headers=admin_headers).json()
    assert (never["connected"], never["healthy"], never["lastSeen"]) == (False, False, None)
    write_health(hub.engine, instance_id=instance_id, connected=True, now=utc_now(), lag_s=0.2)
    fresh = hub.client.get(url, headers=admin_headers).json()
    assert (fresh["connected"], fresh["healthy"], fresh["lagS"]) == (True, True, 0.2)
    stale = utc_now() - timedelta(seconds=hub.settings.adapter_health_timeout_s + 5)
    write_health(hub.engine, instance_id=instance_id, connected=True, now=stale)
    assert hub.client.get(url, headers=admin_headers).json()["healthy"] is False
    write_health(hub.engine, instance_id=instance_id, connected=False, now=utc_now(), error="refused")
    down = hub.client.get(url, headers=admin_headers).json()
    assert (down["healthy"], down["lastError"]) == (False, "refused")
