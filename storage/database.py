"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL when configured."""

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from storage.events import HOOKS_KEY, EventHooks, dispatch_after_commit, has_pending_events
from storage.settings import Settings

log = structlog.get_logger("qihub.storage")

# WAL pages a commit may leave before it checkpoints the WAL itself, when a `WalCheckpointer` does that work
# (SQLite's default is 1,000 pages, 4 MB: a batch ingest then paid a ~30 ms checkpoint every third request).
BACKGROUND_CHECKPOINT_WAL_PAGES = 16_384
WAL_CHECKPOINT_INTERVAL_S = 0.5


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer commits; busy_timeout waits instead of failing on a lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _defer_wal_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKGROUND_CHECKPOINT_WAL_PAGES}")
    cursor.close()


def make_engine(settings: Settings, *, background_checkpoints: bool = False) -> Engine:
    """Create the engine for the configured database.

    With `background_checkpoints` (SQLite), commits leave the WAL to a `WalCheckpointer` the caller runs, up to
    `BACKGROUND_CHECKPOINT_WAL_PAGES`.
    """
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _enable_sqlite_wal)
        if background_checkpoints:
            event.listen(engine, "connect", _defer_wal_checkpoints)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


_writer_turns: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_writer_turns_lock = threading.Lock()


def writer_turn(engine: Engine) -> AbstractContextManager[object]:
    """A lock on which this process's writers to the engine's database take turns (SQLite), else a no-op."""
    # SQLite admits one writer at a time, and the others poll for its lock, sleeping 1, 2, 5, 10… ms between
    # tries; writers taking turns on a lock hand over at once. PostgreSQL locks rows: its writers need no turns.
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _writer_turns_lock:
        lock = _writer_turns.get(engine)
        if lock is None:
            lock = _writer_turns[engine] = threading.Lock()
    return lock


def open_session(engine: Engine, *, hooks: EventHooks | None = None) -> Session:
    """A session whose audit events reach `hooks`; it touches the database only once used."""
    session = Session(engine, expire_on_commit=False)
    if hooks is not None:
        session.info[HOOKS_KEY] = hooks
    return session


def commit_session(session: Session) -> None:
    """Commit, then run the after-commit listeners of the events just made durable."""
    session.commit()
    dispatch_after_commit(session)


def needs_ending(session: Session) -> bool:
    """Whether ending the session has work to do: a transaction to end, unflushed changes or queued listeners."""
    return (
        session.in_transaction() or bool(session.new or session.dirty or session.deleted) or has_pending_events(session)
    )


def end_session(session: Session, *, commit: bool) -> None:
    """Commit (then run the after-commit listeners) or roll back, and close the session."""
    try:
        if commit:
            try:
                session.commit()
            except BaseException:
                session.rollback()
                raise
            dispatch_after_commit(session)
        else:
            session.rollback()
    finally:
        session.close()


@contextmanager
def session_scope(engine: Engine, *, hooks: EventHooks | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error, then runs after-commit listeners."""
    session = open_session(engine, hooks=hooks)
    try:
        yield session
    except BaseException:
        end_session(session, commit=False)
        raise
    end_session(session, commit=True)


class WalCheckpointer:
    """Checkpoints a SQLite database's WAL from a thread of its own, so that commits need not (no-op elsewhere).

    A checkpoint copies the WAL into the database file and syncs it: tens of milliseconds that would otherwise
    fall on whichever commit crosses SQLite's threshold. PASSIVE checkpoints never wait for readers or writers.
    """

    def __init__(self, engine: Engine, *, interval_s: float = WAL_CHECKPOINT_INTERVAL_S) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (SQLite only; idempotent)."""
        if self._engine.dialect.name != "sqlite" or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="qihub-wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None

    def checkpoint(self) -> int:
        """Run one PASSIVE checkpoint; the WAL pages still not in the database file after it (0 unless read)."""
        with self._engine.connect() as connection:
            _busy, wal_pages, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        return max(0, int(wal_pages) - int(copied))

    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(self._interval_s)
            try:
                self.checkpoint()
            except Exception:  # a locked or vanished database: the next round (or a commit) checkpoints
                log.warning("wal_checkpoint.failed", exc_info=True)
            if stopping:
                return


def database_is_reachable(engine: Engine) -> bool:
    """True when a trivial query succeeds (readiness)."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
