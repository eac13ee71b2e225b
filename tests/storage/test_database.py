"""Migrations and storage guarantees, on SQLite and PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DatabaseError
from sqlmodel import SQLModel, text

import api.tables  # noqa: F401 - registers every domain's tables
from storage.database import session_scope
from storage.migrate import current_revision
from storage.models import AuditEvent
from storage.service import list_events, record_event, store_document


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
