"""The SPARQL 1.1 Graph Store HTTP Protocol at `/rdf-graphs`, on both graph backends."""

# ruff: noqa: F811 - fixtures are imported from tests.graph.servers and requested by name

import pyoxigraph as ox
import pytest

from tests.graph.servers import (  # noqa: F401 - fixtures
    GraphHub,
    graph_backend,
    graph_hub,
    make_graph_hub,
    oxigraph_server,
)

PROBLEM = "application/problem+json"
GRAPH = "http://example.org/graphs/people"
PERSON = b"""@prefix foaf: <http://xmlns.com/foaf/0.1/> .
<http://example.org/alice> a foaf:Person ; foaf:name "Alice" ."""
MORE = b'<http://example.org/alice> <http://xmlns.com/foaf/0.1/nick> "Al" .'
TURTLE = {"content-type": "text/turtle; charset=utf-8"}


def triples_in(response, rdf_format: ox.RdfFormat = ox.RdfFormat.TURTLE) -> int:
    """How many triples a GET returned."""
    return len(list(ox.parse(response.content, format=rdf_format)))


def test_put_creates_get_reads_put_replaces_post_merges(graph_hub: GraphHub) -> None:
    client, key = graph_hub.client, graph_hub.updater
    created = client.put("/rdf-graphs", params={"graph": GRAPH}, content=PERSON, headers={**TURTLE, **key})
    assert created.status_code == 201
    read = client.get("/rdf-graphs", params={"graph": GRAPH})
    assert read.status_code == 200
    assert read.headers["content-type"] == "text/turtle; charset=utf-8"
    assert triples_in(read) == 2
    replaced = client.put("/rdf-graphs", params={"graph": GRAPH}, content=MORE, headers={**TURTLE, **key})
    assert replaced.status_code == 204
    assert triples_in(client.get("/rdf-graphs", params={"graph": GRAPH})) == 1
    merged = client.post("/rdf-graphs", params={"graph": GRAPH}, content=PERSON, headers={**TURTLE, **key})
    assert merged.status_code == 204
    as_ntriples = client.get("/rdf-graphs", params={"graph": GRAPH}, headers={"accept": "application/n-triples"})
    assert as_ntriples.headers["content-type"] == "application/n-triples"
    assert triples_in(as_ntriples, ox.RdfFormat.N_TRIPLES) == 3


def test_delete_removes_the_graph_then_answers_404(graph_hub: GraphHub) -> None:
    client, key = graph_hub.client, graph_hub.updater
    client.put("/rdf-graphs", params={"graph": GRAPH}, content=PERSON, headers={**TURTLE, **key})
    assert client.delete("/rdf-graphs", params={"graph": GRAPH}, headers=key).status_code == 204
    missing = client.get("/rdf-graphs", params={"graph": GRAPH})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert client.delete("/rdf-graphs", params={"graph": GRAPH}, headers=key).status_code == 404
    assert client.head("/rdf-graphs", params={"graph": GRAPH}).status_code == 404


def test_the_default_graph_and_head(graph_hub: GraphHub) -> None:
    client, key = graph_hub.client, graph_hub.updater
    assert client.put("/rdf-graphs?default", content=PERSON, headers={**TURTLE, **key}).status_code == 204
    assert triples_in(client.get("/rdf-graphs?default")) == 2
    head = client.head("/rdf-graphs?default")
    assert head.status_code == 200 and head.content == b""
    assert client.delete("/rdf-graphs?default", headers=key).status_code == 204
    assert triples_in(client.get("/rdf-graphs?default")) == 0


def test_post_to_the_store_creates_a_graph_named_by_the_hub(graph_hub: GraphHub) -> None:
    client, key = graph_hub.client, graph_hub.updater
    created = client.post("/rdf-graphs", content=PERSON, headers={**TURTLE, **key})
    assert created.status_code == 201
    location = created.headers["location"]
    assert location.startswith("http://testserver/rdf-graphs/")
    direct = client.get(location.removeprefix("http://testserver"))
    assert direct.status_code == 200 and triples_in(direct) == 2
    assert triples_in(client.get("/rdf-graphs", params={"graph": location})) == 2


def test_multipart_post_merges_every_part(graph_hub: GraphHub) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=a; filename=a.ttl\r\n"
        "Content-Type: text/turtle\r\n\r\n"
        f"{PERSON.decode()}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=b; filename=b.nt\r\n"
        "Content-Type: application/n-triples\r\n\r\n"
        f"{MORE.decode()}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    response = graph_hub.client.post(
        "/rdf-graphs",
        params={"graph": GRAPH},
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}", **graph_hub.updater},
    )
    assert response.status_code == 201
    assert triples_in(graph_hub.client.get("/rdf-graphs", params={"graph": GRAPH})) == 3


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_writes_need_the_graph_update_scope_reads_do_not(graph_hub: GraphHub, method: str) -> None:
    anonymous = graph_hub.client.request(method, "/rdf-graphs", params={"graph": GRAPH}, content=PERSON, headers=TURTLE)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    reader = graph_hub.client.request(
        method, "/rdf-graphs", params={"graph": GRAPH}, content=PERSON, headers={**TURTLE, **graph_hub.reader}
    )
    assert reader.status_code == 403
    assert not graph_hub.store.graph_exists(GRAPH)


def test_reads_are_open_across_origins(graph_hub: GraphHub) -> None:
    graph_hub.client.put("/rdf-graphs?default", content=PERSON, headers={**TURTLE, **graph_hub.updater})
    read = graph_hub.client.get("/rdf-graphs?default", headers={"origin": "https://app.example"})
    assert read.headers["access-control-allow-origin"] == "*"
    preflight = graph_hub.client.options(
        "/rdf-graphs", headers={"origin": "https://app.example", "access-control-request-method": "PUT"}
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("params", "body", "headers", "status"),
    [
        ({"graph": GRAPH}, PERSON, {"content-type": "application/pdf"}, 415),
        ({"graph": GRAPH}, b"<not turtle", TURTLE, 400),
        ({"graph": "not an iri"}, PERSON, TURTLE, 400),
        ({"graph": GRAPH, "default": ""}, PERSON, TURTLE, 400),
        ({"graph": GRAPH}, PERSON, {"content-type": "text/turtle; charset=latin-1"}, 415),
    ],
)
def test_bad_writes_are_problems_and_change_nothing(
    graph_hub: GraphHub, params: dict[str, str], body: bytes, headers: dict[str, str], status: int
) -> None:
    response = graph_hub.client.put(
        "/rdf-graphs", params=params, content=body, headers={**headers, **graph_hub.updater}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert graph_hub.store.count() == 0


def test_an_unacceptable_format_is_a_406(graph_hub: GraphHub) -> None:
    response = graph_hub.client.get("/rdf-graphs?default", headers={"accept": "image/png"})
    assert response.status_code == 406
