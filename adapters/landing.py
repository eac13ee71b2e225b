"""The landing zone: inbound messages stored raw with their envelope, de-duplicated, parsed and checkpointed.

`land_messages` does all of it in the caller's transaction, so a message, its canonical records, the stream's
checkpoint, the counters, rule flags and outbox events exist together or not at all. An adapter acknowledges a
message to its source only after that transaction commits; a source that then redelivers it finds its dedup key
already landed and it is counted as a duplicate.

A batch costs a few statements whatever its size: one IN query for the dedup keys, then one multi-row INSERT …
RETURNING for the messages and one for the records (chunked under the drivers' bound-parameter limits). Those
INSERTs are written as SQL text and their values converted with the columns' own SQLAlchemy bind processors,
each distinct value once (a batch shares one `received_at`, a message's readings one time): compiling and
processing parameters row by row, or building ORM objects, costs more than parsing the payloads. Two columns
skip their processor: a record's JSON comes as text from pydantic's serializer (no dict built and encoded
again), and payload bytes go to the driver as they are.
"""

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlmodel import Session, SQLModel

from adapters import pipeline
from adapters.canonical import CanonicalRecord
from adapters.framework import (
    PAYLOAD_TOO_LARGE,
    Adapter,
    Clock,
    InboundMessage,
    LandingReport,
    QuarantineError,
)
from adapters.models import AdapterInstance, LandingOutcome
from adapters.pipeline import LandedRow

ADAPTER_ERROR = "adapter-error"  # the plug-in's parser raised something other than QuarantineError
INVALID_RECORD = "invalid-record"  # the parser returned something that is not a canonical record

_MESSAGES = SQLModel.metadata.tables["landing_messages"]
_RECORDS = SQLModel.metadata.tables["canonical_records"]
_CHECKPOINTS = SQLModel.metadata.tables["adapter_checkpoints"]
_COUNTERS = SQLModel.metadata.tables["adapter_counters"]
_RAW_JSON = ("record",)  # record rows carry their JSON as text (pydantic's serializer), not as a dict
_RAW_BYTES = ("raw",)  # payload bytes go to the driver as they are (both drivers take `bytes` for a BLOB/bytea)
_DEDUP_QUERY_CHUNK = 1000  # keys per IN query, well under every driver's bound-parameter limit
_DEDUP_KEY_LENGTH = 300
# Bound parameters per statement: SQLite ≥ 3.32 allows 32766 (999 before), PostgreSQL 65535.
_MAX_PARAMETERS = {"sqlite": 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999, "postgresql": 65535}
_MESSAGE_COLUMNS = (
    "instance_id",
    "adapter",
    "adapter_version",
    "source",
    "transport",
    "stream",
    "received_at",
    "source_time",
    "content_type",
    "size",
    "sha256",
    "cursor",
    "dedup_key",
    "outcome",
    "error_code",
    "error_detail",
    "raw",
)
_RECORD_COLUMNS = (
    "instance_id",
    "message_id",
    "kind",
    "schema_version",
    "natural_key",
    "record",
    "source_time",
    "recorded_at",
)


@dataclass(slots=True)
class _Prepared:
    message: InboundMessage
    dedup_key: str
    values: tuple[Any, ...]  # in _MESSAGE_COLUMNS order, as the envelope is stored
    accepted: bool
    source_time: datetime | None
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
    accepted_value, quarantined_value = LandingOutcome.accepted.value, LandingOutcome.quarantined.value
    # Read once, not per message: ORM attribute access and str(enum) cost more than the rest of a row.
    instance_id, adapter_name = instance.id, instance.adapter
    transports: dict[Any, str] = {}
    for message, sha256, key in keyed:
        if key in seen:  # landed earlier, or earlier in this batch
            continue
        seen.add(key)
        records, code, detail = _parse(adapter, message, max_message_bytes)
        source_time = _aware(message.source_time)
        transport = transports.get(message.transport)
        if transport is None:
            transport = transports[message.transport] = str(message.transport)[:30]
        values = (
            instance_id,
            adapter_name,
            version,
            _clip(message.source, 1000),
            transport,
            _clip(message.stream, 300),
            now,
            source_time,
            _clip(message.content_type, 100),
            len(message.payload),
            sha256,
            _clip(message.cursor, 1000),
            key,
            quarantined_value if code else accepted_value,
            _clip(code, 60),
            detail,
            message.payload,
        )
        prepared.append(_Prepared(message, key, values, code is None, source_time, records))

    ids_by_key: dict[str, int] = {}
    if prepared:
        # ON CONFLICT DO NOTHING: a message landed concurrently by another process since the IN query above
        # is not returned, and so is counted as a duplicate instead of failing the batch.
        returned = _insert_many(
            session,
            _MESSAGES,
            _MESSAGE_COLUMNS,
            [item.values for item in prepared],
            on_conflict_do_nothing=("instance_id", "dedup_key"),
            returning=("id", "dedup_key"),
            raw=_RAW_BYTES,
        )
        for message_id, key in returned:
            ids_by_key[key] = message_id
    stored = [item for item in prepared if item.dedup_key in ids_by_key]

    accepted = sum(1 for item in stored if item.accepted)
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
) -> list[tuple[LandedRow, CanonicalRecord]]:
    rows: list[tuple[Any, ...]] = []
    landed: list[tuple[LandedRow, CanonicalRecord]] = []
    instance_id = instance.id
    for item in stored:
        if not item.records:
            continue
        message_id = ids_by_key[item.dedup_key]
        for record in item.records:
            record.envelope_id = message_id
            # The stored JSON straight from pydantic's serializer: what `record_json` gives, without building the
            # dict and encoding it again (the column's own JSON processor is skipped for it: see `_RAW_JSON`).
            text = record.model_dump_json(exclude_none=True)
            row = LandedRow(
                id=None,
                instance_id=instance_id,
                message_id=message_id,
                kind=record.kind.value,
                schema_version=record.schema_version,
                natural_key=record.natural_key[:300],
                record_text=text,
                source_time=_aware(record.source_time or item.source_time),
                recorded_at=now,
            )
            rows.append(
                (instance_id, message_id, row.kind, row.schema_version, row.natural_key, text, row.source_time, now)
            )
            landed.append((row, record))
    if not rows:
        return []
    for (row, _), record_id in zip(landed, _insert_returning_ids(session, rows), strict=True):
        row.id = record_id
    return landed


