"""The GraphStore contract, on both backends: the embedded Oxigraph store and a remote Oxigraph server."""

# ruff: noqa: F811 - fixtures are imported from tests.graph.servers and requested by name

import json
from pathlib import Path

import httpx
import pyoxigraph as ox
import pytest
import uvloop

from graph.embedded import EmbeddedOxigraphStore
from graph.oxigraph_worker import _json_rows
from graph.store import (
    JSON_LD,
    N_TRIPLES,
    RDF_XML,
    SPARQL_RESULTS_CSV,
    SPARQL_RESULTS_JSON,
    SPARQL_RESULTS_TSV,
    SPARQL_RESULTS_XML,
    TURTLE,
    GraphNotFoundError,
    GraphStore,
    GraphStoreError,
    GraphStoreUnavailableError,
    QueryTimeoutError,
    RdfSyntaxError,
    ServiceNotAllowedError,
    SparqlRequestError,
    SparqlSyntaxError,
)
from tests.graph.servers import (  # noqa: F401 - fixtures
    ConnectionRecorder,
    OxigraphServer,
    connection_recorder,
    graph_store,
    oxigraph_server,
)

EX = "http://example.org/"
G1 = "https://qihub.example/graph/test/1"
G2 = "https://qihub.example/graph/test/2"
HEAVY = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?a ?b ?c . ?d ?e ?f . ?h ?i ?j } }"


def triples(count: int, prefix: str = "s") -> list[ox.Triple]:
    """`count` triples `<ex:{prefix}{i}> ex:value i`."""
    value = ox.NamedNode(EX + "value")
    integer = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")
    return [
        ox.Triple(ox.NamedNode(f"{EX}{prefix}{i}"), value, ox.Literal(str(i), datatype=integer)) for i in range(count)
    ]


def select(store: GraphStore, sparql: str, **options: object) -> list[dict[str, str]]:
    """Rows of a SELECT as plain values."""
    options.setdefault("timeout_s", 30)
    options.setdefault("result_cap", 100_000)
    return store.query(sparql, **options).rows()  # type: ignore[arg-type]


def test_replace_graph_replaces_instead_of_adding(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(5))
    graph_store.replace_graph(G1, triples(3, prefix="t"))
    rows = select(graph_store, f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}")
    assert sorted(row["s"] for row in rows) == [f"{EX}t0", f"{EX}t1", f"{EX}t2"]
    assert graph_store.graph_names() == [G1]
    assert graph_store.count() == 3


def test_an_empty_replacement_leaves_an_empty_graph(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2))
    graph_store.replace_graph(G1, [])
    assert graph_store.count() == 0
    assert graph_store.graph_exists(G1)


def test_drop_graph_reports_whether_it_existed(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2))
    graph_store.replace_graph(G2, triples(2))
    assert graph_store.drop_graph(G1) is True
    assert graph_store.drop_graph(G1) is False
    assert graph_store.graph_names() == [G2]
    assert not graph_store.graph_exists(G1)


def test_add_quads_goes_into_the_named_graphs(graph_store: GraphStore) -> None:
    quads = [ox.Quad(t.subject, t.predicate, t.object, ox.NamedNode(G1)) for t in triples(4)]
    quads.append(ox.Quad(ox.NamedNode(EX + "d"), ox.NamedNode(EX + "p"), ox.Literal("default")))
    graph_store.add_quads(quads)
    assert graph_store.count() == 5
    assert select(graph_store, "SELECT ?o WHERE { ?s ?p ?o }") == [{"o": "default"}]
    stats = graph_store.stats()
    assert (stats.triples, stats.graphs) == (5, 1)


@pytest.mark.parametrize("atomic", [True, False])
def test_add_nquads_loads_the_text_into_its_graphs(graph_store: GraphStore, atomic: bool) -> None:
    quads = [ox.Quad(t.subject, t.predicate, t.object, ox.NamedNode(G1)) for t in triples(3)]
    quads.append(ox.Quad(ox.NamedNode(EX + "d"), ox.NamedNode(EX + "p"), ox.Literal('a "quoted" 值\n')))
    graph_store.add_nquads(ox.serialize(quads, format=ox.RdfFormat.N_QUADS) or b"", atomic=atomic)
    graph_store.add_nquads(b"", atomic=atomic)  # nothing to load: nothing happens
    assert graph_store.count() == 4
    assert select(graph_store, "SELECT ?o WHERE { ?s ?p ?o }") == [{"o": 'a "quoted" 值\n'}]
    assert graph_store.graph_names() == [G1]


