"""A `GraphStore` over HTTP: SPARQL 1.1 Protocol and Graph Store Protocol (Oxigraph server, Fuseki, GraphDB).

Never trusts a 200: the Oxigraph server, on its own timeout, ends a 200 body early with a sentence appended,
and others cut the stream. So answers are requested in formats whose end can be checked (SPARQL JSON results,
N-Triples parsed line by line) and parsed while streaming; a body that does not parse to its end is a 503,
never a short success. The hub's deadline is passed to the server (`timeout`, honoured by Fuseki and GraphDB;
start the Oxigraph server with `--timeout-s`) and enforced on the client: past it the connection is closed.
Reading stops at the result cap, which also stops the download.
"""

import asyncio
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import httpx
import pyoxigraph

from graph.sparql import SparqlText, guard_outbound, select_star_order
from graph.store import (
    GRAPH_FORMATS,
    N_TRIPLES,
    RESULTS_FORMATS,
    SPARQL_RESULTS_JSON,
    GraphNotFoundError,
    GraphStoreUnavailableError,
    QueryForm,
    QueryOutcome,
    QueryTimeoutError,
    RdfSyntaxError,
    SparqlRequestError,
    SparqlSyntaxError,
    StoreStats,
    UnsupportedFormatError,
    checked_iri,
    parse_to_ntriples,
)

ADMIN_TIMEOUT_S = 600.0
_CONNECT_TIMEOUT_S = 5.0


class _DeadlineError(Exception):
    """The hub's deadline passed while the answer was still streaming."""


