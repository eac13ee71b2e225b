"""What happens to canonical records in the landing transaction: cross-domain rules, then domain events.

Both run inside the transaction that lands the records, so a rule flag or an outbox event exists exactly when
the record does (the transactional-outbox pattern). Fusion into the knowledge graph runs afterwards, in
batches, in the worker (`adapters.fusion.fuse_pending`).
"""

from collections.abc import Sequence

from sqlmodel import Session

from adapters import events, rules
from adapters.canonical import CanonicalRecord
from adapters.framework import Clock
from adapters.models import AdapterInstance, CanonicalRecordRow

LandedRecords = Sequence[tuple[CanonicalRecordRow, CanonicalRecord]]


def after_landing(session: Session, *, instance: AdapterInstance, records: LandedRecords, clock: Clock) -> None:
    """Apply the cross-domain rules to newly landed records, then emit their domain events."""
    if not records:
        return
    rules.apply_record_rules(session, instance=instance, records=records, clock=clock)
    events.emit_record_events(session, instance=instance, records=records, clock=clock)
