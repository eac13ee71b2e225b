"""The FastAPI app factory: settings in, a fully wired hub out (database migrated, admin bootstrapped)."""

from types import ModuleType

from fastapi import FastAPI

from adapters.events import on_certificate_audit_event
from api.adapter_fusion import install_adapter_fusion
from api.document_pool import DocumentPool
from api.errors import install_problem_handlers
from api.graph import install_graph
from api.logging import configure_logging
from api.metrics import HubMetrics, install_metrics
from api.openapi import install_openapi
from api.route_index import index_routes
from api.routers import (
    adapter_push,
    adapter_rules,
    adapters,
    certificates,
    commands,
    conformity,
    events,
    health,
    maturity,
    organizations,
    pages,
    pki,
    queries,
    rdf_graphs,
    sensorthings,
    signing,
    sparql,
    standards,
    transparency,
    tsa,
    validate,
    verification,
)
from api.trust import install_trust
from organizations.service import ensure_bootstrap_admin
from storage.database import WalCheckpointer, make_engine, session_scope
from storage.events import EventHooks
from storage.migrate import upgrade_database
from storage.settings import Settings

API_DESCRIPTION = """
qihub registers digital calibration certificates (PTB DCC XML, D-SI quantities): it validates them against
the XSD of their declared release (2.1.0–3.3.0) and semantic rules, stores the exact bytes, and tracks each
certificate's status (draft, issued, revoked, superseded) with an append-only audit trail.

Authenticate with `Authorization: Bearer <api key>`. Every error is an RFC 9457 `application/problem+json`.
"""


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build a hub from its settings; tests build isolated ones with their own data dir and database."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    # The app checkpoints SQLite's WAL from a thread of its own: no request pays for a checkpoint.
    engine = make_engine(settings, background_checkpoints=True)
    if migrate:
        upgrade_database(engine)
    if settings.bootstrap_admin_key:
        with session_scope(engine) as session:
            ensure_bootstrap_admin(session, key=settings.bootstrap_admin_key)

    app = FastAPI(
        title="qihub",
        version="0.1.0",
        summary="Quality-infrastructure interoperability hub",
        description=API_DESCRIPTION,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = HubMetrics()
    app.state.key_cache = {}
    # Domains that follow the registry (transparency log, knowledge graph) register listeners here.
    app.state.hooks = EventHooks()
    # Certificates issued, revoked or superseded become report events in the adapters' outbox (same transaction).
    app.state.hooks.on_event("certificate", on_certificate_audit_event)
    app.state.wal_checkpointer = WalCheckpointer(engine)
    app.router.on_startup.append(app.state.wal_checkpointer.start)
    install_problem_handlers(app)
    install_openapi(app)
    install_metrics(app, app.state.metrics)
    install_trust(app)
    # Public verifications run in processes of their own (started on first use): one API process, every core.
    app.state.document_pool = DocumentPool(settings, engine=engine)
    app.router.on_shutdown.append(app.state.document_pool.shutdown)
    install_graph(app)
    # Canonical adapter records reach the graph from this process: the embedded store has one writer.
    install_adapter_fusion(app)
    routers: list[ModuleType] = [health, validate, signing, certificates, organizations, pki, tsa, verification]
    routers += [transparency, sparql, rdf_graphs, standards, conformity, queries, pages]
    # maturity and push routes are more specific than `/adapters/{id}`: they come first.
    routers += [maturity, adapter_push, adapters, commands, events, adapter_rules, sensorthings]
    for module in routers:
        app.include_router(module.router)
    index_routes(app)
    app.router.on_shutdown.append(app.state.wal_checkpointer.stop)  # last: the other handlers may still write
    return app
