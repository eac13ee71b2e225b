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
from urllib.parse import unquote_to_bytes

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


def _check_charset(content_type: str) -> None:
    if "=" not in content_type:
        return  # no parameters: UTF-8
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


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProblemError(400, "invalid-encoding", f"The request body is not valid UTF-8: {error}.") from None


def _form_pairs(data: bytes) -> list[tuple[str, str]]:
    """Name/value pairs of a query string or urlencoded form (blank values kept; escapes are UTF-8)."""
    pairs = []
    try:
        for item in data.split(b"&"):
            if item:
                name, _, value = item.partition(b"=")
                pairs.append((_form_text(name), _form_text(value)))
    except UnicodeDecodeError as error:
        raise ProblemError(400, "invalid-encoding", f"A form field is not valid UTF-8: {error}.") from None
    return pairs


def _form_text(raw: bytes) -> str:
    # What `parse_qsl` does, on bytes and without its generic machinery: this runs for every query.
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8")


def _post_media_type(content_type: str) -> str:
    """The POST's media type, refused (415) unless it is one the protocol defines, in UTF-8."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in (FORM, SPARQL_QUERY, SPARQL_UPDATE):
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"POST a SPARQL request as {FORM}, {SPARQL_QUERY} or {SPARQL_UPDATE}; not as {media_type or 'unlabelled'}.",
        )
    _check_charset(content_type)
    return media_type


def _post_operation(media_type: str, query_string: bytes, body: bytes) -> _Request:
    """The operation a POST carries: in a form, or directly as the body (with URL parameters)."""
    if media_type == FORM:
        return _collect(_form_pairs(query_string) + _form_pairs(body) if query_string else _form_pairs(body))
    text = _decode(body)
    operation = _collect(_form_pairs(query_string))
    if operation.query is not None or operation.update is not None:
        raise ProblemError(400, "sparql-bad-request", "A direct POST carries the operation in its body only.")
    if media_type == SPARQL_QUERY:
        operation.query = text
    else:
        operation.update = text
    return operation


async def _read_post(request: Request) -> _Request:
    media_type = _post_media_type(request.headers.get("content-type", ""))
    body = await read_body_limited(request, max_bytes=request.app.state.settings.max_document_bytes)
    return _post_operation(media_type, request.scope.get("query_string", b""), body)


def _facts(request: Request) -> EndpointFacts:
    return _facts_of(request.app.state)


def _facts_of(state: Any) -> EndpointFacts:
    facts: EndpointFacts | None = getattr(state, "sparql_facts", None)
    if facts is not None:
        return facts
    settings = state.settings
    facts = EndpointFacts(
        base_url=settings.public_base_url,
        default_timeout_s=settings.sparql_timeout_s,
        max_timeout_s=settings.sparql_max_timeout_s,
        result_cap=settings.sparql_result_cap,
        service_allowlist=settings.sparql_service_allowlist,
    )
    state.sparql_facts = facts  # settings do not change while the app runs
    return facts


def _timeout(settings: Any, given: str | None) -> float:
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


def _store(state: Any) -> GraphStore:
    store: GraphStore | None = getattr(state, "graph_store", None)
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


async def _answer_query(
    state: Any, operation: _Request, accept: str | None, cors: dict[str, str]
) -> tuple[bytes, str, dict[str, str]]:
    """Run the query: the answer's body, its media type and the response headers (CORS, count, truncation)."""
    assert operation.query is not None
    query = operation.query
    form = _form_of(query)
    graph_answer = form in ("construct", "describe")
    results_type = SPARQL_RESULTS_JSON if graph_answer else _choose(accept, "results")
    graph_type = _choose(accept, "graph") if graph_answer else TURTLE
    facts = _facts_of(state)
    settings = state.settings
    outcome = await _store(state).query_async(
        query,
        default_graph_uris=operation.default_graph_uris,
        named_graph_uris=operation.named_graph_uris,
        timeout_s=_timeout(settings, operation.timeout),
        result_cap=settings.sparql_result_cap,
        results_media_type=results_type,
        graph_media_type=graph_type,
        union_default_graph=operation.union_default_graph,
        base_iri=facts.endpoint,
    )
    headers = {**cors, "Vary": "Accept, Origin"} if cors else {"Vary": "Accept, Origin"}
    body = outcome.body
    if outcome.count is not None:
        headers["QIHUB-Result-Count"] = str(outcome.count)
    if outcome.truncated:
        headers["QIHUB-Results-Truncated"] = "true"
        body = mark_truncated(body, outcome.media_type, facts.truncation_marker)
    return body, outcome.media_type, headers


async def _run_query(request: Request, operation: _Request) -> Response:
    body, media_type, headers = await _answer_query(
        request.app.state, operation, request.headers.get("accept"), cors_headers(request)
    )
    return Response(content=body, media_type=media_type, headers=headers)


