"""Public contracts (L5.2): the platform OpenAPI and the events AsyncAPI documents are valid, the simulator
answers as the contract says, and every event the hub emits in a replay fits its AsyncAPI message schema."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlmodel import select

from adapters import rules
from adapters.builtin.platform_contract import StandardEntry
from adapters.events import DOMAIN_EVENT_TYPES, EXTRA_EVENT_TYPES, emit_due_events, to_cloudevent
from adapters.models import EnvironmentLimit, OutboxEvent, RuleFlag
from adapters.simulators.platform import PlatformSimulator, create_simulator_app, demo_state
from storage.database import session_scope
from tests.adapters.events_support import calibration, complaint, equipment, land, make_instance, result, sample

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_CONTRACT = ROOT / "openapi" / "platform-contract.yaml"
ASYNCAPI = ROOT / "openapi" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = ROOT / "openapi" / "vendor" / "asyncapi-3.0.0.schema.json"
CANONICAL = ROOT / "schemas" / "json" / "canonical"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _registry(document: dict, uri: str) -> Registry:
    """The document itself plus the canonical record schemas it references, all from disk."""
    resources = [(uri, Resource.from_contents(document, default_specification=DRAFT202012))]
    for schema_file in CANONICAL.glob("*.schema.json"):
        contents = json.loads(schema_file.read_text(encoding="utf-8"))
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        resources.append((schema_file.resolve().as_uri(), resource))
        resources.append((contents["$id"], resource))
    return Registry().with_resources(resources)


def _validator(document: dict, path: Path, pointer: str) -> jsonschema.Draft202012Validator:
    uri = path.resolve().as_uri()
    registry = _registry(document, uri)
    return jsonschema.Draft202012Validator(
        {"$ref": f"{uri}#{pointer}"}, registry=registry, format_checker=jsonschema.FormatChecker()
    )


# --- the documents themselves ------------------------------------------------------------------------------


def test_platform_contract_is_a_valid_openapi_3_1_document():
    contract = _load(PLATFORM_CONTRACT)
    validate_openapi(contract)
    assert contract["openapi"].startswith("3.1")
    assert "simulator" in json.dumps(contract["x-simulator"])
    paths = set(contract["paths"])
    assert {"/directory/labs", "/directory/standards", "/complaints", "/activity", "/reports"} <= paths


def test_asyncapi_document_validates_against_the_official_asyncapi_3_schema():
    document = _load(ASYNCAPI)
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(document)
    assert document["asyncapi"] == "3.0.0"


def test_asyncapi_has_a_channel_and_message_for_every_event_type():
    document = _load(ASYNCAPI)
    titles = {message["name"] for message in document["components"]["messages"].values()}
    assert titles == set(DOMAIN_EVENT_TYPES) | set(EXTRA_EVENT_TYPES)
    addresses = {channel["address"] for channel in document["channels"].values() if channel["address"]}
    assert addresses == {f"qihub/events/{name}" for name in titles}
    # Every $ref into the canonical schemas points at a published file.
    for reference in {part.split("#")[0] for part in _refs(document) if part.startswith("../")}:
        assert (ASYNCAPI.parent / reference).resolve().is_file(), reference


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


# --- the simulator against the contract --------------------------------------------------------------------


def _response_schema(contract: dict, path: str, method: str, status: int) -> str:
    response = contract["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        return f"/components/responses/{name}/content/application~1problem+json/schema"
    media = next(iter(response["content"]))
    escaped_path = path.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped_path}/{method}/responses/{status}/content/{media.replace('/', '~1')}/schema"


def _request_schema(contract: dict, path: str) -> jsonschema.Draft202012Validator:
    escaped = path.replace("/", "~1")
    return _validator(
        contract, PLATFORM_CONTRACT, f"/paths/{escaped}/post/requestBody/content/application~1json/schema"
    )


@pytest.fixture
def simulator_client():
    state = demo_state()
    state.upsert_standard(
        StandardEntry(
            code="GB/T 27025-2019",
            title="Testing labs",
            status="current",
            updatedAt=state.labs["CNAS L0001"].updated_at,
        )
    )
    state.token = "t"
    with TestClient(create_simulator_app(state)) as client:
        client.headers["Authorization"] = "Bearer t"
        yield client, state


def test_simulator_answers_conform_to_the_platform_contract(simulator_client):
    client, _ = simulator_client
    contract = _load(PLATFORM_CONTRACT)
    base = "/platform/v1"
    report = {
        "labId": "CNAS L0001",
        "reportNumber": "R-1",
        "kind": "test-report",
        "issuedAt": "2026-03-02T09:00:00+08:00",
    }
    modification = {"change": "amended", "modifiedAt": "2026-03-02T10:00:00Z", "reason": "typo"}
    activity = {"labId": "CNAS L0001", "items": [{"kind": "sample", "id": "S-1", "occurredAt": "2026-03-02T08:00:00Z"}]}
    for path, body in (
        ("/reports", report),
        ("/activity", activity),
        ("/reports/{reportNumber}/modifications", modification),
    ):
        _request_schema(contract, path).validate(body)  # what the hub sends fits the contract too

    calls = [
        ("get", "/directory/labs", None, {}, 200),
        ("get", "/directory/standards", None, {"limit": 1}, 200),
        ("get", "/complaints", None, {}, 200),
        ("post", "/reports", report, {}, 201),
        ("post", "/reports", report, {}, 201),  # replay: the first receipt
        ("post", "/reports", {**report, "title": "other"}, {}, 409),
        ("post", "/reports/{reportNumber}/modifications", modification, {}, 201),
        ("post", "/activity", activity, {}, 202),
        ("post", "/activity", {"labId": "x", "items": []}, {}, 422),
        ("get", "/directory/labs", None, {"cursor": "garbage"}, 400),
    ]
    statuses = []
    for method, path, body, params, expected in calls:
        url = base + path.replace("{reportNumber}", "R-1")
        headers = {"Idempotency-Key": f"key-{path}"} if method == "post" else {}
        response = client.request(method.upper(), url, json=body, params=params, headers=headers)
        assert response.status_code == expected, (path, response.text)
        _validator(contract, PLATFORM_CONTRACT, _response_schema(contract, path, method, expected)).validate(
            response.json()
        )
        statuses.append(response.status_code)
    unauthorised = client.get(base + "/complaints", headers={"Authorization": "Bearer wrong"})
    assert unauthorised.status_code == 401
    _validator(contract, PLATFORM_CONTRACT, _response_schema(contract, "/complaints", "get", 401)).validate(
        unauthorised.json()
    )
    missing = client.post(base + "/reports/NOPE/modifications", json=modification, headers={"Idempotency-Key": "k"})
    assert missing.status_code == 404
    paged = client.get(base + "/directory/standards", params={"limit": 1}).json()
    assert paged["more"] is True and paged["simulator"] is True
    following = client.get(base + "/directory/standards", params={"limit": 1, "cursor": paged["cursor"]}).json()
    assert [item["code"] for item in paged["items"] + following["items"]] == sorted(
        item["code"] for item in paged["items"] + following["items"]
    ) and len(following["items"]) == 1


def test_simulator_requires_an_idempotency_key_on_pushes(simulator_client):
    client, state = simulator_client
    response = client.post(
        "/platform/v1/activity",
        json={"labId": "L", "items": [{"kind": "order", "id": "O-1", "occurredAt": "2026-03-02T08:00:00Z"}]},
    )
    assert response.status_code == 400 and response.json()["code"] == "idempotency-key-required"
    assert state.received == []


def test_simulator_is_runnable_standalone():
    from adapters.simulators import platform

    assert callable(platform.main)
    assert isinstance(platform.PlatformSimulator(), PlatformSimulator)


# --- emitted events against the AsyncAPI messages ----------------------------------------------------------


def test_every_event_of_a_replay_validates_against_its_asyncapi_message(hub, manual_clock):
    document = _load(ASYNCAPI)
    validators = {
        message["name"]: _validator(document, ASYNCAPI, f"/components/messages/{key}/payload")
        for key, message in document["components"]["messages"].items()
    }
    org, _ = hub.make_org("Contract lab")
    instance = make_instance(hub.engine, organization_id=org)
    with session_scope(hub.engine) as session:
        session.add(EnvironmentLimit(room="Lab-101", quantity="temperature", unit="Cel", minimum="18", maximum="26"))
    rules.invalidate_limits_cache()
    reading = {
        "kind": "environment-reading",
        "room": "Lab-101",
        "sensor_id": "T-1",
        "quantity": "temperature",
        "value": "27.5",
        "unit": "Cel",
        "observed_at": "2026-03-02T08:30:00+00:00",
    }
    land(hub.engine, instance, manual_clock, sample("received"), equipment("idle", "2026-03-02T08:00:00+00:00"))
    land(hub.engine, instance, manual_clock, equipment("fault", "2026-03-02T08:20:00+00:00"), result("verified"))
    land(hub.engine, instance, manual_clock, reading, sample("published"))
    land(hub.engine, instance, manual_clock, calibration("CAL-9", "2026-03-02T09:00:00+00:00"))
    land(hub.engine, instance, manual_clock, complaint("accepted", "2026-03-02T20:00:00+00:00"))
    land(hub.engine, instance, manual_clock, result("verified", value="0.77"), sample("invalid"))
    manual_clock.advance(hours=2)
    with session_scope(hub.engine) as session:
        emit_due_events(session, clock=manual_clock, settings=hub.settings)
        flags = session.exec(select(RuleFlag)).all()
        emitted = [to_cloudevent(event) for event in session.exec(select(OutboxEvent).order_by(OutboxEvent.seq))]
    assert any(flag.rule == "environment-excursion" for flag in flags)
    assert {event["type"] for event in emitted} == set(DOMAIN_EVENT_TYPES)
    for envelope in emitted:
        validators[envelope["type"]].validate(json.loads(json.dumps(envelope)))
    broken = {**emitted[0], "specversion": "0.3"}
    with pytest.raises(jsonschema.ValidationError):
        validators[broken["type"]].validate(broken)
