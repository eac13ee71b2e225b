"""The embedded store: pyoxigraph on disk, with queries that truly stop at their timeout.

pyoxigraph has no query timeout, and a thread evaluating a query cannot be stopped. So no Oxigraph store is
opened in the API process at all:

* one **writer** process owns the read-write store (`<graph_dir>/store`); every change is one transaction;
  the first query after changes has the writer write a checkpoint (`<graph_dir>/snapshots/…`, hard links);
* up to `readers` **reader** processes answer queries on the newest checkpoint, opened read-only (RocksDB
  leaves reading a directory another process writes undefined; checkpoints never change);
* a query or update past its timeout gets its process killed (SIGKILL) and a `QueryTimeoutError`; the next
  request starts a fresh process. A killed update never committed: Oxigraph commits a transaction at its end.

A query always sees every change that completed before it started: it waits for a checkpoint when changes
are not yet in one (one checkpoint per burst of changes; tens of milliseconds, mostly fsync).
Processes start on first use, so hubs that never touch the graph (most tests) pay nothing.
"""

import asyncio
import contextlib
import fcntl
import math
import os
import pickle
import select
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyoxigraph
import structlog

from graph.oxigraph_worker import ANSWER_HEADER, PIPE_SIZE, REQUEST_HEADER, write_all
from graph.sparql import apply_update_dataset, guard_outbound, query_form, select_star_order
from graph.store import (
    GRAPH_FORMATS,
    N_TRIPLES,
    RESULTS_FORMATS,
    SPARQL_RESULTS_JSON,
    GraphNotFoundError,
    GraphStoreError,
    GraphStoreUnavailableError,
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

log = structlog.get_logger("qihub.graph")

WORKER_SCRIPT = Path(__file__).with_name("oxigraph_worker.py")
STARTUP_TIMEOUT_S = 60.0  # opening a large store after a crash replays its write-ahead log
ADMIN_TIMEOUT_S = 600.0  # graph imports and internal reads: generous, they are the hub's own work


class _KilledError(Exception):
    """The worker overran its deadline and was killed."""


class _ChannelClosedError(Exception):
    """The worker's end of the channel closed: the process is gone."""


class _Worker:
    """One worker process and its framed channel (see `graph.oxigraph_worker`)."""

    def __init__(self, role: str, directory: Path) -> None:
        self.role = role
        self.snapshot: str | None = None  # the checkpoint a reader has open (or is opening)
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), role, str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._outbox = os.dup(self.process.stdin.fileno())
        self._inbox = os.dup(self.process.stdout.fileno())
        self.process.stdin.close()
        self.process.stdout.close()
        self._closed = False
        set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
        for descriptor in (self._outbox, self._inbox):
            # Large answers and imports in fewer pieces (fewer wake-ups); the default size works too.
            with contextlib.suppress(OSError):
                if set_pipe_size is not None:
                    fcntl.fcntl(descriptor, set_pipe_size, PIPE_SIZE)
        # Answers are read without blocking, by the event loop or after a poll: a worker that hangs or dies
        # can never block the reader, and no mode switch is needed between the two ways of waiting.
        os.set_blocking(self._inbox, False)
        # One poll object for the channel's life: building one per wait costs more than the wait.
        self._poller = select.poll()
        self._poller.register(self._inbox, select.POLLIN)
        meta, _ = self._receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if meta[0] != "ready":
            self.kill()
            raise GraphStoreUnavailableError(f"The graph store could not be opened: {meta[2]}")

    def _send(self, request: tuple[Any, ...]) -> None:
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            write_all(self._outbox, [REQUEST_HEADER.pack(len(payload)), payload])
        except OSError as error:
            self.kill()
            raise GraphStoreUnavailableError("The graph worker process is gone.") from error

    def call(self, request: tuple[Any, ...], deadline: float) -> tuple[Any, bytes]:
        """Send a request and wait for its answer until `deadline` (kills the worker past it): (value, raw bytes)."""
        self._send(request)
        return _answer(*self._receive(deadline))

    async def call_async(self, request: tuple[Any, ...], deadline: float) -> tuple[Any, bytes]:
        """`call` for the event loop: the answer is read as it arrives, never blocking the loop."""
        self._send(request)
        frame = _Frame()
        try:
            pulled = self._pull(frame)  # a fast worker may have answered already
        except _ChannelClosedError:
            self.kill()
            raise GraphStoreUnavailableError("The graph worker process stopped unexpectedly.") from None
        if not pulled:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[bool] = loop.create_future()

            def readable() -> None:
                try:
                    complete = self._pull(frame)
                except _ChannelClosedError as error:
                    if not done.done():
                        done.set_exception(error)
                    return
                if complete and not done.done():
                    done.set_result(True)

            def late() -> None:
                if not done.done():
                    done.set_result(False)

            # A reader callback and a timer instead of `asyncio.wait_for`: no task per query.
            loop.add_reader(self._inbox, readable)
            timer = loop.call_later(max(0.0, deadline - time.monotonic()), late)
            try:
                arrived: bool | None = await done
            except _ChannelClosedError:
                arrived = None
            finally:
                loop.remove_reader(self._inbox)  # before `kill` closes the descriptor
                timer.cancel()
            if arrived is None:
                self.kill()
                raise GraphStoreUnavailableError("The graph worker process stopped unexpectedly.")
            if not arrived:
                self.kill()
                raise _KilledError
        return _answer(*frame.parts())

    def _pull(self, frame: "_Frame") -> bool:
        """Read what the pipe holds into `frame`, without blocking; True once the frame is whole."""
        try:
            while not frame.complete:
                if not frame.read_from(self._inbox):
                    raise _ChannelClosedError
        except BlockingIOError:
            return False
        except OSError as error:
            raise _ChannelClosedError from error
        return True

    def _receive(self, deadline: float) -> tuple[tuple[Any, ...], bytes]:
        frame = _Frame()
        try:
            while not self._pull(frame):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._poller.poll(math.ceil(remaining * 1000)):
                    self.kill()
                    raise _KilledError
        except _ChannelClosedError:
            self.kill()
            raise GraphStoreUnavailableError("The graph worker process stopped unexpectedly.") from None
        return frame.parts()

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def kill(self) -> None:
        """Stop the process at once (SIGKILL) and release the channel."""
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._close_channel()

    def _close_channel(self) -> None:
        if self._closed:
            return
        self._closed = True
        for descriptor in (self._outbox, self._inbox):
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def stop(self) -> None:
        """Close the channel so the worker exits on its own (flushing the store), then make sure."""
        if not self._closed:
            with contextlib.suppress(OSError):
                os.close(self._outbox)
            self._outbox = -1
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.kill()


