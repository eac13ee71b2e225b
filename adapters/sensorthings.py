"""A SensorThings-style (OGC STA v1.1 shapes) read view of environment readings and equipment status, per tenant.

Things are the sensors (environment readings) and instruments (equipment status) the tenant's adapter
instances report; a Datastream is one Thing's series of one observed property (a quantity in one unit, or the
instrument's status); Observations are the canonical records themselves (`@iot.id` = record id). Entity ids
of Things and Datastreams are opaque, URL-safe encodings of what identifies them (instance, kind and key), so a
lookup needs no extra table. An organization sees only its own instances' data; admins see all.

Supported query options (an honest subset of STA/OData): `$top`, `$skip`, `$count`, `$orderby=phenomenonTime
[asc|desc]` on Observations, and `$filter` on Observations combining with `and` the comparisons `phenomenonTime
gt|ge|lt|le|eq <ISO 8601>` and `result gt|ge|lt|le|eq|ne <number or 'text'>`. Anything else is refused with
a problem naming what is supported.
"""

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_
from sqlmodel import Session, col, select

from adapters.canonical import RecordKind
from adapters.models import AdapterInstance, CanonicalRecordRow
from storage.errors import InvalidInputError, NotFoundError

STA_KINDS = (RecordKind.environment_reading.value, RecordKind.equipment_status.value)
OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
OM_CATEGORY = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation"
MAX_TOP = 1000
DEFAULT_TOP = 100


class UnsupportedQueryError(InvalidInputError):
    """A query option outside the supported subset."""

    code = "unsupported-query"
    title = "Unsupported query option"


@dataclass(frozen=True)
class Scope:
    """Whose data a request may read: one organization's instances, or everything (admin)."""

    organization_id: str | None
    is_admin: bool = False


@dataclass
class ThingView:
    """A sensor or instrument and its datastreams."""

    id: str
    instance_id: str
    kind: str
    key: str
    name: str
    description: str
    properties: dict[str, Any]
    datastreams: dict[str, "DatastreamView"] = field(default_factory=dict)


@dataclass
class DatastreamView:
    """One observed property of one Thing."""

    id: str
    thing_id: str
    instance_id: str
    kind: str
    prefix: str  # natural-key prefix of its records
    name: str
    observed_property: str
    unit: str | None
    observation_type: str


