"""What happens to canonical records in the landing transaction: cross-domain rules, then domain events.

Both run inside the transaction that lands the records, so a rule flag or an outbox event exists exactly when
the record does (the transactional-outbox pattern). Fusion into the knowledge graph runs afterwards, in
batches, in the worker (`adapters.fusion.fuse_pending`).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session

from adapters import events, rules
from adapters.canonical import CanonicalRecord
from adapters.framework import Clock
from adapters.models import AdapterInstance


class RecordRow(Protocol):
    """What the pipeline reads of a stored record row: a `CanonicalRecordRow`, or the `LandedRow` landing made."""

    @property
    def id(self) -> int | None: ...

    @property
    def message_id(self) -> int: ...

    @property
    def natural_key(self) -> str: ...


@dataclass(slots=True)
class LandedRow:
    """A `canonical_records` row just inserted by the landing zone, with its values as inserted.

    A plain object rather than an ORM entity: building thousands of those costs more than landing them, and no
    pipeline step writes the row again.
    """

    id: int | None
    instance_id: str
    message_id: int
    kind: str
    schema_version: str
    natural_key: str
    record_text: str  # the record's JSON as stored
    source_time: datetime | None
    recorded_at: datetime
    fused_at: datetime | None = None
    graph_iri: str | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The stored record JSON, as `CanonicalRecordRow.record` reads it (decoded on demand: rarely wanted)."""
        return dict(json.loads(self.record_text))


LandedRecords = Sequence[tuple[RecordRow, CanonicalRecord]]


def after_landing(session: Session, *, instance: AdapterInstance, records: LandedRecords, clock: Clock) -> None:
    """Apply the cross-domain rules to newly landed records, then emit their domain events."""
    if not records:
        return
    rules.apply_record_rules(session, instance=instance, records=records, clock=clock)
    events.emit_record_events(session, instance=instance, records=records, clock=clock)
