"""The landing zone: inbound messages stored raw with their envelope, de-duplicated, parsed and checkpointed.

`land_messages` does all of it in the caller's transaction, so a message, its canonical records, the stream's
checkpoint, the counters, rule flags and outbox events exist together or not at all. An adapter acknowledges a
message to its source only after that transaction commits; a source that then redelivers it finds its dedup key
already landed and it is counted as a duplicate. Batches use Core multi-row INSERTs and one IN query for the
dedup keys: building ORM objects costs more than the parsing itself.
"""

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import configure_mappers
from sqlmodel import Session, SQLModel

from adapters import pipeline
from adapters.canonical import CanonicalRecord, record_json
from adapters.framework import (
    PAYLOAD_TOO_LARGE,
    Adapter,
    Clock,
    InboundMessage,
    LandingReport,
    QuarantineError,
)
from adapters.models import AdapterInstance, CanonicalRecordRow, LandingOutcome

ADAPTER_ERROR = "adapter-error"  # the plug-in's parser raised something other than QuarantineError
INVALID_RECORD = "invalid-record"  # the parser returned something that is not a canonical record

_MESSAGES = SQLModel.metadata.tables["landing_messages"]
_RECORDS = SQLModel.metadata.tables["canonical_records"]
_CHECKPOINTS = SQLModel.metadata.tables["adapter_checkpoints"]
_COUNTERS = SQLModel.metadata.tables["adapter_counters"]
_DEDUP_QUERY_CHUNK = 1000  # keys per IN query, well under every driver's bound-parameter limit
_DEDUP_KEY_LENGTH = 300


@dataclass
class _Prepared:
    message: InboundMessage
    sha256: str
    dedup_key: str
    row: dict[str, Any]
    records: list[CanonicalRecord]


def message_sha256(payload: bytes) -> str:
    """Hex SHA-256 of a payload as stored (the envelope's integrity value)."""
    return hashlib.sha256(payload).hexdigest()


def dedup_key_of(message: InboundMessage, sha256: str) -> str:
    """The key a message is de-duplicated by: the source's own identity, else the payload's sha256."""
    key = message.dedup_key or sha256
    if len(key) > _DEDUP_KEY_LENGTH:
        # A long source identity still de-duplicates: its digest is as unique and fits the column.
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def _aware(moment: datetime | None) -> datetime | None:
    # A source time without an offset is read as UTC rather than failing the whole batch on insert.
    if moment is not None and moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _parse(
    adapter: Adapter, message: InboundMessage, max_message_bytes: int
) -> tuple[list[CanonicalRecord], str | None, str | None]:
    """Records of one message, or the quarantine code and detail; never raises."""
    if len(message.payload) > max_message_bytes:
        detail = f"{len(message.payload)} bytes exceed the limit of {max_message_bytes} bytes"
        return [], PAYLOAD_TOO_LARGE, detail
    try:
        records = adapter.parse(message)
    except QuarantineError as error:
        return [], error.code, error.detail
    except Exception as error:  # a plug-in bug must not stop the stream: the message waits in quarantine
        return [], ADAPTER_ERROR, f"{type(error).__name__}: {error}"
    records = list(records)
    for record in records:
        if not isinstance(record, CanonicalRecord):
            return [], INVALID_RECORD, f"parse returned a {type(record).__name__}, not a canonical record"
    return records, None, None


def _already_landed(session: Session, *, instance_id: str, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _DEDUP_QUERY_CHUNK):
        chunk = keys[start : start + _DEDUP_QUERY_CHUNK]
        query = select(_MESSAGES.c.dedup_key).where(
            _MESSAGES.c.instance_id == instance_id, _MESSAGES.c.dedup_key.in_(chunk)
        )
        found.update(session.execute(query).scalars())
    return found


