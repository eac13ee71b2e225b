"""A worker process of the embedded Oxigraph store: the single writer, or one of the query readers.

Run as `python oxigraph_worker.py writer|reader <directory>` by `graph.embedded`; requests and answers are
frames on stdin/stdout (stdout is re-pointed to stderr so stray prints cannot corrupt the channel): a request
is a length-prefixed pickled tuple; an answer is `ANSWER_HEADER` (the lengths of its two parts), a pickled
tuple and then raw bytes, so a query's serialised results cross the pipe as they are, never re-pickled.
The file imports only the standard library and pyoxigraph: it starts fast and needs no package path.

* The writer owns the read-write store. After every change it writes a checkpoint (RocksDB hard links,
  milliseconds) that readers open read-only: readers never touch a directory another process writes, which
  RocksDB leaves undefined.
* A reader evaluates queries on the checkpoint it is told to use. The parent kills it when a query overruns
  its timeout: that is what really stops an Oxigraph query, which has no timeout of its own in Python.
"""

import contextlib
import os
import pickle
import re
import signal
import struct
import sys
import traceback
from itertools import islice
from typing import Any

import pyoxigraph as ox

_PREFIX = re.compile(r"(?i)PREFIX\s+([A-Za-z][\w.-]*)?:\s*<([^<>\s]*)>")
# Frames (shared with `graph.embedded`): a request is REQUEST_HEADER (its length) then a pickled tuple; an
# answer is ANSWER_HEADER (lengths of the pickled tuple and of the raw body that follows it), tuple, body.
REQUEST_HEADER = struct.Struct("!I")
ANSWER_HEADER = struct.Struct("!II")
# Pipe buffer size `graph.embedded` asks for: a large answer crosses in fewer pieces (fewer wake-ups).
PIPE_SIZE = 1 << 20
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class _CapReachedError(Exception):
    """Raised inside the result writer to stop evaluation once the cap is exceeded."""


class _CappedLines:
    """A binary sink keeping the first `limit` lines and stopping the writer (and the query) after them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines = 0
        self.parts: list[bytes] = []
        self.truncated = False

    def write(self, data: Any) -> int:
        """Keep the chunk up to the line limit; raise once a line beyond it arrives."""
        chunk = bytes(data)
        if not chunk:
            return 0
        room = self.limit - self.lines
        if room <= 0:
            self.truncated = True
            raise _CapReachedError
        newlines = chunk.count(b"\n")
        if newlines < room or (newlines == room and chunk.endswith(b"\n")):
            self.parts.append(chunk)
            self.lines += newlines
            return len(chunk)
        # Keep up to the room-th newline; anything after it is a row beyond the cap.
        cut = -1
        for _ in range(room):
            cut = chunk.index(b"\n", cut + 1)
        self.parts.append(chunk[: cut + 1])
        self.lines = self.limit
        self.truncated = True
        raise _CapReachedError

    def flush(self) -> None:
        """Nothing is buffered here."""
        return None


def _graph(iri: str | None) -> ox.NamedNode | ox.DefaultGraph:
    return ox.DefaultGraph() if iri is None else ox.NamedNode(iri)


class _RowBound:
    """A binary sink for JSON or XML results that stops the writer (and the query) once rows may pass a cap.

    It counts a marker that every row adds (`},{` between JSON rows, `<result>` opening an XML one), also
    across chunk boundaries. An XML count is exact; `},{` may also occur inside a JSON string, so there the
    count only bounds the rows from above, and the whole answer is counted exactly afterwards.
    """

    def __init__(self, marker: bytes, limit: int) -> None:
        self.marker = marker
        self.limit = limit  # most markers allowed
        self.seen = 0
        self.tail = b""  # the last len(marker) - 1 bytes written: a marker may straddle two chunks
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        """Keep the chunk; raise once more markers than the limit have arrived."""
        chunk = bytes(data)
        if not chunk:
            return 0
        keep = len(self.marker) - 1
        self.seen += chunk.count(self.marker) + (self.tail + chunk[:keep]).count(self.marker)
        if self.seen > self.limit:
            raise _CapReachedError
        self.tail = (self.tail + chunk)[-keep:]
        self.parts.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        """Nothing is buffered here."""
        return None


def _json_rows(body: bytes) -> int:
    """The number of rows of Oxigraph's SPARQL JSON results (exact, whatever the strings hold)."""
    if body.endswith(b'"bindings":[]}}'):
        return 0
    if b"{}" in body:
        # Empty rows are there, or a string looks like one: count on the structure with strings blanked.
        return _STRING.sub(b'""', body).count(b"},{") + 1
    # Between rows, `},{` is followed by `"` and a variable name. Inside a string, a `"` after `},{` ends the
    # string, and `,` or `}` follows it: those occurrences are taken back out.
    return body.count(b'},{"') - body.count(b'},{",') - body.count(b'},{"}') + 1