class _StreamReader:
    """A binary file over an httpx response stream that gives up at the deadline (for pyoxigraph parsers)."""

    def __init__(self, response: httpx.Response, deadline: float) -> None:
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._deadline = deadline
        self._buffer = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all when negative), pulling chunks from the stream until the deadline."""
        while not self._done and (size < 0 or len(self._buffer) < size):
            if time.monotonic() > self._deadline:
                raise _DeadlineError
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, target: Any) -> int:
        """Fill `target` like `read`."""
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True


class RemoteSparqlStore:
    """`GraphStore` backed by a SPARQL server; the Graph Store Protocol URL is optional (updates stand in)."""

    def __init__(
        self,
        *,
        query_url: str,
        update_url: str | None = None,
        store_url: str | None = None,
        service_allowlist: Sequence[str] = (),
        max_timeout_s: float = 60.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.query_url = query_url
        self.update_url = update_url
        self.store_url = store_url
        self.service_allowlist = list(service_allowlist)
        self.max_timeout_s = max_timeout_s
        self._own_client = client

    @property
    def _client(self) -> httpx.Client:
        # Re-created after `close`: an app's lifespan may stop and start more than once.
        if self._own_client is None or self._own_client.is_closed:
            self._own_client = httpx.Client(follow_redirects=False)
        return self._own_client

    # --- queries -----------------------------------------------------------------------------------------
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
        """Send the query; stream, check and cap the answer; re-serialise it as asked."""
        if results_media_type not in RESULTS_FORMATS or graph_media_type not in GRAPH_FORMATS:
            raise UnsupportedFormatError(f"Unsupported result format {results_media_type} / {graph_media_type}.")
        sparql, analysis = guard_outbound(sparql, self.service_allowlist, base_iri=base_iri)
        sparql = _with_base(sparql, analysis, base_iri)
        form: QueryForm | None = analysis.form
        graph_answer = form in ("construct", "describe")
        accept = N_TRIPLES if graph_answer else SPARQL_RESULTS_JSON
        data: list[tuple[str, str]] = [("query", sparql), ("timeout", f"{timeout_s:g}")]
        default_graph_uris = [checked_iri(uri) for uri in default_graph_uris]
        named_graph_uris = [checked_iri(uri) for uri in named_graph_uris]
        data += [("default-graph-uri", uri) for uri in default_graph_uris]
        data += [("named-graph-uri", uri) for uri in named_graph_uris]
        if union_default_graph:
            data.append(("union-default-graph", ""))
        deadline = time.monotonic() + timeout_s
        cap = max(0, result_cap)
        try:
            with self._client.stream(
                "POST",
                self.query_url,
                data=dict(_multi(data)),  # type: ignore[arg-type]
                headers={"Accept": accept},
                timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S)),
            ) as response:
                self._check_status(response, deadline, timeout_s)
                reader = _StreamReader(response, deadline)
                if graph_answer:
                    return self._graph_outcome(form or "construct", reader, cap, graph_media_type, analysis.prefixes)
                return self._results_outcome(reader, cap, results_media_type, select_star_order(sparql))
        except (_DeadlineError, httpx.TimeoutException):
            raise QueryTimeoutError(f"The query ran past its timeout of {timeout_s:g} s and was stopped.") from None
        except httpx.HTTPError as error:
            raise GraphStoreUnavailableError(f"The SPARQL server did not answer completely: {error}") from None

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
        """`query` in a worker thread (the HTTP client here is synchronous)."""
        return await asyncio.to_thread(
            self.query,
            sparql,
            default_graph_uris=default_graph_uris,
            named_graph_uris=named_graph_uris,
            timeout_s=timeout_s,
            result_cap=result_cap,
            results_media_type=results_media_type,
            graph_media_type=graph_media_type,
            union_default_graph=union_default_graph,
            base_iri=base_iri,
        )

    def _results_outcome(
        self, reader: _StreamReader, cap: int, media_type: str, order: list[str] | None
    ) -> QueryOutcome:
        try:
            # The reader is a file-like view of the streamed body (read()), which the parser accepts.
            parsed = pyoxigraph.parse_query_results(reader, format=pyoxigraph.QueryResultsFormat.JSON)  # type: ignore[arg-type]
            results_format = RESULTS_FORMATS[media_type]
            if isinstance(parsed, pyoxigraph.QueryBoolean):
                # serialize() without an output returns the bytes (its stub also allows None).
                body = parsed.serialize(format=results_format) or b""
                return QueryOutcome(form="ask", media_type=media_type, body=body)
            variables = [variable.value for variable in parsed.variables]
            if order:  # SELECT *: the order the query mentions them, not the server's
                rank = {name: position for position, name in enumerate(order)}
                variables.sort(key=lambda name: rank.get(name, len(rank)))
            rows = list(islice(parsed, cap + 1))
        except SyntaxError as error:
            raise GraphStoreUnavailableError(
                f"The SPARQL server's answer is cut or malformed (a server-side timeout?): {error}"
            ) from None
        truncated = len(rows) > cap
        del rows[cap:]
        # Rebuild the kept rows as TSV (one N-Triples term per cell) and let Oxigraph write the asked format.
        lines = ["\t".join(f"?{name}" for name in variables)]
        for row in rows:
            lines.append("\t".join("" if (term := row[name]) is None else str(term) for name in variables))
        tsv = ("\n".join(lines) + "\n").encode()
        solutions = pyoxigraph.parse_query_results(tsv, format=pyoxigraph.QueryResultsFormat.TSV)
        body = solutions.serialize(format=results_format) or b""
        return QueryOutcome(form="select", media_type=media_type, body=body, truncated=truncated, count=len(rows))

    def _graph_outcome(
        self, form: QueryForm, reader: _StreamReader, cap: int, media_type: str, prefixes: dict[str, str]
    ) -> QueryOutcome:
        try:
            triples = [
                quad.triple
                for quad in islice(
                    pyoxigraph.parse(reader, format=pyoxigraph.RdfFormat.N_TRIPLES),  # type: ignore[arg-type]
                    cap + 1,
                )
            ]
        except SyntaxError as error:
            raise GraphStoreUnavailableError(
                f"The SPARQL server's answer is cut or malformed (a server-side timeout?): {error}"
            ) from None
        truncated = len(triples) > cap
        del triples[cap:]
        body = pyoxigraph.serialize(triples, format=GRAPH_FORMATS[media_type], prefixes=prefixes) or b""
        return QueryOutcome(form=form, media_type=media_type, body=body, truncated=truncated, count=len(triples))

    def _check_status(self, response: httpx.Response, deadline: float, timeout_s: float) -> None:
        if response.status_code < 300:
            return
        message = response.read().decode("utf-8", "replace").strip()[:2000]
        if response.status_code in (408, 503, 504) and time.monotonic() >= deadline - timeout_s * 0.1:
            raise QueryTimeoutError(f"The SPARQL server stopped the query at the timeout: {message}")
        if response.status_code == 400:
            raise SparqlSyntaxError(message or "The SPARQL server refused the request.")
        if response.status_code in (403, 409, 415):
            raise SparqlRequestError(message or f"The SPARQL server answered {response.status_code}.")
        raise GraphStoreUnavailableError(f"The SPARQL server answered {response.status_code}: {message}")

    # --- updates -----------------------------------------------------------------------------------------
    def update(
        self,
        sparql: str,
        *,
        timeout_s: float,
        using_graph_uris: Sequence[str] = (),
        using_named_graph_uris: Sequence[str] = (),
        base_iri: str | None = None,
    ) -> None:
        """POST the update; a client-side timeout is a 503 whose outcome the server alone knows."""
        sparql, analysis = guard_outbound(sparql, self.service_allowlist, base_iri=base_iri)
        sparql = _with_base(sparql, analysis, base_iri)
        if (using_graph_uris or using_named_graph_uris) and analysis.dataset_clause:
            raise SparqlRequestError(
                "The update has USING, USING NAMED or WITH clauses: it may not also receive "
                "using-graph-uri or using-named-graph-uri parameters."
            )
        data = [("update", sparql)]
        data += [("using-graph-uri", checked_iri(uri)) for uri in using_graph_uris]
        data += [("using-named-graph-uri", checked_iri(uri)) for uri in using_named_graph_uris]
        self._update_request(data, timeout_s)

    def _update_request(self, data: list[tuple[str, str]], timeout_s: float) -> None:
        if not self.update_url:
            raise GraphStoreUnavailableError("The remote SPARQL store is read-only: no update URL is configured.")
        deadline = time.monotonic() + timeout_s
        try:
            response = self._client.post(
                self.update_url,
                data=dict(_multi(data)),  # type: ignore[arg-type]
                timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S)),
            )
        except httpx.TimeoutException:
            raise QueryTimeoutError(
                f"The SPARQL server did not finish the update within {timeout_s:g} s (whether it applied it "
                "is up to the server)."
            ) from None
        except httpx.HTTPError as error:
            raise GraphStoreUnavailableError(f"The SPARQL server is unreachable: {error}") from None
        self._check_status(response, deadline, timeout_s)

    def replace_graph(self, graph_iri: str, triples: Iterable[pyoxigraph.Triple]) -> None:
        """Replace one named graph (Graph Store PUT, or DROP + INSERT DATA in one update request)."""
        data = pyoxigraph.serialize(triples, format=pyoxigraph.RdfFormat.N_TRIPLES) or b""
        self._put_graph(checked_iri(graph_iri), data, replace=True)

    def _put_graph(self, graph_iri: str | None, ntriples: bytes, *, replace: bool) -> None:
        if self.store_url:
            params = {"default": ""} if graph_iri is None else {"graph": graph_iri}
            response = self._gsp("PUT" if replace else "POST", params, content=ntriples, content_type=N_TRIPLES)
            if response.status_code >= 300:
                raise GraphStoreUnavailableError(f"The graph store answered {response.status_code}: {response.text}")
            return
        target = "DEFAULT" if graph_iri is None else f"GRAPH <{graph_iri}>"
        body = ntriples.decode()
        insert = (
            f"INSERT DATA {{ {body} }}" if graph_iri is None else f"INSERT DATA {{ GRAPH <{graph_iri}> {{ {body} }} }}"
        )
        text = f"DROP SILENT {target} ;\n{insert}" if replace else insert
        if graph_iri is not None:
            text = f"CREATE SILENT GRAPH <{graph_iri}> ;\n{text}"
        self._update_request([("update", text)], ADMIN_TIMEOUT_S)

    def drop_graph(self, graph_iri: str) -> bool:
        """Remove a named graph; False when it was not there."""
        graph_iri = checked_iri(graph_iri)
        if self.store_url:
            response = self._gsp("DELETE", {"graph": graph_iri})
            if response.status_code == 404:
                return False
            if response.status_code >= 300:
                raise GraphStoreUnavailableError(f"The graph store answered {response.status_code}: {response.text}")
            return True
        existed = self.graph_exists(graph_iri)
        if existed:
            self._update_request([("update", f"DROP SILENT GRAPH <{graph_iri}>")], ADMIN_TIMEOUT_S)
        return existed

    def add_quads(self, quads: Iterable[pyoxigraph.Quad], *, atomic: bool = True) -> None:
        """Insert quads (one request: atomic on the server's side)."""
        by_graph: dict[str | None, list[pyoxigraph.Triple]] = {}
        for quad in quads:
            name = quad.graph_name
            by_graph.setdefault(None if isinstance(name, pyoxigraph.DefaultGraph) else name.value, []).append(
                quad.triple
            )
        if self.store_url:
            payload = pyoxigraph.serialize(
                (
                    pyoxigraph.Quad(
                        t.subject, t.predicate, t.object, pyoxigraph.NamedNode(g) if g else pyoxigraph.DefaultGraph()
                    )
                    for g, triples in by_graph.items()
                    for t in triples
                ),
                format=pyoxigraph.RdfFormat.N_QUADS,
            )
            response = self._gsp("POST", {}, content=payload or b"", content_type="application/n-quads")
            if response.status_code < 300:
                return
            # Not every server takes quads on the dataset; fall back to an update request.
        blocks = []
        for graph_iri, triples in by_graph.items():
            body = (pyoxigraph.serialize(triples, format=pyoxigraph.RdfFormat.N_TRIPLES) or b"").decode()
            blocks.append(body if graph_iri is None else f"GRAPH <{graph_iri}> {{ {body} }}")
        if blocks:
            self._update_request([("update", "INSERT DATA { " + "\n".join(blocks) + " }")], ADMIN_TIMEOUT_S)

    def add_nquads(self, data: bytes, *, atomic: bool = True) -> None:
        """Insert N-Quads text: parsed here (bad data never reaches the server), then sent as `add_quads` does."""
        try:
            quads = list(pyoxigraph.parse(data, format=pyoxigraph.RdfFormat.N_QUADS))
        except SyntaxError as error:
            raise RdfSyntaxError(f"The N-Quads data does not parse: {error}") from None
        self.add_quads(quads, atomic=atomic)

    def clear(self) -> None:
        """Remove every graph and triple."""
        self._update_request([("update", "DROP ALL")], ADMIN_TIMEOUT_S)

    def _gsp(
        self,
        method: str,
        params: dict[str, str],
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        assert self.store_url is not None
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        try:
            return self._client.request(
                method, self.store_url, params=params, content=content, headers=headers, timeout=ADMIN_TIMEOUT_S
            )
        except httpx.HTTPError as error:
            raise GraphStoreUnavailableError(f"The graph store is unreachable: {error}") from None

    # --- reads -------------------------------------------------------------------------------------------
    def _select(self, sparql: str) -> list[dict[str, Any]]:
        outcome = self.query(sparql, timeout_s=self.max_timeout_s, result_cap=10**9)
        return outcome.rows()

    def graph_names(self) -> list[str]:
        """IRIs of the named graphs."""
        rows = self._select("SELECT DISTINCT ?g WHERE { GRAPH ?g { } }")
        return sorted(row["g"] for row in rows if "g" in row and not row["g"].startswith("_:"))

    def count(self) -> int:
        """Number of quads in all graphs."""
        rows = self._select("SELECT (COUNT(*) AS ?n) WHERE { { ?s ?p ?o } UNION { GRAPH ?g { ?s ?p ?o } } }")
        return int(rows[0]["n"])

    def stats(self) -> StoreStats:
        """Triples and named graphs."""
        return StoreStats(triples=self.count(), graphs=len(self.graph_names()))

    def graph_exists(self, graph_iri: str | None) -> bool:
        """Whether the named graph exists (the default graph always does)."""
        if graph_iri is None:
            return True
        graph_iri = checked_iri(graph_iri)
        outcome = self.query(f"ASK {{ GRAPH <{graph_iri}> {{ }} }}", timeout_s=self.max_timeout_s, result_cap=1)
        return outcome.boolean()

    def export_graph(self, graph_iri: str | None, media_type: str) -> bytes:
        """One graph serialised; `GraphNotFoundError` when it does not exist."""
        rdf_format = GRAPH_FORMATS.get(media_type)
        if rdf_format is None:
            raise UnsupportedFormatError(f"Graphs are not served as {media_type}.")
        graph_iri = None if graph_iri is None else checked_iri(graph_iri)
        if self.store_url:
            params = {"default": ""} if graph_iri is None else {"graph": graph_iri}
            response = self._gsp("GET", params, accept=N_TRIPLES)
            if response.status_code == 404:
                raise GraphNotFoundError(f"There is no graph <{graph_iri}>.")
            if response.status_code >= 300:
                raise GraphStoreUnavailableError(f"The graph store answered {response.status_code}: {response.text}")
            try:
                triples = [
                    quad.triple for quad in pyoxigraph.parse(response.content, format=pyoxigraph.RdfFormat.N_TRIPLES)
                ]
            except SyntaxError as error:
                raise GraphStoreUnavailableError(f"The graph store's answer is cut or malformed: {error}") from None
            return pyoxigraph.serialize(triples, format=rdf_format) or b""
        if not self.graph_exists(graph_iri):
            raise GraphNotFoundError(f"There is no graph <{graph_iri}>.")
        pattern = "?s ?p ?o" if graph_iri is None else f"GRAPH <{graph_iri}> {{ ?s ?p ?o }}"
        outcome = self.query(
            f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ {pattern} }}",
            timeout_s=self.max_timeout_s,
            result_cap=10**12,
            graph_media_type=media_type,
        )
        return outcome.body

    def load_graph(
        self, graph_iri: str | None, data: bytes, media_type: str, *, replace: bool, base_iri: str | None = None
    ) -> None:
        """Parse RDF here (bad data never reaches the server) and replace or merge one graph."""
        ntriples = parse_to_ntriples(data, media_type, base_iri=base_iri)
        self._put_graph(None if graph_iri is None else checked_iri(graph_iri), ntriples, replace=replace)

    def close(self) -> None:
        """Close the HTTP connections (the next request opens new ones)."""
        if self._own_client is not None:
            self._own_client.close()


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _with_base(sparql: str, analysis: SparqlText, base_iri: str | None) -> str:
    """Give the server our base IRI when the text has relative IRIs (its own would be the server's URL).

    Only then: prepending shifts the line numbers of the server's syntax messages.
    """
    if not base_iri or not any(t.kind == "iri" and not _SCHEME.match(t.text) for t in analysis.tokens):
        return sparql
    return f"BASE <{checked_iri(base_iri)}> {sparql}"


def _multi(pairs: list[tuple[str, str]]) -> Iterator[tuple[str, Any]]:
    """Group repeated form fields as lists (httpx encodes a list value as repeated fields)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        yield name, values if len(values) > 1 else values[0]