@pytest.mark.parametrize("atomic", [True, False])
def test_add_nquads_refuses_malformed_text_and_adds_nothing(graph_store: GraphStore, atomic: bool) -> None:
    good = f"<{EX}s> <{EX}p> <{EX}o> <{G1}> .\n"
    with pytest.raises(RdfSyntaxError):
        graph_store.add_nquads((good + f"<{EX}s> <{EX}p> <not an iri> <{G1}> .\n").encode(), atomic=atomic)
    assert graph_store.count() == 0


def test_select_answers_in_every_results_format(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2))
    query = f"SELECT ?s ?v WHERE {{ GRAPH <{G1}> {{ ?s <{EX}value> ?v }} }} ORDER BY ?v"
    as_json = graph_store.query(query, timeout_s=10, result_cap=10, results_media_type=SPARQL_RESULTS_JSON)
    assert json.loads(as_json.body)["head"]["vars"] == ["s", "v"]
    assert as_json.rows() == [{"s": f"{EX}s0", "v": "0"}, {"s": f"{EX}s1", "v": "1"}]
    as_xml = graph_store.query(query, timeout_s=10, result_cap=10, results_media_type=SPARQL_RESULTS_XML)
    parsed = ox.parse_query_results(as_xml.body, format=ox.QueryResultsFormat.XML)
    assert isinstance(parsed, ox.QuerySolutions)
    assert [solution["v"].value for solution in parsed] == ["0", "1"]
    as_csv = graph_store.query(query, timeout_s=10, result_cap=10, results_media_type=SPARQL_RESULTS_CSV)
    assert as_csv.body.decode().splitlines() == ["s,v", f"{EX}s0,0", f"{EX}s1,1"]
    as_tsv = graph_store.query(query, timeout_s=10, result_cap=10, results_media_type=SPARQL_RESULTS_TSV)
    assert as_tsv.body.decode().splitlines()[0] == "?s\t?v"
    assert (as_csv.form, as_csv.count, as_csv.truncated) == ("select", 2, False)


def test_ask_and_construct_answers(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(3))
    assert graph_store.query(f"ASK {{ GRAPH <{G1}> {{ ?s ?p 2 }} }}", timeout_s=10, result_cap=1).boolean()
    construct = f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
    for media_type, rdf_format in (
        (TURTLE, ox.RdfFormat.TURTLE),
        (N_TRIPLES, ox.RdfFormat.N_TRIPLES),
        (RDF_XML, ox.RdfFormat.RDF_XML),
        (JSON_LD, ox.RdfFormat.JSON_LD),
    ):
        outcome = graph_store.query(construct, timeout_s=10, result_cap=100, graph_media_type=media_type)
        assert outcome.form == "construct" and outcome.media_type == media_type
        assert len(list(ox.parse(outcome.body, format=rdf_format))) == 3
    describe = graph_store.query(f"DESCRIBE <{EX}s1>", timeout_s=10, result_cap=100, union_default_graph=True)
    assert describe.form == "describe"


def test_select_star_columns_follow_the_query(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(1))
    outcome = graph_store.query(
        f"SELECT * WHERE {{ GRAPH <{G1}> {{ ?subject ?predicate ?an_object }} }}",
        timeout_s=10,
        result_cap=10,
        results_media_type=SPARQL_RESULTS_CSV,
    )
    assert outcome.body.decode().splitlines()[0] == "subject,predicate,an_object"


def test_the_result_cap_is_signalled_never_silent(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(12))
    query = f"SELECT ?s WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
    cut = graph_store.query(query, timeout_s=10, result_cap=5)
    assert (cut.truncated, cut.count, len(cut.rows())) == (True, 5, 5)
    exact = graph_store.query(query, timeout_s=10, result_cap=12)
    assert (exact.truncated, exact.count) == (False, 12)
    tsv = graph_store.query(query, timeout_s=10, result_cap=4, results_media_type=SPARQL_RESULTS_TSV)
    assert tsv.truncated and len(tsv.body.decode().splitlines()) == 1 + 4
    construct = f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
    graph = graph_store.query(construct, timeout_s=10, result_cap=7)
    assert (graph.truncated, graph.count) == (True, 7)


