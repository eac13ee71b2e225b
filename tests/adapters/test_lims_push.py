"""Generic LIMS push: JSON arrays and CSV files with a column mapping, landed row by row through the API."""

import hashlib
import json
from typing import Any

import pytest
from sqlmodel import select

from adapters.builtin.lims_push import LimsPushAdapter, PushBodyError
from adapters.canonical import record_json
from adapters.framework import InboundMessage, QuarantineError, Transport
from adapters.models import AdapterCounters, AdapterHealth, CanonicalRecordRow, LandingMessage
from storage.database import session_scope

MAPPING = {
    "样品编号": {"field": "sample_id"},
    "检测项目": {"field": "test_item"},
    "检测方法": {"field": "method"},
    "结果": {"field": "value", "unit": "mg/kg"},
    "检测日期": {"field": "measured_at"},
    "状态": {"field": "status"},
    "仪器厂商": {"field": "instrument.manufacturer"},
    "仪器型号": {"field": "instrument.model"},
    "仪器编号": {"field": "instrument.serial"},
}
CSV_CONFIG = {
    "lab_id": "CNAS L1234",
    "time_zone": "Asia/Shanghai",
    "mapping": MAPPING,
    "status_codes": {"已批准": "verified", "待审核": "unverified"},
}
CSV_BODY = (
    "样品编号,检测项目,检测方法,结果,检测日期,状态,仪器厂商,仪器型号,仪器编号\n"
    "S-001,Pb,GB 5009.12-2023,<0.010,2026-03-02 10:15,已批准,Agilent,7900,JP1234\n"
    "S-001,Cd,GB 5009.15-2023,0.0250,2026-03-02 10:20,待审核,Agilent,7900,JP1234\n"
    ",As,GB 5009.11-2024,0.12,2026-03-02 10:25,已批准,Agilent,7900,JP1234\n"
    "S-002,Hg,GB 5009.17-2021,abc,2026-03-02 10:30,已批准,Agilent,7900,JP1234\n"
    "S-003,Cr,GB 5009.123-2023,1.5,2026-03-02 10:35,作废,Agilent,7900,JP1234\n"
).encode()


def _instance(hub, headers: dict[str, str], config: dict[str, Any]) -> str:
    created = hub.client.post(
        "/api/v1/adapters",
        json={
            "name": f"push-{hashlib.sha1(json.dumps(config).encode()).hexdigest()[:8]}",
            "adapter": "lims-push",
            "config": config,
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _push(hub, instance_id: str, headers: dict[str, str], body: bytes, media_type: str):
    return hub.client.post(
        f"/api/v1/adapters/{instance_id}/push", content=body, headers={**headers, "Content-Type": media_type}
    )


def _records(hub, instance_id: str) -> list[dict[str, Any]]:
    with session_scope(hub.engine) as session:
        rows = session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance_id)
            .order_by(CanonicalRecordRow.id)
        )
        return [row.record for row in rows]


def test_a_mapped_csv_lands_row_by_row_and_quarantines_the_bad_rows_with_codes(hub):
    _, headers = hub.make_org("Lab A")
    instance_id = _instance(hub, headers, CSV_CONFIG)
    answer = _push(hub, instance_id, headers, CSV_BODY, "text/csv; charset=utf-8")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["received"], report["accepted"], report["quarantined"], report["duplicates"]) == (5, 2, 3, 0)
    assert [(row["row"], row["outcome"], row["errorCode"]) for row in report["rows"]] == [
        (1, "accepted", None),
        (2, "accepted", None),
        (3, "quarantined", "missing-identifier"),
        (4, "quarantined", "invalid-value"),
        (5, "quarantined", "unknown-code"),
    ]
    lead, cadmium = _records(hub, instance_id)
    assert lead == {
        "schema_version": "1.0",
        "record_type": "test-result",
        "result_id": "S-001/Pb",
        "sample_id": "S-001",
        "lab_id": "CNAS L1234",
        "test_item": "Pb",
        "method": "GB 5009.12-2023",
        "value": "0.010",
        "operator": "<",
        "unit": "mg/kg",
        "instrument": {"manufacturer": "Agilent", "model": "7900", "serial": "JP1234"},
        "measured_at": "2026-03-02T02:15:00Z",  # 10:15 in Asia/Shanghai
        "status": "verified",
        "source_status": "已批准",
        "envelope_id": report["rows"][0]["messageId"],
    }
    assert (cadmium["value"], cadmium["status"]) == ("0.0250", "unverified")
    with session_scope(hub.engine) as session:
        messages = session.exec(
            select(LandingMessage).where(LandingMessage.instance_id == instance_id).order_by(LandingMessage.id)
        ).all()
        counters = session.get(AdapterCounters, instance_id)
        health = session.get(AdapterHealth, instance_id)
    header, first_row = CSV_BODY.decode().splitlines()[:2]
    assert messages[0].raw.decode() == f"{header}\n{first_row}\n"
    assert (messages[0].transport, messages[0].content_type, messages[0].source) == (
        "http-push",
        "text/csv",
        f"/api/v1/adapters/{instance_id}/push",
    )
    assert counters is not None and (counters.received, counters.accepted, counters.quarantined) == (5, 2, 3)
    assert health is not None and health.connected and health.last_seen is not None