def _insert_returning_ids(session: Session, rows: list[tuple[Any, ...]]) -> list[int]:
    """Ids of the inserted record rows, in the order of `rows`."""
    keys = [(row[1], row[2], row[4]) for row in rows]  # message_id, kind, natural_key
    if len(set(keys)) < len(keys):
        # Two records of one message describe the same thing: only row-at-a-time RETURNING tells their ids apart.
        return [
            _insert_many(session, _RECORDS, _RECORD_COLUMNS, [row], returning=("id",), raw=_RAW_JSON)[0][0]
            for row in rows
        ]
    # Multi-row INSERTs: RETURNING order is not guaranteed, so each id is matched by its key.
    returned = _insert_many(
        session, _RECORDS, _RECORD_COLUMNS, rows, returning=("id", "message_id", "kind", "natural_key"), raw=_RAW_JSON
    )
    by_key = {(message_id, kind, key): record_id for record_id, message_id, kind, key in returned}
    return [by_key[key] for key in keys]


class _BoundValues:
    """Python values → what the driver receives, by the columns' own bind processors (as Core would convert them).

    Datetimes are converted once per distinct value: a batch shares one `received_at`, a message's readings
    share one time.
    """

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect, raw: Sequence[str] = ()) -> None:
        self.converters: list[tuple[int, Callable[[Any], Any], dict[Any, Any] | None]] = []
        for index, name in enumerate(columns):
            if name in raw:
                continue  # the caller gives the value as the driver takes it
            column_type = table.c[name].type
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                is_time = isinstance(column_type, DateTime) or isinstance(getattr(column_type, "impl", None), DateTime)
                memo: dict[Any, Any] | None = {} if is_time else None
                self.converters.append((index, processor, memo))

    def flatten(self, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        flat: list[Any] = []
        converters = self.converters
        for row in rows:
            values = list(row)
            for index, processor, memo in converters:
                value = values[index]
                if value is None:
                    continue
                if memo is None:
                    values[index] = processor(value)
                else:
                    converted = memo.get(value, memo)
                    if converted is memo:
                        converted = memo[value] = processor(value)
                    values[index] = converted
            flat.extend(values)
        return flat


def _insert_many(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    returning: Sequence[str],
    on_conflict_do_nothing: Sequence[str] = (),
    raw: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Multi-row INSERT … RETURNING as SQL text (chunked under the parameter limit); the returned rows.

    Values of the `raw` columns go to the driver as given (JSON already encoded as text), the others through
    their columns' bind processors.
    """
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name not in _MAX_PARAMETERS:
        raise NotImplementedError(f"landing needs PostgreSQL or SQLite, not {dialect.name}")
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    group = "(" + ", ".join([mark] * len(columns)) + ")"
    head = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
    tail = ""
    if on_conflict_do_nothing:
        tail += f" ON CONFLICT ({', '.join(map(quote, on_conflict_do_nothing))}) DO NOTHING"
    tail += f" RETURNING {', '.join(map(quote, returning))}"
    bound = _BoundValues(table, columns, dialect, raw)
    per_statement = max(1, _MAX_PARAMETERS[dialect.name] // len(columns))
    returned: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        statement = head + ", ".join([group] * len(chunk)) + tail
        result = connection.exec_driver_sql(statement, tuple(bound.flatten(chunk)))
        returned.extend(tuple(row) for row in result.fetchall())
    return returned


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
