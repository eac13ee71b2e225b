"""`qihub worker`: runs every enabled adapter instance and the hub's background loops.

Each enabled instance runs its plug-in's `run(context)` in its own task; a crash restarts it after a backoff
(recorded in `adapter_attempts`), a changed or disabled instance is restarted or stopped when the instance
table is next read. Beside them run the periodic loops other parts of the hub provide, each only when its
module is there: fusion into the knowledge graph (only with a graph store the worker may write — the embedded
Oxigraph store belongs to the API process, which fuses in its own thread), webhook and MQTT delivery of the
outbox, write-back command dispatch, and the time-driven rules and events. SIGTERM/SIGINT stop it gracefully:
adapters finish their batch, unacknowledged messages stay with their sources.
"""

import asyncio
import contextlib
import importlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from adapters.discovery import get_adapter_class_or_raise
from adapters.framework import Adapter, Clock, SystemClock
from adapters.models import AdapterInstance
from adapters.runtime import InstanceRuntime, RetriesExhaustedError, backoff_delay, write_attempt, write_health
from storage.database import make_engine, session_scope
from storage.settings import Settings

log = structlog.get_logger("qihub.worker")

FUSION_BATCH = 5000  # records per fusion transaction: one store load each (see adapters.fusion.FUSION_BATCH)
STOP_GRACE_S = 10.0