def _dialect_insert(session: Session) -> Callable[[Table], Any]:
    """`insert` with ON CONFLICT support for the session's database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"landing needs PostgreSQL or SQLite, not {name}")


def land_messages(
    session: Session,
    *,
    instance: AdapterInstance,
    adapter: Adapter,
    messages: Iterable[InboundMessage],
    clock: Clock,
    max_message_bytes: int,
) -> LandingReport:
    """Land a batch: store raw + envelope, de-duplicate, quarantine or parse, checkpoint, count, run the pipeline."""
    batch = list(messages)
    if not batch:
        return LandingReport(received=0, accepted=0, quarantined=0, duplicates=0)
    now = clock.now()
    version = adapter.manifest.version

    keyed: list[tuple[InboundMessage, str, str]] = []
    for message in batch:
        sha256 = message_sha256(message.payload)
        keyed.append((message, sha256, dedup_key_of(message, sha256)))
    landed_before = _already_landed(session, instance_id=instance.id, keys=list({key for _, _, key in keyed}))

    prepared: list[_Prepared] = []
    seen: set[str] = set(landed_before)
    for message, sha256, key in keyed:
        if key in seen:  # landed earlier, or earlier in this batch
            continue
        seen.add(key)
        records, code, detail = _parse(adapter, message, max_message_bytes)
        row = {
            "instance_id": instance.id,
            "adapter": instance.adapter,
            "adapter_version": version,
            "source": _clip(message.source, 1000),
            "transport": _clip(str(message.transport), 30),
            "stream": _clip(message.stream, 300),
            "received_at": now,
            "source_time": _aware(message.source_time),
            "content_type": _clip(message.content_type, 100),
            "size": len(message.payload),
            "sha256": sha256,
            "cursor": _clip(message.cursor, 1000),
            "dedup_key": key,
            "outcome": LandingOutcome.quarantined.value if code else LandingOutcome.accepted.value,
            "error_code": _clip(code, 60),
            "error_detail": detail,
            "raw": message.payload,
        }
        prepared.append(_Prepared(message, sha256, key, row, records))

    ids_by_key: dict[str, int] = {}
    if prepared:
        # ON CONFLICT DO NOTHING: a message landed concurrently by another process since the IN query above
        # is not returned, and so is counted as a duplicate instead of failing the batch.
        statement = (
            _dialect_insert(session)(_MESSAGES)
            .on_conflict_do_nothing(index_elements=["instance_id", "dedup_key"])
            .returning(_MESSAGES.c.id, _MESSAGES.c.dedup_key)
        )
        for message_id, key in session.execute(statement, [item.row for item in prepared]):
            ids_by_key[key] = message_id
    stored = [item for item in prepared if item.dedup_key in ids_by_key]

    accepted = sum(1 for item in stored if item.row["outcome"] == LandingOutcome.accepted)
    quarantined = len(stored) - accepted
    duplicates = len(batch) - len(stored)

    landed = _insert_records(session, instance=instance, stored=stored, ids_by_key=ids_by_key, now=now)
    _advance_checkpoints(session, instance_id=instance.id, batch=batch, now=now)
    _count(
        session,
        instance_id=instance.id,
        received=len(batch),
        accepted=accepted,
        quarantined=quarantined,
        duplicates=duplicates,
        now=now,
    )
    pipeline.after_landing(session, instance=instance, records=landed, clock=clock)
    return LandingReport(
        received=len(batch),
        accepted=accepted,
        quarantined=quarantined,
        duplicates=duplicates,
        message_ids=[ids_by_key[item.dedup_key] for item in stored],
    )


def _insert_records(
    session: Session,
    *,
    instance: AdapterInstance,
    stored: Sequence[_Prepared],
    ids_by_key: dict[str, int],
    now: datetime,
) -> list[tuple[CanonicalRecordRow, CanonicalRecord]]:
    rows: list[dict[str, Any]] = []
    records: list[CanonicalRecord] = []
    for item in stored:
        message_id = ids_by_key[item.dedup_key]
        for record in item.records:
            record.envelope_id = message_id
            rows.append(
                {
                    "instance_id": instance.id,
                    "message_id": message_id,
                    "kind": record.kind.value,
                    "schema_version": record.schema_version,
                    "natural_key": record.natural_key[:300],
                    "record": record_json(record),
                    "source_time": _aware(record.source_time or item.row["source_time"]),
                    "recorded_at": now,
                    "fused_at": None,
                    "graph_iri": None,
                }
            )
            records.append(record)
    if not rows:
        return []
    ids = _insert_returning_ids(session, rows)
    landed: list[tuple[CanonicalRecordRow, CanonicalRecord]] = []
    for row, record, record_id in zip(rows, records, ids, strict=True):
        landed.append((_detached_row(row, record_id), record))
    return landed


def _insert_returning_ids(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Ids of the inserted record rows, in the order of `rows`."""
    keys = [(row["message_id"], row["kind"], row["natural_key"]) for row in rows]
    if len(set(keys)) < len(keys):
        # Two records of one message describe the same thing: only the ordered (row-at-a-time on SQLite)
        # RETURNING can tell their ids apart.
        result = session.execute(_RECORDS.insert().returning(_RECORDS.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars())
    # One multi-row INSERT per batch: RETURNING order is not guaranteed, so each id is matched by its key.
    returned = session.execute(
        _RECORDS.insert().returning(_RECORDS.c.id, _RECORDS.c.message_id, _RECORDS.c.kind, _RECORDS.c.natural_key),
        rows,
    )
    by_key = {(message_id, kind, key): record_id for record_id, message_id, kind, key in returned}
    return [by_key[key] for key in keys]


_RECORD_MAPPER = sa_inspect(CanonicalRecordRow)


def _detached_row(values: dict[str, Any], record_id: int) -> CanonicalRecordRow:
    # Built as the ORM builds the rows it loads (no __init__, no per-attribute events, an identity key): building
    # thousands of SQLModel objects the usual way costs more than landing them. Detached, not transient: a
    # pipeline step that adds it to a session updates the row, never inserts it again.
    if not _RECORD_MAPPER.configured:
        configure_mappers()  # attribute access needs configured mappers; Core inserts do not configure them
    entity: CanonicalRecordRow = _RECORD_MAPPER.class_manager.new_instance()
    entity.__dict__.update(values, id=record_id)
    sa_inspect(entity).key = _RECORD_MAPPER.identity_key_from_primary_key((record_id,))
    return entity


def _advance_checkpoints(session: Session, *, instance_id: str, batch: Sequence[InboundMessage], now: datetime) -> None:
    # The last cursor of each stream in arrival order: everything before it has been handled (landed,
    # quarantined or found a duplicate).
    cursors: dict[str, str] = {}
    for message in batch:
        if message.cursor is not None:
            cursors[message.stream[:300]] = message.cursor[:1000]
    if not cursors:
        return
    insert = _dialect_insert(session)
    for stream, cursor in cursors.items():
        statement = insert(_CHECKPOINTS).values(instance_id=instance_id, stream=stream, cursor=cursor, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=["instance_id", "stream"], set_={"cursor": cursor, "updated_at": now}
        )
        session.execute(statement)


def _count(
    session: Session,
    *,
    instance_id: str,
    received: int,
    accepted: int,
    quarantined: int,
    duplicates: int,
    now: datetime,
) -> None:
    # One upsert that adds to the totals: concurrent landings of one instance never lose an increment.
    statement = _dialect_insert(session)(_COUNTERS).values(
        instance_id=instance_id,
        received=received,
        accepted=accepted,
        quarantined=quarantined,
        duplicates=duplicates,
        updated_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["instance_id"],
        set_={
            "received": _COUNTERS.c.received + received,
            "accepted": _COUNTERS.c.accepted + accepted,
            "quarantined": _COUNTERS.c.quarantined + quarantined,
            "duplicates": _COUNTERS.c.duplicates + duplicates,
            "updated_at": now,
        },
    )
    session.execute(statement)
