"""Migrations and storage guarantees, on SQLite and PostgreSQL."""

import time
from contextlib import nullcontext

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DatabaseError
from sqlmodel import SQLModel, text

import api.tables  # noqa: F401 - registers every domain's tables
from storage.database import (
    BACKGROUND_CHECKPOINT_WAL_PAGES,
    WalCheckpointer,
    commit_session,
    end_session,
    make_engine,
    needs_ending,
    open_session,
    session_scope,
    writer_turn,
)
from storage.events import EventHooks
from storage.migrate import current_revision
from storage.models import AuditEvent
from storage.service import list_events, record_event, store_document
from storage.settings import Settings


def test_migrations_create_exactly_the_models_tables(hub):
    with hub.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
    assert current_revision(hub.engine) is not None


def test_audit_events_cannot_be_changed_or_deleted(hub):
    with session_scope(hub.engine) as session:
        record_event(session, subject_kind="certificate", subject_id="c1", action="submitted", reason="first")
    for statement in ("UPDATE audit_events SET reason = 'rewritten'", "DELETE FROM audit_events"):
        with pytest.raises(DatabaseError), session_scope(hub.engine) as session:
            session.exec(text(statement))  # type: ignore[call-overload]
    with session_scope(hub.engine) as session:
        events = list_events(session, subject_kind="certificate", subject_id="c1")
        assert [event.reason for event in events] == ["first"]
        assert isinstance(events[0], AuditEvent)


def test_documents_are_stored_once_by_hash(hub):
    with session_scope(hub.engine) as session:
        first = store_document(session, content=b"<a/>", content_type="application/xml")
        second = store_document(session, content=b"<a/>", content_type="application/xml")
        assert first.sha256 == second.sha256
    with session_scope(hub.engine) as session:
        count = session.exec(text("SELECT count(*) FROM stored_documents")).one()  # type: ignore[call-overload]
        assert count[0] == 1


def _hooks_recording(seen: list[str]) -> EventHooks:
    hooks = EventHooks()
    hooks.on_event("certificate", lambda session, event: seen.append(event.subject_id), after_commit=True)
    return hooks


def test_ending_a_session_commits_then_runs_the_after_commit_listeners(hub):
    seen: list[str] = []
    session = open_session(hub.engine, hooks=_hooks_recording(seen))
    assert not needs_ending(session)  # nothing read or written: closing it needs no database
    record_event(session, subject_kind="certificate", subject_id="c1", action="submitted")
    assert needs_ending(session) and seen == []
    end_session(session, commit=True)
    assert seen == ["c1"]
    with session_scope(hub.engine) as check:
        assert [event.subject_id for event in list_events(check, subject_kind="certificate", subject_id="c1")] == ["c1"]


def test_a_session_its_handler_committed_ends_without_the_database(hub):
    seen: list[str] = []
    session = open_session(hub.engine, hooks=_hooks_recording(seen))
    record_event(session, subject_kind="certificate", subject_id="c2", action="submitted")
    commit_session(session)
    assert seen == ["c2"]
    assert not needs_ending(session)
    session.close()


def test_ending_a_session_without_commit_rolls_back_and_runs_no_listener(hub):
    seen: list[str] = []
    session = open_session(hub.engine, hooks=_hooks_recording(seen))
    record_event(session, subject_kind="certificate", subject_id="c3", action="submitted")
    end_session(session, commit=False)
    assert seen == []
    with session_scope(hub.engine) as check:
        assert list_events(check, subject_kind="certificate", subject_id="c3") == []


def test_sqlite_writers_take_turns_and_postgres_writers_need_none(hub):
    turn = writer_turn(hub.engine)
    if hub.backend == "sqlite":
        assert turn is writer_turn(hub.engine)  # one lock per database engine
        with turn:
            assert not turn.acquire(blocking=False)  # type: ignore[attr-defined]
        assert turn.acquire(blocking=False)  # type: ignore[attr-defined]
        turn.release()  # type: ignore[attr-defined]
    else:
        assert isinstance(turn, nullcontext)


def _autocheckpoint(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()


def _write_pages(engine, pages: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (blob BLOB)")
    for _ in range(pages // 100):
        with engine.begin() as connection:  # one commit per 100 pages (400 KB), as a busy hub commits
            connection.exec_driver_sql("INSERT INTO filler VALUES (randomblob(409600))")


def test_commits_leave_the_wal_to_the_background_checkpointer(tmp_path):
    engine = make_engine(Settings(data_dir=tmp_path), background_checkpoints=True)
    database = tmp_path / "qihub.sqlite3"
    assert _autocheckpoint(engine) == BACKGROUND_CHECKPOINT_WAL_PAGES
    _write_pages(engine, 2_000)  # past SQLite's default threshold (1,000 pages)
    assert database.stat().st_size < 100 * 4096  # no commit copied the WAL into the database file

    checkpointer = WalCheckpointer(engine, interval_s=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while database.stat().st_size < 2_000 * 4096:
            assert time.monotonic() < deadline, "the thread never checkpointed"
            time.sleep(0.01)
        _write_pages(engine, 300)
    finally:
        checkpointer.stop()  # with a last checkpoint
    assert database.stat().st_size >= 2_300 * 4096
    assert checkpointer.checkpoint() == 0  # nothing left in the WAL alone
    engine.dispose()


def test_without_a_background_checkpointer_commits_checkpoint_as_sqlite_does(tmp_path):
    engine = make_engine(Settings(data_dir=tmp_path))
    assert _autocheckpoint(engine) == 1_000  # SQLite's default
    _write_pages(engine, 2_000)
    assert (tmp_path / "qihub.sqlite3").stat().st_size >= 1_000 * 4096  # the commits checkpointed
    engine.dispose()


def test_the_background_checkpointer_does_nothing_on_postgres(hub):
    checkpointer = WalCheckpointer(hub.engine)
    checkpointer.start()
    assert (checkpointer._thread is None) == (hub.backend == "postgres")
    checkpointer.stop()
