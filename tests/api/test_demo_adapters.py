"""`qihub demo load` shows adapters at work on a fresh hub, without any external service, and loads once."""

import csv
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import select

from adapters.models import (
    AdapterInstance,
    CanonicalRecordRow,
    EnvironmentLimit,
    LandingMessage,
    OutboxEvent,
    RuleFlag,
)
from api.demo import DEMO_LAB_KEY, DEMO_ROOM, LIMS_INSTANCE, ROOM_INSTANCE, ROOM_SERIES, load_demo
from certificates.models import Certificate
from storage.database import session_scope
from tests.paths import REPO_ROOT

DEMO = REPO_ROOT / "demo"
DEMO_HEADERS = {"Authorization": f"Bearer {DEMO_LAB_KEY}"}
SOSA = "http://www.w3.org/ns/sosa/"
QH = "https://qihub.example/ns#"


def _load(hub) -> str:
    with session_scope(hub.engine, hooks=hub.client.app.state.hooks) as session:
        return load_demo(session, folder=DEMO)


def _counts(hub) -> dict[str, int]:
    tables = {
        "instances": AdapterInstance,
        "messages": LandingMessage,
        "records": CanonicalRecordRow,
        "limits": EnvironmentLimit,
        "flags": RuleFlag,
        "events": OutboxEvent,
        "certificates": Certificate,
    }
    with session_scope(hub.engine) as session:
        return {name: session.exec(select(func.count()).select_from(table)).one() for name, table in tables.items()}


def _instances(hub) -> dict[str, dict]:
    response = hub.client.get("/api/v1/adapters", headers=DEMO_HEADERS)
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()}


def _records(hub, instance_id: str, kind: str) -> list[dict]:
    found: list[dict] = []
    after = None
    while True:
        params = {"kind": kind, "limit": 1000, **({"after": after} if after else {})}
        page = hub.client.get(f"/api/v1/adapters/{instance_id}/records", params=params, headers=DEMO_HEADERS).json()
        found += page["items"]
        after = page["next"]
        if after is None:
            return found


def test_demo_loads_its_adapter_data_once(hub):
    first = _load(hub)
    counts = _counts(hub)
    second = _load(hub)

    assert "5 LIMS result row(s) pushed" in first and "120 room-sensor message(s) landed" in first
    assert "0 certificate(s) added; 0 LIMS result row(s) pushed; 0 room-sensor message(s) landed" in second
    assert _counts(hub) == counts
    assert counts["instances"] == 2 and counts["limits"] == 2
    assert counts["messages"] == 5 + 120 and counts["records"] == 5 + 120 * 5


def test_demo_lims_results_arrive_through_the_push_landing_zone(hub):
    _load(hub)
    instances = _instances(hub)
    lims = instances[LIMS_INSTANCE]
    assert lims["adapter"] == "lims-push" and lims["enabled"] is True

    results = {
        (r["record"]["sample_id"], r["record"]["test_item"]): r["record"]
        for r in _records(hub, lims["id"], "test-result")
    }
    assert len(results) == 5
    lead = results[("SY-2015-0202-001", "铅")]
    assert (lead["value"], lead["unit"], lead["status"], lead["method"]) == (
        "0.0012",
        "mg/L",
        "verified",
        "GB/T 5750.6-2023",
    )
    assert lead["instrument"]["serial"] == "DEMO-ICPMS-0001" and lead["room"] == DEMO_ROOM
    assert lead["measured_at"].startswith("2015-02-02T13:45:00")  # 14:45 in Brussels (CET)
    cadmium = results[("SY-2015-0202-001", "镉")]
    assert (cadmium["operator"], cadmium["value"]) == ("<", "0.0005")
    assert results[("SY-2015-0202-002", "镉")]["value"] == "0.00060"  # trailing zero kept
    counters = hub.client.get(f"/api/v1/adapters/{lims['id']}/counters", headers=DEMO_HEADERS).json()
    assert counters == {"received": 5, "accepted": 5, "quarantined": 0, "duplicates": 0, "reconciled": True}
    messages = hub.client.get(f"/api/v1/adapters/{lims['id']}/messages", headers=DEMO_HEADERS).json()["items"]
    assert {m["transport"] for m in messages} == {"http-push"}

    maturity = hub.client.get(f"/api/v1/adapters/{lims['id']}/maturity", headers=DEMO_HEADERS)
    assert maturity.status_code == 200, maturity.text
    assert maturity.json()["criteria"]


def test_demo_room_series_lands_as_environment_readings_and_trips_the_demo_limit(hub):
    _load(hub)
    room = _instances(hub)[ROOM_INSTANCE]
    # No broker is needed: the instance is off and its envelopes say the readings came from the demo file.
    assert room["adapter"] == "mqtt" and room["enabled"] is False
    messages = hub.client.get(f"/api/v1/adapters/{room['id']}/messages", headers=DEMO_HEADERS).json()["items"]
    assert {m["transport"] for m in messages} == {"file-drop"}
    assert messages[0]["source"] == f"file:demo/{ROOM_SERIES}#row=1"

    with (DEMO / ROOM_SERIES).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    readings = [r["record"] for r in _records(hub, room["id"], "environment-reading")]
    temperatures = [r for r in readings if r["quantity"] == "temperature"]
    assert len(temperatures) == len(rows) == 120
    assert [t["value"] for t in temperatures] == [row["Temperature"] for row in rows]  # digits as written
    assert {(t["unit"], t["room"], t["sensor_id"]) for t in temperatures} == {("Cel", DEMO_ROOM, "uci-occupancy-1")}

    hot = sum(1 for row in rows if Decimal(row["Temperature"]) > Decimal("23.7"))
    with session_scope(hub.engine) as session:
        flags = session.exec(select(RuleFlag).where(RuleFlag.room == DEMO_ROOM)).all()
        tests_flagged = session.exec(select(RuleFlag).where(RuleFlag.rule == "test-during-excursion")).all()
    assert hot > 0 and sum(1 for flag in flags if flag.rule == "environment-excursion") == hot
    assert {flag.subject_key.split("/")[-2] for flag in tests_flagged} == {"SY-2015-0202-001"}


def test_demo_adapter_records_reach_the_sparql_endpoint(hub):
    _load(hub)
    hub.client.app.state.adapter_fuser.fuse_now()
    query = (
        f"SELECT (COUNT(DISTINCT ?o) AS ?n) WHERE {{ GRAPH ?g {{ ?o a <{QH}EnvironmentObservation> ; "
        f"<{SOSA}hasFeatureOfInterest> ?room }} }}"
    )
    response = hub.client.get(
        "/sparql", params={"query": query}, headers={"Accept": "application/sparql-results+json", **DEMO_HEADERS}
    )
    assert response.status_code == 200, response.text
    assert int(response.json()["results"]["bindings"][0]["n"]["value"]) == 120 * 5