def _serialize_capped(result: ox.QuerySolutions, results_format: ox.QueryResultsFormat, cap: int) -> bytes | None:
    """JSON or XML results serialised by Oxigraph as they are; None when the rows may pass `cap`."""
    json = results_format == ox.QueryResultsFormat.JSON
    sink = _RowBound(b"},{", cap - 1) if json else _RowBound(b"<result>", cap)
    try:
        result.serialize(sink, format=results_format)  # type: ignore[arg-type]  # a write() sink
    except _CapReachedError:
        return None
    return b"".join(sink.parts)


def _query(store: ox.Store, request: dict[str, Any]) -> tuple[tuple[str, str, bool, int | None], bytes]:
    options: dict[str, Any] = {"use_default_graph_as_union": request["union"], "base_iri": request["base_iri"]}
    if request["default_graphs"] is not None:
        options["default_graph"] = [ox.NamedNode(iri) for iri in request["default_graphs"]]
        options["named_graphs"] = [ox.NamedNode(iri) for iri in request["named_graphs"]]
    result = store.query(request["sparql"], **options)
    cap = request["cap"]
    if isinstance(result, ox.QueryBoolean):
        media_type = request["results_media_type"]
        body = result.serialize(format=ox.QueryResultsFormat.from_media_type(media_type)) or b""
        return ("ask", media_type, False, None), body
    if isinstance(result, ox.QuerySolutions):
        media_type = request["results_media_type"]
        results_format = ox.QueryResultsFormat.from_media_type(media_type)
        order = _column_order([variable.value for variable in result.variables], request.get("variable_order"))
        if order is None and results_format in (ox.QueryResultsFormat.JSON, ox.QueryResultsFormat.XML):
            # The common case: Oxigraph writes the requested format itself, no re-encoding.
            direct = _serialize_capped(result, results_format, cap)
            if direct is not None:
                json = results_format == ox.QueryResultsFormat.JSON
                return ("select", media_type, False, _json_rows(direct) if json else direct.count(b"<result>")), direct
            # The cap may cut this answer: evaluate again and cut it exactly, by lines of TSV.
            result = store.query(request["sparql"], **options)
            assert isinstance(result, ox.QuerySolutions)
        # TSV has exactly one line per row, so the cap is counted on newlines while Oxigraph streams; raising
        # in the sink stops the evaluation itself. Other formats are re-encoded from the kept TSV (in Rust).
        sink = _CappedLines(cap + 1)  # the header line plus `cap` rows
        with contextlib.suppress(_CapReachedError):
            result.serialize(sink, format=ox.QueryResultsFormat.TSV)  # type: ignore[arg-type]  # a write() sink
        tsv = _reorder_columns(b"".join(sink.parts), order)
        if results_format == ox.QueryResultsFormat.TSV:
            body = tsv
        else:
            body = ox.parse_query_results(tsv, format=ox.QueryResultsFormat.TSV).serialize(format=results_format) or b""
        return ("select", media_type, sink.truncated, max(sink.lines - 1, 0)), body
    triples = list(islice(result, cap + 1))
    truncated = len(triples) > cap
    del triples[cap:]
    media_type = request["graph_media_type"]
    rdf_format = ox.RdfFormat.from_media_type(media_type)
    graph_body = ox.serialize(triples, format=rdf_format, prefixes=_prefixes(request["sparql"])) or b""
    return ("graph", media_type, truncated, len(triples)), graph_body


def _column_order(names: list[str], order: list[str] | None) -> list[int] | None:
    """For `SELECT *`, the column positions in the order the query mentions them; None when already so."""
    if not order:
        return None
    rank = {name: position for position, name in enumerate(order)}
    wanted = sorted(range(len(names)), key=lambda index: (rank.get(names[index], len(rank)), index))
    return None if wanted == list(range(len(names))) else wanted


