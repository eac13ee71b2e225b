"""Saved competency queries over the knowledge graph: list them, run one with its parameters as query string.

Any key with `certificates:read` may run them. Parameters are validated by kind and bound as RDF terms (never
pasted into the query text), so `?model=" } DROP ALL` is just a model name that matches nothing. The store's
timeout and result cap apply; `truncated` says when the cap cut the answer.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from adapters.queries import ADAPTER_QUERIES
from api.deps import ReaderDep
from api.errors import ProblemError, problem_responses
from graph.queries import (
    SAVED_QUERIES,
    QueryAnswer,
    SavedQuery,
    SavedQueryInfo,
    bind_parameters,
    get_saved_query_or_raise,
    render_query,
    saved_query_infos,
    sparql_json_term,
)
from graph.store import GraphStoreError

router = APIRouter(prefix="/api/v1/queries", tags=["queries"])

# The hub's catalogue: the knowledge graph's competency queries and the adapters' cross-source ones. Composed
# here, where both packages meet, so neither module's own table is changed at import or start-up.
CATALOGUE: dict[str, SavedQuery] = {**SAVED_QUERIES, **ADAPTER_QUERIES}

QueryName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$", description="Query name")]


@router.get(
    "",
    summary="The saved competency queries with their parameters",
    response_model=list[SavedQueryInfo],
    responses=problem_responses(401, 403),
)
def list_saved_queries(_reader: ReaderDep) -> list[SavedQueryInfo]:
    """Name, purpose, parameters (kind, required, default) and the columns of the answer."""
    return saved_query_infos(catalogue=CATALOGUE)


@router.get(
    "/{name}",
    summary="Run a saved query; parameters as query-string values (see the listing)",
    response_model=QueryAnswer,
    responses=problem_responses(400, 401, 403, 404, 422, 503),
)
async def run_saved_query(name: QueryName, request: Request, _reader: ReaderDep) -> QueryAnswer:
    """Rows as plain JSON: IRIs and strings as text, numbers as numbers, dates as ISO text, booleans."""
    query = get_saved_query_or_raise(name, catalogue=CATALOGUE)
    given = dict(request.query_params)
    bound = bind_parameters(query, given)
    sparql = render_query(query, bound)
    store = getattr(request.app.state, "graph_store", None)
    if store is None:
        raise ProblemError(503, "graph-unavailable", "The knowledge graph is not available.")
    settings = request.app.state.settings
    try:
        outcome = await run_in_threadpool(
            store.query,
            sparql,
            timeout_s=settings.sparql_timeout_s,
            result_cap=settings.sparql_result_cap,
            union_default_graph=True,
        )
    except GraphStoreError as error:
        raise ProblemError(error.http_status, error.code, error.detail) from error
    rows: list[dict[str, Any]] = [
        {variable: sparql_json_term(binding.get(variable)) for variable in query.variables}
        for binding in outcome.json()["results"]["bindings"]
    ]
    return QueryAnswer(
        name=query.name,
        parameters={key: None if value is None else value.value for key, value in bound.items()},
        variables=query.variables,
        rows=rows,
        truncated=outcome.truncated,
    )
