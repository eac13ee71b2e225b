"""Domain events as CloudEvents in the outbox (placeholder: being written)."""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from adapters.framework import Clock
from adapters.models import AdapterInstance


def emit_record_events(session: Session, *, instance: AdapterInstance, records: Sequence[Any], clock: Clock) -> None:
    """Write the domain events that newly landed records cause into the outbox."""