def _reorder_columns(tsv: bytes, wanted: list[int] | None) -> bytes:
    """Put the TSV columns in the `wanted` order (Oxigraph sorts `SELECT *` columns by name)."""
    if wanted is None:
        return tsv
    lines = tsv.split(b"\n")
    width = len(wanted)
    rows = lines[:-1]  # the text ends with a newline
    out = []
    for row in rows:
        cells = row.split(b"\t")
        out.append(b"\t".join(cells[index] for index in wanted) if len(cells) == width else row)
    return b"\n".join(out) + b"\n"


def _prefixes(sparql: str) -> dict[str, str]:
    # Only for pretty Turtle/RDF-XML/JSON-LD output: a missed or odd declaration changes nothing but looks.
    return {prefix or "": iri for prefix, iri in _PREFIX.findall(sparql) if iri.startswith(("http", "urn"))}


def _export(store: ox.Store, graph_iri: str | None, media_type: str) -> bytes | None:
    graph = _graph(graph_iri)
    if graph_iri is not None and not store.contains_named_graph(graph):
        return None
    triples = (quad.triple for quad in store.quads_for_pattern(None, None, None, graph))
    return ox.serialize(triples, format=ox.RdfFormat.from_media_type(media_type)) or b""


def _replace(store: ox.Store, graph_iri: str | None, ntriples: bytes) -> None:
    # One SPARQL update is one transaction: nobody, not even a crash, sees the graph dropped but not refilled.
    # N-Triples is valid INSERT DATA syntax, and Oxigraph applies it faster than a transactional load.
    if graph_iri is None:
        text = b"DROP SILENT DEFAULT ; INSERT DATA {\n" + ntriples + b"\n}"
    else:
        iri = ox.NamedNode(graph_iri).value.encode()
        text = b"DROP SILENT GRAPH <" + iri + b"> ; INSERT DATA { GRAPH <" + iri + b"> {\n" + ntriples + b"\n} }"
    store.update(text.decode())
    if graph_iri is not None:
        store.add_graph(ox.NamedNode(graph_iri))  # an empty replacement still leaves the graph existing


# New graphs of at least this many quads are bulk-loaded: Oxigraph's bulk loader writes sorted files and
# ingests them in one step (all or nothing, like a transaction), at about half the CPU of a transactional load
# and with nothing left in memory for the next checkpoint to flush; below it, its fixed cost per call loses.
BULK_LOAD_MIN_QUADS = 20_000


def _replace_many(store: ox.Store, graphs: list[tuple[str, str]], then_update: str | None) -> None:
    # A load cannot drop: graphs that exist already are replaced by updates. New graphs go in one load (one
    # big INSERT DATA costs more than its size: Oxigraph's update slows down as its transaction grows).
    fresh: list[str] = []
    for graph_iri, ntriples in graphs:
        graph = ox.NamedNode(graph_iri)
        if store.contains_named_graph(graph) or not ntriples:
            _replace(store, graph_iri, ntriples.encode())
        else:
            suffix = f" <{graph.value}> .\n"
            fresh.append(ntriples.replace(" .\n", suffix))  # N-Triples to N-Quads: every line ends with " .\n"
    if fresh:
        nquads = "".join(fresh).encode()
        if nquads.count(b"\n") >= BULK_LOAD_MIN_QUADS:
            store.bulk_load(nquads, format=ox.RdfFormat.N_QUADS)
        else:
            store.load(nquads, format=ox.RdfFormat.N_QUADS)
    if then_update:
        store.update(then_update)


def _writer_call(store: ox.Store, operation: str, arguments: tuple[Any, ...]) -> Any:
    if operation == "replace":
        _replace(store, *arguments)
    elif operation == "replace_many":
        _replace_many(store, *arguments)
    elif operation == "add":
        (nquads,) = arguments
        store.load(nquads, format=ox.RdfFormat.N_QUADS)
    elif operation == "bulk":
        (nquads,) = arguments
        store.bulk_load(nquads, format=ox.RdfFormat.N_QUADS)
    elif operation == "merge":
        graph_iri, ntriples = arguments
        store.load(ntriples, format=ox.RdfFormat.N_TRIPLES, to_graph=_graph(graph_iri))
        if graph_iri is not None:
            store.add_graph(ox.NamedNode(graph_iri))
    elif operation == "drop":
        (graph_iri,) = arguments
        graph = _graph(graph_iri)
        existed = graph_iri is None or store.contains_named_graph(graph)
        if graph_iri is None:
            store.clear_graph(graph)
        elif existed:
            store.remove_graph(graph)
        return existed
    elif operation == "update":
        sparql, base_iri = arguments
        store.update(sparql, base_iri=base_iri)
    elif operation == "clear":
        store.clear()
    else:
        raise ValueError(f"unknown writer operation {operation!r}")
    return None


