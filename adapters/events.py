"""Domain events as CloudEvents 1.0 in the outbox (written in the transaction of the change they report).

The derivation of events from landed records (`emit_record_events`) is being written; `emit_event` is the
one way any code adds an event to the outbox.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from adapters.framework import Clock
from adapters.models import AdapterInstance, OutboxEvent


def emit_event(
    session: Session,
    *,
    type: str,
    source: str,
    subject: str | None,
    data: dict[str, Any],
    time: datetime,
    instance_id: str | None = None,
    organization_id: str | None = None,
) -> OutboxEvent:
    """Add one event to the outbox; it is delivered (webhooks, MQTT) after the transaction commits."""
    event = OutboxEvent(
        type=type,
        source=source,
        subject=subject,
        data=data,
        time=time,
        instance_id=instance_id,
        organization_id=organization_id,
    )
    session.add(event)
    return event


def emit_record_events(session: Session, *, instance: AdapterInstance, records: Sequence[Any], clock: Clock) -> None:
    """Write the domain events that newly landed records cause into the outbox."""
