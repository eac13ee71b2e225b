"""Document processes: public verifications and batch examinations beside the API process, on every core.

Verification is CPU-bound Python (lxml, signxml, cryptography, pyhanko-certvalidator) that holds the GIL: in
the API process it uses one core however many threads run it (issue #3). So is examining the documents of a
ZIP batch (parse, XSD, rules, signatures; issue #2). The hub cannot run several API processes on its embedded
defaults (the embedded graph store and the adapter fusion thread belong to one process), so the API process
hands such jobs to a few processes it owns (`QIHUB_DOCUMENT_PROCESSES`, default min(2, CPUs); 0 runs them in
the API process's thread pool). A job is any picklable object with `run(engine, settings)`.

* Processes start on first use (a hub that never verifies or takes a batch starts none) and stop with the app.
  They come from a fork server with the verifier and the validator imported once: the API process runs threads,
  and a plain fork would copy their locks. As with uvicorn's own workers, a script that serves the hub must
  guard its entry point with `if __name__ == "__main__":`.
* Each process builds its own engine from the app's settings and keeps its caches (trust context, registry
  lookups, chain outcomes, compiled schemas) warm. Every job carries the API process's cache generations, so a
  change to the trust registry or the registry committed through the API is seen by the very next verification.
* A verification process renders the response body itself (JSON or HTML): the API process forwards bytes. A
  batch examination returns one `certificates.service.Examination` per document; the API process registers
  the batch.
* The event loop talks to each process over its own socket with its non-blocking socket calls (no helper
  thread, no write that waits for a busy machine to schedule the process): `ProcessPoolExecutor` costs the
  API process more than twice the CPU per job with its two threads, blocks the event loop while it starts
  processes, and fails every job in flight when one of its processes dies.
* Domain errors and refused XML come back as the same exception classes (the same problems answer). When a
  process dies (killed, out of memory) the job it was running answers 503 and the process is
  replaced on demand; a job that never reached a process runs on a fresh one. A process that takes longer than
  `QIHUB_DOCUMENT_JOB_TIMEOUT_S` over one job (hung, or a pathological document) is killed the same way: its
  request answers 503 `<activity>-timeout` (`verification-timeout`, `batch-examination-timeout`) rather than
  holding a worker for ever.
"""

import asyncio
import multiprocessing
import pickle
import signal
import socket
import struct
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar

import structlog
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from api.errors import ProblemError
from api.logging import configure_logging
from certificates.xml import XmlRejected
from signing import verification_service
from signing.pki import load_or_create_hub_ca
from signing.report import VerificationReport
from storage.database import make_engine, session_scope
from storage.errors import DomainError, rebuild_error
from storage.settings import Settings

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext  # ForkServerContext: not on Windows

log = structlog.get_logger("qihub.document_pool")

# Imported once by the fork server, so a new process starts with the verifier and validator loaded (not after
# ~1 s of imports).
PRELOAD: Final = ["api.document_pool", "api.routers.verification", "api.routers.certificates"]
# Each message on a process's socket: its length, then a pickle.
_HEADER: Final = struct.Struct("!Q")
STOP_TIMEOUT_S: Final = 5.0

Renderer = Callable[[VerificationReport], str | bytes]
ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


class PoolJob(Protocol[ResultT_co]):
    """Work for a pool process: pickled there (by its class's name), run with that process's engine.

    `activity` names it in problem codes (`<activity>-timeout`, `<activity>-unavailable`) and messages.
    """

    activity: ClassVar[str]

    def run(self, engine: Engine, settings: Settings) -> ResultT_co:
        """Do the work (in whichever process runs it) and return a picklable result."""
        ...


@dataclass(frozen=True)
class VerificationJob:
    """One verification: a document's bytes, or the SHA-256 of a registered one, and how to render the report.

    `render` is a module-level function (or a `functools.partial` of one): it is pickled by name.
    """

    activity: ClassVar[str] = "verification"
    render: Renderer
    data: bytes | None = None
    sha256: str | None = None
    at: datetime | None = None

    def run(self, engine: Engine, settings: Settings) -> str | bytes:
        """Verify with the hub's trust and registry, then render."""
        with session_scope(engine) as session:
            if self.data is not None:
                data = self.data
            else:
                assert self.sha256 is not None
                data = verification_service.registered_content(session, sha256=self.sha256)
            report = verification_service.verify_for_registry(session, settings=settings, data=data, at=self.at)
        return self.render(report)