def test_protocol_dataset_replaces_the_query_dataset(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2, prefix="one"))
    graph_store.replace_graph(G2, triples(3, prefix="two"))
    in_default = select(graph_store, "SELECT ?s WHERE { ?s ?p ?o }", default_graph_uris=[G1])
    assert len(in_default) == 2
    named = select(graph_store, "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", named_graph_uris=[G2])
    assert named == [{"g": G2}]
    # With only named graphs given, the default graph is empty (SPARQL 1.1 Protocol §2.1.4).
    assert select(graph_store, "SELECT ?s WHERE { ?s ?p ?o }", named_graph_uris=[G2]) == []
    union = select(graph_store, "SELECT ?s WHERE { ?s ?p ?o }", union_default_graph=True)
    assert len(union) == 5


def test_a_malformed_query_is_a_syntax_error_with_the_parsers_message(graph_store: GraphStore) -> None:
    with pytest.raises(SparqlSyntaxError) as raised:
        graph_store.query("SELECT * WHERE { ?s ?p }", timeout_s=10, result_cap=10)
    assert "1:" in raised.value.detail  # the position from the parser
    with pytest.raises(SparqlSyntaxError):
        graph_store.update("INSERT DATA { <a> }", timeout_s=10)


def test_an_invalid_graph_iri_is_refused_before_reaching_the_engine(graph_store: GraphStore) -> None:
    with pytest.raises(SparqlRequestError):
        graph_store.replace_graph("not an iri> } DROP ALL {", triples(1))
    with pytest.raises(SparqlRequestError):
        graph_store.query("ASK {}", timeout_s=5, result_cap=1, default_graph_uris=["relative"])


def test_a_heavy_query_is_stopped_at_its_timeout_and_the_store_keeps_answering(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(3000))
    with pytest.raises(QueryTimeoutError):
        graph_store.query(HEAVY, timeout_s=1, result_cap=10)
    assert select(graph_store, f"SELECT ?v WHERE {{ GRAPH <{G1}> {{ <{EX}s7> ?p ?v }} }}") == [{"v": "7"}]


def test_updates_apply_atomically_and_are_seen_by_the_next_query(graph_store: GraphStore) -> None:
    graph_store.update(f"INSERT DATA {{ GRAPH <{G1}> {{ <{EX}a> <{EX}b> 'c' }} }}", timeout_s=10)
    assert select(graph_store, f"SELECT ?o WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}") == [{"o": "c"}]
    # The second operation fails, so the first is rolled back too (the Oxigraph server calls it a 500: 503 here).
    with pytest.raises(GraphStoreError):
        graph_store.update(
            f"INSERT DATA {{ GRAPH <{G1}> {{ <{EX}x> <{EX}y> 'z' }} }} ; CREATE GRAPH <{G1}>", timeout_s=10
        )
    assert graph_store.count() == 1


def test_update_dataset_parameters_become_using_clauses(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2))
    graph_store.update(
        f"INSERT {{ GRAPH <{G2}> {{ ?s ?p ?o }} }} WHERE {{ ?s ?p ?o }}", timeout_s=10, using_graph_uris=[G1]
    )
    assert len(select(graph_store, f"SELECT * WHERE {{ GRAPH <{G2}> {{ ?s ?p ?o }} }}")) == 2
    with pytest.raises(SparqlRequestError):
        graph_store.update(
            f"INSERT {{ ?s ?p ?o }} USING <{G1}> WHERE {{ ?s ?p ?o }}", timeout_s=10, using_graph_uris=[G1]
        )


def test_service_off_the_allow_list_is_refused_without_any_request(
    graph_store: GraphStore, connection_recorder: ConnectionRecorder
) -> None:
    with pytest.raises(ServiceNotAllowedError):
        graph_store.query(
            f"SELECT * WHERE {{ SERVICE <{connection_recorder.url}> {{ ?s ?p ?o }} }}", timeout_s=5, result_cap=10
        )
    with pytest.raises(ServiceNotAllowedError):
        graph_store.update(f"LOAD <{connection_recorder.url}>", timeout_s=5)
    # SILENT: the service counts as failed (one empty solution), still without contacting it.
    rows = select(graph_store, f"SELECT * WHERE {{ SERVICE SILENT <{connection_recorder.url}> {{ ?s ?p ?o }} }}")
    assert rows == [{}]
    assert connection_recorder.connections == 0