def test_pushing_the_same_rows_again_counts_duplicates_and_changes_nothing(hub):
    _, headers = hub.make_org("Lab A")
    instance_id = _instance(hub, headers, CSV_CONFIG)
    _push(hub, instance_id, headers, CSV_BODY, "text/csv")
    again = _push(hub, instance_id, headers, CSV_BODY, "text/csv").json()
    assert (again["received"], again["accepted"], again["quarantined"], again["duplicates"]) == (5, 0, 0, 5)
    assert {row["outcome"] for row in again["rows"]} == {"duplicate"}
    assert len(_records(hub, instance_id)) == 2


def test_a_json_array_with_canonical_names_needs_no_mapping(hub):
    _, headers = hub.make_org("Lab A")
    instance_id = _instance(hub, headers, {"lab_id": "CNAS L1234"})
    body = (
        b'[{"sampleId": "S-9", "testItem": "pH", "value": 7.20, "unit": "pH", "status": "approved",'
        b' "measuredAt": "2026-03-02T09:00:00+08:00"},\n'
        b' {"sampleId": "S-9", "testItem": "Colour", "textValue": "colourless", "status": "pending",'
        b' "instrument": {"manufacturer": "Hach", "model": "2100Q", "serial": "H-1"}},\n'
        b' {"sampleId": "S-9", "testItem": "Temp", "value": 20.1, "unit": "furlongs", "status": "pending"},\n'
        b' "not an object"]'
    )
    report = _push(hub, instance_id, headers, body, "application/json").json()
    assert [(row["outcome"], row["errorCode"]) for row in report["rows"]] == [
        ("accepted", None),
        ("accepted", None),
        ("quarantined", "unknown-unit"),
        ("quarantined", "malformed-payload"),
    ]
    ph, colour = _records(hub, instance_id)
    assert (ph["value"], ph["unit"], ph["status"]) == ("7.20", "[pH]", "verified")  # the digits as sent
    assert (colour["text_value"], colour["status"]) == ("colourless", "unverified")
    assert colour["instrument"] == {"manufacturer": "Hach", "model": "2100Q", "serial": "H-1"}
    with session_scope(hub.engine) as session:
        first = session.get(LandingMessage, report["rows"][0]["messageId"])
    assert first is not None and b'"value": 7.20' in first.raw


@pytest.mark.parametrize(
    ("body", "media_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid-push-body"),
        (b'{"sampleId": "S-1"}', "application/json", 422, "invalid-push-body"),
        (b"[]", "application/json", 422, "invalid-push-body"),
        (b"a,a\n1,2\n", "text/csv", 422, "invalid-push-body"),
        (b"\xff\xfe\x00", "text/csv", 400, "invalid-push-body"),
        (b"<results/>", "application/xml", 415, "unsupported-media-type"),
    ],
)
def test_unreadable_bodies_are_problems_and_store_nothing(hub, body, media_type, status, code):
    _, headers = hub.make_org("Lab A")
    instance_id = _instance(hub, headers, CSV_CONFIG)
    answer = _push(hub, instance_id, headers, body, media_type)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    with session_scope(hub.engine) as session:
        assert session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance_id)).first() is None


