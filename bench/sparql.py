"""SPARQL benchmark: mapping throughput, and the hub's /sparql against three baselines on the same data.

Run from the repository root (quick run first, then the full one):

    .venv/bin/python bench/sparql.py --sizes 1000,10000
    .venv/bin/python bench/sparql.py                      # 1k, 10k and 50k certificates

What it does, per size (sizes are cumulative: the 10k run adds 9k certificates to the 1k ones):

1. **Mapping.** Seeded synthetic DCC 3.3.0 certificates (`bench/synthetic_dcc.py`: one item, a reference
   standard, ~21 result values with units and expanded uncertainties, 25 labs, traceability chains to national
   standards) are parsed and mapped with the hub's `graph.mapping.map_certificate_ntriples` (what
   `graph.publish` runs), in `--workers` processes. Reported:
   certificates/s per process (certificates / time spent parsing and mapping) and for the whole run (wall).
2. **Loading.** The N-Quads of every certificate's named graph go into one on-disk Oxigraph store with the
   Oxigraph bulk loader (`oxigraph load`), compacted with `oxigraph optimize` (the hub's writer compacts its own
   copy on opening; an uncompacted store reads 5-7x slower). Every engine then reads that very store (or a
   hard-link backup of it):
   * `pyoxigraph`: in-process `Store.read_only`, query + JSON serialisation, no HTTP;
   * `oxigraph-server`: `oxigraph serve-read-only --union-default-graph`, over HTTP;
   * `hub`: `uvicorn api.app:create_app --factory` with the store as its graph directory, through `/sparql`
     (its own auth, timeout and worker processes) with an admin key;
   * `rdflib-endpoint`: the `rdflib-endpoint` package (uvicorn) serving an rdflib `Dataset` over the same store
     through `oxrdflib` (`--rdflib-store oxigraph`, default), or rdflib's in-memory store loaded from a dump
     (`--rdflib-store memory`, only sensible for small sizes: rdflib holds ~1.3 GB per million triples).
     rdflib-endpoint prepares every query, so rdflib's Python engine evaluates it over the stored triples.
3. **Queries.** Five shapes, each run `--repeat` times per engine after one warm-up, all engines in the same run.
   pyoxigraph, the Oxigraph server and the hub take turns: each repetition runs the same query on each of
   them, in an order that rotates from one repetition to the next, so a change of background load (other jobs
   on the machine) weighs on all three alike instead of on whichever engine happened to be running; then
   rdflib-endpoint runs its repetitions (its timeout depends on the hub's median). The answers are compared
   (row counts, or the value of one-row answers) so a fast wrong answer cannot pass, and error answers fail
   the engine. A shape whose warm-up takes over 5 s (full scans at 50k) keeps the warm-up as a sample and
   takes the median of three (rdflib-endpoint: that one run); one answered in under 50 ms takes five times
   `--repeat` samples per engine (the median of five ~1 ms answers is mostly noise). rdflib runs stop at
   `--rdflib-timeout` seconds, or at 11× the hub's median on GROUP BY and range FILTER so that the 10× target
   is decided either way; a cut run is reported as a lower bound ("≥").
4. **Memory.** Peak RSS (VmHWM) of the hub process plus its graph worker processes.

Targets: mapping ≥ 300 certificates/s (per process); hub memory ≤ 2 GB at 50k certificates; hub median
≤ 1.5× the Oxigraph server on every shape; hub ≥ 10× faster than rdflib-endpoint on GROUP BY and range FILTER.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a plain script (`python bench/sparql.py`): make the repository's packages importable.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import pyoxigraph as ox  # noqa: E402

OXIGRAPH = Path(sys.executable).with_name("oxigraph")
ADMIN_KEY = "qh_bench_admin_key_sparql_0123456789"
JSON_RESULTS = "application/sparql-results+json"
CHUNK = 250  # certificates per mapping task (one N-Quads file each)

TARGET_MAPPING_PER_S = 300.0
TARGET_HUB_MEMORY_MB = 2048.0
TARGET_HUB_VS_SERVER = 1.5
TARGET_RDFLIB_VS_HUB = 10.0
RDFLIB_SHAPES = {"group-by", "range-filter"}  # where the 10x target applies

PREFIXES = """PREFIX qh: <https://qihub.example/ns#>
PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX schema: <https://schema.org/>
PREFIX qudt: <http://qudt.org/schema/qudt/>
PREFIX unit: <http://qudt.org/vocab/unit/>
"""


# --- mapping ------------------------------------------------------------------------------------------------


def _map_chunk(task: tuple[list[tuple[bytes, dict, str, str]], str, list[dict]]) -> tuple[int, int, float]:
    """Worker: parse and map certificates, write their quads as N-Quads; returns (count, quads, seconds)."""
    from certificates.models import Certificate
    from certificates.xml import parse_xml
    from graph.iris import certificate_graph_iri
    from graph.mapping import EquipmentIdentity, KnownInstrument, map_certificate_ntriples

    items, path, references = task
    known: dict[str, list[KnownInstrument]] = {}
    for reference in references:
        known.setdefault(reference["serial"], []).append(
            KnownInstrument(certificate_id=reference["id"], instrument_iri=reference["iri"])
        )

    def resolve(identity: EquipmentIdentity) -> list[KnownInstrument]:
        return list(known.get(identity.serial or "", []))

    parts: list[str] = []
    quads = 0
    elapsed = 0.0
    for xml, fields, lab_name, lab_code in items:
        certificate = Certificate(**fields)
        started = time.perf_counter()
        # What the hub's publishing runs (graph.publish): the certificate's graph as N-Triples text.
        ntriples = map_certificate_ntriples(
            parse_xml(xml),
            certificate=certificate,
            lab_name=lab_name,
            lab_accreditation=lab_code,
            resolve_reference=resolve,
        )
        elapsed += time.perf_counter() - started
        quads += ntriples.count("\n")
        # N-Triples to N-Quads: every line ends with " .\n" (literals never hold a raw newline).
        parts.append(ntriples.replace(" .\n", f" <{certificate_graph_iri(certificate.id)}> .\n"))
    with open(path, "w", encoding="utf-8") as output:
        output.write("".join(parts))
    return len(items), quads, elapsed


@dataclass
class Population:
    """The certificates generated so far (ids and labs only: the XML is produced per increment)."""

    source: Iterator
    certificate_ids: list[str] = field(default_factory=list)
    lab_ids: list[str] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, seed: int) -> Population:
        """A population that generates seeded synthetic certificates on demand."""
        from bench.synthetic_dcc import generate

        return cls(source=generate(sys.maxsize, seed=seed))

    def take(self, count: int) -> list:
        """The next `count` certificates (full items, XML included)."""
        from bench.synthetic_dcc import REFERENCE_COUNT
        from graph.iris import instrument_iri

        items = [next(self.source) for _ in range(count)]
        for item in items:
            entry = item.certificate
            if len(self.certificate_ids) < REFERENCE_COUNT:
                iri = instrument_iri(entry.item_manufacturer, entry.item_model, entry.item_serial)
                self.references.append({"serial": entry.item_serial, "id": entry.id, "iri": iri})
            self.certificate_ids.append(entry.id)
            self.lab_ids.append(item.lab.organization_id)
        return items


@dataclass(frozen=True)
class MappingFigures:
    """Throughput of one mapping increment."""

    certificates: int
    quads: int
    map_seconds: float  # summed over workers: time inside parse + map_certificate_ntriples
    wall_seconds: float  # including N-Quads writing and process hand-over

    @property
    def per_process(self) -> float:
        """Certificates per second of one process."""
        return self.certificates / self.map_seconds

    @property
    def wall(self) -> float:
        """Certificates per second of the whole pool."""
        return self.certificates / self.wall_seconds


def map_increment(population: Population, count: int, directory: Path, workers: int) -> MappingFigures:
    """Generate the next `count` certificates and map them into N-Quads files under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    first = len(population.certificate_ids)
    items = population.take(count)
    tasks = []
    for offset in range(0, count, CHUNK):
        chunk = items[offset : offset + CHUNK]
        payload = [(item.xml, item.certificate.model_dump(), item.lab.name, item.lab.code) for item in chunk]
        path = str(directory / f"{first + offset:08d}.nq")
        tasks.append((payload, path, population.references))
    del items
    started = time.perf_counter()
    certificates = quads = 0
    map_seconds = 0.0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for mapped, chunk_quads, seconds in pool.map(_map_chunk, tasks):
            certificates += mapped
            quads += chunk_quads
            map_seconds += seconds
    return MappingFigures(certificates, quads, map_seconds, time.perf_counter() - started)