class _Frame:
    """An answer frame being read: header, pickled tuple, raw body.

    A small answer arrives whole in the first read. A larger one gets a buffer of its full size once the
    header is in, and the rest is read straight into it: the body is copied once, into the `bytes` returned.
    """

    __slots__ = ("_buffer", "_filled", "_head", "_size")

    def __init__(self) -> None:
        self._head = b""
        self._buffer: memoryview | None = None
        self._filled = 0
        self._size = -1  # of the whole frame, once the header is in

    @property
    def complete(self) -> bool:
        """Whether every byte of the frame is in."""
        return 0 <= self._size <= (len(self._head) if self._buffer is None else self._filled)

    def read_from(self, descriptor: int) -> int:
        """One non-blocking read from the pipe into the frame; the number of bytes (0 at the end of the pipe)."""
        if self._buffer is not None:
            count = os.readv(descriptor, [self._buffer[self._filled :]])
            self._filled += count
            return count
        chunk = os.read(descriptor, 1 << 16)
        self._head += chunk
        if self._size < 0 and len(self._head) >= ANSWER_HEADER.size:
            meta_size, body_size = ANSWER_HEADER.unpack_from(self._head)
            self._size = ANSWER_HEADER.size + meta_size + body_size
            if len(self._head) < self._size:
                self._buffer = memoryview(bytearray(self._size))
                self._buffer[: len(self._head)] = self._head
                self._filled = len(self._head)
        return len(chunk)

    def parts(self) -> tuple[tuple[Any, ...], bytes]:
        """The pickled tuple and the raw body of a complete frame."""
        data = memoryview(self._head) if self._buffer is None else self._buffer
        meta_end = ANSWER_HEADER.size + ANSWER_HEADER.unpack_from(data)[0]
        meta: tuple[Any, ...] = pickle.loads(data[ANSWER_HEADER.size : meta_end])
        return meta, bytes(data[meta_end:])


