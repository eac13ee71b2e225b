"""The landing zone on SQLite and PostgreSQL: raw bytes with envelopes, dedup, quarantine, counters, checkpoints."""

import hashlib
import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from adapters import landing
from adapters.framework import InboundMessage, Transport
from adapters.landing import land_messages
from adapters.models import (
    AdapterCheckpoint,
    AdapterCounters,
    AdapterInstance,
    CanonicalRecordRow,
    LandingMessage,
)
from storage.database import session_scope
from tests.adapters.echo_adapter import EchoAdapter

LIMIT = 64 * 1024


def _instance(engine) -> AdapterInstance:
    with session_scope(engine) as session:
        instance = AdapterInstance(
            name=f"echo-{uuid.uuid4().hex[:8]}", adapter="echo-test", adapter_version="0.1.0", config={}
        )
        session.add(instance)
    return instance


def _reading(sensor: str, value: str, minute: int, **extra) -> bytes:
    body = {"sensor": sensor, "value": value, "at": f"2026-03-02T08:{minute:02d}:00+08:00", **extra}
    # Numbers as JSON numbers with their digits ("20.10" stays 20.10 through parse_float=Decimal).
    return json.dumps(body).replace(f'"value": "{value}"', f'"value": {value}').encode()


def _message(payload: bytes, *, cursor: str | None = None, stream: str = "room/1", key: str | None = None):
    return InboundMessage(
        payload=payload,
        content_type="application/json",
        source=f"mqtt://broker/{stream}",
        transport=Transport.mqtt,
        stream=stream,
        cursor=cursor,
        dedup_key=key,
    )


def _land(engine, instance, messages, clock, *, limit: int = LIMIT):
    with session_scope(engine) as session:
        return land_messages(
            session,
            instance=instance,
            adapter=EchoAdapter({}),
            messages=messages,
            clock=clock,
            max_message_bytes=limit,
        )


def test_accepted_messages_keep_their_exact_bytes_envelope_and_linked_canonical_records(hub, manual_clock):
    instance = _instance(hub.engine)
    payload = _reading("T-7", "20.10", 1)
    report = _land(hub.engine, instance, [_message(payload, cursor="c1")], manual_clock)
    assert (report.received, report.accepted, report.quarantined, report.duplicates) == (1, 1, 0, 0)
    with session_scope(hub.engine) as session:
        message = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).one()
        record = session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.message_id == message.id)).one()
    assert message.id == report.message_ids[0]
    assert message.raw == payload
    assert message.sha256 == hashlib.sha256(payload).hexdigest() == message.dedup_key
    assert (message.adapter, message.adapter_version, message.transport) == ("echo-test", "0.1.0", "mqtt")
    assert (message.source, message.stream, message.cursor) == ("mqtt://broker/room/1", "room/1", "c1")
    assert message.received_at == manual_clock.now()
    assert (message.content_type, message.size, message.outcome) == ("application/json", len(payload), "accepted")
    assert record.kind == "environment-reading"
    assert record.schema_version == "1.0"
    assert record.record["envelope_id"] == message.id
    assert record.record["value"] == "20.10"
    assert record.natural_key == "T-7/temperature/2026-03-02T08:01:00+08:00"


def test_a_redelivered_message_is_counted_as_a_duplicate_and_stored_once(hub, manual_clock):
    instance = _instance(hub.engine)
    first, second = _reading("T-1", "20.5", 1), _reading("T-1", "20.6", 2)
    batch = [_message(first), _message(second), _message(first)]  # a duplicate inside the batch too
    report = _land(hub.engine, instance, batch, manual_clock)
    again = _land(hub.engine, instance, [_message(second), _message(_reading("T-1", "20.7", 3))], manual_clock)
    assert (report.received, report.accepted, report.duplicates) == (3, 2, 1)
    assert (again.received, again.accepted, again.duplicates) == (2, 1, 1)
    with session_scope(hub.engine) as session:
        stored = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).all()
        records = session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance.id)).all()
    assert len(stored) == 3
    assert len(records) == 3