def test_only_the_owner_pushes_to_an_enabled_push_instance(hub, admin_headers):
    _, owner = hub.make_org("Lab A")
    _, other = hub.make_org("Lab B")
    instance_id = _instance(hub, owner, CSV_CONFIG)
    assert _push(hub, instance_id, other, CSV_BODY, "text/csv").status_code == 404
    assert _push(hub, instance_id, admin_headers, CSV_BODY, "text/csv").status_code == 200
    hub.client.patch(f"/api/v1/adapters/{instance_id}", json={"enabled": False}, headers=owner)
    disabled = _push(hub, instance_id, owner, CSV_BODY, "text/csv")
    assert (disabled.status_code, disabled.json()["code"]) == (409, "instance-disabled")


def test_an_instance_of_a_polling_adapter_takes_no_pushes(hub):
    _, headers = hub.make_org("Lab A")
    created = hub.client.post(
        "/api/v1/adapters",
        json={"name": "senaite-x", "adapter": "senaite", "config": {"base_url": "http://127.0.0.1:9/senaite"}},
        headers=headers,
    )
    answer = _push(hub, created.json()["id"], headers, b"[]", "application/json")
    assert (answer.status_code, answer.json()["code"]) == (422, "not-a-push-adapter")


# --- the adapter alone ----------------------------------------------------------------------------------------


def test_golden_rows_become_their_expected_canonical_json():
    adapter = LimsPushAdapter({})
    for fixture in adapter.golden_fixtures():
        assert [record_json(record) for record in adapter.parse(fixture.message)] == fixture.expected


def test_semicolon_csv_and_a_sample_mapping():
    adapter = LimsPushAdapter(
        {
            "record_kind": "sample",
            "csv_delimiter": ";",
            "time_zone": "Asia/Shanghai",
            "mapping": {
                "编号": {"field": "sample_id"},
                "委托单": {"field": "order_id", "transform": "upper"},
                "收样时间": {"field": "received_at"},
                "状态": {"field": "status"},
            },
        }
    )
    [message] = adapter.messages_from_body(
        "编号;委托单;收样时间;状态\nS-1;wt-7;2026-03-02 08:00;已接收\n".encode(), "text/csv", source="test"
    )
    [sample] = adapter.parse(message)
    assert record_json(sample) | {} == {
        "schema_version": "1.0",
        "record_type": "sample",
        "sample_id": "S-1",
        "order_id": "WT-7",
        "received_at": "2026-03-02T00:00:00Z",
        "status": "received",
        "source_status": "已接收",
    }


def test_a_time_without_offset_needs_the_configured_zone():
    adapter = LimsPushAdapter({})
    row = InboundMessage(
        payload=b'{"sample_id": "S", "test_item": "Pb", "measured_at": "2026-03-02 10:00", "status": "pending"}',
        content_type="application/json",
        source="test",
        transport=Transport.http_push,
    )
    with pytest.raises(QuarantineError) as raised:
        adapter.parse(row)
    assert raised.value.code == "invalid-value"


def test_field_mappings_publish_the_configured_columns():
    mappings = LimsPushAdapter(CSV_CONFIG).field_mappings()
    value = next(m for m in mappings if m.source_field == "结果")
    assert (value.canonical_field, value.unit, value.transform) == ("value", "mg/kg", "censored")
    assert {m.canonical_field for m in mappings} >= {"sample_id", "test_item", "status"}


def test_too_many_rows_are_refused_whole():
    adapter = LimsPushAdapter({})
    with pytest.raises(PushBodyError) as raised:
        adapter.messages_from_body(b"[" + b",".join([b"{}"] * 10_001) + b"]", "application/json", source="t")
    assert raised.value.http_status == 413


def test_the_conformance_kit_passes():
    from adapters.conformance.checks import run_conformance

    outcomes = run_conformance(LimsPushAdapter)
    assert [(o.name, o.detail) for o in outcomes if not o.passed] == []
    assert {o.name for o in outcomes if o.skipped} == {"write-back-idempotent"}  # it declares no commands
