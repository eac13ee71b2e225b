"""The RDF store interface of the knowledge graph, its outcomes and errors, and the factory choosing a backend.

Two backends implement `GraphStore`:

* `EmbeddedOxigraphStore` (default): pyoxigraph on disk under `settings.resolved_graph_dir`. Queries run in
  worker processes over read-only snapshots, so a query that overruns its timeout is killed, not abandoned.
* `RemoteSparqlStore`: any SPARQL 1.1 Protocol + Graph Store Protocol server (Oxigraph server, Fuseki,
  GraphDB) when `graph_query_url` / `graph_update_url` are set.

Query results leave the store already serialised in the format the caller asked for (`QueryOutcome.body`),
so the endpoint never re-encodes them and rdflib stays off the query path.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import pyoxigraph

from storage.errors import DomainError
from storage.settings import Settings

QueryForm = Literal["select", "ask", "construct", "describe"]

# --- media types -------------------------------------------------------------------------------------------
SPARQL_RESULTS_JSON = "application/sparql-results+json"
SPARQL_RESULTS_XML = "application/sparql-results+xml"
SPARQL_RESULTS_CSV = "text/csv"
SPARQL_RESULTS_TSV = "text/tab-separated-values"
TURTLE = "text/turtle"
N_TRIPLES = "application/n-triples"
N_QUADS = "application/n-quads"
TRIG = "application/trig"
RDF_XML = "application/rdf+xml"
JSON_LD = "application/ld+json"

RESULTS_FORMATS: dict[str, pyoxigraph.QueryResultsFormat] = {
    SPARQL_RESULTS_JSON: pyoxigraph.QueryResultsFormat.JSON,
    SPARQL_RESULTS_XML: pyoxigraph.QueryResultsFormat.XML,
    SPARQL_RESULTS_CSV: pyoxigraph.QueryResultsFormat.CSV,
    SPARQL_RESULTS_TSV: pyoxigraph.QueryResultsFormat.TSV,
}
GRAPH_FORMATS: dict[str, pyoxigraph.RdfFormat] = {
    TURTLE: pyoxigraph.RdfFormat.TURTLE,
    N_TRIPLES: pyoxigraph.RdfFormat.N_TRIPLES,
    RDF_XML: pyoxigraph.RdfFormat.RDF_XML,
    JSON_LD: pyoxigraph.RdfFormat.JSON_LD,
}
# What a Graph Store Protocol client may send (a superset: quads formats are read into one graph).
READABLE_GRAPH_FORMATS: dict[str, pyoxigraph.RdfFormat] = {
    **GRAPH_FORMATS,
    "application/x-turtle": pyoxigraph.RdfFormat.TURTLE,
    "text/n3": pyoxigraph.RdfFormat.N3,
    "text/plain": pyoxigraph.RdfFormat.N_TRIPLES,
    "application/xml": pyoxigraph.RdfFormat.RDF_XML,
    "application/json": pyoxigraph.RdfFormat.JSON_LD,
}


# --- errors ------------------------------------------------------------------------------------------------
class GraphStoreError(DomainError):
    """Base of the store's failures; `http_status` tells the API which status answers it."""

    code = "graph-error"
    title = "Knowledge graph error"
    http_status = 500


class SparqlSyntaxError(GraphStoreError):
    """The query or update does not parse; `detail` carries the parser's message."""

    code = "sparql-syntax"
    title = "Malformed SPARQL"
    http_status = 400


class SparqlRequestError(GraphStoreError):
    """The request is well-formed SPARQL but cannot be honoured (e.g. conflicting dataset clauses)."""

    code = "sparql-bad-request"
    title = "Bad SPARQL request"
    http_status = 400


class ServiceNotAllowedError(GraphStoreError):
    """The query asks for a SERVICE that is not on the allow-list (outbound requests are guarded: SSRF)."""

    code = "sparql-service-forbidden"
    title = "SERVICE target not allowed"
    http_status = 403


class QueryTimeoutError(GraphStoreError):
    """The query or update ran past its timeout and was stopped; nothing partial is returned."""

    code = "sparql-timeout"
    title = "SPARQL timeout"
    http_status = 503


