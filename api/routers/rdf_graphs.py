"""SPARQL 1.1 Graph Store HTTP Protocol at `/rdf-graphs`.

Graphs are named indirectly (`?graph=<iri>`, `?default`) or directly (`/rdf-graphs/<path>` is the graph whose
IRI is that URL under the hub's public base URL). GET/HEAD are open to any client (CORS allowed); PUT (replace),
POST (merge, or create a new graph when no graph is named: 201 with `Location`) and DELETE need an API key
with the `graph:update` scope.
"""

import email.policy
import uuid
from email.parser import BytesParser
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.body import negotiate, read_body_limited
from api.cors import cors_headers, preflight
from api.deps import require_scopes
from api.errors import ProblemError, problem_response, problem_responses
from certificates.service import Actor
from graph.store import (
    GRAPH_FORMATS,
    JSON_LD,
    N_TRIPLES,
    RDF_XML,
    READABLE_GRAPH_FORMATS,
    TURTLE,
    GraphStore,
    GraphStoreError,
    checked_iri,
    parse_to_ntriples,
)
from organizations.models import Scope

router = APIRouter(prefix="/rdf-graphs", tags=["rdf_graphs"])

UpdaterDep = Annotated[Actor, Depends(require_scopes(Scope.graph_update))]
OFFERS = [
    TURTLE,
    N_TRIPLES,
    RDF_XML,
    JSON_LD,
    "application/x-turtle",
    "text/plain",
    "application/json",
    "application/xml",
]
_ALIASES = {
    "application/x-turtle": TURTLE,
    "text/plain": N_TRIPLES,
    "application/json": JSON_LD,
    "application/xml": RDF_XML,
}
_GRAPH_PARAMETERS = [
    {
        "name": "graph",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "IRI of the graph.",
    },
    {
        "name": "default",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "Present: the default graph.",
    },
]
_CONTENT = {media_type: {"schema": {"type": "string"}} for media_type in GRAPH_FORMATS}


def _store(request: Request) -> GraphStore:
    store: GraphStore | None = getattr(request.app.state, "graph_store", None)
    if store is None:
        raise ProblemError(503, "graph-unavailable", "The knowledge graph is not available.")
    return store


def _direct_iri(request: Request, path: str) -> str:
    return f"{request.app.state.settings.public_base_url.rstrip('/')}/rdf-graphs/{path}"


def _target(request: Request, path: str | None) -> str | None:
    """The graph a request names: an IRI, or None for the default graph."""
    if path is not None:
        if request.query_params:
            raise ProblemError(400, "gsp-bad-request", "A graph named by its URL takes no 'graph' or 'default'.")
        return _direct_iri(request, path)
    graphs = request.query_params.getlist("graph")
    is_default = "default" in request.query_params
    if is_default and not graphs:
        return None
    if len(graphs) == 1 and not is_default:
        return checked_iri(graphs[0])
    raise ProblemError(400, "gsp-bad-request", "Name exactly one graph: '?graph=<iri>' or '?default'.")


def _problem(request: Request, error: GraphStoreError | ProblemError, *, cors: bool) -> Response:
    if isinstance(error, ProblemError):
        response = problem_response(
            request, status=error.status, code=error.code, detail=error.detail, extensions=error.extra
        )
    else:
        response = problem_response(
            request, status=error.http_status, code=error.code, title=error.title, detail=error.detail
        )
    if cors:
        response.headers.update(cors_headers(request))
        response.headers["Vary"] = "Origin"
    return response


async def _get(request: Request, path: str | None, *, head: bool) -> Response:
    try:
        graph = _target(request, path)
        chosen = negotiate(request.headers.get("accept"), OFFERS)
        if chosen is None:
            raise ProblemError(406, "not-acceptable", f"Graphs are served as {', '.join(OFFERS[:4])}.")
        media_type = _ALIASES.get(chosen, chosen)
        body = await run_in_threadpool(_store(request).export_graph, graph, media_type)
    except (GraphStoreError, ProblemError) as error:
        return _problem(request, error, cors=True)
    headers = {**cors_headers(request), "Vary": "Accept, Origin"}
    if head:
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, media_type=media_type, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


