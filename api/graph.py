"""Wiring of the knowledge graph into an app: the RDF store and the mapping listeners."""

from fastapi import FastAPI


def install_graph(app: FastAPI) -> None:
    """Attach the graph store and mapping listeners to the app (filled by the graph issue)."""
    return None
