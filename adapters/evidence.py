"""Evidence the hub records about an adapter instance while it runs; the maturity assessment reads it."""

from typing import Any

from sqlmodel import Session

from adapters.models import AdapterEvidence, AdapterInstance


def record_evidence(
    session: Session,
    *,
    instance: AdapterInstance,
    criterion: str,
    passed: bool,
    summary: str,
    details: dict[str, Any] | None = None,
) -> AdapterEvidence:
    """Append one observation about a maturity criterion (e.g. "L1.3") for the instance as deployed now."""
    evidence = AdapterEvidence(
        instance_id=instance.id,
        adapter_version=instance.adapter_version,
        criterion=criterion,
        passed=passed,
        summary=summary[:1000],
        details=details or {},
    )
    session.add(evidence)
    return evidence