MULTIPART = "multipart/form-data"


def _charset_is_utf8(content_type: str) -> bool:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def _check_rdf_type(content_type: str) -> str:
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in READABLE_GRAPH_FORMATS:
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"Send RDF as one of {', '.join(sorted(READABLE_GRAPH_FORMATS))} (or {MULTIPART} of them).",
        )
    if not _charset_is_utf8(content_type):
        raise ProblemError(415, "unsupported-charset", "RDF is accepted in UTF-8 only.")
    return media_type


def _multipart_parts(content_type: str, data: bytes) -> list[tuple[bytes, str]]:
    """The RDF documents of a multipart/form-data body (GSP §5.5: several files POSTed at once)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data
    )
    if not message.is_multipart():
        raise ProblemError(400, "gsp-bad-request", "The multipart body could not be read.")
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        parts.append((payload if isinstance(payload, bytes) else b"", _check_rdf_type(part.get("content-type", ""))))
    return parts


async def _body(request: Request, base_iri: str) -> bytes:
    """The request's RDF as N-Triples (one document, or every part of a multipart body)."""
    content_type = request.headers.get("content-type", "")
    is_multipart = content_type.split(";")[0].strip().lower() == MULTIPART
    media_type = MULTIPART if is_multipart else _check_rdf_type(content_type)
    try:
        data = await read_body_limited(request, max_bytes=request.app.state.settings.max_document_bytes)
    except ProblemError as error:
        if error.code != "empty-body":
            raise
        data = b""  # an empty graph is a graph
    parts = _multipart_parts(content_type, data) if is_multipart else [(data, media_type)]
    # Parsed here, in the API process: malformed RDF is a 400 before the store is touched.
    return b"".join(parse_to_ntriples(part, part_type, base_iri=base_iri) for part, part_type in parts)


async def _write(request: Request, path: str | None, *, replace: bool) -> Response:
    store = _store(request)
    location: str | None = None
    if path is None and not request.query_params:
        if replace:
            raise ProblemError(400, "gsp-bad-request", "PUT needs '?graph=<iri>' or '?default'.")
        # POST to the graph store itself: a new graph with an IRI chosen by the hub (GSP §5.5).
        graph: str | None = _direct_iri(request, uuid.uuid4().hex)
        location = graph
    else:
        graph = _target(request, path)
    ntriples = await _body(request, graph or str(request.url))
    existed = True if location is None and graph is None else await run_in_threadpool(store.graph_exists, graph)
    await run_in_threadpool(store.load_graph, graph, ntriples, N_TRIPLES, replace=replace)
    if location is not None:
        return Response(status_code=201, headers={"Location": location})
    return Response(status_code=204 if existed else 201)


@router.get(
    "",
    summary="Get one graph (`?graph=<iri>` or `?default`)",
    response_class=Response,
    responses={200: {"description": "The graph", "content": _CONTENT}, **problem_responses(400, 404, 406, 503)},
    openapi_extra={"parameters": _GRAPH_PARAMETERS},
)
async def get_graph(request: Request) -> Response:
    """The graph serialised as negotiated (Turtle by default); 404 when it does not exist."""
    return await _get(request, None, head=False)


@router.head(
    "",
    summary="Whether one graph exists, with the headers a GET would have",
    response_class=Response,
    responses={200: {"description": "The graph exists"}, **problem_responses(400, 404, 406, 503)},
    openapi_extra={"parameters": _GRAPH_PARAMETERS},
)
async def head_graph(request: Request) -> Response:
    """GET without the body."""
    return await _get(request, None, head=True)


@router.put(
    "",
    summary="Replace one graph (graph:update)",
    status_code=204,
    response_class=Response,
    responses={201: {"description": "The graph was created"}, **problem_responses(400, 401, 403, 413, 415, 503)},
    openapi_extra={"parameters": _GRAPH_PARAMETERS, "requestBody": {"required": True, "content": _CONTENT}},
)
async def put_graph(request: Request, _updater: UpdaterDep) -> Response:
    """Replace the graph's content atomically (201 when it did not exist)."""
    return await _write(request, None, replace=True)


