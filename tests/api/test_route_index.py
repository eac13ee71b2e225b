"""The app's route index (`index_routes`): a cheap prefix test in front of each top-level route, same routing."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Match

from api.app import create_app
from api.route_index import _literal_prefixes
from storage.settings import Settings

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ODD_PATHS = ["/", "/nope", "/api", "/api/v1", "/api/v1/", "/api/v1/nope", "/api/v1/verify/a/b", "//api/v1/verify"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("route-index") / "data", document_processes=0))
    yield app
    app.state.engine.dispose()


def _leaf_paths(route: object) -> Iterator[str]:
    included = getattr(route, "original_router", None)
    if included is not None:
        for child in included.routes:
            yield from _leaf_paths(child)
    elif hasattr(route, "path_format"):
        yield route.path_format


def _concrete(template: str) -> list[str]:
    path = re.sub(r"\{[^}:]+:path\}", "x/y", template)
    path = re.sub(r"\{[^}]+\}", "x", path)
    return [path, path.rstrip("/") or "/"] if path.endswith("/") else [path, path + "/"]


def _scope(path: str, method: str) -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def test_every_top_level_route_but_the_catch_alls_is_indexed(app):
    indexed = [route for route in app.router.routes if "matches" in vars(route)]
    assert len(indexed) >= 20
    assert all(_literal_prefixes(route) for route in indexed)


def test_the_index_refuses_only_paths_the_route_could_not_match(app):
    paths = {
        concrete for route in app.router.routes for template in _leaf_paths(route) for concrete in _concrete(template)
    }
    paths.update(ODD_PATHS)
    checked = 0
    for route in app.router.routes:
        indexed = vars(route).get("matches")
        if indexed is None:
            continue
        unindexed = type(route).matches.__get__(route)
        for path in sorted(paths):
            for method in METHODS:
                if indexed(_scope(path, method))[0] == Match.NONE:
                    assert unindexed(_scope(path, method))[0] == Match.NONE, (path, method)
                    checked += 1
    assert checked > 1000


def test_requests_reach_the_same_routes_as_before(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/adapters/catalog").status_code in (200, 401)
        assert client.get("/verify").status_code == 200
        assert (
            client.post("/api/v1/verify", content=b"", headers={"Content-Type": "application/xml"}).status_code == 400
        )
        assert client.get("/api/v1/nope").status_code == 404
        assert client.delete("/api/v1/verify").status_code == 405
        redirect = client.get("/verify/", follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["location"].endswith("/verify")
