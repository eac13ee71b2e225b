"""Registry rows changed outside the API process (the adapter worker) still reach the knowledge graph."""

from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import create_app
from graph.models import Standard, StandardIn
from graph.registry_mapping import registry_graph
from graph.service import import_standards
from storage.database import make_engine, session_scope
from storage.settings import Settings


def test_a_standard_imported_by_another_process_is_mapped_on_the_next_fusion_pass(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        app = client.app
        fuser = app.state.adapter_fuser  # type: ignore[attr-defined]
        store = app.state.graph_store  # type: ignore[attr-defined]
        fuser.stop()  # drive the passes by hand
        fuser.follow_registry()  # baseline, as the fusion thread's first pass does
        # The worker's own engine and a session without the app's hooks: no graph listener runs.
        worker_engine = make_engine(settings)
        with session_scope(worker_engine) as session:
            import_standards(session, items=[StandardIn(code="GB/T 27025-2019", title="Testing labs")])
            row = session.exec(select(Standard)).one()
            graph_iri, _ = registry_graph(row)
        worker_engine.dispose()
        assert not store.graph_exists(graph_iri)

        assert fuser.follow_registry() == 1
        assert store.graph_exists(graph_iri)
        assert fuser.follow_registry() == 0  # nothing new: nothing rewritten


def test_a_standard_imported_while_no_api_process_runs_is_mapped_after_the_next_start(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        fuser = client.app.state.adapter_fuser  # type: ignore[attr-defined]
        fuser.stop()
        fuser.follow_registry()  # the hub's first pass: the position is saved in the database
    # The API is down; the worker imports a standard (no graph listener in its process).
    worker_engine = make_engine(settings)
    with session_scope(worker_engine) as session:
        import_standards(session, items=[StandardIn(code="GB/T 32150-2015", title="Industrial emission")])
        graph_iri, _ = registry_graph(session.exec(select(Standard)).one())
    worker_engine.dispose()

    with TestClient(create_app(settings)) as client:
        fuser = client.app.state.adapter_fuser  # type: ignore[attr-defined]
        store = client.app.state.graph_store  # type: ignore[attr-defined]
        fuser.stop()  # its thread may or may not have run a pass yet: one more pass by hand settles it
        fuser.follow_registry()
        assert store.graph_exists(graph_iri)
        assert fuser.follow_registry() == 0
