"""Fixtures shared by the store, endpoint and W3C tests: an Oxigraph server, stores and hubs on both backends.

Import the fixtures a module needs (`from tests.graph.servers import graph_store, oxigraph_server`).
"""

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from graph.embedded import EmbeddedOxigraphStore
from graph.remote import RemoteSparqlStore
from graph.store import GraphStore
from organizations.models import OrganizationCreate, OrganizationKind, Scope
from organizations.service import create_api_key, create_organization
from storage.database import session_scope
from storage.settings import Settings

OXIGRAPH = Path(sys.executable).with_name("oxigraph")
BACKENDS = ["embedded", "remote"]
BASE_URL = "http://testserver"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OxigraphServer:
    """`oxigraph serve` on a temporary directory and a free local port, for as long as the context lasts."""

    def __init__(self, location: Path, *, timeout_s: int = 30) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(OXIGRAPH),
                "serve",
                "--location",
                str(location),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout-s",
                str(timeout_s),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/query", params={"query": "ASK {}"}, timeout=2).status_code == 200:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Oxigraph server did not start")
            time.sleep(0.05)

    @property
    def query_url(self) -> str:
        """SPARQL query endpoint."""
        return f"{self.url}/query"

    @property
    def update_url(self) -> str:
        """SPARQL update endpoint."""
        return f"{self.url}/update"

    @property
    def store_url(self) -> str:
        """Graph Store Protocol endpoint."""
        return f"{self.url}/store"

    def clear(self) -> None:
        """Drop every graph."""
        httpx.post(self.update_url, data={"update": "DROP ALL"}, timeout=30).raise_for_status()

    def stop(self) -> None:
        """Stop the server process."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_shared_server: OxigraphServer | None = None


@pytest.fixture(scope="session")
def oxigraph_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OxigraphServer:
    """One Oxigraph server per test process (xdist worker), stopped at the end; tests clear it before use.

    Modules import this fixture, which makes one fixture per module; the server itself is shared by all.
    """
    global _shared_server
    if _shared_server is None or _shared_server.process.poll() is not None:
        server = OxigraphServer(tmp_path_factory.mktemp("oxigraph-server"))
        request.config.add_cleanup(server.stop)
        _shared_server = server
    return _shared_server


def graph_settings(backend: str, data_dir: Path, server: OxigraphServer | None, **overrides: object) -> Settings:
    """Hub settings for one graph backend (the remote one points at the test Oxigraph server)."""
    values: dict[str, object] = {"data_dir": data_dir, "public_base_url": BASE_URL}
    if backend == "remote":
        assert server is not None
        values |= {
            "graph_query_url": server.query_url,
            "graph_update_url": server.update_url,
            "graph_store_url": server.store_url,
        }
    values |= overrides
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def graph_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """An empty store, once embedded and once remote (Oxigraph server)."""
    store: GraphStore
    if request.param == "embedded":
        store = EmbeddedOxigraphStore(tmp_path / "graph")
    else:
        server: OxigraphServer = request.getfixturevalue("oxigraph_server")
        server.clear()
        store = RemoteSparqlStore(query_url=server.query_url, update_url=server.update_url, store_url=server.store_url)
    try:
        yield store
    finally:
        store.close()


@dataclass
class GraphHub:
    """A hub with its graph backend, a client, and keys with and without `graph:update`."""

    client: TestClient
    settings: Settings
    backend: str
    updater: dict[str, str]
    reader: dict[str, str]

    @property
    def store(self) -> GraphStore:
        """The hub's graph store."""
        store: GraphStore = self.client.app.state.graph_store  # type: ignore[attr-defined]
        return store


def _key(settings_app: TestClient, scopes: list[Scope], name: str) -> dict[str, str]:
    with session_scope(settings_app.app.state.engine) as session:  # type: ignore[attr-defined]
        organization = create_organization(session, data=OrganizationCreate(name=name, kind=OrganizationKind.platform))
        created = create_api_key(session, organization_id=organization.id, name="test", scopes=scopes)
    return {"Authorization": f"Bearer {created.key}"}


@contextlib.contextmanager
def running_hub(backend: str, data_dir: Path, server: OxigraphServer | None, **overrides: object) -> Iterator[GraphHub]:
    """Build and start a hub on one graph backend; stops it (and its store) at the end."""
    if server is not None:
        server.clear()
    settings = graph_settings(backend, data_dir, server, **overrides)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        updater = _key(client, [Scope.graph_update, Scope.certificates_read], "Graph editor")
        reader = _key(client, [Scope.certificates_read], "Reader")
        yield GraphHub(client=client, settings=settings, backend=backend, updater=updater, reader=reader)
    app.state.engine.dispose()


@pytest.fixture(params=BACKENDS)
def graph_backend(request: pytest.FixtureRequest) -> str:
    """Each graph backend in turn."""
    backend: str = request.param
    return backend


@pytest.fixture
def make_graph_hub(
    graph_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., GraphHub]]:
    """Build a hub on the current backend with settings overrides (`make_graph_hub(sparql_result_cap=5)`)."""
    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def make(**overrides: object) -> GraphHub:
        server = request.getfixturevalue("oxigraph_server") if graph_backend == "remote" else None
        data_dir = tmp_path / f"data-{next(counter)}"
        return stack.enter_context(running_hub(graph_backend, data_dir, server, **overrides))

    with stack:
        yield make


@pytest.fixture
def graph_hub(make_graph_hub: Callable[..., GraphHub]) -> GraphHub:
    """A hub on SQLite with its graph on each backend."""
    return make_graph_hub()


class ConnectionRecorder:
    """A TCP listener that records whether anything connected (to prove no outbound request was made)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/sparql"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


@pytest.fixture
def connection_recorder() -> Iterator[ConnectionRecorder]:
    """A local listener counting connection attempts."""
    recorder = ConnectionRecorder()
    try:
        yield recorder
    finally:
        recorder.close()
