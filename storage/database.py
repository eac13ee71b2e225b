"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL when configured."""

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from storage.events import HOOKS_KEY, EventHooks, dispatch_after_commit, has_pending_events
from storage.settings import Settings


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer commits; busy_timeout waits instead of failing on a lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(settings: Settings) -> Engine:
    """Create the engine for the configured database."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _enable_sqlite_wal)
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


def database_is_reachable(engine: Engine) -> bool:
    """True when a trivial query succeeds (readiness)."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
