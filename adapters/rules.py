"""Cross-domain rules on fused data (placeholder: being written)."""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from adapters.framework import Clock
from adapters.models import AdapterInstance


def apply_record_rules(session: Session, *, instance: AdapterInstance, records: Sequence[Any], clock: Clock) -> None:
    """Apply the cross-domain rules to newly landed records."""
