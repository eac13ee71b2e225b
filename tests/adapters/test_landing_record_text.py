"""Record rows get their JSON as text from pydantic's serializer: stored and read back as `record_json` gives it."""

import json
import uuid

from sqlmodel import select

from adapters.canonical import record_json
from adapters.framework import InboundMessage, Transport
from adapters.landing import land_messages
from adapters.models import AdapterInstance, CanonicalRecordRow
from storage.database import session_scope
from tests.adapters.echo_adapter import EchoAdapter


def test_records_stored_as_json_text_read_back_as_their_canonical_json_on_both_databases(
    hub, manual_clock, landed_records
):
    with session_scope(hub.engine) as session:
        instance = AdapterInstance(
            name=f"echo-{uuid.uuid4().hex[:8]}", adapter="echo-test", adapter_version="0.1.0", config={}
        )
        session.add(instance)
    seen = landed_records
    bodies = [
        # Digits as written, a room and sensor that are not ASCII, quotes and a backslash to escape.
        b'{"sensor": "\xe6\xb8\xa9\xe5\xba\xa6-1", "value": 20.10, "at": "2026-03-02T08:01:00+08:00"}',
        b'{"sensor": "s \\"2\\" \\\\ b", "value": -0.000, "at": "2026-03-02T08:02:00Z", "quantity": "co2", '
        b'"unit": "[ppm]"}',
    ]
    messages = [
        InboundMessage(
            payload=body, content_type="application/json", source="mqtt://b/t", transport=Transport.mqtt, stream="t"
        )
        for body in bodies
    ]
    with session_scope(hub.engine) as session:
        land_messages(
            session,
            instance=instance,
            adapter=EchoAdapter({"room": "实验室 A"}),
            messages=messages,
            clock=manual_clock,
            max_message_bytes=65536,
        )
    with session_scope(hub.engine) as session:
        rows = session.exec(
            select(CanonicalRecordRow)
            .where(CanonicalRecordRow.instance_id == instance.id)
            .order_by(CanonicalRecordRow.id)
        ).all()
    assert [(row.record["sensor_id"], row.record["value"], row.record["room"]) for row in rows] == [
        ("温度-1", "20.10", "实验室 A"),
        ('s "2" \\ b', "-0.000", "实验室 A"),
    ]
    for (landed, record), row in zip(seen, rows, strict=True):
        # What the database holds, what the pipeline's row says and the record's own JSON are one document.
        assert row.record == landed.record == record_json(record)
        assert json.loads(landed.record_text) == row.record
        assert row.record["envelope_id"] == row.message_id == landed.message_id
