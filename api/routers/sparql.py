"""SPARQL 1.1 Protocol endpoint at `/sparql`, its Service Description, and the VoID/DCAT description.

* Queries: GET `?query=`, POST form (`application/x-www-form-urlencoded`) or direct (`application/sparql-query`),
  with `default-graph-uri` / `named-graph-uri`, an optional `timeout` (seconds, capped at the hub's maximum)
  and the Oxigraph-compatible extension `union-default-graph`. Anyone may query; CORS allows reads.
* Results: SELECT/ASK as SPARQL JSON, XML, CSV or TSV; CONSTRUCT/DESCRIBE as Turtle, N-Triples, RDF/XML or
  JSON-LD, chosen from `Accept` with q-values (406 when nothing fits).
* Limits: a query past its timeout is stopped and answered 503 (problem+json), never a partial 200. At most
  `sparql_result_cap` rows/triples are returned; a cut answer carries `QIHUB-Results-Truncated: true` and, in
  JSON/XML results, the link `<endpoint>#results-truncated` in the head.
* Updates: POST form (`update=`) or direct (`application/sparql-update`), `using-graph-uri` /
  `using-named-graph-uri`; only with an API key holding `graph:update`; 204 when applied.
* `/sparql` without a query answers the Service Description (Turtle unless asked otherwise), which links to
  the VoID/DCAT description at `/.well-known/void`.
"""

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import pyoxigraph
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from api.body import negotiate, read_body_limited
from api.cors import cors_headers, preflight
from api.deps import require_scopes
from api.errors import ProblemError, problem_response, problem_responses
from graph.description import PREFIXES, EndpointFacts, service_description, void_description
from graph.sparql import analyse
from graph.store import (
    GRAPH_FORMATS,
    JSON_LD,
    N_TRIPLES,
    RDF_XML,
    SPARQL_RESULTS_CSV,
    SPARQL_RESULTS_JSON,
    SPARQL_RESULTS_TSV,
    SPARQL_RESULTS_XML,
    TURTLE,
    GraphStore,
    GraphStoreError,
    QueryForm,
)
from organizations.models import Scope
from storage.database import session_scope

router = APIRouter(prefix="", tags=["sparql"])
log = structlog.get_logger("qihub.api")

FORM = "application/x-www-form-urlencoded"
SPARQL_QUERY = "application/sparql-query"
SPARQL_UPDATE = "application/sparql-update"

# Offers in preference order (first wins for */* or no Accept); aliases map common generic types.
RESULT_OFFERS = [
    SPARQL_RESULTS_JSON,
    SPARQL_RESULTS_XML,
    SPARQL_RESULTS_CSV,
    SPARQL_RESULTS_TSV,
    "application/json",
    "application/xml",
    "text/xml",
]
GRAPH_OFFERS = [
    TURTLE,
    N_TRIPLES,
    RDF_XML,
    JSON_LD,
    "application/x-turtle",
    "text/plain",
    "application/json",
    "application/xml",
]
ALIASES = {
    "application/json": None,  # resolved per form: SPARQL JSON results or JSON-LD
    "application/xml": None,
    "text/xml": SPARQL_RESULTS_XML,
    "application/x-turtle": TURTLE,
    "text/plain": N_TRIPLES,
}
_ALIAS_BY_KIND = {
    ("results", "application/json"): SPARQL_RESULTS_JSON,
    ("results", "application/xml"): SPARQL_RESULTS_XML,
    ("graph", "application/json"): JSON_LD,
    ("graph", "application/xml"): RDF_XML,
}

# Fast form detection for the common query shape (prologue then the form keyword); the lexer handles the rest.
_FORM_AFTER_PROLOGUE = re.compile(
    r"(?is)\A(?:\s|#[^\n]*(?:\n|\Z)|BASE\s*<[^<>\s]*>|PREFIX\s+[^\s:<>]*:\s*<[^<>\s]*>)*(SELECT|ASK|CONSTRUCT|DESCRIBE)\b"
)

