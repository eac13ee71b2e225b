"""The SPARQL 1.1 Protocol endpoint `/sparql` and `/.well-known/void`, on both graph backends."""

# ruff: noqa: F811 - fixtures are imported from tests.graph.servers and requested by name

import json
from collections.abc import Callable

import pyoxigraph as ox
import pytest

from tests.graph.servers import (  # noqa: F401 - fixtures
    ConnectionRecorder,
    GraphHub,
    connection_recorder,
    graph_backend,
    graph_hub,
    make_graph_hub,
    oxigraph_server,
)

PROBLEM = "application/problem+json"
EX = "http://example.org/"
G1 = "https://qihub.example/graph/test/1"
G2 = "https://qihub.example/graph/test/2"
SD = "http://www.w3.org/ns/sparql-service-description#"
VOID = "http://rdfs.org/ns/void#"
RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
JSON_RESULTS = "application/sparql-results+json"
HEAVY = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?a ?b ?c . ?d ?e ?f . ?h ?i ?j } }"


def load(hub: GraphHub, graph: str, count: int, prefix: str = "s") -> None:
    """Put `count` triples into a named graph through the store."""
    value = ox.NamedNode(EX + "value")
    integer = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")
    hub.store.replace_graph(
        graph,
        [
            ox.Triple(ox.NamedNode(f"{EX}{prefix}{i}"), value, ox.Literal(str(i), datatype=integer))
            for i in range(count)
        ],
    )


def values(response) -> list[str]:
    """The ?s values of a JSON SELECT answer."""
    return sorted(binding["s"]["value"] for binding in response.json()["results"]["bindings"])


def graph_of(response, rdf_format: ox.RdfFormat) -> list[ox.Quad]:
    """The RDF in a response."""
    return list(ox.parse(response.content, format=rdf_format))


def test_query_by_get_post_form_and_post_direct(graph_hub: GraphHub) -> None:
    load(graph_hub, G1, 3)
    query = f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
    by_get = graph_hub.client.get("/sparql", params={"query": query})
    by_form = graph_hub.client.post("/sparql", data={"query": query})
    by_body = graph_hub.client.post("/sparql", content=query, headers={"content-type": "application/sparql-query"})
    for response in (by_get, by_form, by_body):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == JSON_RESULTS
        assert values(response) == [f"{EX}s0", f"{EX}s1", f"{EX}s2"]
        assert response.headers["qihub-result-count"] == "3"