def _optional(module_name: str, attribute: str) -> Callable[..., Any] | None:
    """A function another part of the hub provides, or None while its module does not exist yet."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise
    function = getattr(module, attribute, None)
    return function if callable(function) else None


@dataclass
class _Running:
    instance: AdapterInstance
    stopping: asyncio.Event
    task: "asyncio.Task[None] | None" = None
    adapter: Adapter | None = None


@dataclass
class WorkerStats:
    """What the worker's loops have done since it started (for logs and tests)."""

    started: dict[str, int] = field(default_factory=dict)  # instance id → times started
    loop_runs: dict[str, int] = field(default_factory=dict)  # loop name → units of work done
    loop_errors: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs enabled adapter instances (restarting crashed ones) and the periodic loops."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Clock | None = None,
        graph_store: Any | None = None,
        instance_ids: set[str] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings)
        self._owns_engine = engine is None
        self.clock: Clock = clock or SystemClock()
        self.graph_store = graph_store
        self.instance_ids = instance_ids  # None: every enabled instance
        self.running: dict[str, _Running] = {}
        self.stats = WorkerStats()
        self._halting = threading.Event()  # tells loops running in threads (fusion) to stop after their batch

    @property
    def adapters(self) -> dict[str, Adapter]:
        """Live adapter objects by instance id (what command dispatch executes write-backs with)."""
        return {key: running.adapter for key, running in self.running.items() if running.adapter is not None}

    # --- main loop ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then stop every instance and loop gracefully."""
        self._halting.clear()
        loops = [asyncio.create_task(self._supervise_instances(stop), name="instances")]
        for name, work in self._periodic_work().items():
            loops.append(asyncio.create_task(self._every(name, work, stop), name=name))
        log.info("worker started", loops=[task.get_name() for task in loops])
        try:
            await stop.wait()
        finally:
            self._halting.set()
            await self._stop_all()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self._owns_engine:
                self.engine.dispose()
            log.info("worker stopped")

    def _periodic_work(self) -> dict[str, Callable[[], Awaitable[int]]]:
        work: dict[str, Callable[[], Awaitable[int]]] = {}
        fuse = _optional("adapters.fusion", "fuse_backlog")
        if fuse is not None and self.graph_store is not None:

            async def fusion() -> int:
                # Batch after batch until the backlog is done, the store loading one while the next is built.
                return int(
                    await asyncio.to_thread(
                        fuse, self.engine, store=self.graph_store, limit=FUSION_BATCH, stop=self._halting
                    )
                )

            work["fusion"] = fusion
        deliver = _optional("adapters.delivery", "deliver_pending")
        if deliver is not None:

            async def delivery() -> int:
                return int(await deliver(self.engine, settings=self.settings, clock=self.clock))

            work["delivery"] = delivery
        dispatch = _optional("adapters.commands", "dispatch_pending")
        if dispatch is not None:

            async def commands() -> int:
                return int(
                    await dispatch(self.engine, adapters=self.adapters, settings=self.settings, clock=self.clock)
                )

            work["commands"] = commands
        for name, module, attribute in (
            ("rules", "adapters.rules", "apply_due_rules"),
            ("due-events", "adapters.events", "emit_due_events"),
        ):
            function = _optional(module, attribute)
            if function is not None:
                work[name] = self._session_work(function)
        return work

    def _session_work(self, function: Callable[..., Any]) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            return await asyncio.to_thread(self._in_session, function, clock=self.clock)

        return run

    def _in_session(self, function: Callable[..., Any], **kwargs: Any) -> int:
        with session_scope(self.engine) as session:
            return int(function(session, **kwargs) or 0)

    async def _every(self, name: str, work: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
        while not stop.is_set():
            done = 0
            try:
                done = await work()
                self.stats.loop_runs[name] = self.stats.loop_runs.get(name, 0) + done
            except asyncio.CancelledError:
                raise
            except Exception:  # one failing loop must not stop the others; it tries again next period
                self.stats.loop_errors[name] = self.stats.loop_errors.get(name, 0) + 1
                log.exception("worker loop failed", loop=name)
            if done:
                await asyncio.sleep(0)  # more may be waiting: go again at once, yet let the others run
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_interval_s)

    # --- instances ---------------------------------------------------------------------------------------------

    def _enabled_instances(self) -> list[AdapterInstance]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(AdapterInstance).where(AdapterInstance.enabled == True)  # noqa: E712
            rows = list(session.exec(query).all())
            session.expunge_all()
        if self.instance_ids is not None:
            rows = [row for row in rows if row.id in self.instance_ids]
        return rows

    async def sync_instances(self) -> None:
        """Start new enabled instances, restart changed ones and stop disabled or deleted ones."""
        wanted = {row.id: row for row in await asyncio.to_thread(self._enabled_instances)}
        for instance_id, running in list(self.running.items()):
            row = wanted.get(instance_id)
            finished = running.task is None or running.task.done()
            if row is None or row.updated_at != running.instance.updated_at or finished:
                await self._stop_instance(instance_id)
        for instance_id, row in wanted.items():
            if instance_id not in self.running:
                self._start_instance(row)

    async def _supervise_instances(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sync_instances()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the adapter instances failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(self.settings.worker_poll_interval_s, 0.05))

    def _start_instance(self, instance: AdapterInstance) -> None:
        stopping = asyncio.Event()
        running = _Running(instance=instance, stopping=stopping)
        running.task = asyncio.create_task(self._run_instance(running), name=f"adapter:{instance.name}")
        self.running[instance.id] = running
        self.stats.started[instance.id] = self.stats.started.get(instance.id, 0) + 1
        log.info("adapter instance started", instance=instance.id, name=instance.name, adapter=instance.adapter)

    async def _stop_instance(self, instance_id: str) -> None:
        running = self.running.pop(instance_id, None)
        if running is None:
            return
        running.stopping.set()
        task = running.task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE_S)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            except Exception:
                log.exception("adapter instance failed while stopping", instance=instance_id)
        await asyncio.to_thread(
            write_health,
            self.engine,
            instance_id=instance_id,
            connected=False,
            now=self.clock.now(),
            error="stopped by the worker",
        )
        log.info("adapter instance stopped", instance=instance_id)

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop_instance(key) for key in list(self.running)), return_exceptions=True)

    async def _run_instance(self, running: _Running) -> None:
        """Run one instance's adapter, restarting it with backoff whenever it crashes or returns early."""
        instance, stopping = running.instance, running.stopping
        attempt = 0
        while not stopping.is_set():
            started = time.monotonic()
            try:
                adapter = get_adapter_class_or_raise(instance.adapter)(instance.config)
                runtime = InstanceRuntime(
                    engine=self.engine,
                    instance=instance,
                    adapter=adapter,
                    settings=self.settings,
                    clock=self.clock,
                    stopping=stopping,
                )
                running.adapter = adapter
                await runtime.start()
                await adapter.run(runtime)
                if stopping.is_set():
                    return
                error = "run() returned while the instance is enabled"
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                error = f"{type(failure).__name__}: {failure}"
                log.exception("adapter instance crashed", instance=instance.id)
            finally:
                running.adapter = None
            if stopping.is_set():
                return
            if time.monotonic() - started > self.settings.adapter_retry_max_s:
                attempt = 0  # it ran well for a while: this is a new failure, not the same one again
            attempt += 1
            await self._wait_before_restart(instance.id, attempt, error, stopping)
            if attempt >= self.settings.adapter_retry_max_attempts:
                attempt = 0  # a daemon never gives up on a source: keep trying at the longest delay

    async def _wait_before_restart(self, instance_id: str, attempt: int, error: str, stopping: asyncio.Event) -> None:
        exhausted = attempt >= self.settings.adapter_retry_max_attempts
        delay = (
            self.settings.adapter_retry_max_s
            if exhausted
            else backoff_delay(
                attempt, base_s=self.settings.adapter_retry_base_s, max_s=self.settings.adapter_retry_max_s
            )
        )
        now: datetime = self.clock.now()
        await asyncio.to_thread(
            write_health, self.engine, instance_id=instance_id, connected=False, now=now, error=error
        )
        await asyncio.to_thread(
            write_attempt,
            self.engine,
            instance_id=instance_id,
            operation="run",
            attempt=attempt,
            succeeded=False,
            error=error,
            delay_s=delay,
            now=now,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=delay)


async def run_worker(
    settings: Settings, *, graph_store: Any | None = None, instance_ids: set[str] | None = None
) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms' loops
            loop.add_signal_handler(signum, stop.set)
    await Worker(settings, graph_store=graph_store, instance_ids=instance_ids).run(stop)


__all__ = ["RetriesExhaustedError", "Worker", "WorkerStats", "run_worker"]