_QUERY_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "query",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "SPARQL query; without it the Service Description is returned.",
    },
    {
        "name": "default-graph-uri",
        "in": "query",
        "required": False,
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
        "description": "Graphs merged into the default graph (replaces FROM).",
    },
    {
        "name": "named-graph-uri",
        "in": "query",
        "required": False,
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
        "description": "Graphs available as named graphs (replaces FROM NAMED).",
    },
    {
        "name": "timeout",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0},
        "description": "Timeout in seconds, capped at the hub's maximum.",
    },
    {
        "name": "union-default-graph",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Extension: the default graph is the union of all graphs.",
    },
]
_RESULT_CONTENT = {media_type: {"schema": {"type": "string"}} for media_type in (*RESULT_OFFERS[:4], *GRAPH_OFFERS[:4])}


@dataclass
class _Request:
    """The SPARQL operation a protocol request carries."""

    query: str | None = None
    update: str | None = None
    default_graph_uris: list[str] = field(default_factory=list)
    named_graph_uris: list[str] = field(default_factory=list)
    using_graph_uris: list[str] = field(default_factory=list)
    using_named_graph_uris: list[str] = field(default_factory=list)
    timeout: str | None = None
    union_default_graph: bool = False


def _collect(pairs: list[tuple[str, str]]) -> _Request:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    for single in ("query", "update", "timeout"):
        if len(values.get(single, [])) > 1:
            raise ProblemError(400, "sparql-bad-request", f"Send exactly one '{single}' parameter.")
    if "query" in values and "update" in values:
        raise ProblemError(400, "sparql-bad-request", "A request carries either a query or an update, not both.")
    return _Request(
        query=values.get("query", [None])[0],
        update=values.get("update", [None])[0],
        default_graph_uris=values.get("default-graph-uri", []),
        named_graph_uris=values.get("named-graph-uri", []),
        using_graph_uris=values.get("using-graph-uri", []),
        using_named_graph_uris=values.get("using-named-graph-uri", []),
        timeout=values.get("timeout", [None])[0],
        union_default_graph=values.get("union-default-graph", ["false"])[0].lower() in ("", "true", "1", "yes"),
    )


def _decode(body: bytes, content_type: str) -> str:
    charset = next(
        (
            part.split("=", 1)[1].strip().strip('"').lower()
            for part in content_type.split(";")[1:]
            if "=" in part and part.split("=", 1)[0].strip().lower() == "charset"
        ),
        "utf-8",
    )
    if charset not in ("utf-8", "utf8"):
        raise ProblemError(415, "unsupported-charset", f"SPARQL requests are UTF-8; {charset} is not accepted.")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProblemError(400, "invalid-encoding", f"The request body is not valid UTF-8: {error}.") from None


def _url_pairs(request: Request) -> list[tuple[str, str]]:
    """The URL's query parameters (read from the scope: a POST's URL usually has none, and then costs nothing)."""
    query_string: bytes = request.scope.get("query_string", b"")
    if not query_string:
        return []
    return list(request.query_params.multi_items())


async def _read_post(request: Request) -> _Request:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    url_pairs = _url_pairs(request)
    if media_type not in (FORM, SPARQL_QUERY, SPARQL_UPDATE):
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"POST a SPARQL request as {FORM}, {SPARQL_QUERY} or {SPARQL_UPDATE}; not as {media_type or 'unlabelled'}.",
        )
    max_bytes = request.app.state.settings.max_document_bytes
    body = _decode(await read_body_limited(request, max_bytes=max_bytes), content_type)
    if media_type == FORM:
        try:
            pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict")
        except UnicodeDecodeError as error:
            raise ProblemError(400, "invalid-encoding", f"A form field is not valid UTF-8: {error}.") from None
        return _collect(url_pairs + pairs)
    operation = _collect(url_pairs)
    if operation.query is not None or operation.update is not None:
        raise ProblemError(400, "sparql-bad-request", "A direct POST carries the operation in its body only.")
    if media_type == SPARQL_QUERY:
        operation.query = body
    else:
        operation.update = body
    return operation


