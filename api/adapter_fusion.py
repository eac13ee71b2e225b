"""Fusion of landed canonical records into the graph, inside the API process.

The embedded Oxigraph store can only be written by the process that opened it (the API), so the worker lands
records and this background thread fuses them: every `interval_s`, until the app shuts down, it calls
`adapters.fusion.fuse_backlog`, which fuses batch after batch (each in its own transaction) until nothing is
pending. At start it also writes the environment limits into their graph (the cross-source SPARQL query reads
them there).

Registry rows the worker changes (standards and accredited labs pulled from a platform's directories) have
no graph listener in the worker's process; each pass also maps registry audit events that appeared since the
previous pass, so they reach the graph too (rewriting a row's graph is idempotent). How far it got is kept in
the database (`graph_follow_positions`), so changes made while no API process ran are mapped at the next start.
"""

import threading

import structlog
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from adapters.fusion import FUSION_BATCH, fuse_backlog, publish_environment_limits
from graph.models import GraphFollowPosition
from graph.registry_mapping import REGISTRY_SUBJECTS, publish_registry_row, registry_row_for_event
from graph.store import GraphStore
from storage.database import session_scope
from storage.models import AuditEvent, utc_now

log = structlog.get_logger("qihub.fusion")
BATCH = FUSION_BATCH
REGISTRY_FOLLOWER = "registry"  # the position's name in graph_follow_positions


class AdapterFuser:
    """One thread fusing pending records in batches; `fuse_now` runs one pass in the caller's thread."""

    def __init__(self, engine: Engine, store: GraphStore, *, interval_s: float = 1.0, batch: int = BATCH) -> None:
        self._engine = engine
        self._store = store
        self._interval_s = interval_s
        self._batch = batch
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one pass at a time (thread and fuse_now)
        self._thread: threading.Thread | None = None
        self.fused = 0

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qihub-adapter-fusion", daemon=True)
            self._thread.start()

    def fuse_now(self) -> int:
        """Fuse everything pending now, batch after batch; returns how many records."""
        return self._fuse(stop=None)

    def _fuse(self, *, stop: threading.Event | None) -> int:
        # The store loads one batch while the next is built (adapters.fusion.fuse_backlog).
        with self._lock:
            count = fuse_backlog(self._engine, store=self._store, limit=self._batch, stop=stop)
        self.fused += count
        return count

    def follow_registry(self) -> int:
        """Map registry rows changed (by any process) since the last call into their graphs; returns the count."""
        kinds = list(REGISTRY_SUBJECTS)
        with self._lock, session_scope(self._engine) as session:
            position = session.get(GraphFollowPosition, REGISTRY_FOLLOWER)
            if position is None:
                # The hub's first pass ever: earlier changes were mapped by their own listeners as they were made.
                newest = session.exec(select(func.max(AuditEvent.id)).where(col(AuditEvent.subject_kind).in_(kinds)))
                session.add(GraphFollowPosition(name=REGISTRY_FOLLOWER, audit_event_id=newest.one() or 0))
                return 0
            events = session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.subject_kind).in_(kinds), col(AuditEvent.id) > position.audit_event_id)
                .order_by(col(AuditEvent.id))
                .limit(self._batch)
            ).all()
            mapped: set[tuple[str, str]] = set()
            for event in events:
                key = (event.subject_kind, event.subject_id)
                row = registry_row_for_event(session, event) if key not in mapped else None
                if row is not None:
                    publish_registry_row(self._store, row)
                    mapped.add(key)
            if events:
                # Saved after the graph writes: a crash in between only maps those rows again (idempotent).
                assert events[-1].id is not None
                position.audit_event_id = events[-1].id
                position.updated_at = utc_now()
            return len(mapped)

    def _run(self) -> None:
        try:
            with session_scope(self._engine) as session:
                publish_environment_limits(session, store=self._store)
        except Exception:
            log.exception("fusion.limits_failed")
        while not self._stopping.is_set():
            try:
                self.follow_registry()
                self._fuse(stop=self._stopping)
            except Exception:
                # The records stay pending (fusion is idempotent): the next pass retries them.
                log.exception("fusion.pass_failed")
            self._stopping.wait(self._interval_s)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the thread after its current pass (idempotent)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def install_adapter_fusion(app: FastAPI, *, interval_s: float | None = None) -> AdapterFuser:
    """Start fusing into `app.state.graph_store` (`app.state.adapter_fuser`); stopped before the store closes."""
    settings = app.state.settings
    fuser = AdapterFuser(
        app.state.engine,
        app.state.graph_store,
        interval_s=interval_s if interval_s is not None else settings.worker_poll_interval_s,
    )
    app.state.adapter_fuser = fuser
    app.router.on_startup.append(fuser.start)
    # Before the store's own shutdown handler (install_graph registered it earlier): insert in front.
    app.router.on_shutdown.insert(0, fuser.stop)
    return fuser