@router.post(
    "",
    summary="Merge into one graph, or create a new graph when none is named (graph:update)",
    status_code=204,
    response_class=Response,
    responses={
        201: {"description": "The graph was created (see Location)"},
        **problem_responses(400, 401, 403, 413, 415, 503),
    },
    openapi_extra={"parameters": _GRAPH_PARAMETERS, "requestBody": {"required": True, "content": _CONTENT}},
)
async def post_graph(request: Request, _updater: UpdaterDep) -> Response:
    """Add the triples to the graph; without a graph parameter, create a graph and return its IRI."""
    return await _write(request, None, replace=False)


@router.delete(
    "",
    summary="Delete one graph (graph:update)",
    status_code=204,
    response_class=Response,
    responses=problem_responses(400, 401, 403, 404, 503),
    openapi_extra={"parameters": _GRAPH_PARAMETERS},
)
async def delete_graph(request: Request, _updater: UpdaterDep) -> Response:
    """Remove a named graph (404 when absent) or empty the default graph."""
    return await _delete(request, None)


async def _delete(request: Request, path: str | None) -> Response:
    graph = _target(request, path)
    store = _store(request)
    if graph is None:
        await run_in_threadpool(store.load_graph, None, b"", N_TRIPLES, replace=True)
        return Response(status_code=204)
    existed = await run_in_threadpool(store.drop_graph, graph)
    if not existed:
        raise ProblemError(404, "graph-not-found", f"There is no graph <{graph}>.")
    return Response(status_code=204)


@router.options("", include_in_schema=False)
async def graphs_preflight(request: Request) -> Response:
    """CORS preflight: reads only."""
    return preflight(request, methods="GET, HEAD")


# --- direct graph identification: the graph IRI is the request URL ---------------------------------------
@router.get(
    "/{path:path}",
    summary="Get the graph whose IRI is this URL",
    response_class=Response,
    responses={200: {"description": "The graph", "content": _CONTENT}, **problem_responses(400, 404, 406, 503)},
)
async def get_direct_graph(path: str, request: Request) -> Response:
    """The graph named by this URL."""
    return await _get(request, path, head=False)


@router.head(
    "/{path:path}",
    summary="Whether the graph whose IRI is this URL exists",
    response_class=Response,
    responses={200: {"description": "The graph exists"}, **problem_responses(400, 404, 406, 503)},
)
async def head_direct_graph(path: str, request: Request) -> Response:
    """GET without the body."""
    return await _get(request, path, head=True)


@router.put(
    "/{path:path}",
    summary="Replace the graph whose IRI is this URL (graph:update)",
    status_code=204,
    response_class=Response,
    responses={201: {"description": "The graph was created"}, **problem_responses(400, 401, 403, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": _CONTENT}},
)
async def put_direct_graph(path: str, request: Request, _updater: UpdaterDep) -> Response:
    """Replace the graph named by this URL."""
    return await _write(request, path, replace=True)


@router.post(
    "/{path:path}",
    summary="Merge into the graph whose IRI is this URL (graph:update)",
    status_code=204,
    response_class=Response,
    responses={201: {"description": "The graph was created"}, **problem_responses(400, 401, 403, 413, 415, 503)},
    openapi_extra={"requestBody": {"required": True, "content": _CONTENT}},
)
async def post_direct_graph(path: str, request: Request, _updater: UpdaterDep) -> Response:
    """Merge into the graph named by this URL."""
    return await _write(request, path, replace=False)


@router.delete(
    "/{path:path}",
    summary="Delete the graph whose IRI is this URL (graph:update)",
    status_code=204,
    response_class=Response,
    responses=problem_responses(400, 401, 403, 404, 503),
)
async def delete_direct_graph(path: str, request: Request, _updater: UpdaterDep) -> Response:
    """Remove the graph named by this URL."""
    return await _delete(request, path)


@router.options("/{path:path}", include_in_schema=False)
async def direct_preflight(request: Request) -> Response:
    """CORS preflight for directly named graphs: reads only."""
    return preflight(request, methods="GET, HEAD")