def test_dataset_parameters_in_the_url_and_in_the_form(graph_hub: GraphHub) -> None:
    load(graph_hub, G1, 2, prefix="one")
    load(graph_hub, G2, 1, prefix="two")
    query = "SELECT ?s WHERE { ?s ?p ?o }"
    by_get = graph_hub.client.get("/sparql", params={"query": query, "default-graph-uri": [G1, G2]})
    assert values(by_get) == [f"{EX}one0", f"{EX}one1", f"{EX}two0"]
    by_form = graph_hub.client.post("/sparql", data={"query": query, "default-graph-uri": G2})
    assert values(by_form) == [f"{EX}two0"]
    direct = graph_hub.client.post(
        "/sparql",
        params={"named-graph-uri": G1},
        content="SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }",
        headers={"content-type": "application/sparql-query"},
    )
    assert [row["g"]["value"] for row in direct.json()["results"]["bindings"]] == [G1]
    union = graph_hub.client.get("/sparql", params={"query": query, "union-default-graph": ""})
    assert len(values(union)) == 3


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, JSON_RESULTS),
        ("application/sparql-results+xml", "application/sparql-results+xml"),
        ("text/csv", "text/csv; charset=utf-8"),
        ("text/tab-separated-values", "text/tab-separated-values; charset=utf-8"),
        ("text/csv;q=0.5, application/sparql-results+xml", "application/sparql-results+xml"),
        (
            "application/sparql-results+json;q=0.1, text/tab-separated-values;q=0.9",
            "text/tab-separated-values; charset=utf-8",
        ),
        ("text/html, application/xhtml+xml, */*;q=0.8", JSON_RESULTS),
        ("application/json", JSON_RESULTS),
    ],
)
def test_select_results_follow_accept_with_q_values(graph_hub: GraphHub, accept: str | None, media_type: str) -> None:
    load(graph_hub, G1, 2)
    headers = {"accept": accept} if accept else {}
    response = graph_hub.client.get(
        "/sparql", params={"query": f"SELECT * {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"}, headers=headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert "Accept" in response.headers["vary"]


@pytest.mark.parametrize(
    ("accept", "media_type", "rdf_format"),
    [
        (None, "text/turtle; charset=utf-8", ox.RdfFormat.TURTLE),
        ("application/n-triples", "application/n-triples", ox.RdfFormat.N_TRIPLES),
        ("application/rdf+xml", "application/rdf+xml", ox.RdfFormat.RDF_XML),
        ("application/ld+json", "application/ld+json", ox.RdfFormat.JSON_LD),
        ("text/turtle;q=0.2, application/ld+json;q=0.9", "application/ld+json", ox.RdfFormat.JSON_LD),
    ],
)
def test_construct_results_follow_accept(
    graph_hub: GraphHub, accept: str | None, media_type: str, rdf_format: ox.RdfFormat
) -> None:
    load(graph_hub, G1, 3)
    headers = {"accept": accept} if accept else {}
    query = f"PREFIX ex: <{EX}> CONSTRUCT {{ ?s ex:copy ?o }} WHERE {{ GRAPH <{G1}> {{ ?s ex:value ?o }} }}"
    response = graph_hub.client.get("/sparql", params={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert len(graph_of(response, rdf_format)) == 3


def test_nothing_acceptable_is_a_406_problem(graph_hub: GraphHub) -> None:
    select = graph_hub.client.get("/sparql", params={"query": "ASK {}"}, headers={"accept": "text/turtle"})
    construct = graph_hub.client.get(
        "/sparql", params={"query": "CONSTRUCT WHERE { ?s ?p ?o }"}, headers={"accept": JSON_RESULTS}
    )
    for response in (select, construct):
        assert response.status_code == 406
        assert response.headers["content-type"] == PROBLEM


def test_without_a_query_the_endpoint_describes_itself_and_links_void(graph_hub: GraphHub) -> None:
    response = graph_hub.client.get("/sparql")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/turtle; charset=utf-8"
    store = ox.Store()
    store.load(response.content, format=ox.RdfFormat.TURTLE)
    service = ox.NamedNode("http://testserver/sparql")
    assert ox.Quad(service, RDF_TYPE, ox.NamedNode(SD + "Service")) in store
    assert ox.Quad(service, ox.NamedNode(SD + "endpoint"), service) in store
    void_link = ox.Quad(
        service,
        ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#seeAlso"),
        ox.NamedNode("http://testserver/.well-known/void"),
    )
    assert void_link in store
    as_json_ld = graph_hub.client.get("/sparql", headers={"accept": "application/ld+json"})
    assert as_json_ld.headers["content-type"] == "application/ld+json"
    assert json.loads(as_json_ld.content)


def test_void_describes_the_dataset_with_its_size(graph_hub: GraphHub) -> None:
    load(graph_hub, G1, 4)
    load(graph_hub, G2, 2)
    response = graph_hub.client.get("/.well-known/void", headers={"origin": "https://app.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    store = ox.Store()
    store.load(response.content, format=ox.RdfFormat.TURTLE)
    dataset = ox.NamedNode("http://testserver/.well-known/void#dataset")
    assert ox.Quad(dataset, RDF_TYPE, ox.NamedNode(VOID + "Dataset")) in store
    assert ox.Quad(dataset, RDF_TYPE, ox.NamedNode("http://www.w3.org/ns/dcat#Dataset")) in store
    triples = next(store.quads_for_pattern(dataset, ox.NamedNode(VOID + "triples"), None)).object
    assert isinstance(triples, ox.Literal) and triples.value == "6"
    endpoint = next(store.quads_for_pattern(dataset, ox.NamedNode(VOID + "sparqlEndpoint"), None)).object
    assert endpoint == ox.NamedNode("http://testserver/sparql")


def test_a_malformed_query_or_update_is_a_400_problem_with_the_parsers_message(graph_hub: GraphHub) -> None:
    query = graph_hub.client.get("/sparql", params={"query": "SELECT * WHERE { ?s ?p }"})
    assert query.status_code == 400
    assert query.headers["content-type"] == PROBLEM
    assert query.json()["code"] == "sparql-syntax"
    assert "1:" in query.json()["detail"]
    update = graph_hub.client.post("/sparql", data={"update": "CLEAR XYZ"}, headers=graph_hub.updater)
    assert update.status_code == 400
    assert update.json()["code"] == "sparql-syntax"


def test_updates_need_the_graph_update_scope(graph_hub: GraphHub) -> None:
    update = f"INSERT DATA {{ GRAPH <{G1}> {{ <{EX}a> <{EX}b> 'c' }} }}"
    anonymous = graph_hub.client.post("/sparql", data={"update": update})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    reader = graph_hub.client.post("/sparql", data={"update": update}, headers=graph_hub.reader)
    assert reader.status_code == 403
    assert reader.json()["code"] == "missing-scope"
    assert graph_hub.store.count() == 0
    applied = graph_hub.client.post(
        "/sparql", content=update, headers={"content-type": "application/sparql-update", **graph_hub.updater}
    )
    assert applied.status_code == 204
    assert graph_hub.client.get("/sparql", params={"query": f"ASK {{ GRAPH <{G1}> {{ ?s ?p 'c' }} }}"}).json()[
        "boolean"
    ]


def test_a_relative_iri_in_an_update_resolves_against_the_endpoint(graph_hub: GraphHub) -> None:
    update = "INSERT DATA { GRAPH <http://example.org/g> { <http://example.org/s> <http://example.org/p> <test> } }"
    assert graph_hub.client.post("/sparql", data={"update": update}, headers=graph_hub.updater).status_code == 204
    answer = graph_hub.client.get("/sparql", params={"query": "SELECT ?o WHERE { GRAPH ?g { ?s ?p ?o } }"})
    assert answer.json()["results"]["bindings"][0]["o"]["value"] == "http://testserver/test"


def test_a_heavy_query_answers_503_at_its_timeout_and_the_next_query_works(graph_hub: GraphHub) -> None:
    load(graph_hub, G1, 3000)
    response = graph_hub.client.get("/sparql", params={"query": HEAVY, "timeout": "1"})
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "sparql-timeout"
    after = graph_hub.client.get("/sparql", params={"query": f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p 42 }} }}"})
    assert after.status_code == 200
    assert values(after) == [f"{EX}s42"]


def test_the_timeout_parameter_is_capped_at_the_maximum(make_graph_hub: Callable[..., GraphHub]) -> None:
    hub = make_graph_hub(sparql_max_timeout_s=1.0)
    load(hub, G1, 3000)
    response = hub.client.get("/sparql", params={"query": HEAVY, "timeout": "3600"})
    assert response.status_code == 503
    bad = hub.client.get("/sparql", params={"query": "ASK {}", "timeout": "soon"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid-timeout"


def test_the_result_cap_is_signalled_in_headers_and_result_heads(make_graph_hub: Callable[..., GraphHub]) -> None:
    hub = make_graph_hub(sparql_result_cap=5)
    load(hub, G1, 8)
    query = f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
    as_json = hub.client.get("/sparql", params={"query": query})
    assert as_json.headers["qihub-results-truncated"] == "true"
    assert as_json.json()["head"]["link"] == ["http://testserver/sparql#results-truncated"]
    assert len(as_json.json()["results"]["bindings"]) == 5
    as_xml = hub.client.get("/sparql", params={"query": query}, headers={"accept": "application/sparql-results+xml"})
    assert as_xml.headers["qihub-results-truncated"] == "true"
    assert b'<link href="http://testserver/sparql#results-truncated"/>' in as_xml.content
    parsed = ox.parse_query_results(as_xml.content, format=ox.QueryResultsFormat.XML)
    assert isinstance(parsed, ox.QuerySolutions) and len(list(parsed)) == 5
    as_csv = hub.client.get("/sparql", params={"query": query}, headers={"accept": "text/csv"})
    assert as_csv.headers["qihub-results-truncated"] == "true"
    assert len(as_csv.text.splitlines()) == 1 + 5
    construct = hub.client.get("/sparql", params={"query": "CONSTRUCT WHERE { ?s ?p ?o }", "union-default-graph": ""})
    assert construct.headers["qihub-results-truncated"] == "true"
    assert len(graph_of(construct, ox.RdfFormat.TURTLE)) == 5
    exact = hub.client.get("/sparql", params={"query": f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }} LIMIT 5"})
    assert "qihub-results-truncated" not in exact.headers
    assert "link" not in exact.json()["head"]


def test_service_off_the_allow_list_is_a_403_problem_and_nothing_is_contacted(
    graph_hub: GraphHub, connection_recorder: ConnectionRecorder
) -> None:
    query = f"SELECT * WHERE {{ SERVICE <{connection_recorder.url}> {{ ?s ?p ?o }} }}"
    response = graph_hub.client.get("/sparql", params={"query": query})
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "sparql-service-forbidden"
    sneaky = (
        f"SELECT * WHERE {{ ?s ?p ?o OPTIONAL {{ sErViCe\n# comment\n<{connection_recorder.url}>{{ ?s ?q ?r }} }} }}"
    )
    assert graph_hub.client.post("/sparql", data={"query": sneaky}).status_code == 403
    load_update = graph_hub.client.post(
        "/sparql", data={"update": f"LOAD <{connection_recorder.url}>"}, headers=graph_hub.updater
    )
    assert load_update.status_code == 403
    assert connection_recorder.connections == 0


def test_cors_lets_any_origin_read_but_not_update(graph_hub: GraphHub) -> None:
    origin = {"origin": "https://app.example"}
    read = graph_hub.client.get("/sparql", params={"query": "ASK {}"}, headers=origin)
    assert read.headers["access-control-allow-origin"] == "*"
    assert "QIHUB-Results-Truncated" in read.headers["access-control-expose-headers"]
    failed_read = graph_hub.client.get("/sparql", params={"query": "ASK {"}, headers=origin)
    assert failed_read.status_code == 400
    assert failed_read.headers["access-control-allow-origin"] == "*"
    preflight = graph_hub.client.options(
        "/sparql",
        headers={**origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert "authorization" not in preflight.headers["access-control-allow-headers"].lower()
    update = graph_hub.client.post("/sparql", data={"update": "CLEAR ALL"}, headers={**origin, **graph_hub.updater})
    assert update.status_code == 204
    assert "access-control-allow-origin" not in update.headers


def test_cors_origins_are_configurable(make_graph_hub: Callable[..., GraphHub]) -> None:
    hub = make_graph_hub(cors_origins=["https://allowed.example"])
    allowed = hub.client.get("/sparql", params={"query": "ASK {}"}, headers={"origin": "https://allowed.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://allowed.example"
    assert allowed.headers["vary"] == "Accept, Origin"
    other = hub.client.get("/sparql", params={"query": "ASK {}"}, headers={"origin": "https://other.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = hub.client.options(
        "/sparql", headers={"origin": "https://other.example", "access-control-request-method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("PUT", "/sparql?query=ASK%20%7B%7D", None, {}, 405),
        ("GET", "/sparql?query=ASK%20%7B%7D&query=ASK%20%7B%7D", None, {}, 400),
        ("GET", "/sparql?update=CLEAR%20ALL", None, {}, 400),
        ("POST", "/sparql", b"ASK {}", {"content-type": "text/plain"}, 415),
        ("POST", "/sparql", b"query=ASK%20%7B%7D", {}, 415),
        (
            "POST",
            "/sparql",
            "ASK {}".encode("utf-16"),
            {"content-type": "application/sparql-query; charset=UTF-16"},
            415,
        ),
        ("POST", "/sparql", b"ASK { \xff }", {"content-type": "application/sparql-query"}, 400),
        (
            "POST",
            "/sparql",
            b"update=CLEAR%20NAMED&update=CLEAR%20DEFAULT",
            {"content-type": "application/x-www-form-urlencoded"},
            400,
        ),
        (
            "POST",
            "/sparql",
            b"query=ASK%20%7B%7D&update=CLEAR%20ALL",
            {"content-type": "application/x-www-form-urlencoded"},
            400,
        ),
    ],
)
def test_protocol_violations_are_problems(
    graph_hub: GraphHub, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    response = graph_hub.client.request(method, path, content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM


def test_sparql_requests_are_counted_in_the_metrics(graph_hub: GraphHub) -> None:
    graph_hub.client.get("/sparql", params={"query": "ASK {}"})
    graph_hub.client.post("/sparql", data={"query": "ASK {"})
    metrics = graph_hub.client.get("/metrics").text
    assert 'qihub_http_requests_total{method="GET",route="/sparql",status="200"} 1.0' in metrics
    assert 'qihub_http_requests_total{method="POST",route="/sparql",status="400"} 1.0' in metrics
