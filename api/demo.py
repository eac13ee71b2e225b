"""Demo data for `make serve`: a demo lab with a known key, real certificates and adapters at work, from `demo/`.

Everything is loaded once: a second run finds what the first stored and changes nothing. The adapter data needs
no external service:

* a `lims-push` instance of the demo lab, with the LIMS export `demo/adapters/lims-results.csv` pushed through
  the landing zone as a lab without a LIMS API would push it (one message per row, mapped by the instance's
  column mapping);
* environment limits for the demo room, and the first 120 minutes of the real UCI room series
  (`demo/adapters/uci-occupancy-datatest-first120.csv`) landed as environment readings through the `mqtt`
  adapter's parser. They were not published to a broker, and their envelopes say so: transport `file-drop`,
  source the demo file and row. The instance stays disabled, so the worker does not connect to a broker;
  enable it with a reachable broker to receive live readings on its topic.
"""

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from adapters.builtin.lims_push import LimsPushAdapter, land_push
from adapters.builtin.mqtt import MqttAdapter
from adapters.framework import InboundMessage, SystemClock, Transport
from adapters.landing import land_messages
from adapters.models import AdapterInstance, AdapterInstanceCreate
from adapters.rules import EnvironmentLimitWrite, list_environment_limits, upsert_environment_limit
from adapters.service import create_instance
from certificates.models import Certificate
from certificates.service import Actor, submit_certificate
from certificates.xml import parse_xml
from organizations.models import ApiKey, Organization, OrganizationCreate, OrganizationKind, Scope
from organizations.service import create_api_key, create_organization
from storage.service import sha256_hex

DEMO_LAB_NAME = "Demo Calibration Laboratory (qihub demo data)"
# A fixed, documented key so a person trying the hub can call the API at once; never use it in production.
DEMO_LAB_KEY = "qh_demo_lab_key_for_local_trials_only"

DEMO_ROOM = "demo-room-101"
LIMS_INSTANCE = "demo-lab-lims-push"
ROOM_INSTANCE = "demo-room-101-environment"
LIMS_RESULTS = "adapters/lims-results.csv"
ROOM_SERIES = "adapters/uci-occupancy-datatest-first120.csv"
ROOM_SENSOR = "uci-occupancy-1"
ROOM_TOPIC = f"qihub-demo/{DEMO_ROOM}/environment"
# The UCI office is in Mons, Belgium; its series is written in local time without an offset (CET in February).
ROOM_SERIES_OFFSET = "+01:00"
ROOM_UNITS = {"Temperature": "°C", "Humidity": "%", "Light": "lx", "CO2": "ppm", "HumidityRatio": "kg/kg"}
# Demo rows are well under a kilobyte; this bound only keeps a mangled demo file from landing as one huge row.
DEMO_MAX_MESSAGE_BYTES = 64 * 1024

# How the demo lab's LIMS export names its columns (a typical Chinese LIMS result export).
LIMS_CONFIG = {
    "record_kind": "test-result",
    "time_zone": "Europe/Brussels",  # the demo room is the UCI office: the results share its clock
    "mapping": {
        "样品编号": {"field": "sample_id"},
        "检测项目": {"field": "test_item"},
        "检测方法": {"field": "method"},
        "结果": {"field": "value"},
        "单位": {"field": "unit"},
        "检测开始": {"field": "started_at"},
        "检测完成": {"field": "measured_at"},
        "检测室": {"field": "room"},
        "检测人": {"field": "analyst"},
        "仪器厂家": {"field": "instrument.manufacturer"},
        "仪器型号": {"field": "instrument.model"},
        "仪器编号": {"field": "instrument.serial"},
        "状态": {"field": "status"},
    },
    "status_codes": {"已审核": "verified", "待审核": "unverified"},
}

# Demo limits for the demo room (no standard is claimed to require them); the maximum lies inside the range the
# real series spans, so the excursion rule has something to show.
ROOM_LIMITS = [
    EnvironmentLimitWrite(room=DEMO_ROOM, quantity="temperature", unit="Cel", minimum="20", maximum="23.7"),
    EnvironmentLimitWrite(room=DEMO_ROOM, quantity="relative-humidity", unit="%", minimum="20", maximum="70"),
]


def _ensure_lab(session: Session) -> Organization:
    lab = session.exec(select(Organization).where(Organization.name == DEMO_LAB_NAME)).first()
    if lab is None:
        lab = create_organization(
            session,
            data=OrganizationCreate(
                name=DEMO_LAB_NAME,
                kind=OrganizationKind.lab,
                accreditation_number="D-K-00000-00-00 (demo)",
                unified_social_credit_code="91110000000000000X",
            ),
        )
    key = session.exec(select(ApiKey).where(ApiKey.organization_id == lab.id)).first()
    if key is None:
        create_api_key(
            session,
            organization_id=lab.id,
            name="demo key",
            scopes=[Scope.certificates_read, Scope.certificates_write],
            key=DEMO_LAB_KEY,
        )
    return lab