def test_the_sources_own_identity_deduplicates_payloads_that_differ(hub, manual_clock):
    instance = _instance(hub.engine)
    report = _land(
        hub.engine,
        instance,
        [_message(_reading("T-1", "1.0", 1), key="obs-42"), _message(_reading("T-1", "1.1", 1), key="obs-42")],
        manual_clock,
    )
    assert (report.accepted, report.duplicates) == (1, 1)
    with session_scope(hub.engine) as session:
        message = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).one()
    assert message.dedup_key == "obs-42"


def test_bad_payloads_are_quarantined_with_codes_and_the_stream_continues(hub, manual_clock):
    instance = _instance(hub.engine)
    huge = b'{"sensor": "T-1", "value": 1, "at": "2026-03-02T08:00:00Z", "pad": "' + b"x" * (LIMIT + 10) + b'"}'
    batch = [
        _message(b'{"sensor": "T-1", "value": '),
        _message(json.dumps({"value": 1, "at": "2026-03-02T08:00:00Z"}).encode()),
        _message(json.dumps({"explode": True}).encode()),
        _message(huge),
        _message(_reading("T-1", "21.0", 9)),
    ]
    report = _land(hub.engine, instance, batch, manual_clock)
    assert (report.received, report.accepted, report.quarantined, report.duplicates) == (5, 1, 4, 0)
    with session_scope(hub.engine) as session:
        rows = session.exec(
            select(LandingMessage).where(LandingMessage.instance_id == instance.id).order_by(LandingMessage.id)
        ).all()
    assert [(row.outcome, row.error_code) for row in rows] == [
        ("quarantined", "malformed-payload"),
        ("quarantined", "missing-identifier"),
        ("quarantined", "adapter-error"),
        ("quarantined", "payload-too-large"),
        ("accepted", None),
    ]
    assert "the parser fell over" in (rows[2].error_detail or "")
    assert rows[3].raw == huge  # quarantined messages keep their bytes too
    assert rows[3].size == len(huge)


def test_counters_reconcile_across_batches(hub, manual_clock):
    instance = _instance(hub.engine)
    good = [_message(_reading("T-2", f"{20 + i}.5", i)) for i in range(10)]
    _land(hub.engine, instance, [*good[:6], _message(b"not json")], manual_clock)
    _land(hub.engine, instance, good, manual_clock)
    with session_scope(hub.engine) as session:
        counters = session.get(AdapterCounters, instance.id)
        stored = len(session.exec(select(LandingMessage.id).where(LandingMessage.instance_id == instance.id)).all())
    assert counters is not None
    assert (counters.received, counters.accepted, counters.quarantined, counters.duplicates) == (17, 10, 1, 6)
    assert counters.received == counters.accepted + counters.quarantined + counters.duplicates
    assert stored == counters.accepted + counters.quarantined


def test_each_stream_checkpoints_the_cursor_of_its_last_message(hub, manual_clock):
    instance = _instance(hub.engine)
    batch = [
        _message(_reading("A", "1", 1), cursor="a-1", stream="a"),
        _message(_reading("B", "1", 1), cursor="b-1", stream="b"),
        _message(_reading("A", "2", 2), cursor="a-2", stream="a"),
        _message(b"broken", cursor="b-2", stream="b"),  # a quarantined message still moves the stream on
    ]
    _land(hub.engine, instance, batch, manual_clock)
    manual_clock.advance(minutes=1)
    _land(hub.engine, instance, [_message(_reading("A", "3", 3), cursor="a-3", stream="a")], manual_clock)
    with session_scope(hub.engine) as session:
        checkpoints = session.exec(select(AdapterCheckpoint).where(AdapterCheckpoint.instance_id == instance.id)).all()
    assert {c.stream: c.cursor for c in checkpoints} == {"a": "a-3", "b": "b-2"}
    assert {c.stream: c.updated_at for c in checkpoints}["a"] == manual_clock.now()


