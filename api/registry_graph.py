"""Wiring of the standards/accreditation/conformity registries into the knowledge graph of an app."""

from fastapi import FastAPI

from graph.registry_mapping import REGISTRY_SUBJECTS, GraphWriter, registry_listener


def install_registry_graph(app: FastAPI) -> None:
    """After each commit, write imported registry rows into `app.state.graph_store` (idempotent per app)."""
    if getattr(app.state, "registry_graph_installed", False):
        return
    app.state.registry_graph_installed = True

    def get_store() -> GraphWriter | None:
        # Looked up per event: the store may be attached after this wiring (or be absent in some setups).
        return getattr(app.state, "graph_store", None)

    listener = registry_listener(get_store)
    for subject in REGISTRY_SUBJECTS:
        app.state.hooks.on_event(subject, listener, after_commit=True)