def _facts(request: Request) -> EndpointFacts:
    facts: EndpointFacts | None = getattr(request.app.state, "sparql_facts", None)
    if facts is not None:
        return facts
    settings = request.app.state.settings
    facts = EndpointFacts(
        base_url=settings.public_base_url,
        default_timeout_s=settings.sparql_timeout_s,
        max_timeout_s=settings.sparql_max_timeout_s,
        result_cap=settings.sparql_result_cap,
        service_allowlist=settings.sparql_service_allowlist,
    )
    request.app.state.sparql_facts = facts  # settings do not change while the app runs
    return facts


def _timeout(request: Request, given: str | None) -> float:
    settings = request.app.state.settings
    if given is None or given == "":
        return float(min(settings.sparql_timeout_s, settings.sparql_max_timeout_s))
    try:
        value = float(given)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ProblemError(400, "invalid-timeout", f"'timeout' must be a positive number of seconds, not {given!r}.")
    return float(min(value, settings.sparql_max_timeout_s))


def _form_of(query: str) -> QueryForm | None:
    match = _FORM_AFTER_PROLOGUE.match(query)
    if match:
        form: QueryForm = match.group(1).lower()  # type: ignore[assignment]
        return form
    return analyse(query).form


@lru_cache(maxsize=256)
def _choose(accept: str | None, kind: str) -> str:
    offers = RESULT_OFFERS if kind == "results" else GRAPH_OFFERS
    chosen = negotiate(accept, offers)
    if chosen is None:
        raise ProblemError(
            406,
            "not-acceptable",
            f"None of the accepted types ({accept}) is offered; this answer can be {', '.join(offers[:4])}.",
        )
    return _ALIAS_BY_KIND.get((kind, chosen)) or ALIASES.get(chosen) or chosen


def mark_truncated(body: bytes, media_type: str, link: str) -> bytes:
    """Add the truncation link to the head of SPARQL JSON or XML results (other formats: header only)."""
    if media_type == SPARQL_RESULTS_JSON and body.startswith(b'{"head":{"vars":['):
        end = body.index(b"]") + 1
        return body[:end] + b',"link":["' + link.encode() + b'"]' + body[end:]
    if media_type == SPARQL_RESULTS_XML:
        marker = f'<link href="{link}"/>'.encode()
        if b"</head>" in body:
            return body.replace(b"</head>", marker + b"</head>", 1)
        if b"<head/>" in body:
            return body.replace(b"<head/>", b"<head>" + marker + b"</head>", 1)
    return body


def _store(request: Request) -> GraphStore:
    store: GraphStore | None = getattr(request.app.state, "graph_store", None)
    if store is None:
        raise ProblemError(503, "graph-unavailable", "The knowledge graph is not available.")
    return store


def _problem_with_cors(request: Request, error: Exception, *, cors: bool) -> Response:
    if isinstance(error, ProblemError):
        response = problem_response(
            request, status=error.status, code=error.code, detail=error.detail, extensions=error.extra
        )
    else:
        assert isinstance(error, GraphStoreError)
        response = problem_response(
            request,
            status=error.http_status,
            code=error.code,
            title=error.title,
            detail=error.detail,
            extensions=error.extra or None,
        )
    if cors:
        response.headers.update(cors_headers(request))
        response.headers["Vary"] = "Origin"
    return response