def test_service_on_the_allow_list_is_federated(tmp_path: Path, oxigraph_server: OxigraphServer) -> None:
    oxigraph_server.clear()
    remote = ox.serialize(triples(2, prefix="remote"), format=ox.RdfFormat.N_TRIPLES)
    httpx.post(oxigraph_server.store_url, params={"default": ""}, content=remote, headers={"content-type": N_TRIPLES})
    store = EmbeddedOxigraphStore(tmp_path / "graph", service_allowlist=[oxigraph_server.query_url])
    try:
        rows = select(store, f"SELECT ?s WHERE {{ SERVICE <{oxigraph_server.query_url}> {{ ?s ?p ?o }} }}")
        assert sorted(row["s"] for row in rows) == [f"{EX}remote0", f"{EX}remote1"]
    finally:
        store.close()


def test_graphs_load_and_export_in_rdf_formats(graph_store: GraphStore) -> None:
    turtle = b"@prefix ex: <http://example.org/> . ex:a ex:b ex:c , ex:d ."
    graph_store.load_graph(G1, turtle, TURTLE, replace=True)
    graph_store.load_graph(G1, b'<http://example.org/a> <http://example.org/b> "e" .', N_TRIPLES, replace=False)
    exported = graph_store.export_graph(G1, N_TRIPLES)
    assert len(list(ox.parse(exported, format=ox.RdfFormat.N_TRIPLES))) == 3
    graph_store.load_graph(None, b"<x> <http://example.org/b> <y> .", TURTLE, replace=True, base_iri=EX)
    assert b"<http://example.org/x>" in graph_store.export_graph(None, N_TRIPLES)
    with pytest.raises(GraphNotFoundError):
        graph_store.export_graph(G2, TURTLE)
    with pytest.raises(RdfSyntaxError):
        graph_store.load_graph(G2, b"this is not turtle", TURTLE, replace=True)
    assert not graph_store.graph_exists(G2)


# --- embedded-only behaviour ------------------------------------------------------------------------------
def test_a_heavy_update_is_stopped_and_nothing_of_it_is_applied(tmp_path: Path) -> None:
    store = EmbeddedOxigraphStore(tmp_path / "graph")
    try:
        store.replace_graph(G1, triples(3000))
        with pytest.raises(QueryTimeoutError):
            store.update(
                f"INSERT {{ GRAPH <{G2}> {{ ?a ?b ?f }} }} WHERE {{ GRAPH ?g {{ ?a ?b ?c . ?d ?e ?f . ?h ?i ?j }} }}",
                timeout_s=1,
            )
        assert store.graph_names() == [G1]
        assert store.count() == 3000
        store.replace_graph(G2, triples(1))  # the writer was replaced and keeps working
        assert store.count() == 3001
    finally:
        store.close()


def test_the_embedded_store_persists_and_releases_its_directory_on_close(tmp_path: Path) -> None:
    store = EmbeddedOxigraphStore(tmp_path / "graph")
    store.replace_graph(G1, triples(4))
    assert store.count() == 4
    store.close()
    other = EmbeddedOxigraphStore(tmp_path / "graph")  # the lock is free: the writer process is gone
    try:
        assert other.count() == 4
        other.replace_graph(G2, triples(1))
        assert other.graph_names() == [G1, G2]
    finally:
        other.close()
    assert store.count() == 5  # a closed store starts its workers again when used


def test_a_closed_remote_store_reconnects(graph_store: GraphStore) -> None:
    graph_store.replace_graph(G1, triples(2))
    graph_store.close()
    assert graph_store.count() == 2


def test_a_second_store_on_the_same_directory_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    first = EmbeddedOxigraphStore(tmp_path / "graph")
    second = EmbeddedOxigraphStore(tmp_path / "graph")
    try:
        first.replace_graph(G1, triples(1))
        with pytest.raises(GraphStoreUnavailableError):
            second.replace_graph(G2, triples(1))
    finally:
        second.close()
        first.close()


