"""Wiring of the knowledge graph into an app: the RDF store and the mapping listeners."""

import structlog
from fastapi import FastAPI
from sqlmodel import Session

from api.routers.sparql import install_sparql_fast_lane
from graph.publish import CERTIFICATE_ACTIONS, publish_certificate
from graph.store import open_graph_store
from storage.events import EventListener
from storage.models import AuditEvent

log = structlog.get_logger("qihub.graph")


def install_graph(app: FastAPI) -> None:
    """Attach the graph store (`app.state.graph_store`) and the mapping listeners to the app."""
    store = open_graph_store(app.state.settings)
    app.state.graph_store = store
    # The embedded store starts its worker processes on first use; stop them with the app.
    app.router.on_shutdown.append(store.close)
    install_sparql_fast_lane(app)
    app.state.hooks.on_event("certificate", certificate_graph_listener(app), after_commit=True)


def certificate_graph_listener(app: FastAPI) -> EventListener:
    """After a committed certificate event, re-map that certificate into its named graph and metadata."""

    def on_certificate_event(session: Session, event: AuditEvent) -> None:
        if event.action not in CERTIFICATE_ACTIONS:
            return
        store = getattr(app.state, "graph_store", None)
        if store is None:
            return
        try:
            publish_certificate(session, store, certificate_id=event.subject_id)
        except Exception:
            # The registry change is committed and stays valid: a graph failure must not fail the request.
            # The graph catches up at the certificate's next event (or a rebuild).
            log.exception("graph.certificate_mapping_failed", certificate_id=event.subject_id, action=event.action)

    return on_certificate_event
