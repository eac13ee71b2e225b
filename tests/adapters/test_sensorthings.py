"""The SensorThings-style read API (L5.4): STA v1.1 shapes over environment and equipment records, per tenant."""

import json
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from qihub_sample_adapter import BalanceFileAdapter

from adapters.framework import InboundMessage, SystemClock, Transport
from adapters.landing import land_messages
from adapters.models import AdapterInstance
from storage.database import session_scope
from tests.adapters.maturity_scenario import create_instance

STA = "/api/v1/sta/v1.1"


def _land_readings(hub, instance_id: str, serial: str, temperatures: list[str]) -> None:
    with session_scope(hub.engine) as session:
        instance = session.get(AdapterInstance, instance_id)
        adapter = BalanceFileAdapter(instance.config)
        messages = [
            InboundMessage(
                payload=json.dumps(
                    {
                        "balance": {"manufacturer": "Sartorius", "model": "Cubis II", "serial": serial},
                        "room": f"room-of-{serial}",
                        "state": "IDLE" if index % 2 else "WEIGHING",
                        "at": f"2026-03-02T09:{index:02d}:00+08:00",
                        "temperature": {"value": value, "unit": "Cel"},
                    }
                ).encode(),
                content_type="application/json",
                source=f"file:///{serial}/{index}.json",
                transport=Transport.file_drop,
                source_time=datetime(2026, 3, 2, 1, index, tzinfo=UTC),
                dedup_key=f"{serial}-{index}",
            )
            for index, value in enumerate(temperatures)
        ]
        land_messages(
            session, instance=instance, adapter=adapter, messages=messages, clock=SystemClock(), max_message_bytes=10**6
        )


def _two_tenants(hub, tmp_path):
    _lab_a, headers_a = hub.make_org("Lab A")
    _lab_b, headers_b = hub.make_org("Lab B")
    a = create_instance(
        hub, headers_a, name=f"a-{hub.backend}", adapter="sample-balance", config={"directory": str(tmp_path)}
    )
    b = create_instance(
        hub, headers_b, name=f"b-{hub.backend}", adapter="sample-balance", config={"directory": str(tmp_path)}
    )
    _land_readings(hub, a, "A-1", ["20.10", "21.40", "22.75"])
    _land_readings(hub, b, "B-1", ["19.00"])
    return (a, headers_a), (b, headers_b)


def test_each_tenant_reads_only_its_own_things_and_observations(hub, tmp_path, admin_headers):
    (_a, headers_a), (_b, headers_b) = _two_tenants(hub, tmp_path)

    things_a = hub.client.get(f"{STA}/Things", headers=headers_a).json()["value"]
    things_b = hub.client.get(f"{STA}/Things", headers=headers_b).json()["value"]
    things_admin = hub.client.get(f"{STA}/Things", headers=admin_headers).json()["value"]

    names_a = sorted(thing["name"] for thing in things_a)
    assert names_a == ["A-1-internal-temperature", "Sartorius Cubis II #A-1"]
    assert sorted(thing["name"] for thing in things_b) == ["B-1-internal-temperature", "Sartorius Cubis II #B-1"]
    assert len(things_admin) == 4
    # Another tenant's entity answers 404, like an unknown one.
    foreign = things_a[0]["@iot.id"]
    assert hub.client.get(f"{STA}/Things('{foreign}')", headers=headers_b).status_code == 404
    assert hub.client.get(f"{STA}/Things('{foreign}')", headers=headers_a).status_code == 200
    observations_b = hub.client.get(f"{STA}/Observations", headers=headers_b).json()["value"]
    assert len(observations_b) == 2  # B's one file: a status and a temperature
    own_ids = {o["@iot.id"] for o in hub.client.get(f"{STA}/Observations", headers=headers_a).json()["value"]}
    assert hub.client.get(f"{STA}/Observations({min(own_ids)})", headers=headers_b).status_code == 404


def test_datastream_observations_keep_digits_filter_and_order_by_phenomenon_time(hub, tmp_path):
    (_a, headers_a), _b = _two_tenants(hub, tmp_path)
    things = hub.client.get(f"{STA}/Things", headers=headers_a).json()["value"]
    sensor = next(thing for thing in things if thing["name"].endswith("internal-temperature"))
    streams = hub.client.get(sensor["Datastreams@iot.navigationLink"], headers=headers_a).json()["value"]
    assert len(streams) == 1
    stream = streams[0]
    assert stream["unitOfMeasurement"]["symbol"] == "Cel"
    assert stream["ObservedProperty"]["name"] == "temperature"

    link = stream["Observations@iot.navigationLink"]
    newest_first = hub.client.get(f"{link}?$orderby=phenomenonTime desc&$count=true", headers=headers_a).json()
    assert newest_first["@iot.count"] == 3
    assert [o["result"] for o in newest_first["value"]] == ["22.75", "21.40", "20.10"]
    assert newest_first["value"][0]["@iot.selfLink"].endswith(f"/Observations({newest_first['value'][0]['@iot.id']})")

    warm = hub.client.get(f"{link}?$filter={quote('result gt 21')}", headers=headers_a).json()["value"]
    assert [o["result"] for o in warm] == ["21.40", "22.75"]
    window = quote("phenomenonTime ge 2026-03-02T01:01:00Z and phenomenonTime lt 2026-03-02T01:02:00Z")
    assert [o["result"] for o in hub.client.get(f"{link}?$filter={window}", headers=headers_a).json()["value"]] == [
        "21.40"
    ]
    page = hub.client.get(f"{link}?$top=2", headers=headers_a).json()
    assert len(page["value"]) == 2 and "$skip=2" in unquote(page["@iot.nextLink"])


def test_an_unsupported_filter_is_refused_as_a_problem(hub, tmp_path):
    (_a, headers_a), _b = _two_tenants(hub, tmp_path)

    response = hub.client.get(f"{STA}/Observations?$filter={quote('substringof(name, x)')}", headers=headers_a)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "unsupported-query"


def test_the_read_api_needs_a_key(hub):
    assert hub.client.get(f"{STA}/Things").status_code == 401