@dataclass(frozen=True)
class _Failure:
    """An exception raised by a job in a pool process, carried back as its class, args and attributes.

    Pickling an exception re-calls its constructor with `args`, which breaks for classes with keyword or
    differently shaped arguments (`XmlRejected`, `DomainError(..., extra=)`).
    """

    kind: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]

    def rebuild(self) -> BaseException:
        return rebuild_error(self.kind, self.args, self.state)

    @classmethod
    def of(cls, error: Exception) -> "_Failure":
        failure = cls(type(error), error.args, dict(vars(error)))
        try:
            pickle.loads(pickle.dumps(failure))
        except Exception:
            text = "".join(traceback.format_exception(error))
            failure = cls(RuntimeError, (f"a job failed in a pool process:\n{text}",), {})
        return failure


# ------------------------------------------------------------------------------ inside a pool process


def _serve(channel: socket.socket, settings: Settings) -> None:
    """A pool process: jobs in, results (or failures) out, until the API process hangs up."""
    # Ctrl-C reaches the whole process group: the API process stops the pool, its processes must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level)
    engine = make_engine(settings)
    with channel:
        while (header := _receive_exactly(channel, _HEADER.size)) is not None:
            message = _receive_exactly(channel, _HEADER.unpack(header)[0])
            if message is None:
                break
            job, generations = pickle.loads(message)
            reply = pickle.dumps(_work(engine, settings, job, generations), protocol=pickle.HIGHEST_PROTOCOL)
            channel.sendall(_HEADER.pack(len(reply)))
            channel.sendall(reply)
    engine.dispose()


def _receive_exactly(channel: socket.socket, size: int) -> bytearray | None:
    """`size` bytes from a blocking socket; None at the end of the stream (the API process hung up)."""
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = channel.recv_into(view[received:])
        if count == 0:
            return None
        received += count
    return buffer


def _work(engine: Engine, settings: Settings, job: PoolJob[object], generations: tuple[int, int]) -> object:
    verification_service.follow_generations(generations)
    try:
        return job.run(engine, settings)
    except Exception as error:
        if not isinstance(error, DomainError | XmlRejected):
            log.exception("pool.job_failed", job=type(job).__name__)
        return _Failure.of(error)


# ------------------------------------------------------------------------------------- in the API process


@dataclass(eq=False)
class _Process:
    """One pool process and the API process's end of its socket (non-blocking)."""

    process: BaseProcess
    channel: socket.socket

    def stop(self, *, kill: bool) -> None:
        """Hang up (an idle process then exits), or kill it; then reap it (idempotent)."""
        self.channel.close()
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(STOP_TIMEOUT_S)

    def hung_up(self) -> bool:
        """True when the process closed its end (it died while idle)."""
        try:
            return self.channel.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