def _encode(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(entity_id: str, length: int) -> list[str]:
    try:
        padded = entity_id + "=" * (-len(entity_id) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as error:
        raise NotFoundError(f"No entity {entity_id!r}.") from error
    if not isinstance(parts, list) or len(parts) != length or not all(isinstance(p, str) for p in parts):
        raise NotFoundError(f"No entity {entity_id!r}.")
    return parts


def _visible_instances(session: Session, scope: Scope, instance_id: str | None = None) -> list[str]:
    query = select(AdapterInstance.id)
    if not scope.is_admin:
        if scope.organization_id is None:
            return []
        query = query.where(AdapterInstance.organization_id == scope.organization_id)
    if instance_id is not None:
        query = query.where(AdapterInstance.id == instance_id)
    return list(session.exec(query))


def _thing_of(row: CanonicalRecordRow) -> tuple[str, str, str, dict[str, Any], str, str | None, str]:
    """(thing key, thing name, description, properties, datastream prefix, unit, observed property) of a record."""
    record = row.record
    if row.kind == RecordKind.environment_reading.value:
        sensor = str(record["sensor_id"])
        quantity = str(record["quantity"])
        return (
            sensor,
            sensor,
            f"Environment sensor in room {record.get('room')}",
            {"room": record.get("room")},
            f"{sensor}/{quantity}/",
            record.get("unit"),
            quantity,
        )
    instrument = record["instrument"]
    key = f"{instrument['manufacturer']}/{instrument['model']}/{instrument['serial']}"
    return (
        key,
        f"{instrument['manufacturer']} {instrument['model']} #{instrument['serial']}",
        "Instrument",
        {k: v for k, v in instrument.items() if v is not None}
        | ({"room": record["room"]} if record.get("room") else {}),
        f"{key}/",
        None,
        "status",
    )


def _scan(session: Session, instance_ids: list[str]) -> Iterator[CanonicalRecordRow]:
    if not instance_ids:
        return iter(())
    query = (
        select(CanonicalRecordRow)
        .where(col(CanonicalRecordRow.instance_id).in_(instance_ids), col(CanonicalRecordRow.kind).in_(STA_KINDS))
        .order_by(col(CanonicalRecordRow.id))
        .execution_options(yield_per=1000)
    )
    return iter(session.exec(query))


def things_of(session: Session, *, scope: Scope, instance_id: str | None = None) -> list[ThingView]:
    """The Things (with their Datastreams) of the instances the scope may read."""
    things: dict[str, ThingView] = {}
    for row in _scan(session, _visible_instances(session, scope, instance_id)):
        key, name, description, properties, prefix, unit, observed = _thing_of(row)
        thing_id = _encode(row.instance_id, row.kind, key)
        thing = things.get(thing_id)
        if thing is None:
            thing = things[thing_id] = ThingView(
                id=thing_id,
                instance_id=row.instance_id,
                kind=row.kind,
                key=key,
                name=name,
                description=description,
                properties=properties,
            )
        datastream_id = _encode(row.instance_id, row.kind, prefix, unit or "")
        if datastream_id not in thing.datastreams:
            thing.datastreams[datastream_id] = DatastreamView(
                id=datastream_id,
                thing_id=thing_id,
                instance_id=row.instance_id,
                kind=row.kind,
                prefix=prefix,
                name=f"{name} {observed}",
                observed_property=observed,
                unit=unit,
                observation_type=OM_MEASUREMENT if unit else OM_CATEGORY,
            )
    return list(things.values())


def things_visible_to(session: Session, *, organization_id: str | None, instance_id: str) -> list[ThingView]:
    """The Things of one instance a (non-admin) organization may read: the tenant-isolation probe of L5.4."""
    return things_of(session, scope=Scope(organization_id=organization_id), instance_id=instance_id)


def get_thing_or_raise(session: Session, *, scope: Scope, thing_id: str) -> ThingView:
    """One Thing the scope may read (unknown and not-yours look the same)."""
    instance_id, _kind, _key = _decode(thing_id, 3)
    for thing in things_of(session, scope=scope, instance_id=instance_id):
        if thing.id == thing_id:
            return thing
    raise NotFoundError(f"No Thing {thing_id!r}.")


def get_datastream_or_raise(session: Session, *, scope: Scope, datastream_id: str) -> DatastreamView:
    """One Datastream the scope may read."""
    instance_id, _kind, _prefix, _unit = _decode(datastream_id, 4)
    for thing in things_of(session, scope=scope, instance_id=instance_id):
        if datastream_id in thing.datastreams:
            return thing.datastreams[datastream_id]
    raise NotFoundError(f"No Datastream {datastream_id!r}.")


# --- observations ------------------------------------------------------------------------------------------

_COMPARISON = re.compile(
    r"^\s*(phenomenonTime|result)\s+(eq|ne|gt|ge|lt|le)\s+('(?:[^']|'')*'|[^\s]+)\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class Comparison:
    """One `$filter` comparison."""

    property: str
    operator: str
    value: Any


def parse_filter(text: str | None) -> list[Comparison]:
    """The comparisons of a `$filter` (joined by `and`); UnsupportedQueryError for anything else."""
    if not text:
        return []
    comparisons = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _COMPARISON.match(clause)
        if match is None:
            raise UnsupportedQueryError(
                f"Unsupported $filter clause {clause!r}: use 'phenomenonTime <op> <ISO 8601>' or "
                "'result <op> <number|'text'>' joined by 'and' (op: eq ne gt ge lt le)."
            )
        name, operator, raw = match.group(1), match.group(2).lower(), match.group(3)
        if name.lower() == "phenomenontime":
            try:
                moment = datetime.fromisoformat(raw.strip("'").replace("Z", "+00:00"))
            except ValueError as error:
                raise UnsupportedQueryError(f"{raw!r} is not an ISO 8601 time.") from error
            if moment.utcoffset() is None:
                raise UnsupportedQueryError(f"{raw!r} needs a UTC offset.")
            comparisons.append(Comparison("phenomenonTime", operator, moment))
        elif raw.startswith("'"):
            comparisons.append(Comparison("result", operator, raw[1:-1].replace("''", "'")))
        else:
            try:
                comparisons.append(Comparison("result", operator, Decimal(raw)))
            except InvalidOperation as error:
                raise UnsupportedQueryError(f"{raw!r} is neither a number nor a quoted text.") from error
    return comparisons


_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _time_clause(comparison: Comparison) -> Any:
    column = col(CanonicalRecordRow.source_time)
    return {
        "eq": column == comparison.value,
        "ne": column != comparison.value,
        "gt": column > comparison.value,
        "ge": column >= comparison.value,
        "lt": column < comparison.value,
        "le": column <= comparison.value,
    }[comparison.operator]


def _result_of(row: CanonicalRecordRow) -> Any:
    if row.kind == RecordKind.environment_reading.value:
        return Decimal(str(row.record["value"]))
    return str(row.record["status"])


def _matches(row: CanonicalRecordRow, comparisons: list[Comparison]) -> bool:
    result = _result_of(row)
    for comparison in comparisons:
        if comparison.property != "result":
            continue
        if isinstance(comparison.value, Decimal) != isinstance(result, Decimal):
            return False
        if not _OPS[comparison.operator](result, comparison.value):
            return False
    return True


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def observations_of(
    session: Session,
    *,
    scope: Scope,
    datastream: DatastreamView | None = None,
    filter_text: str | None = None,
    descending: bool = False,
    top: int = DEFAULT_TOP,
    skip: int = 0,
) -> tuple[list[CanonicalRecordRow], int]:
    """Observations (records) the scope may read, filtered and ordered by phenomenon time; and how many match."""
    comparisons = parse_filter(filter_text)
    instance_ids = _visible_instances(session, scope, datastream.instance_id if datastream else None)
    if not instance_ids:
        return [], 0
    conditions: list[Any] = [
        col(CanonicalRecordRow.instance_id).in_(instance_ids),
        col(CanonicalRecordRow.kind).in_(STA_KINDS),
    ]
    if datastream is not None:
        conditions.append(CanonicalRecordRow.kind == datastream.kind)
        conditions.append(col(CanonicalRecordRow.natural_key).like(_escape_like(datastream.prefix) + "%", escape="\\"))
    conditions += [_time_clause(c) for c in comparisons if c.property == "phenomenonTime"]
    order = col(CanonicalRecordRow.source_time).desc() if descending else col(CanonicalRecordRow.source_time).asc()
    query = select(CanonicalRecordRow).where(and_(*conditions)).order_by(order, col(CanonicalRecordRow.id))
    rows = [row for row in session.exec(query) if _matches(row, comparisons) and _in_stream(row, datastream)]
    return rows[skip : skip + top], len(rows)


def _in_stream(row: CanonicalRecordRow, datastream: DatastreamView | None) -> bool:
    # The key prefix narrows in SQL; the unit (part of a datastream's identity) is checked here.
    if datastream is None or datastream.unit is None:
        return True
    return bool(row.record.get("unit") == datastream.unit)


def get_observation_or_raise(session: Session, *, scope: Scope, observation_id: int) -> CanonicalRecordRow:
    """One observation the scope may read."""
    row = session.get(CanonicalRecordRow, observation_id)
    if (
        row is None
        or row.kind not in STA_KINDS
        or row.instance_id not in _visible_instances(session, scope, row.instance_id)
    ):
        raise NotFoundError(f"No Observation {observation_id}.")
    return row


def datastream_of_row(row: CanonicalRecordRow) -> str:
    """The Datastream id an observation belongs to."""
    _key, _name, _description, _properties, prefix, unit, _observed = _thing_of(row)
    return _encode(row.instance_id, row.kind, prefix, unit or "")