def bulk_load(store_dir: Path, files: Sequence[Path]) -> tuple[float, float]:
    """Load N-Quads files with Oxigraph's parallel bulk loader, then compact; returns (load, optimize) seconds.

    The parallel loader leaves many overlapping files behind; reading such a store is several times slower
    (5-7x on GROUP BY at 50k) until it is compacted. The hub's writer compacts its copy when it opens it, so
    without `oxigraph optimize` the baselines would read a slower store than the hub.
    """
    started = time.perf_counter()
    command = [str(OXIGRAPH), "load", "--location", str(store_dir), "--lenient", "--file", *map(str, files)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loaded = time.perf_counter()
    command = [str(OXIGRAPH), "optimize", "--location", str(store_dir)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return loaded - started, time.perf_counter() - loaded


# --- engines ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def _process(command: list[str], *, env: dict[str, str] | None, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Engine:
    """Something that answers a SPARQL query with SPARQL JSON results."""

    name = "engine"

    def run(self, query: str, timeout: float) -> bytes:
        """The JSON results of `query` (raises TimeoutError past `timeout`)."""
        raise NotImplementedError


class InProcess(Engine):
    """Raw pyoxigraph on the store directory, read-only, union default graph."""

    name = "pyoxigraph"

    def __init__(self, store_dir: Path) -> None:
        self.store = ox.Store.read_only(str(store_dir))

    def run(self, query: str, timeout: float) -> bytes:
        """Evaluate and serialise in this process."""
        results = self.store.query(query, use_default_graph_as_union=True)
        if isinstance(results, ox.QueryBoolean):
            return json.dumps({"boolean": bool(results)}).encode()
        assert isinstance(results, ox.QuerySolutions)  # the benchmark's shapes are all SELECT queries
        return results.serialize(format=ox.QueryResultsFormat.JSON) or b""


class OverHttp(Engine):
    """A SPARQL 1.1 Protocol endpoint (POST, form-encoded query)."""

    def __init__(
        self, name: str, url: str, headers: dict[str, str] | None = None, form: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.url = url
        self.form = form or {}
        self.client = httpx.Client(headers={"Accept": JSON_RESULTS, **(headers or {})})

    def run(self, query: str, timeout: float) -> bytes:
        """POST the query and return the body (non-200 is an error)."""
        try:
            response = self.client.post(self.url, data={"query": query, **self.form}, timeout=timeout)
        except httpx.TimeoutException as error:
            raise TimeoutError(str(error)) from error
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}: {response.text[:300]}")
        return response.content


@contextmanager
def oxigraph_server(store_dir: Path, workdir: Path) -> Iterator[OverHttp]:
    """`oxigraph serve-read-only` over the store, union default graph."""
    port = _free_port()
    command = [str(OXIGRAPH), "serve-read-only", "--location", str(store_dir), "--bind", f"127.0.0.1:{port}"]
    command += ["--union-default-graph", "--timeout-s", "600"]
    with _process(command, env=None, log=workdir / "oxigraph-server.log") as process:
        url = f"http://127.0.0.1:{port}/query"
        _wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500, process, "oxigraph", 60
        )
        yield OverHttp("oxigraph-server", url)


def prepare_hub_data(store_dir: Path, workdir: Path) -> Path:
    """A hub data dir whose embedded graph store is a hard-link backup of the store.

    Made before any engine opens the store: `oxigraph backup` opens it read-write, and RocksDB leaves opening a
    store read-write while another process reads it undefined.
    """
    data_dir = workdir / "hub-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "graph").mkdir(parents=True)
    subprocess.run(
        [str(OXIGRAPH), "backup", "--location", str(store_dir), "--destination", str(data_dir / "graph" / "store")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return data_dir


@contextmanager
def hub_server(data_dir: Path, workdir: Path) -> Iterator[tuple[OverHttp, subprocess.Popen[bytes]]]:
    """The hub (production command, uvicorn) on a data dir made by `prepare_hub_data`."""
    port = _free_port()
    env = {
        **os.environ,
        "QIHUB_DATA_DIR": str(data_dir),
        "QIHUB_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "QIHUB_LOG_LEVEL": "WARNING",
        "QIHUB_SPARQL_TIMEOUT_S": "600",
        "QIHUB_SPARQL_MAX_TIMEOUT_S": "600",
        "QIHUB_SPARQL_RESULT_CAP": "1000000",
    }
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with _process(command, env=env, log=workdir / "hub.log") as process:
        base = f"http://127.0.0.1:{port}"
        _wait_until(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200, process, "hub", 120)
        # The hub's default graph is the store's default graph; the union is asked for, as Oxigraph's option.
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        yield OverHttp("hub", f"{base}/sparql", headers, {"union-default-graph": "true"}), process


def serve_rdflib(store_dir: str, port: int, mode: str, dump: str | None) -> None:
    """(Subprocess entry) rdflib-endpoint over an rdflib Dataset: oxrdflib on the store, or in memory."""
    import uvicorn
    from oxrdflib import OxigraphStore
    from rdflib import Dataset
    from rdflib_endpoint import SparqlEndpoint

    if mode == "oxigraph":
        dataset = Dataset(store=OxigraphStore(store=ox.Store.read_only(store_dir)), default_union=True)
    else:
        dataset = Dataset(default_union=True)
        dataset.parse(dump, format="nquads")
    app = SparqlEndpoint(graph=dataset, path="/", cors_enabled=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class RdflibEndpoint(OverHttp):
    """rdflib-endpoint in a subprocess; restarted after a timeout (it keeps evaluating the abandoned query)."""

    def __init__(self, store_dir: Path, workdir: Path, mode: str) -> None:
        self.store_dir, self.workdir, self.mode = store_dir, workdir, mode
        self.dump: Path | None = None
        if mode == "memory":
            self.dump = workdir / "dump.nq"
            with self.dump.open("wb") as output:  # read-only: other engines have the store open
                ox.Store.read_only(str(store_dir)).dump(output, format=ox.RdfFormat.N_QUADS)
        self.stack = ExitStack()
        self.process: subprocess.Popen[bytes] | None = None
        super().__init__("rdflib-endpoint", "")
        self.start()

    def start(self) -> None:
        """Start (or restart) the endpoint and wait until it answers."""
        self.stack.close()
        self.stack = ExitStack()
        port = _free_port()
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-rdflib", str(self.store_dir)]
        command += ["--port", str(port), "--rdflib-store", self.mode, "--dump", str(self.dump or "")]
        self.process = self.stack.enter_context(_process(command, env=None, log=self.workdir / "rdflib.log"))
        self.url = f"http://127.0.0.1:{port}/"
        probe = "ASK { }"
        _wait_until(
            lambda: httpx.get(self.url, params={"query": probe}, timeout=5).status_code == 200,
            self.process,
            "rdflib-endpoint",
            1800,
        )

    def run(self, query: str, timeout: float) -> bytes:
        """As OverHttp, restarting the server after a timeout."""
        try:
            return super().run(query, timeout)
        except TimeoutError:
            self.start()
            raise

    def close(self) -> None:
        """Stop the server."""
        self.stack.close()


# --- the five query shapes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A query shape: its queries (one per repetition, cycled) and how to count its answer."""

    name: str
    queries: list[str]


def shapes(population: Population, size: int) -> list[Shape]:
    """The five shapes with parameters drawn from the generated data (deterministically)."""
    from bench.synthetic_dcc import NMI_COUNT, REFERENCE_COUNT
    from graph.iris import certificate_iri, organization_iri

    step = max(1, (size - REFERENCE_COUNT) // 7)
    certificates = [certificate_iri(population.certificate_ids[index]) for index in range(REFERENCE_COUNT, size, step)]
    labs = sorted({organization_iri(lab) for lab in population.lab_ids[NMI_COUNT:REFERENCE_COUNT]})
    nmis = [certificate_iri(identifier) for identifier in population.certificate_ids[:NMI_COUNT]]
    lookup = [f"SELECT ?p ?o WHERE {{ <{iri}> ?p ?o }}" for iri in certificates]
    two_hop = [
        PREFIXES + f"SELECT ?certificate ?serial WHERE {{ ?certificate qh:issuedBy <{lab}> ; qh:calibratedItem ?item . "
        "?item schema:serialNumber ?serial }"
        for lab in labs[:7]
    ]
    group_by = [
        PREFIXES + "SELECT ?unit (COUNT(?value) AS ?n) (AVG(?number) AS ?mean) "
        "WHERE { ?value qudt:hasUnit ?unit ; qudt:numericValue ?number } GROUP BY ?unit ORDER BY ?unit"
    ]
    range_filter = [
        PREFIXES + "SELECT ?value ?number WHERE { ?value qudt:hasUnit unit:DEG_C ; qudt:numericValue ?number "
        f"FILTER (?number >= {low} && ?number < {low + 5}) }}"
        for low in (100, 150, 200, 250, 300)
    ]
    path = [
        PREFIXES + f"SELECT (COUNT(DISTINCT ?certificate) AS ?n) WHERE {{ ?certificate prov:wasDerivedFrom+ <{nmi}> }}"
        for nmi in nmis
    ]
    return [
        Shape("lookup", lookup),
        Shape("2-hop join", two_hop),
        Shape("group-by", group_by),
        Shape("range-filter", range_filter),
        Shape("property-path", path),
    ]


def _answer_size(body: bytes) -> str:
    """Rows of a SELECT answer, and the values of a one-row answer (the check that engines agree)."""
    bindings = json.loads(body)["results"]["bindings"]
    if len(bindings) == 1 and len(bindings[0]) == 1:
        return f"1 row: {next(iter(bindings[0].values()))['value']}"
    return f"{len(bindings)} rows"


@dataclass
class Timing:
    """Samples (seconds) of one engine on one shape; `lower_bound` when a run hit the timeout."""

    samples: list[float] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    lower_bound: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median of the samples (the timeout when none finished)."""
        return statistics.median(self.samples)


def _run_once(engine: Engine, query: str, timeout: float, timing: Timing) -> tuple[bytes, float]:
    """Run a query, retrying once after an error answer (which is recorded and fails the engine's verdict)."""
    for attempt in (1, 2):
        started = time.perf_counter()
        try:
            return engine.run(query, timeout), time.perf_counter() - started
        except RuntimeError as error:
            timing.errors.append(str(error)[:200])
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


SLOW_RUN_S = 5.0  # past this, a shape's warm-up counts as a sample and three samples make the median
# Below this, a shape takes FAST_REPEAT_FACTOR times the samples: the median of five ~1 ms answers moves by a
# third with one scheduler hiccup or one cold cache block (10k lookups measured 1.25x and 1.60x in two runs).
FAST_RUN_S = 0.05
FAST_REPEAT_FACTOR = 5


def _warm_up(engine: Engine, shape: Shape, repeat: int, timeout: float, *, single: bool) -> tuple[Timing, int]:
    """Run the shape's first query once; the timing so far and how many samples the engine is to take."""
    timing = Timing()
    try:
        body, warm_up = _run_once(engine, shape.queries[0], timeout, timing)
    except TimeoutError:
        return Timing(samples=[timeout], lower_bound=True), 0
    if warm_up > SLOW_RUN_S:
        timing.samples.append(warm_up)
        timing.rows.append(_answer_size(body))
        return timing, 1 if single else min(repeat, 3)
    if warm_up < FAST_RUN_S and not single:
        return timing, repeat * FAST_REPEAT_FACTOR
    return timing, repeat


def _sample(engine: Engine, shape: Shape, timeout: float, timing: Timing) -> None:
    """One timed run of the engine's next query of the shape (its n-th sample runs query n, cycled)."""
    query = shape.queries[len(timing.samples) % len(shape.queries)]
    try:
        body, seconds = _run_once(engine, query, timeout, timing)
    except TimeoutError:
        timing.samples.append(timeout)
        timing.lower_bound = True
        return
    timing.samples.append(seconds)
    timing.rows.append(_answer_size(body))


def measure_interleaved(engines: Sequence[Engine], shape: Shape, repeat: int, timeout: float) -> dict[str, Timing]:
    """As `measure` for several engines at once, taking turns: every repetition runs each engine once.

    The order rotates by one engine per repetition, so no engine always runs right after another one's query.
    """
    timings: dict[str, Timing] = {}
    wanted: dict[str, int] = {}
    for engine in engines:
        timings[engine.name], wanted[engine.name] = _warm_up(engine, shape, repeat, timeout, single=False)
    # Every engine takes as many samples as the one that asks for most: a one-off cost in one engine's warm-up
    # (a fresh hub starts its reader process) must not leave it with only the first, cold samples.
    most = max(wanted.values())
    wanted = dict.fromkeys(wanted, most)
    for index in range(most):
        shift = index % len(engines)
        for engine in [*engines[shift:], *engines[:shift]]:
            timing = timings[engine.name]
            if not timing.lower_bound and len(timing.samples) < wanted[engine.name]:
                _sample(engine, shape, timeout, timing)
    return timings


def measure(engine: Engine, shape: Shape, repeat: int, timeout: float, *, single: bool = False) -> Timing:
    """One warm-up, then `repeat` timed runs cycling through the shape's queries.

    When the warm-up alone takes over SLOW_RUN_S (full scans at 50k certificates), it counts as a sample and
    three samples make the median (one with `single`, for the slow baseline): at that scale a warm cache
    changes little, and it keeps the run in minutes.
    """
    timing, wanted = _warm_up(engine, shape, repeat, timeout, single=single)
    while not timing.lower_bound and len(timing.samples) < wanted:
        _sample(engine, shape, timeout, timing)
    return timing


# --- memory ---------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found + [grandchild for child in found for grandchild in _children(child)]


def _status_mb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """(sum of current RSS, sum of peak RSS, process count) of a process and its descendants."""
    pids = [pid, *_children(pid)]
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    return sum(_status_mb(p, "VmRSS") for p in alive), sum(_status_mb(p, "VmHWM") for p in alive), len(alive)


# --- report ---------------------------------------------------------------------------------------------------


def _ms(timing: Timing | None) -> str:
    if timing is None or not timing.samples:
        return "—"
    value = timing.median * 1000
    text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"≥{text}" if timing.lower_bound else text


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run_size(
    size: int,
    population: Population,
    store_dir: Path,
    workdir: Path,
    args: argparse.Namespace,
    mapping: MappingFigures,
    load_seconds: tuple[float, float],
    triples: int,
) -> bool:
    """Start the engines on the loaded store, time the shapes, print the table; True when every target passes."""
    all_ok = True
    timings: dict[str, dict[str, Timing]] = {}
    print(f"\n=== {size:,} certificates: {triples:,} quads in {size:,} named graphs ===")
    ok = mapping.per_process >= TARGET_MAPPING_PER_S
    all_ok &= ok
    print(
        f"mapping (parse + map_certificate_ntriples on generated DCC XML): {mapping.per_process:,.0f} "
        f"certificates/s per process, {mapping.wall:,.0f}/s with {args.workers} workers "
        f"({mapping.quads / max(1, mapping.certificates):,.0f} quads each)  target ≥ {TARGET_MAPPING_PER_S:.0f}/s "
        f"per process: {_verdict(ok)}"
    )
    print(
        f"bulk load (oxigraph load, {mapping.certificates:,} new certificates): {load_seconds[0]:.1f} s, "
        f"then oxigraph optimize: {load_seconds[1]:.1f} s"
    )
    engine_shapes = shapes(population, size)
    hub_data = prepare_hub_data(store_dir, workdir)
    with ExitStack() as stack:
        server = stack.enter_context(oxigraph_server(store_dir, workdir))
        hub, hub_process = stack.enter_context(hub_server(hub_data, workdir))
        raw = InProcess(store_dir)
        rdflib = RdflibEndpoint(store_dir, workdir, args.rdflib_store) if not args.no_rdflib else None
        if rdflib is not None:
            stack.callback(rdflib.close)
        for shape in engine_shapes:
            # The engines the ratios compare take turns (same query, same moment); see the module docstring.
            timings[shape.name] = measure_interleaved([raw, server, hub], shape, args.repeat, 600.0)
            if rdflib is not None:
                # Long enough to decide the 10x target where it applies: a run cut at 11x the hub's median
                # still proves "at least 10x slower".
                hub_median = timings[shape.name]["hub"].median
                decisive = 11 * hub_median if shape.name in RDFLIB_SHAPES else 0.0
                timeout = max(args.rdflib_timeout, decisive)
                timings[shape.name][rdflib.name] = measure(rdflib, shape, args.repeat, timeout, single=True)
            for name, timing in timings[shape.name].items():
                if timing.errors:
                    print(f"!! {shape.name}: {name} answered {len(timing.errors)} error(s), e.g. {timing.errors[0]}")
                    all_ok = False
            counts = {name: timing.rows for name, timing in timings[shape.name].items() if timing.rows}
            reference = counts.get("pyoxigraph")
            disagree = [name for name, rows in counts.items() if not set(rows) <= set(reference or [])]
            if disagree:
                print(f"!! {shape.name}: row counts differ from pyoxigraph for {', '.join(disagree)}: {counts}")
                all_ok = False
        rss, peak, processes = tree_memory_mb(hub_process.pid)
    header = f"{'shape':<15}{'pyoxigraph':>12}{'ox-server':>12}{'hub':>12}{'rdflib-ep':>12}"
    header += f"{'hub/server':>12}{'rdflib/hub':>12}  verdict"
    print(
        f"median latency (ms) over {args.repeat} runs after a warm-up ({args.repeat * FAST_REPEAT_FACTOR} for shapes "
        f"answered in under {FAST_RUN_S * 1000:.0f} ms), same data, same run (engines interleaved)"
    )
    print(header)
    for shape in engine_shapes:
        row = timings[shape.name]
        hub_time, server_time = row["hub"].median, row["oxigraph-server"].median
        ratio_server = hub_time / server_time
        verdicts = [ratio_server <= TARGET_HUB_VS_SERVER, not row["hub"].errors]
        rdflib_timing = row.get("rdflib-endpoint")
        ratio_rdflib_text = "—"
        if rdflib_timing is not None:
            ratio_rdflib = rdflib_timing.median / hub_time
            ratio_rdflib_text = f"{'≥' if rdflib_timing.lower_bound else ''}{ratio_rdflib:,.1f}×"
            if shape.name in RDFLIB_SHAPES:
                verdicts.append(ratio_rdflib >= TARGET_RDFLIB_VS_HUB)
        ok = all(verdicts)
        all_ok &= ok
        print(
            f"{shape.name:<15}{_ms(row['pyoxigraph']):>12}{_ms(row['oxigraph-server']):>12}{_ms(row['hub']):>12}"
            f"{_ms(rdflib_timing):>12}{ratio_server:>11.2f}×{ratio_rdflib_text:>12}  {_verdict(ok)}"
        )
    rows = {shape.name: timings[shape.name]["pyoxigraph"].rows[:1] for shape in engine_shapes}
    print(f"answer rows (first run): {rows}")
    memory_ok = peak <= TARGET_HUB_MEMORY_MB or size < 50_000
    all_ok &= memory_ok
    target = (
        f"target ≤ {TARGET_HUB_MEMORY_MB:.0f} MB at 50k: {_verdict(memory_ok)}" if size >= 50_000 else "(target at 50k)"
    )
    print(f"hub memory: {rss:,.0f} MB RSS now, {peak:,.0f} MB peak (VmHWM), {processes} processes  {target}")
    print(
        "targets per shape: hub ≤ "
        f"{TARGET_HUB_VS_SERVER}× oxigraph-server; rdflib-endpoint ≥ {TARGET_RDFLIB_VS_HUB:.0f}× hub on "
        f"{', '.join(sorted(RDFLIB_SHAPES))}"
    )
    return all_ok


def _count_quads(store_dir: Path) -> int:
    store = ox.Store.read_only(str(store_dir))
    try:
        return len(store)
    finally:
        del store  # closed before `oxigraph backup` opens the store read-write


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run every size, print the tables; exit 1 when a target fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="comma-separated certificate counts")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per shape and engine")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="mapping processes")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--rdflib-store", choices=["oxigraph", "memory"], default="oxigraph")
    parser.add_argument("--rdflib-timeout", type=float, default=60.0, help="seconds before an rdflib run is cut")
    parser.add_argument("--no-rdflib", action="store_true", help="skip rdflib-endpoint")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data here (default: a temp dir, removed)")
    parser.add_argument("--serve-rdflib", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_rdflib:
        serve_rdflib(args.serve_rdflib, args.port, args.rdflib_store, args.dump or None)
        return 0
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="qihub-sparql-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    store_dir = workdir / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    started = time.perf_counter()
    population = Population.start(args.seed)
    all_ok = True
    done = 0
    finished = False
    try:
        for size in sizes:
            nquads = workdir / "nquads"
            print(f"mapping certificates {done:,}…{size:,} …", flush=True)
            mapping = map_increment(population, size - done, nquads, args.workers)
            load_seconds = bulk_load(store_dir, sorted(nquads.glob("*.nq")))
            shutil.rmtree(nquads)
            done = size
            triples = _count_quads(store_dir)
            all_ok &= run_size(size, population, store_dir, workdir, args, mapping, load_seconds, triples)
            print(f"(elapsed {time.perf_counter() - started:,.0f} s)", flush=True)
        finished = True
    finally:
        if args.workdir is None and finished:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not finished:
            print(f"kept {workdir} (logs of every engine) for inspection", file=sys.stderr)
    print(f"\noverall: {_verdict(all_ok)}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