def _load_certificates(session: Session, *, lab: Organization, folder: Path) -> int:
    actor = Actor(organization=lab)
    known = set(session.exec(select(Certificate.sha256).where(Certificate.organization_id == lab.id)))
    added = 0
    for path in sorted(folder.glob("certificates/*.xml")):
        content = path.read_bytes()
        if sha256_hex(content) in known:
            continue
        submit_certificate(session, actor=actor, content=content, root=parse_xml(content), issue=True, public=True)
        added += 1
    return added


def _new_instance(session: Session, *, lab: Organization, name: str, adapter: str, config: Mapping[str, Any]) -> bool:
    """Create the named instance unless it exists; True when created (its demo data is then still to land)."""
    if session.exec(select(AdapterInstance.id).where(AdapterInstance.name == name)).first() is not None:
        return False
    data = AdapterInstanceCreate(name=name, adapter=adapter, config=dict(config), enabled=adapter != "mqtt")
    create_instance(session, actor=Actor(organization=lab), data=data)
    return True


def _instance(session: Session, name: str) -> AdapterInstance:
    return session.exec(select(AdapterInstance).where(AdapterInstance.name == name)).one()


def _push_lims_results(session: Session, *, lab: Organization, folder: Path) -> int:
    config = {**LIMS_CONFIG, "lab_id": lab.accreditation_number or lab.id}
    if not _new_instance(session, lab=lab, name=LIMS_INSTANCE, adapter="lims-push", config=config):
        return 0
    instance = _instance(session, LIMS_INSTANCE)
    report = land_push(
        session,
        instance=instance,
        adapter=LimsPushAdapter(instance.config),
        body=(folder / LIMS_RESULTS).read_bytes(),
        media_type="text/csv",
        source=f"file:demo/{LIMS_RESULTS}",
        clock=SystemClock(),
        max_message_bytes=DEMO_MAX_MESSAGE_BYTES,
    )
    return report.accepted


def room_payload(row: dict[str, str]) -> bytes:
    """One row of the UCI series as the JSON a room sensor publishes (numbers verbatim, so digits are kept)."""
    moment = row["Date"].replace(" ", "T") + ROOM_SERIES_OFFSET
    readings = ", ".join(f'"{name}": {{"value": {row[name]}, "unit": "{unit}"}}' for name, unit in ROOM_UNITS.items())
    return (
        f'{{"sensor": "{ROOM_SENSOR}", "room": "{DEMO_ROOM}", "time": "{moment}", "readings": {{{readings}}}}}'
    ).encode()


def _land_room_series(session: Session, *, lab: Organization, folder: Path) -> int:
    config = {
        "broker": "mqtt://127.0.0.1:1883",
        "client_id": f"qihub-{ROOM_INSTANCE}",
        "subscriptions": [{"topic": ROOM_TOPIC, "kind": "environment", "room": DEMO_ROOM, "sensor": ROOM_SENSOR}],
    }
    if not _new_instance(session, lab=lab, name=ROOM_INSTANCE, adapter="mqtt", config=config):
        return 0
    instance = _instance(session, ROOM_INSTANCE)
    adapter = MqttAdapter(instance.config)
    with (folder / ROOM_SERIES).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    messages = []
    for number, row in enumerate(rows, start=1):
        payload = room_payload(row)
        messages.append(
            InboundMessage(
                payload=payload,
                content_type="application/json",
                source=f"file:demo/{ROOM_SERIES}#row={number}",
                transport=Transport.file_drop,
                stream=ROOM_TOPIC,
                cursor=str(number),
                dedup_key=adapter.identity(ROOM_TOPIC, payload),
            )
        )
    report = land_messages(
        session,
        instance=instance,
        adapter=adapter,
        messages=messages,
        clock=SystemClock(),
        max_message_bytes=DEMO_MAX_MESSAGE_BYTES,
    )
    return report.accepted


def load_demo(session: Session, *, folder: Path) -> str:
    """Create the demo lab, its key, certificates and adapter data unless already present; say what was done."""
    lab = _ensure_lab(session)
    certificates = _load_certificates(session, lab=lab, folder=folder)
    present = {limit.quantity for limit in list_environment_limits(session, room=DEMO_ROOM)}
    for limit in ROOM_LIMITS:
        if limit.quantity not in present:  # limits changed through the API since are the operator's: keep them
            upsert_environment_limit(session, data=limit)
    results = _push_lims_results(session, lab=lab, folder=folder)
    readings = _land_room_series(session, lab=lab, folder=folder)
    return (
        f"demo lab {lab.id}: {certificates} certificate(s) added; {results} LIMS result row(s) pushed; "
        f"{readings} room-sensor message(s) landed; API key: {DEMO_LAB_KEY}"
    )
