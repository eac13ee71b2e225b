"""The hub's side of a running adapter: the `AdapterContext` one instance gets from the worker.

Landing runs in a worker thread around its own transaction (`asyncio.to_thread` + `session_scope`), so a
plug-in's event loop keeps receiving while a batch is written. Failed source calls wait an exponential backoff
with jitter and leave an `adapter_attempts` row each: those rows are the retry evidence of criterion L1.4.
"""

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from adapters.evidence import record_evidence
from adapters.framework import Adapter, Clock, InboundMessage, LandingReport, SystemClock
from adapters.landing import land_messages
from adapters.models import AdapterAttempt, AdapterCheckpoint, AdapterHealth, AdapterInstance
from storage.database import session_scope
from storage.settings import Settings

log = structlog.get_logger("qihub.adapters")


class RetriesExhaustedError(Exception):
    """An operation failed `adapter_retry_max_attempts` times in a row."""

    def __init__(self, operation: str, attempts: int, error: str | None) -> None:
        super().__init__(f"{operation} failed {attempts} times; last error: {error}")
        self.operation = operation
        self.attempts = attempts
        self.error = error


def backoff_delay(attempt: int, *, base_s: float, max_s: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed try `attempt` (1-based): exponential, capped, with jitter, within [base, max]."""
    ceiling = min(max_s, base_s * 2 ** max(0, attempt - 1))
    # "Equal jitter": half fixed, half random, so retries of many instances spread out yet still grow.
    floor = max(base_s, ceiling / 2)
    return min(max_s, floor + (ceiling - floor) * rng())


def _upsert_health(
    session: Session,
    *,
    instance_id: str,
    connected: bool,
    now: datetime,
    lag_s: float | None = None,
    error: str | None = None,
    seen: bool,
) -> None:
    health = session.get(AdapterHealth, instance_id) or AdapterHealth(instance_id=instance_id)
    health.connected = connected
    if seen:
        health.last_seen = now
    if lag_s is not None:
        health.lag_s = lag_s
    health.last_error = error[:2000] if error else None
    health.checked_at = now
    session.add(health)


def write_health(
    engine: Engine,
    *,
    instance_id: str,
    connected: bool,
    now: datetime,
    lag_s: float | None = None,
    error: str | None = None,
) -> None:
    """Record an instance's connection state in its own transaction; a connected report counts as heard from."""
    with session_scope(engine) as session:
        _upsert_health(
            session, instance_id=instance_id, connected=connected, now=now, lag_s=lag_s, error=error, seen=connected
        )


def write_attempt(
    engine: Engine,
    *,
    instance_id: str,
    operation: str,
    attempt: int,
    succeeded: bool,
    error: str | None,
    delay_s: float | None,
    now: datetime,
) -> None:
    """Append one try of an operation to `adapter_attempts` (the retry evidence)."""
    with session_scope(engine) as session:
        session.add(
            AdapterAttempt(
                instance_id=instance_id,
                operation=operation[:60],
                attempt=attempt,
                succeeded=succeeded,
                error=error[:2000] if error else None,
                delay_s=delay_s,
                at=now,
            )
        )


class InstanceRuntime:
    """The `AdapterContext` of one adapter instance as the worker runs it."""

    def __init__(
        self,
        *,
        engine: Engine,
        instance: AdapterInstance,
        adapter: Adapter,
        settings: Settings,
        clock: Clock | None = None,
        stopping: asyncio.Event | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.instance = instance
        self.adapter = adapter
        self.settings = settings
        self.instance_id = instance.id
        self.config = dict(instance.config)
        self.clock: Clock = clock or SystemClock()
        self.stopping = stopping or asyncio.Event()
        self._rng = rng

    # --- landing -------------------------------------------------------------------------------------------

    def land_now(self, messages: Sequence[InboundMessage]) -> LandingReport:
        """Land a batch in its own transaction, from the calling thread."""
        with session_scope(self.engine) as session:
            report = land_messages(
                session,
                instance=self.instance,
                adapter=self.adapter,
                messages=messages,
                clock=self.clock,
                max_message_bytes=self.settings.adapter_max_message_bytes,
            )
            # A landed batch is news from the source: it is connected and was just heard from.
            _upsert_health(session, instance_id=self.instance_id, connected=True, now=self.clock.now(), seen=True)
        return report

    async def land(self, messages: Sequence[InboundMessage]) -> LandingReport:
        """Store messages raw, parse, de-duplicate and checkpoint them in one transaction."""
        batch = list(messages)
        if not batch:
            return LandingReport(received=0, accepted=0, quarantined=0, duplicates=0)
        return await asyncio.to_thread(self.land_now, batch)

    def checkpoint(self, stream: str = "default") -> str | None:
        """The committed cursor of a stream, where reading resumes."""
        with Session(self.engine) as session:
            row = session.get(AdapterCheckpoint, (self.instance_id, stream))
            return None if row is None else row.cursor

    def checkpoints(self) -> dict[str, str]:
        """Every committed cursor of the instance, by stream."""
        with Session(self.engine) as session:
            rows = session.exec(select(AdapterCheckpoint).where(AdapterCheckpoint.instance_id == self.instance_id))
            return {row.stream: row.cursor for row in rows}

    # --- health and retries ----------------------------------------------------------------------------------

    async def report_health(self, *, connected: bool, lag_s: float | None = None, error: str | None = None) -> None:
        """Record the connection state (and lag); a connected report counts as hearing from the source."""
        await asyncio.to_thread(
            write_health,
            self.engine,
            instance_id=self.instance_id,
            connected=connected,
            now=self.clock.now(),
            lag_s=lag_s,
            error=error,
        )

    def _record_attempt(
        self, operation: str, attempt: int, *, succeeded: bool, error: str | None, delay_s: float | None
    ) -> None:
        write_attempt(
            self.engine,
            instance_id=self.instance_id,
            operation=operation,
            attempt=attempt,
            succeeded=succeeded,
            error=error,
            delay_s=delay_s,
            now=self.clock.now(),
        )

    async def retry_delay(self, operation: str, attempt: int, error: str | None) -> float:
        """Record a failed attempt and sleep the backoff before the next; raises when attempts are exhausted."""
        if attempt >= self.settings.adapter_retry_max_attempts:
            await asyncio.to_thread(
                self._record_attempt, operation, attempt, succeeded=False, error=error, delay_s=None
            )
            log.warning("adapter retries exhausted", instance=self.instance_id, operation=operation, error=error)
            raise RetriesExhaustedError(operation, attempt, error)
        delay = backoff_delay(
            attempt,
            base_s=self.settings.adapter_retry_base_s,
            max_s=self.settings.adapter_retry_max_s,
            rng=self._rng,
        )
        await asyncio.to_thread(self._record_attempt, operation, attempt, succeeded=False, error=error, delay_s=delay)
        log.info("adapter retry", instance=self.instance_id, operation=operation, attempt=attempt, delay_s=delay)
        # Waiting on the stop event: a worker shutting down does not sit out a long backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        return delay

    async def record_success(self, operation: str, attempt: int) -> None:
        """Record that an operation succeeded (after `attempt` tries)."""
        await asyncio.to_thread(self._record_attempt, operation, attempt, succeeded=True, error=None, delay_s=None)

    # --- start -----------------------------------------------------------------------------------------------

    def _start_now(self) -> dict[str, str]:
        with session_scope(self.engine) as session:
            instance = session.get(AdapterInstance, self.instance_id)
            if instance is not None and instance.adapter_version != self.adapter.manifest.version:
                # The instance "as deployed" is the plug-in version actually running now.
                instance.adapter_version = self.adapter.manifest.version
                session.add(instance)
                self.instance.adapter_version = instance.adapter_version
            cursors = {
                row.stream: row.cursor
                for row in session.exec(
                    select(AdapterCheckpoint).where(AdapterCheckpoint.instance_id == self.instance_id)
                )
            }
            if cursors and instance is not None:
                shown = ", ".join(f"{stream} at {cursor}" for stream, cursor in sorted(cursors.items())[:5])
                record_evidence(
                    session,
                    instance=instance,
                    criterion="L1.3",
                    passed=True,
                    summary=f"Started from the committed checkpoints of {len(cursors)} stream(s): {shown}",
                    details={"event": "resumed-from-checkpoint", "checkpoints": cursors},
                )
        return cursors

    async def start(self) -> dict[str, str]:
        """Prepare a run: record the running plug-in version and, when resuming, the checkpoints resumed from."""
        return await asyncio.to_thread(self._start_now)