def test_old_checkpoints_are_removed_once_no_reader_uses_them(tmp_path: Path) -> None:
    store = EmbeddedOxigraphStore(tmp_path / "graph", readers=1)
    try:
        for round_number in range(5):
            store.replace_graph(G1, triples(round_number + 1))
            assert store.count() == round_number + 1
        (checkpoints,) = (tmp_path / "graph" / "snapshots").iterdir()  # this store's own directory
        assert len(list(checkpoints.iterdir())) <= 2
    finally:
        store.close()
    assert not list((tmp_path / "graph" / "snapshots").iterdir())


def test_large_answers_arrive_whole_under_uvloop(tmp_path: Path) -> None:
    # uvloop leaves a watched pipe non-blocking; an answer bigger than the pipe buffer comes in several writes.
    store = EmbeddedOxigraphStore(tmp_path / "graph", readers=1)
    try:
        store.replace_graph(G1, triples(5000))
        query = f"SELECT ?s ?v WHERE {{ GRAPH <{G1}> {{ ?s ?p ?v }} }}"

        async def twice() -> list[int | None]:
            counts = []
            for _ in range(2):
                outcome = await store.query_async(query, timeout_s=30, result_cap=100_000)
                counts.append(outcome.count)
            return counts

        assert uvloop.run(twice()) == [5000, 5000]
        assert store.query(query, timeout_s=30, result_cap=100_000).count == 5000
    finally:
        store.close()


def _row_count(body: bytes, results_format: ox.QueryResultsFormat) -> int:
    """Rows in serialised SELECT results, as a SPARQL client parses them."""
    solutions = ox.parse_query_results(body, format=results_format)
    assert isinstance(solutions, ox.QuerySolutions)
    return len(list(solutions))


def test_row_counts_and_the_cap_hold_whatever_the_literals_contain(tmp_path: Path) -> None:
    # The embedded store serialises JSON and XML results directly and counts rows on that output: literals
    # that look like row boundaries or empty rows must change neither the count nor where the cap cuts.
    store = EmbeddedOxigraphStore(tmp_path / "graph", readers=1)
    try:
        tricky = ['},{"s":{"type":"', '},{",', '},{"}', "{}", "},{}", "<result>", "plain"]
        value = ox.NamedNode(EX + "value")
        store.replace_graph(
            G1, [ox.Triple(ox.NamedNode(f"{EX}s{i}"), value, ox.Literal(text)) for i, text in enumerate(tricky)]
        )
        query = f"SELECT ?s ?o WHERE {{ GRAPH <{G1}> {{ ?s ?p ?o }} }}"
        empty_rows = "SELECT ?x WHERE { VALUES ?x { UNDEF UNDEF UNDEF } }"
        formats = {SPARQL_RESULTS_JSON: ox.QueryResultsFormat.JSON, SPARQL_RESULTS_XML: ox.QueryResultsFormat.XML}
        for media_type, results_format in formats.items():
            for sparql, rows in ((query, len(tricky)), (empty_rows, 3)):
                whole = store.query(sparql, timeout_s=10, result_cap=rows, results_media_type=media_type)
                assert (whole.count, whole.truncated) == (rows, False)
                assert _row_count(whole.body, results_format) == rows
                cut = store.query(sparql, timeout_s=10, result_cap=rows - 1, results_media_type=media_type)
                assert (cut.count, cut.truncated) == (rows - 1, True)
                assert _row_count(cut.body, results_format) == rows - 1
    finally:
        store.close()


@pytest.mark.parametrize("texts", [["plain"], ['},{"s":{"type":"', '},{",', '},{"}', "x"], ["{}", "},{}", "a"], []])
def test_json_rows_are_counted_exactly_on_oxigraphs_output(texts: list[str]) -> None:
    memory = ox.Store()
    value = ox.NamedNode(EX + "value")
    memory.extend([ox.Quad(ox.NamedNode(f"{EX}s{i}"), value, ox.Literal(text)) for i, text in enumerate(texts)])
    for query in ("SELECT ?s ?o WHERE { ?s ?p ?o }", "SELECT ?o WHERE { ?s ?p ?o }", "SELECT ?x WHERE { ?s ?p ?o }"):
        solutions = memory.query(query)
        assert isinstance(solutions, ox.QuerySolutions)
        body = solutions.serialize(format=ox.QueryResultsFormat.JSON)
        assert body is not None
        assert _json_rows(body) == len(texts)