def test_a_message_landed_concurrently_since_the_dedup_query_counts_as_a_duplicate(hub, manual_clock, monkeypatch):
    instance = _instance(hub.engine)
    payload = _reading("T-3", "19.9", 1)
    _land(hub.engine, instance, [_message(payload)], manual_clock)
    # Another process landed it between our IN query and our INSERT: the query saw nothing.
    monkeypatch.setattr(landing, "_already_landed", lambda session, **_: set())
    report = _land(hub.engine, instance, [_message(payload), _message(_reading("T-3", "20.0", 2))], manual_clock)
    assert (report.accepted, report.duplicates) == (1, 1)
    with session_scope(hub.engine) as session:
        assert (
            len(session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance.id)).all())
            == 2
        )


def test_the_pipeline_sees_the_landed_records_with_their_row_ids(hub, manual_clock, monkeypatch):
    instance = _instance(hub.engine)
    seen = []
    monkeypatch.setattr(
        landing.pipeline, "after_landing", lambda session, *, instance, records, clock: seen.extend(records)
    )
    report = _land(hub.engine, instance, [_message(_reading("T-4", "5", 1)), _message(b"{")], manual_clock)
    assert len(seen) == 1
    row, record = seen[0]
    assert row.id is not None
    assert row.message_id == record.envelope_id == report.message_ids[0]
    with session_scope(hub.engine) as session:
        assert session.get(CanonicalRecordRow, row.id) is not None


@pytest.mark.parametrize(
    "statement", ["UPDATE landing_messages SET outcome = 'accepted'", "DELETE FROM landing_messages"]
)
def test_the_landing_zone_refuses_updates_and_deletes(hub, manual_clock, statement):
    instance = _instance(hub.engine)
    _land(hub.engine, instance, [_message(b"oops")], manual_clock)
    with pytest.raises(DBAPIError, match="append-only"), hub.engine.begin() as connection:
        connection.execute(text(statement))
    with session_scope(hub.engine) as session:
        message = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).one()
    assert message.outcome == "quarantined"


def test_an_empty_batch_changes_nothing(hub, manual_clock):
    instance = _instance(hub.engine)
    report = _land(hub.engine, instance, [], manual_clock)
    assert (report.received, report.message_ids) == (0, [])
    with session_scope(hub.engine) as session:
        assert session.get(AdapterCounters, instance.id) is None


def test_a_batch_larger_than_one_statement_is_inserted_in_chunks_with_every_id_matched(
    hub, manual_clock, monkeypatch, landed_records
):
    # Twenty bound parameters per statement: one message row (17 columns) or two record rows (8) at a time.
    monkeypatch.setattr(landing, "_MAX_PARAMETERS", {"sqlite": 20, "postgresql": 20})
    instance = _instance(hub.engine)
    seen = landed_records
    messages = [_message(_reading(f"T-{i}", f"{i}.0", i % 60)) for i in range(7)] + [_message(b"{")]
    report = _land(hub.engine, instance, messages, manual_clock)
    assert (report.received, report.accepted, report.quarantined) == (8, 7, 1)
    with session_scope(hub.engine) as session:
        rows = {
            row.id: row
            for row in session.exec(select(CanonicalRecordRow).where(CanonicalRecordRow.instance_id == instance.id))
        }
        stored = session.exec(select(LandingMessage).where(LandingMessage.instance_id == instance.id)).all()
    assert sorted(message.id for message in stored) == sorted(report.message_ids)
    assert len(seen) == len(rows) == 7
    for row, record in seen:
        # The pipeline got each record with the id and message of the row stored for it.
        stored_row = rows[row.id]
        assert (stored_row.message_id, stored_row.natural_key) == (row.message_id, row.natural_key)
        assert stored_row.record == record.model_dump(mode="json", exclude_none=True)
        assert record.envelope_id == row.message_id
