"""SPARQL text analysis: query forms, and the SERVICE/LOAD guard that runs before any engine sees a query."""

import pytest

from graph.sparql import analyse, apply_update_dataset, guard_outbound, query_form, select_star_order
from graph.store import ServiceNotAllowedError, SparqlRequestError, SparqlSyntaxError

ALLOWED = "https://allowed.example/sparql"


@pytest.mark.parametrize(
    ("query", "form"),
    [
        ("SELECT * WHERE { ?s ?p ?o }", "select"),
        ("# SELECT in a comment\nPREFIX ex: <http://ex/> ask { ex:a ?p 'SELECT' }", "ask"),
        ("BASE <http://ex/> CONSTRUCT { ?s ?p ?o } WHERE { { SELECT * { ?s ?p ?o } } }", "construct"),
        ("DESCRIBE <http://ex/a>", "describe"),
    ],
)
def test_the_query_form_is_found_past_the_prologue_and_comments(query: str, form: str) -> None:
    assert query_form(query) == form


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * WHERE { SERVICE <http://169.254.169.254/latest> { ?s ?p ?o } }",
        "select * { service<http://evil.example/>{} }",
        "SELECT * { ?s ?p ?o OPTIONAL { SeRvIcE # a comment\n <http://evil.example/> { ?s ?q ?r } } }",
        "PREFIX e: <http://evil.example/> SELECT * { SERVICE e:sparql { } }",
        "SELECT * { SERVICE ?endpoint { ?s ?p ?o } }",
        "SELECT * { FILTER EXISTS { SERVICE <http://evil.example/> { } } }",
        "SELECT * { SERVIC\\u0045 <http://evil.example/> { } }",
        "BASE <http://evil.example/> SELECT * { SERVICE <sparql> { } }",
    ],
)
def test_service_to_anything_off_the_allow_list_is_refused(query: str) -> None:
    with pytest.raises(ServiceNotAllowedError):
        guard_outbound(query, [ALLOWED])


@pytest.mark.parametrize(
    "query",
    [
        'SELECT * { ?s ?p "SERVICE <http://evil.example/> { }" }',
        "SELECT * { ?s ?p ?o } # SERVICE <http://evil.example/> { }",
        "SELECT * { ?s <http://ex/SERVICE> ?o }",
        "PREFIX service: <http://ex/> SELECT * { ?s service:load ?o }",
        f"SELECT * {{ SERVICE <{ALLOWED}> {{ ?s ?p ?o }} }}",
        "SELECT * { ?s ?p 'it''s a \\'SERVICE\\' word' }",
        'SELECT * { ?s ?p """multi\nline SERVICE <http://evil.example/> {}""" }',
    ],
)
def test_the_word_service_in_literals_comments_and_iris_is_not_a_service(query: str) -> None:
    text, _ = guard_outbound(query, [ALLOWED])
    assert text == query


def test_a_silent_service_off_the_list_becomes_an_empty_group() -> None:
    query = "SELECT * { ?s ?p ?o OPTIONAL { SERVICE SILENT <http://evil.example/> { ?s ?q '}' } } }"
    text, analysis = guard_outbound(query, [ALLOWED])
    assert text == "SELECT * { ?s ?p ?o OPTIONAL { {} } }"
    assert analysis.targets == ()


def test_load_is_guarded_like_service() -> None:
    with pytest.raises(ServiceNotAllowedError):
        guard_outbound("LOAD <http://internal.example/admin> INTO GRAPH <http://ex/g>", [ALLOWED])
    assert guard_outbound(f"LOAD SILENT <{ALLOWED}>", [ALLOWED])[0] == f"LOAD SILENT <{ALLOWED}>"


def test_an_unterminated_string_is_a_syntax_error_not_a_guess() -> None:
    with pytest.raises(SparqlSyntaxError):
        analyse("SELECT * { ?s ?p 'SERVICE <http://evil.example/> {} }")


def test_update_dataset_parameters_become_using_clauses_of_each_modify() -> None:
    update = "INSERT { ?s ?p ?o } WHERE { ?s ?p ?o } ; DELETE WHERE { ?s ?p ?o } ; DELETE { ?s ?p ?o } WHERE { }"
    rewritten = apply_update_dataset(update, ["http://ex/g1"], ["http://ex/g2"])
    assert rewritten.count("USING <http://ex/g1> USING NAMED <http://ex/g2> WHERE") == 2
    assert "DELETE WHERE { ?s ?p ?o }" in rewritten
    with pytest.raises(SparqlRequestError):
        apply_update_dataset("WITH <http://ex/g> DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }", ["http://ex/g1"], [])


def test_select_star_columns_keep_the_order_of_the_query() -> None:
    assert select_star_order("SELECT * { ?zeta ?alpha $mid . ?alpha ?p ?zeta }") == ["zeta", "alpha", "mid", "p"]
    assert select_star_order("SELECT ?a ?b { ?b ?p ?a }") is None