async def _run_query(request: Request, operation: _Request) -> Response:
    assert operation.query is not None
    query = operation.query
    form = _form_of(query)
    accept = request.headers.get("accept")
    graph_answer = form in ("construct", "describe")
    results_type = SPARQL_RESULTS_JSON if graph_answer else _choose(accept, "results")
    graph_type = _choose(accept, "graph") if graph_answer else TURTLE
    facts = _facts(request)
    outcome = await _store(request).query_async(
        query,
        default_graph_uris=operation.default_graph_uris,
        named_graph_uris=operation.named_graph_uris,
        timeout_s=_timeout(request, operation.timeout),
        result_cap=request.app.state.settings.sparql_result_cap,
        results_media_type=results_type,
        graph_media_type=graph_type,
        union_default_graph=operation.union_default_graph,
        base_iri=facts.endpoint,
    )
    headers = {**cors_headers(request), "Vary": "Accept, Origin"}
    body = outcome.body
    if outcome.count is not None:
        headers["QIHUB-Result-Count"] = str(outcome.count)
    if outcome.truncated:
        headers["QIHUB-Results-Truncated"] = "true"
        body = mark_truncated(body, outcome.media_type, facts.truncation_marker)
    return Response(content=body, media_type=outcome.media_type, headers=headers)


async def _run_update(request: Request, operation: _Request) -> Response:
    assert operation.update is not None
    await run_in_threadpool(_authorize_update, request)
    facts = _facts(request)
    await run_in_threadpool(
        _store(request).update,
        operation.update,
        timeout_s=_timeout(request, operation.timeout),
        using_graph_uris=operation.using_graph_uris,
        using_named_graph_uris=operation.using_named_graph_uris,
        base_iri=facts.endpoint,
    )
    return Response(status_code=204)


def _authorize_update(request: Request) -> None:
    """Only keys with `graph:update` may change the graph (401 without a key, 403 without the scope)."""
    check = require_scopes(Scope.graph_update)
    with session_scope(request.app.state.engine) as session:
        check(request, session)


def rdf_response(request: Request, triples: list[pyoxigraph.Triple]) -> Response:
    """Serialise a small description graph in the negotiated RDF format (Turtle by default)."""
    media_type = _choose(request.headers.get("accept"), "graph")
    body = pyoxigraph.serialize(triples, format=GRAPH_FORMATS[media_type], prefixes=PREFIXES) or b""
    return Response(content=body, media_type=media_type, headers={**cors_headers(request), "Vary": "Accept, Origin"})


@router.get(
    "/sparql",
    summary="SPARQL 1.1 query (GET); without a query: the Service Description",
    response_class=Response,
    responses={
        200: {"description": "Query results or the Service Description", "content": _RESULT_CONTENT},
        **problem_responses(400, 403, 406, 503),
    },
    openapi_extra={"parameters": _QUERY_PARAMETERS},
)
async def sparql_get(request: Request) -> Response:
    """Run a query given as `?query=`; without one, describe the service."""
    try:
        operation = _collect(list(request.query_params.multi_items()))
        if operation.update is not None:
            raise ProblemError(400, "sparql-bad-request", "Updates are accepted only by POST.")
        if operation.query is None:
            return rdf_response(request, service_description(_facts(request)))
        return await _run_query(request, operation)
    except (ProblemError, GraphStoreError) as error:
        return _problem_with_cors(request, error, cors=True)


@router.post(
    "/sparql",
    summary="SPARQL 1.1 query or update (POST form or direct body)",
    response_class=Response,
    responses={
        200: {"description": "Query results", "content": _RESULT_CONTENT},
        204: {"description": "The update was applied"},
        **problem_responses(400, 401, 403, 406, 413, 415, 503),
    },
    openapi_extra={
        "parameters": [
            *_QUERY_PARAMETERS[1:4],
            {
                "name": "using-graph-uri",
                "in": "query",
                "required": False,
                "schema": {"type": "array", "items": {"type": "string"}},
                "style": "form",
                "explode": True,
            },
            {
                "name": "using-named-graph-uri",
                "in": "query",
                "required": False,
                "schema": {"type": "array", "items": {"type": "string"}},
                "style": "form",
                "explode": True,
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string"},
                            "update": {"type": "string"},
                            "default-graph-uri": {"type": "array", "items": {"type": "string"}},
                            "named-graph-uri": {"type": "array", "items": {"type": "string"}},
                            "using-graph-uri": {"type": "array", "items": {"type": "string"}},
                            "using-named-graph-uri": {"type": "array", "items": {"type": "string"}},
                            "timeout": {"type": "number"},
                        },
                    }
                },
                SPARQL_QUERY: {"schema": {"type": "string"}},
                SPARQL_UPDATE: {"schema": {"type": "string"}},
            },
        },
    },
)
async def sparql_post(request: Request) -> Response:
    """Run a query (anyone) or an update (`graph:update` scope) sent by POST."""
    is_update = False
    try:
        operation = await _read_post(request)
        if operation.update is not None:
            is_update = True
            return await _run_update(request, operation)
        if operation.query is None:
            raise ProblemError(400, "sparql-bad-request", "The POST carries neither a query nor an update.")
        return await _run_query(request, operation)
    except (ProblemError, GraphStoreError) as error:
        return _problem_with_cors(request, error, cors=not is_update)