def _answer(meta: tuple[Any, ...], body: bytes) -> tuple[Any, bytes]:
    if meta[0] == "ok":
        return meta[1], body
    _, kind, message = meta
    raise _failure(kind, message)


def _failure(kind: str, message: str) -> GraphStoreError:
    if kind == "syntax":
        return SparqlSyntaxError(message)
    if kind == "runtime":
        return SparqlRequestError(message)
    if kind == "value":
        return UnsupportedFormatError(message) if "format" in message.lower() else SparqlSyntaxError(message)
    return GraphStoreUnavailableError(f"The graph store failed: {message}")


def _remove_orphaned_checkpoints(parent: Path) -> None:
    if not parent.exists():
        return
    for entry in parent.iterdir():
        owner = entry.name.split("-", 1)[0]
        if owner.isdigit() and _process_alive(int(owner)):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedOxigraphStore:
    """The hub's default `GraphStore`: pyoxigraph on disk, writer and readers in their own processes."""

    def __init__(
        self,
        directory: Path,
        *,
        service_allowlist: Sequence[str] = (),
        readers: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.service_allowlist = list(service_allowlist)
        self.max_readers = readers or max(2, min(4, os.cpu_count() or 2))
        self._store_dir = self.directory / "store"
        # Checkpoints live in a directory of this instance (named by its pid), so a second process that opens
        # the same graph dir by mistake cannot delete checkpoints this one's readers have open.
        self._snapshot_dir = self.directory / "snapshots" / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._writer: _Worker | None = None
        self._writer_lock = threading.Lock()  # one change at a time, in order
        self._state = threading.Condition()  # guards readers, snapshot and closed
        self._readers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._starting = 0
        self._snapshot: str | None = None
        self._snapshot_generation = -1
        self._generation = 0  # changes completed (counted under the writer lock)
        self._closed = False  # True only while `close` runs

    # --- processes ---------------------------------------------------------------------------------------
    def _ensure_writer(self) -> _Worker:
        if self._closed:
            raise GraphStoreUnavailableError("The graph store is closed.")
        if self._writer is None or not self._writer.alive:
            if self._snapshot is None:
                # Checkpoints left by processes that are gone (a crash) are stale: remove them.
                _remove_orphaned_checkpoints(self._snapshot_dir.parent)
                self._snapshot_dir.mkdir(parents=True, exist_ok=True)
            self._store_dir.mkdir(parents=True, exist_ok=True)
            self._writer = _Worker("writer", self._store_dir)
        return self._writer

    def _writer_call(self, request: tuple[Any, ...], deadline: float) -> Any:
        """Run a change in the writer (the writer lock is held); the next query publishes a checkpoint."""
        writer = self._ensure_writer()
        try:
            answer, _ = writer.call(request, deadline)
        except _KilledError:
            # The killed transaction never committed; a fresh writer reopens the store (RocksDB recovery).
            self._writer = None
            raise QueryTimeoutError(
                "The update ran past its timeout and was stopped; nothing of it was applied."
            ) from None
        except GraphStoreUnavailableError:
            self._writer = None
            raise
        finally:
            # Even a failed change may have been applied before failing: never trust the old checkpoint.
            self._generation += 1
        return answer

    def _collect_snapshots(self) -> None:
        with self._state:
            keep = {self._snapshot} | {reader.snapshot for reader in self._readers}
        with contextlib.suppress(FileNotFoundError):
            for entry in self._snapshot_dir.iterdir():
                if str(entry) not in keep:
                    shutil.rmtree(entry, ignore_errors=True)

    def _current_snapshot(self, deadline: float) -> str:
        """A checkpoint holding every change completed so far, made now if changes are not yet published.

        Checkpoints are made lazily, by the first query after changes, so a burst of changes (an import)
        costs one checkpoint, and a change itself never waits for one. A query that needs one while a long
        change runs waits for it, within its own deadline.
        """
        with self._state:
            if self._snapshot is not None and self._snapshot_generation == self._generation:
                return self._snapshot
        # No change is in flight while the writer lock is held: the generation is stable.
        if not self._writer_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise QueryTimeoutError("The query timed out waiting for a change in progress to finish.")
        with contextlib.ExitStack() as held:
            held.callback(self._writer_lock.release)
            if self._snapshot is None or self._snapshot_generation != self._generation:
                writer = self._ensure_writer()
                target = self._snapshot_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
                try:
                    writer.call(("backup", str(target)), time.monotonic() + ADMIN_TIMEOUT_S)
                except _KilledError:
                    self._writer = None
                    raise GraphStoreUnavailableError("The graph store could not write a checkpoint.") from None
                with self._state:
                    self._snapshot = str(target)
                    self._snapshot_generation = self._generation
                self._collect_snapshots()
            with self._state:
                assert self._snapshot is not None
                return self._snapshot

    def _acquire_reader(self, deadline: float) -> _Worker:
        with self._state:
            while True:
                if self._closed:
                    raise GraphStoreUnavailableError("The graph store is closed.")
                if self._idle:
                    return self._idle.pop()
                if len(self._readers) + self._starting < self.max_readers:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueryTimeoutError("Every query worker stayed busy until the timeout.")
                self._state.wait(remaining)
        try:
            reader = _Worker("reader", self.directory)
        finally:
            with self._state:
                self._starting -= 1
        with self._state:
            self._readers.append(reader)
        return reader

    def _release_reader(self, reader: _Worker, *, healthy: bool) -> None:
        with self._state:
            if healthy and not self._closed:
                self._idle.append(reader)
            elif reader in self._readers:
                self._readers.remove(reader)
            self._state.notify()
        if not healthy:
            reader.kill()
            self._collect_snapshots()

    def _read(self, operation: str, *arguments: Any, timeout_s: float) -> Any:
        """A reader operation's answer."""
        return self._read_raw(operation, *arguments, timeout_s=timeout_s)[0]

    def _read_raw(self, operation: str, *arguments: Any, timeout_s: float) -> tuple[Any, bytes]:
        """A reader operation's answer and the raw bytes after it."""
        deadline = time.monotonic() + timeout_s
        snapshot = self._current_snapshot(deadline)
        reader = self._acquire_reader(deadline)
        reader.snapshot = snapshot
        try:
            answer = reader.call((operation, snapshot, *arguments), deadline)
        except _KilledError:
            self._release_reader(reader, healthy=False)
            raise QueryTimeoutError(f"The query ran past its timeout of {timeout_s:g} s and was stopped.") from None
        except GraphStoreUnavailableError:
            self._release_reader(reader, healthy=False)
            raise
        except GraphStoreError:
            self._release_reader(reader, healthy=True)
            raise
        self._release_reader(reader, healthy=True)
        return answer

    # --- GraphStore --------------------------------------------------------------------------------------
    def _query_request(
        self,
        sparql: str,
        *,
        default_graph_uris: Sequence[str],
        named_graph_uris: Sequence[str],
        result_cap: int,
        results_media_type: str,
        graph_media_type: str,
        union_default_graph: bool,
        base_iri: str | None,
    ) -> dict[str, Any]:
        if results_media_type not in RESULTS_FORMATS or graph_media_type not in GRAPH_FORMATS:
            raise UnsupportedFormatError(f"Unsupported result format {results_media_type} / {graph_media_type}.")
        sparql = self._guard(sparql, base_iri)
        dataset = bool(default_graph_uris or named_graph_uris)
        return {
            "sparql": sparql,
            "base_iri": base_iri,
            "union": union_default_graph,
            "default_graphs": [checked_iri(uri) for uri in default_graph_uris] if dataset else None,
            "named_graphs": [checked_iri(uri) for uri in named_graph_uris] if dataset else None,
            "cap": max(0, result_cap),
            "results_media_type": results_media_type,
            "graph_media_type": graph_media_type,
            "variable_order": select_star_order(sparql),
        }

    @staticmethod
    def _outcome(request: dict[str, Any], answer: tuple[Any, bytes]) -> QueryOutcome:
        (form, media_type, truncated, count), body = answer
        if form == "graph":
            form = query_form(request["sparql"])
        return QueryOutcome(form=form, media_type=media_type, body=body, truncated=truncated, count=count)

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
        """Run a query in a reader process, killed when it overruns `timeout_s`."""
        request = self._query_request(
            sparql,
            default_graph_uris=default_graph_uris,
            named_graph_uris=named_graph_uris,
            result_cap=result_cap,
            results_media_type=results_media_type,
            graph_media_type=graph_media_type,
            union_default_graph=union_default_graph,
            base_iri=base_iri,
        )
        return self._outcome(request, self._read_raw("query", request, timeout_s=timeout_s))

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
        """`query` for the event loop: waits on the reader's pipe instead of parking a thread.

        Only when a checkpoint is current and a reader idle; otherwise (a checkpoint or a reader to make,
        both blocking) it runs `query` in the thread pool.
        """
        request = self._query_request(
            sparql,
            default_graph_uris=default_graph_uris,
            named_graph_uris=named_graph_uris,
            result_cap=result_cap,
            results_media_type=results_media_type,
            graph_media_type=graph_media_type,
            union_default_graph=union_default_graph,
            base_iri=base_iri,
        )
        deadline = time.monotonic() + timeout_s
        with self._state:
            fresh = self._snapshot is not None and self._snapshot_generation == self._generation
            reader = self._idle.pop() if fresh and self._idle and not self._closed else None
            snapshot = self._snapshot
        if reader is None or snapshot is None:
            answer = await asyncio.to_thread(self._read_raw, "query", request, timeout_s=timeout_s)
            return self._outcome(request, answer)
        reader.snapshot = snapshot
        try:
            answer = await reader.call_async(("query", snapshot, request), deadline)
        except _KilledError:
            self._release_reader(reader, healthy=False)
            raise QueryTimeoutError(f"The query ran past its timeout of {timeout_s:g} s and was stopped.") from None
        except GraphStoreUnavailableError:
            self._release_reader(reader, healthy=False)
            raise
        except GraphStoreError:
            self._release_reader(reader, healthy=True)
            raise
        except BaseException:  # cancelled: its answer would arrive out of turn, so the reader must go
            self._release_reader(reader, healthy=False)
            raise
        self._release_reader(reader, healthy=True)
        return self._outcome(request, answer)

    def update(
        self,
        sparql: str,
        *,
        timeout_s: float,
        using_graph_uris: Sequence[str] = (),
        using_named_graph_uris: Sequence[str] = (),
        base_iri: str | None = None,
    ) -> None:
        """Run an update in the writer process; killed (and never committed) past `timeout_s`."""
        sparql = apply_update_dataset(self._guard(sparql, base_iri), using_graph_uris, using_named_graph_uris)
        with self._writer_lock:
            self._writer_call(("update", sparql, base_iri), time.monotonic() + timeout_s)

    def replace_graph(self, graph_iri: str, triples: Iterable[pyoxigraph.Triple]) -> None:
        """Atomically drop the named graph and insert the triples (one transaction in the writer)."""
        data = pyoxigraph.serialize(triples, format=pyoxigraph.RdfFormat.N_TRIPLES) or b""
        with self._writer_lock:
            self._writer_call(("replace", checked_iri(graph_iri), data), time.monotonic() + ADMIN_TIMEOUT_S)

    def replace_graphs(self, graphs: Sequence[tuple[str, str]], *, then_update: str | None = None) -> None:
        """Replace named graphs with N-Triples text, then run an update, in one writer call.

        Each graph is replaced whole, in one transaction (a crash leaves it old or new, never dropped but not
        refilled); queries see the call's changes all at once, as they read checkpoints made between calls.
        """
        checked = [(checked_iri(graph_iri), ntriples) for graph_iri, ntriples in graphs]
        with self._writer_lock:
            self._writer_call(("replace_many", checked, then_update), time.monotonic() + ADMIN_TIMEOUT_S)

    def drop_graph(self, graph_iri: str) -> bool:
        """Remove a named graph; False when it was not there."""
        with self._writer_lock:
            existed: bool = self._writer_call(("drop", checked_iri(graph_iri)), time.monotonic() + ADMIN_TIMEOUT_S)
        return existed

    def add_quads(self, quads: Iterable[pyoxigraph.Quad], *, atomic: bool = True) -> None:
        """Insert quads in one transaction; `atomic=False` bulk-loads (much faster, for big imports)."""
        self.add_nquads(pyoxigraph.serialize(quads, format=pyoxigraph.RdfFormat.N_QUADS) or b"", atomic=atomic)

    def add_nquads(self, data: bytes, *, atomic: bool = True) -> None:
        """Insert N-Quads text as it is (the writer parses it strictly); `atomic=False` bulk-loads."""
        if not data:
            return
        with self._writer_lock:
            try:
                self._writer_call(("add" if atomic else "bulk", data), time.monotonic() + ADMIN_TIMEOUT_S)
            except SparqlSyntaxError as error:  # the writer reports any parse failure as "syntax"
                raise RdfSyntaxError(f"The N-Quads data does not parse: {error.detail}") from None

    def clear(self) -> None:
        """Remove every graph and triple."""
        with self._writer_lock:
            self._writer_call(("clear",), time.monotonic() + ADMIN_TIMEOUT_S)

    def graph_names(self) -> list[str]:
        """IRIs of the named graphs."""
        names: list[str] = self._read("names", timeout_s=ADMIN_TIMEOUT_S)
        return sorted(names)

    def count(self) -> int:
        """Number of quads in all graphs."""
        total: int = self._read("count", timeout_s=ADMIN_TIMEOUT_S)
        return total

    def stats(self) -> StoreStats:
        """Triples and named graphs."""
        return StoreStats(triples=self.count(), graphs=len(self.graph_names()))

    def graph_exists(self, graph_iri: str | None) -> bool:
        """Whether the named graph exists (the default graph always does)."""
        exists: bool = self._read(
            "exists", None if graph_iri is None else checked_iri(graph_iri), timeout_s=ADMIN_TIMEOUT_S
        )
        return exists

    def export_graph(self, graph_iri: str | None, media_type: str) -> bytes:
        """One graph serialised (Graph Store Protocol GET); `GraphNotFoundError` when it does not exist."""
        if media_type not in GRAPH_FORMATS:
            raise UnsupportedFormatError(f"Graphs are not served as {media_type}.")
        iri = None if graph_iri is None else checked_iri(graph_iri)
        exists, body = self._read_raw("export", iri, media_type, timeout_s=ADMIN_TIMEOUT_S)
        if not exists:
            raise GraphNotFoundError(f"There is no graph <{graph_iri}>.")
        return body

    def load_graph(
        self, graph_iri: str | None, data: bytes, media_type: str, *, replace: bool, base_iri: str | None = None
    ) -> None:
        """Parse RDF (here, so bad data costs the writer nothing) and replace or merge one graph."""
        ntriples = parse_to_ntriples(data, media_type, base_iri=base_iri)
        iri = None if graph_iri is None else checked_iri(graph_iri)
        with self._writer_lock:
            self._writer_call(("replace" if replace else "merge", iri, ntriples), time.monotonic() + ADMIN_TIMEOUT_S)

    def close(self) -> None:
        """Stop every worker (the writer flushes on its way out) and remove the checkpoints.

        Idempotent, and not final: the next use starts workers again (an app's lifespan may stop and
        start more than once, e.g. under test clients).
        """
        with self._state:
            self._closed = True  # requests arriving meanwhile fail fast instead of starting workers
            readers, self._readers, self._idle = self._readers, [], []
            self._state.notify_all()
        try:
            for reader in readers:
                reader.kill()
            with self._writer_lock:
                if self._writer is not None:
                    self._writer.stop()
                    self._writer = None
                shutil.rmtree(self._snapshot_dir, ignore_errors=True)
                with self._state:
                    self._snapshot = None
                    self._snapshot_generation = -1
        finally:
            with self._state:
                self._closed = False

    def _guard(self, sparql: str, base_iri: str | None) -> str:
        upper = sparql.upper()
        if "SERVICE" not in upper and "LOAD" not in upper:
            return sparql  # the common case costs one scan, no lexing
        guarded, _ = guard_outbound(sparql, self.service_allowlist, base_iri=base_iri)
        return guarded