class DocumentPool:
    """The app's pool processes (none until first used); `processes` 0 runs jobs in the API process."""

    def __init__(self, settings: Settings, *, engine: Engine) -> None:
        self.processes = settings.document_processes
        self.timeout_s = settings.document_job_timeout_s
        self._settings = settings
        self._engine = engine
        self._lock = threading.Lock()
        self._all: set[_Process] = set()
        self._idle: list[_Process] = []
        self._starting = 0
        # Requests waiting for a process; each gets one, or None when it should look again (one was lost).
        self._waiters: deque[asyncio.Future[_Process | None]] = deque()
        self._closed = False
        self.in_flight = 0  # jobs handed to a process and not yet answered
        self.completed = 0  # jobs answered by a process
        self.lost = 0  # processes that died or were dropped mid-job

    async def run(self, job: PoolJob[ResultT]) -> ResultT:
        """The result of one job (run by a process, or in this process's thread pool when `processes` is 0)."""
        if self.processes == 0:
            return await run_in_threadpool(job.run, self._engine, self._settings)
        payload = pickle.dumps((job, verification_service.cache_generations()), protocol=pickle.HIGHEST_PROTOCOL)
        for _attempt in range(2):
            process = await self._acquire(job.activity)
            if process.hung_up():
                self._drop(process)
                continue  # died while idle: the job never ran, so it may run on a fresh process
            reply = await self._exchange(process, payload, job.activity)
            self.completed += 1
            outcome = pickle.loads(reply)
            if isinstance(outcome, _Failure):
                raise outcome.rebuild()
            return outcome  # type: ignore[no-any-return]
        raise _unavailable(job.activity, "No pool process could be started.")

    def process_ids(self) -> list[int]:
        """Process ids of the running pool processes (empty before first use)."""
        with self._lock:
            return sorted(p.process.pid for p in self._all if p.process.pid is not None)

    def shutdown(self) -> None:
        """Stop every process (idempotent); a job still running answers 503, later ones too."""
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), [p for p in self._all if p not in self._idle]
            self._all.clear()
            self._idle.clear()
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter, None)
        for process in busy:
            # Its request is reading the pipe: the end of file answers it, and it closes the pipe.
            process.process.terminate()
        for process in idle:
            process.stop(kill=False)
        for process in busy:
            process.process.join(STOP_TIMEOUT_S)

    async def _acquire(self, activity: str) -> _Process:
        while True:
            with self._lock:
                if self._closed:
                    raise _unavailable(activity, "The hub is shutting down.")
                if self._idle:
                    return self._idle.pop()
                start = len(self._all) + self._starting < self.processes
                if start:
                    self._starting += 1
                else:
                    waiter: asyncio.Future[_Process | None] = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
            if start:
                return await self._start(activity)
            try:
                process = await waiter
            except asyncio.CancelledError:
                handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if handed is not None:
                    self._release(handed)  # handed over just as the request went away
                raise
            if process is not None:
                return process

    async def _start(self, activity: str) -> _Process:
        try:
            # Starting the fork server (first use) takes a while: not on the event loop.
            process = await asyncio.to_thread(self._spawn)
        except BaseException as error:
            with self._lock:
                self._starting -= 1
            self._wake_one()
            if not isinstance(error, Exception) or isinstance(error, DomainError):
                raise  # an unusable hub CA answers its own 503
            log.exception("pool.process_start_failed")
            raise _unavailable(activity, "No pool process could be started.") from error
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._all.add(process)
                return process
        process.stop(kill=True)
        raise _unavailable(activity, "The hub is shutting down.")

    def _spawn(self) -> _Process:
        # Processes would race to create a missing hub CA (each needs it for the CRL of its trust context).
        load_or_create_hub_ca(self._settings)
        forkserver = "forkserver" in multiprocessing.get_all_start_methods()  # not on Windows
        context: ForkServerContext | SpawnContext = (
            multiprocessing.get_context("forkserver") if forkserver else multiprocessing.get_context("spawn")
        )
        if forkserver:
            multiprocessing.set_forkserver_preload(PRELOAD)
        ours, theirs = socket.socketpair()
        process = context.Process(target=_serve, args=(theirs, self._settings), name="qihub-pool", daemon=True)
        try:
            process.start()
        finally:
            theirs.close()  # only the process holds its end: its death is an end of file here
        ours.setblocking(False)  # the event loop's socket calls wait for it, never the loop itself
        return _Process(process, ours)

    def _release(self, process: _Process) -> None:
        with self._lock:
            if process not in self._all:
                return
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter, process)
                    return
            self._idle.append(process)

    def _hand_over(self, waiter: asyncio.Future[_Process | None], process: _Process) -> None:
        if waiter.done():  # its request was cancelled meanwhile
            self._release(process)
        else:
            waiter.set_result(process)

    def _drop(self, process: _Process) -> None:
        """Kill a process that died, hung up or holds an answer no one will read; a waiter may start another."""
        with self._lock:
            known = process in self._all
            self._all.discard(process)
            if known:
                self.lost += 1
        process.stop(kill=True)
        if known:
            log.warning("pool.process_lost", pid=process.process.pid, exitcode=process.process.exitcode)
            self._wake_one()

    def _wake_one(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.get_loop().call_soon_threadsafe(_resolve, waiter, None)
                    return

    async def _exchange(self, process: _Process, payload: bytes, activity: str) -> bytes:
        """Send one job and read its reply; any failure drops the process (it may hold half a job)."""
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                await loop.sock_sendall(process.channel, _HEADER.pack(len(payload)))
                await loop.sock_sendall(process.channel, payload)
                header = await _receive_exactly_async(loop, process.channel, _HEADER.size)
                reply = await _receive_exactly_async(loop, process.channel, _HEADER.unpack(header)[0])
        except TimeoutError as error:  # before OSError: TimeoutError is one
            self._drop(process)
            log.warning("pool.timeout", activity=activity, pid=process.process.pid, timeout_s=self.timeout_s)
            raise ProblemError(
                503,
                f"{activity}-timeout",
                f"The {activity} took longer than {self.timeout_s:g} s and was stopped; try again later.",
            ) from error
        except (OSError, EOFError) as error:
            self._drop(process)
            raise _unavailable(activity, f"A pool process stopped during the {activity}; try again.") from error
        except BaseException:  # cancelled (the client went away): its answer would reach the next job
            self._drop(process)
            raise
        finally:
            self.in_flight -= 1
        self._release(process)
        return bytes(reply)


async def _receive_exactly_async(loop: asyncio.AbstractEventLoop, channel: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = await loop.sock_recv_into(channel, view[received:])
        if count == 0:
            raise EOFError("the pool process hung up")
        received += count
    return buffer


def _unavailable(activity: str, detail: str) -> ProblemError:
    return ProblemError(503, f"{activity}-unavailable", detail)


def _resolve(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)