def _reader_call(store: ox.Store, operation: str, arguments: tuple[Any, ...]) -> tuple[Any, bytes]:
    """A reader operation's answer and the bytes that follow it raw (a query's results, an exported graph)."""
    if operation == "query":
        return _query(store, arguments[0])
    if operation == "export":
        exported = _export(store, *arguments)
        return exported is not None, exported or b""
    if operation == "names":
        return [graph.value for graph in store.named_graphs() if isinstance(graph, ox.NamedNode)], b""
    if operation == "count":
        return len(store), b""
    if operation == "exists":
        (graph_iri,) = arguments
        return graph_iri is None or store.contains_named_graph(ox.NamedNode(graph_iri)), b""
    raise ValueError(f"unknown reader operation {operation!r}")


def _failure(error: BaseException) -> tuple[str, str, str]:
    if isinstance(error, SyntaxError):
        kind = "syntax"
    elif isinstance(error, ValueError):
        kind = "value"
    elif isinstance(error, OSError):
        kind = "io"
    elif isinstance(error, RuntimeError):
        kind = "runtime"  # e.g. CREATE GRAPH of an existing graph
    else:
        kind = "internal"
        traceback.print_exc(file=sys.stderr)
    return ("err", kind, str(error) or type(error).__name__)


class Inbox:
    """Reads request frames from a blocking descriptor (the worker's stdin)."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.buffer = b""

    def _read(self, size: int) -> bytes:
        chunk = os.read(self.descriptor, size)
        if not chunk:
            raise EOFError
        return chunk

    def receive(self) -> Any:
        """The next request (one read for a small one); EOFError when the parent closed the channel."""
        buffer = self.buffer or self._read(1 << 16)
        while len(buffer) < REQUEST_HEADER.size:
            buffer += self._read(1 << 16)
        end = REQUEST_HEADER.size + REQUEST_HEADER.unpack_from(buffer)[0]
        if len(buffer) < end:
            parts = [buffer]
            have = len(buffer)
            while have < end:
                chunk = self._read(end - have)
                parts.append(chunk)
                have += len(chunk)
            buffer = b"".join(parts)
        self.buffer = buffer[end:]
        return pickle.loads(memoryview(buffer)[REQUEST_HEADER.size : end])


def write_all(descriptor: int, parts: list[bytes]) -> None:
    """Write the parts in order, in one system call unless the pipe takes them in pieces."""
    total = sum(len(part) for part in parts)
    written = os.writev(descriptor, parts)
    if written < total:
        rest = memoryview(b"".join(parts))[written:]
        while rest:
            rest = rest[os.write(descriptor, rest) :]


def send_answer(descriptor: int, answer: tuple[Any, ...], body: bytes = b"") -> None:
    """One answer frame: the pickled tuple, then `body` as it is."""
    meta = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    write_all(descriptor, [ANSWER_HEADER.pack(len(meta), len(body)), meta, body])


def main(role: str, directory: str) -> None:
    """Serve requests from the parent until it closes the channel."""
    # Ctrl-C reaches the whole process group: the parent decides when workers stop (the channel closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel_out = os.dup(1)
    os.dup2(2, 1)  # anything printed by libraries goes to stderr, never into the channel
    inbox = Inbox(0)
    store: ox.Store | None = None
    snapshot: str | None = None
    try:
        if role == "writer":
            store = ox.Store(directory)
        send_answer(channel_out, ("ready", os.getpid()))
    except BaseException as error:
        send_answer(channel_out, _failure(error))
        return
    while True:
        try:
            request = inbox.receive()
        except EOFError:
            return
        operation, arguments = request[0], request[1:]
        try:
            body = b""
            if role == "writer":
                assert store is not None
                if operation == "backup":
                    (target,) = arguments
                    store.backup(target)
                    answer: Any = None
                else:
                    answer = _writer_call(store, operation, arguments)
            else:
                wanted, arguments = arguments[0], arguments[1:]
                if wanted != snapshot:
                    store = None  # release the previous checkpoint's files before opening the next
                    store = ox.Store.read_only(wanted)
                    snapshot = wanted
                assert store is not None
                answer, body = _reader_call(store, operation, arguments)
            meta = pickle.dumps(("ok", answer), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:
            send_answer(channel_out, _failure(error))
            continue
        write_all(channel_out, [ANSWER_HEADER.pack(len(meta), len(body)), meta, body])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