class GraphStoreUnavailableError(GraphStoreError):
    """The store cannot answer now (remote server down, truncated remote answer, worker crashed)."""

    code = "graph-unavailable"
    title = "Knowledge graph unavailable"
    http_status = 503


class UnsupportedFormatError(GraphStoreError):
    """No serialisation exists for the media type asked for."""

    code = "unsupported-format"
    title = "Unsupported RDF format"
    http_status = 415


class RdfSyntaxError(GraphStoreError):
    """RDF data sent to the store does not parse in its declared format."""

    code = "rdf-syntax"
    title = "Malformed RDF"
    http_status = 400


class GraphNotFoundError(GraphStoreError):
    """The named graph does not exist in the store."""

    code = "graph-not-found"
    title = "Graph not found"
    http_status = 404


def checked_iri(value: str) -> str:
    """The IRI if it is absolute and valid (so it is safe inside `<…>` in SPARQL text), else a 400 error."""
    try:
        return pyoxigraph.NamedNode(value).value
    except ValueError as error:
        raise SparqlRequestError(f"{value!r} is not an absolute IRI: {error}") from None


def parse_to_ntriples(data: bytes, media_type: str, *, base_iri: str | None = None) -> bytes:
    """RDF in any readable graph format, as N-Triples (quads formats: their default graph)."""
    rdf_format = READABLE_GRAPH_FORMATS.get(media_type)
    if rdf_format is None:
        raise UnsupportedFormatError(
            f"RDF is accepted as {', '.join(sorted(READABLE_GRAPH_FORMATS))}; not as {media_type or 'unlabelled'}."
        )
    try:
        quads = pyoxigraph.parse(data, format=rdf_format, base_iri=base_iri)
        return pyoxigraph.serialize((quad.triple for quad in quads), format=pyoxigraph.RdfFormat.N_TRIPLES) or b""
    except SyntaxError as error:
        raise RdfSyntaxError(f"The {media_type} data does not parse: {error}") from None


# --- outcomes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueryOutcome:
    """A query's answer, serialised: `body` in `media_type`; `truncated` when the result cap cut it."""

    form: QueryForm
    media_type: str
    body: bytes
    truncated: bool = False
    count: int | None = None  # rows (SELECT) or triples (CONSTRUCT/DESCRIBE) in `body`; None for ASK

    def json(self) -> Any:
        """The body parsed as SPARQL JSON results (only when `media_type` is JSON)."""
        if self.media_type != SPARQL_RESULTS_JSON:
            raise ValueError(f"The outcome is {self.media_type}, not SPARQL JSON results.")
        return json.loads(self.body)

    def rows(self) -> list[dict[str, Any]]:
        """SELECT bindings as plain dicts `{var: value}` (lexical values; unbound variables absent)."""
        return [{name: term["value"] for name, term in row.items()} for row in self.json()["results"]["bindings"]]

    def boolean(self) -> bool:
        """The answer of an ASK query."""
        return bool(self.json()["boolean"])

    def triples(self) -> list[pyoxigraph.Triple]:
        """CONSTRUCT/DESCRIBE triples parsed back (any graph media type)."""
        rdf_format = GRAPH_FORMATS.get(self.media_type)
        if rdf_format is None:
            raise ValueError(f"The outcome is {self.media_type}, not an RDF graph.")
        return [quad.triple for quad in pyoxigraph.parse(self.body, format=rdf_format)]


@dataclass(frozen=True)
class StoreStats:
    """Size of the store, for VoID and health pages."""

    triples: int
    graphs: int


