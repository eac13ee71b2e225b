"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL when configured."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from storage.events import HOOKS_KEY, EventHooks, dispatch_after_commit
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


@contextmanager
def session_scope(engine: Engine, *, hooks: EventHooks | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error, then runs after-commit listeners."""
    with Session(engine, expire_on_commit=False) as session:
        if hooks is not None:
            session.info[HOOKS_KEY] = hooks
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        dispatch_after_commit(session)


def database_is_reachable(engine: Engine) -> bool:
    """True when a trivial query succeeds (readiness)."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