async def _run_update(request: Request, operation: _Request) -> Response:
    assert operation.update is not None
    await run_in_threadpool(_authorize_update, request)
    facts = _facts(request)
    await run_in_threadpool(
        _store(request.app.state).update,
        operation.update,
        timeout_s=_timeout(request.app.state.settings, operation.timeout),
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
        operation = _collect(_form_pairs(request.scope.get("query_string", b"")))
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
            stats = await run_in_threadpool(_store(request.app.state).stats)
        except (GraphStoreError, ProblemError):
            stats = None  # the description stays useful without the counts
        return rdf_response(request, void_description(facts, stats))
    except (ProblemError, GraphStoreError) as error:
        return _problem_with_cors(request, error, cors=True)


@router.options("/.well-known/void", include_in_schema=False)
async def void_preflight(request: Request) -> Response:
    """CORS preflight for the VoID description."""
    return preflight(request, methods="GET")


class _DisconnectedError(Exception):
    """The client went away before its request body arrived."""


async def _receive_body(receive: Receive, declared: bytes | None, max_bytes: int) -> bytes:
    """The request body from ASGI messages, within the size cap (as `read_body_limited`, without a Request)."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ProblemError(413, "too-large", f"The body is {declared.decode()} bytes; the limit is {max_bytes}.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _DisconnectedError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise ProblemError(413, "too-large", f"The body exceeds the limit of {max_bytes} bytes.")
        if not message.get("more_body", False):
            body = b"".join([*chunks, chunk]) if chunks else chunk
            if not body:
                raise ProblemError(400, "empty-body", "The request body is empty.")
            return body
        chunks.append(chunk)


@lru_cache(maxsize=64)
def _content_type(media_type: str) -> bytes:
    # As Starlette's Response: text types say their charset.
    return (f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type).encode("latin-1")


class SparqlFastLane:
    """Serves GET/POST `/sparql` ahead of the router: the endpoint's hot path skips routing and dependencies.

    The hub's median query latency is held to 1.5× the Oxigraph server's, and a lookup costs Oxigraph ~0.3 ms
    in all. So a query is served on plain ASGI here: headers read once from the scope, the body from
    `receive`, the answer sent as two messages, no Request or Response objects. Updates, the Service
    Description and problems use the same functions as the router's handlers (which serve `/sparql` when
    the lane is not installed, and document it in OpenAPI). Anything unexpected becomes a 500 problem; every
    request is recorded in the hub's metrics.
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
        try:
            response = await self._serve(scope, receive)
        except _DisconnectedError:
            return
        except Exception:
            log.exception("unhandled error", path="/sparql")
            response = problem_response(
                Request(scope, receive),
                status=500,
                code="internal-error",
                detail="An unexpected error occurred; it has been logged.",
            )
        if isinstance(response, Response):
            await response(scope, receive, send)
            status = response.status_code
        else:
            headers, body = response
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            status = 200
        series = self._series.get((scope["method"], status))
        if series is None:
            metrics = getattr(self.hub.state, "metrics", None)
            if metrics is None:
                return
            series = (
                metrics.requests.labels(scope["method"], "/sparql", str(status)),
                metrics.latency.labels(scope["method"], "/sparql"),
            )
            self._series[(scope["method"], status)] = series
        series[0].inc()
        series[1].observe(time.perf_counter() - started)

    async def _serve(self, scope: AsgiScope, receive: Receive) -> Response | tuple[list[tuple[bytes, bytes]], bytes]:
        """A query's answer as raw headers and body; a Response for everything else."""
        accept = content_type = origin = length = None
        for name, value in scope["headers"]:
            # The first of repeated headers counts, as in Starlette's `headers.get`.
            if name == b"accept":
                accept = value.decode("latin-1") if accept is None else accept
            elif name == b"content-type":
                content_type = value.decode("latin-1") if content_type is None else content_type
            elif name == b"content-length":
                length = value if length is None else length
            elif name == b"origin":
                origin = value
        state = self.hub.state
        is_update = False
        try:
            if scope["method"] == "GET":
                operation = _collect(_form_pairs(scope["query_string"]))
                if operation.update is not None:
                    raise ProblemError(400, "sparql-bad-request", "Updates are accepted only by POST.")
                if operation.query is None:
                    return rdf_response(Request(scope, receive), service_description(_facts_of(state)))
            else:
                media_type = _post_media_type(content_type or "")
                body = await _receive_body(receive, length, state.settings.max_document_bytes)
                operation = _post_operation(media_type, scope["query_string"], body)
                if operation.update is not None:
                    is_update = True
                    return await _run_update(Request(scope, receive), operation)
                if operation.query is None:
                    raise ProblemError(400, "sparql-bad-request", "The POST carries neither a query nor an update.")
            cors = cors_headers(Request(scope, receive)) if origin else {}
            answer, answer_type, headers = await _answer_query(state, operation, accept, cors)
        except (ProblemError, GraphStoreError) as error:
            return _problem_with_cors(Request(scope, receive), error, cors=not is_update)
        raw_headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", _content_type(answer_type))]
        raw_headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
        return raw_headers, answer


def install_sparql_fast_lane(app: FastAPI) -> None:
    """Put the `/sparql` fast lane in front of the app's whole middleware stack.

    Outermost, ahead of FastAPI's own error, telemetry and body-limit layers too: the lane answers every
    error itself (a 500 problem for the unexpected) and limits bodies itself; other paths go through them all.
    """
    build = app.build_middleware_stack

    def build_with_lane() -> ASGIApp:
        return SparqlFastLane(build(), hub=app)

    app.build_middleware_stack = build_with_lane  # type: ignore[method-assign]
