"""Wiring of the knowledge graph into an app: the RDF store and the mapping listeners.

New certificates ("submitted") are mapped by one background thread (`app.state.graph_mapper`), off the
request path: a submission or a batch answers once it is stored, and the graph follows within moments. When
several are queued (a bulk upload), the thread maps up to `MAX_BATCH` of them and writes them with one store
call (`graph.publish.publish_certificates`). Status changes (issued, revoked, superseded, amends) are mapped
synchronously after their commit, so the request that revokes a certificate returns with the revocation
already in the graph. Every mapping reads the certificate's current state from the database while holding the
mapper's lock, which serialises the two paths, so a queued mapping can never overwrite a newer status with an
older one.
"""

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.registry_graph import install_registry_graph
from api.routers.sparql import install_sparql_fast_lane
from graph.publish import (
    CERTIFICATE_ACTIONS,
    KNOWN_FROM_ACTIONS,
    CertificateGraphWriter,
    publish_certificate,
    publish_certificates,
)
from graph.store import open_graph_store
from storage.database import session_scope
from storage.events import EventListener
from storage.models import AuditEvent

log = structlog.get_logger("qihub.graph")

# Actions mapped in the background: a new certificate has no earlier graph state a reader could rely on.
BACKGROUND_ACTIONS = frozenset({"submitted"})
# While submissions are being processed the mapper gives way (one Python process, one GIL): it waits for a
# pause in the writes, but never more than this per certificate, so the graph keeps moving under load.
MAX_DEFER_S = 0.5
# Queued certificates mapped and written together: one store call (and one checkpoint for readers) per batch.
MAX_BATCH = 64