class GraphStore(Protocol):
    """What the hub needs from an RDF store; graph IRIs are strings, `None` names the default graph."""

    def replace_graph(self, graph_iri: str, triples: Iterable[pyoxigraph.Triple]) -> None:
        """Atomically drop the named graph and insert these triples in it (re-import of one source)."""

    def drop_graph(self, graph_iri: str) -> bool:
        """Remove the named graph; False when it did not exist."""

    def add_quads(self, quads: Iterable[pyoxigraph.Quad]) -> None:
        """Insert quads (atomically: all or none)."""

    def add_nquads(self, data: bytes, *, atomic: bool = True) -> None:
        """Insert quads given as N-Quads text; `atomic=False` may bulk-load (faster; for re-runnable writes)."""

    def query(
        self,
        sparql: str,
        *,
        default_graph_uris: Sequence[str] = (),
        named_graph_uris: Sequence[str] = (),
        timeout_s: float,
        result_cap: int,
        results_media_type: str = SPARQL_RESULTS_JSON,
        graph_media_type: str = N_TRIPLES,
        union_default_graph: bool = False,
        base_iri: str | None = None,
    ) -> QueryOutcome:
        """Run a SPARQL query within `timeout_s`, at most `result_cap` rows/triples, serialised as asked.

        SELECT/ASK answers use `results_media_type`, CONSTRUCT/DESCRIBE `graph_media_type`. Giving dataset
        URIs replaces the query's own dataset (SPARQL 1.1 Protocol). Raises `SparqlSyntaxError`,
        `ServiceNotAllowedError`, `QueryTimeoutError`, `GraphStoreUnavailableError`.
        """

    async def query_async(
        self,
        sparql: str,
        *,
        default_graph_uris: Sequence[str] = (),
        named_graph_uris: Sequence[str] = (),
        timeout_s: float,
        result_cap: int,
        results_media_type: str = SPARQL_RESULTS_JSON,
        graph_media_type: str = N_TRIPLES,
        union_default_graph: bool = False,
        base_iri: str | None = None,
    ) -> QueryOutcome:
        """`query` for async code (the embedded store waits on its worker without holding a thread)."""

    def update(
        self,
        sparql: str,
        *,
        timeout_s: float,
        using_graph_uris: Sequence[str] = (),
        using_named_graph_uris: Sequence[str] = (),
        base_iri: str | None = None,
    ) -> None:
        """Run a SPARQL 1.1 Update atomically within `timeout_s` (stopped and rolled back past it)."""

    def clear(self) -> None:
        """Remove every graph and triple."""

    def graph_names(self) -> list[str]:
        """IRIs of the named graphs in the store."""

    def count(self) -> int:
        """Number of quads in the store (all graphs)."""

    def stats(self) -> StoreStats:
        """Triples and named graphs in the store."""

    def graph_exists(self, graph_iri: str | None) -> bool:
        """Whether the named graph exists (the default graph always exists)."""

    def export_graph(self, graph_iri: str | None, media_type: str) -> bytes:
        """One graph serialised in a graph media type (Graph Store Protocol GET)."""

    def load_graph(
        self, graph_iri: str | None, data: bytes, media_type: str, *, replace: bool, base_iri: str | None = None
    ) -> None:
        """Parse RDF and put it in one graph, replacing it or merging (Graph Store Protocol PUT/POST)."""

    def close(self) -> None:
        """Release processes, files and connections (idempotent)."""


@runtime_checkable
class NQuadsLoader(Protocol):
    """A store that takes quads as N-Quads text, so writers that render text skip pyoxigraph terms."""

    def add_nquads(self, data: bytes, *, atomic: bool = True) -> None:
        """Insert quads given as N-Quads text; `atomic=False` may bulk-load (faster; for re-runnable writes)."""


def open_graph_store(settings: Settings) -> GraphStore:
    """The store the settings select: remote when a query URL is configured, else embedded Oxigraph."""
    if settings.graph_query_url:
        from graph.remote import RemoteSparqlStore

        return RemoteSparqlStore(
            query_url=settings.graph_query_url,
            update_url=settings.graph_update_url,
            store_url=settings.graph_store_url,
            service_allowlist=settings.sparql_service_allowlist,
            max_timeout_s=settings.sparql_max_timeout_s,
        )
    from graph.embedded import EmbeddedOxigraphStore

    return EmbeddedOxigraphStore(
        settings.resolved_graph_dir,
        service_allowlist=settings.sparql_service_allowlist,
    )
