"""Fusion of landed canonical records into the graph, inside the API process.

The embedded Oxigraph store can only be written by the process that opened it (the API), so the worker lands
records and this background thread fuses them: every `interval_s` (or at once after a full batch) it calls
`adapters.fusion.fuse_pending` in its own transaction, until the app shuts down. At start it also writes the
environment limits into their graph (the cross-source SPARQL query reads them there).
"""

import threading

import structlog
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from adapters.fusion import fuse_pending, publish_environment_limits
from graph.store import GraphStore
from storage.database import session_scope

log = structlog.get_logger("qihub.fusion")
BATCH = 1000


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
        total = 0
        while True:
            with self._lock, session_scope(self._engine) as session:
                count = fuse_pending(session, store=self._store, limit=self._batch)
            total += count
            self.fused += count
            if count < self._batch:
                return total

    def _run(self) -> None:
        try:
            with session_scope(self._engine) as session:
                publish_environment_limits(session, store=self._store)
        except Exception:
            log.exception("fusion.limits_failed")
        while not self._stopping.is_set():
            try:
                self.fuse_now()
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