@router.options("/sparql", include_in_schema=False)
async def sparql_preflight(request: Request) -> Response:
    """CORS preflight: queries by GET and POST from allowed origins."""
    return preflight(request, methods="GET, POST")


@router.get(
    "/.well-known/void",
    summary="VoID/DCAT description of the knowledge graph",
    response_class=Response,
    responses={
        200: {
            "description": "VoID + DCAT (Turtle unless asked otherwise)",
            "content": {t: {"schema": {"type": "string"}} for t in GRAPH_OFFERS[:4]},
        },
        **problem_responses(406),
    },
)
async def void(request: Request) -> Response:
    """The dataset behind `/sparql`: size, vocabularies, URI space, endpoint (VoID §6.2 well-known URI)."""
    try:
        facts = _facts(request)
        try:
            stats = await run_in_threadpool(_store(request).stats)
        except (GraphStoreError, ProblemError):
            stats = None  # the description stays useful without the counts
        return rdf_response(request, void_description(facts, stats))
    except (ProblemError, GraphStoreError) as error:
        return _problem_with_cors(request, error, cors=True)


@router.options("/.well-known/void", include_in_schema=False)
async def void_preflight(request: Request) -> Response:
    """CORS preflight for the VoID description."""
    return preflight(request, methods="GET")


class SparqlFastLane:
    """Serves GET/POST `/sparql` ahead of the router: the endpoint's hot path skips routing and dependencies.

    The hub's median query latency is held to 1.5× the Oxigraph server's; FastAPI's routing through every
    router and its per-request machinery cost ~0.3 ms, as much as a whole Oxigraph lookup. The handlers are the
    very ones the router serves (and documents in OpenAPI); they answer every expected error themselves, and
    this lane turns anything unexpected into a 500 problem and records the request in the hub's metrics.
    """

    def __init__(self, app: ASGIApp, hub: FastAPI) -> None:
        self.app = app
        self.hub = hub
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled metric children, looked up once

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Handle `/sparql` GET and POST here; pass everything else on."""
        if scope["type"] != "http" or scope["path"] != "/sparql" or scope["method"] not in ("GET", "POST"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("app", self.hub)
        request = Request(scope, receive)
        try:
            response = await (sparql_get(request) if scope["method"] == "GET" else sparql_post(request))
        except Exception:
            log.exception("unhandled error", path="/sparql")
            response = problem_response(
                request, status=500, code="internal-error", detail="An unexpected error occurred; it has been logged."
            )
        await response(scope, receive, send)
        series = self._series.get((scope["method"], response.status_code))
        if series is None:
            metrics = getattr(self.hub.state, "metrics", None)
            if metrics is None:
                return
            series = (
                metrics.requests.labels(scope["method"], "/sparql", str(response.status_code)),
                metrics.latency.labels(scope["method"], "/sparql"),
            )
            self._series[(scope["method"], response.status_code)] = series
        series[0].inc()
        series[1].observe(time.perf_counter() - started)


def install_sparql_fast_lane(app: FastAPI) -> None:
    """Put the `/sparql` fast lane in front of the app's router (outermost user middleware)."""
    app.add_middleware(SparqlFastLane, hub=app)