class GraphMapper:
    """One background thread mapping queued certificates into the graph store, in queue order.

    `enqueue` never blocks; a certificate queued twice before its turn is mapped once. `wait_idle` is a
    flush barrier (everything queued before the call is in the graph when it returns True); `close` drains
    the queue and stops the thread. `lock` is held around every mapping, background or synchronous.
    Submission routes run inside `writing()`, and the mapper defers to them (up to `MAX_DEFER_S` a batch).
    """

    def __init__(self, engine: Engine, get_store: Callable[[], CertificateGraphWriter | None]) -> None:
        self._engine = engine
        self._get_store = get_store
        self.lock = threading.Lock()
        self._condition = threading.Condition()
        self._queue: deque[tuple[str, str]] = deque()
        self._queued: set[str] = set()
        self._busy = 0  # certificates being mapped
        self._closing = False
        self._thread: threading.Thread | None = None
        self._writers = 0
        self._last_write = 0.0  # monotonic time the last submission ended
        self.mapped = 0

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Mark a submission in progress: the background mapping waits (briefly) until none is."""
        with self._condition:
            self._writers += 1
        try:
            yield
        finally:
            with self._condition:
                self._writers -= 1
                self._last_write = time.monotonic()
                self._condition.notify_all()

    def enqueue(self, certificate_id: str, action: str) -> None:
        """Queue a certificate for mapping (after its transaction committed)."""
        with self._condition:
            if self._closing:
                closed = True
            else:
                closed = False
                if certificate_id not in self._queued:
                    self._queued.add(certificate_id)
                    self._queue.append((certificate_id, action))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="qihub-graph-mapper", daemon=True)
                    self._thread.start()
                self._condition.notify_all()
        if closed:  # after shutdown began (e.g. a late CLI change): map in the caller's thread
            self.map_now(certificate_id, action)

    def map_now(self, certificate_id: str, action: str, session: Session | None = None) -> None:
        """Map one certificate in the calling thread (with the caller's session, or a fresh one)."""
        store = self._get_store()
        if store is None:
            return
        with self.lock:
            self._map_locked(store, certificate_id, action, session)

    def _map_locked(
        self, store: CertificateGraphWriter, certificate_id: str, action: str, session: Session | None
    ) -> None:
        # A certificate newly known (submitted issued, or issued) may be the reference of graphs mapped before.
        link = action in KNOWN_FROM_ACTIONS
        try:
            if session is not None:
                publish_certificate(session, store, certificate_id=certificate_id, link_dependents=link)
            else:
                with session_scope(self._engine) as own:
                    publish_certificate(own, store, certificate_id=certificate_id, link_dependents=link)
        except Exception:
            # The registry change is committed and stays valid: a graph failure must not fail the request.
            # The graph catches up at the certificate's next event (or a rebuild).
            log.exception("graph.certificate_mapping_failed", certificate_id=certificate_id, action=action)

    def map_batch(self, certificate_ids: list[str]) -> None:
        """Map several queued certificates in the calling thread, written with one store call."""
        store = self._get_store()
        if store is None:
            return
        with self.lock:
            try:
                with session_scope(self._engine) as session:
                    outcome = publish_certificates(
                        session, store, certificate_ids=certificate_ids, link_dependents=True
                    )
            except Exception:
                # The batch's store call failed (or a part of it): map one by one, each graph replaced whole,
                # so one certificate's failure (logged one by one) keeps no other out of the graph.
                log.warning("graph.batch_mapping_failed", certificates=len(certificate_ids), exc_info=True)
                failed = {}
                for certificate_id in certificate_ids:
                    self._map_locked(store, certificate_id, "submitted", None)
            else:
                failed = outcome.failed
        for certificate_id, error in failed.items():
            log.error(
                "graph.certificate_mapping_failed",
                certificate_id=certificate_id,
                action="submitted",
                exc_info=(type(error), error, error.__traceback__),
            )

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closing:
                    self._condition.wait()
                if not self._queue:  # closing and drained
                    return
                self._condition.wait_for(lambda: not self._writers or self._closing, MAX_DEFER_S)
                # Once submissions have paused for a while, map whole batches; while they keep coming (even
                # with gaps between requests), one certificate per deferral, so mapping never takes the
                # interpreter from the requests for long.
                quiet = not self._writers and time.monotonic() - self._last_write >= MAX_DEFER_S
                size = min(MAX_BATCH if quiet or self._closing else 1, len(self._queue))
                batch = [self._queue.popleft() for _ in range(size)]
                self._queued.difference_update(certificate_id for certificate_id, _ in batch)
                self._busy = len(batch)
            try:
                if len(batch) == 1:
                    self.map_now(*batch[0])
                else:
                    self.map_batch([certificate_id for certificate_id, _ in batch])
            finally:
                with self._condition:
                    self._busy = 0
                    self.mapped += len(batch)
                    self._condition.notify_all()

    @property
    def pending(self) -> int:
        """Certificates queued or being mapped."""
        with self._condition:
            return len(self._queue) + self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and nothing is being mapped; False if `timeout` ran out first."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Map what is queued, then stop the thread (idempotent); later events are mapped synchronously."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def install_graph(app: FastAPI) -> None:
    """Attach the graph store (`app.state.graph_store`), its mapper and the mapping listeners to the app."""
    store = open_graph_store(app.state.settings)
    app.state.graph_store = store
    app.state.graph_mapper = GraphMapper(app.state.engine, lambda: getattr(app.state, "graph_store", None))
    # Drain the mapper before the store closes; the embedded store starts worker processes on first use.
    app.router.on_shutdown.append(app.state.graph_mapper.close)
    app.router.on_shutdown.append(store.close)
    install_sparql_fast_lane(app)
    app.state.hooks.on_event("certificate", certificate_graph_listener(app), after_commit=True)
    # Standards, accreditations and conformity certificates follow into their named graphs after commit.
    install_registry_graph(app)


def certificate_graph_listener(app: FastAPI) -> EventListener:
    """After a committed certificate event, re-map that certificate into its named graph and metadata."""

    def on_certificate_event(session: Session, event: AuditEvent) -> None:
        if event.action not in CERTIFICATE_ACTIONS:
            return
        mapper: GraphMapper = app.state.graph_mapper
        if event.action in BACKGROUND_ACTIONS:
            mapper.enqueue(event.subject_id, event.action)
        else:
            mapper.map_now(event.subject_id, event.action, session)

    return on_certificate_event
