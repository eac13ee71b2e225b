"""Persistence: settings, database engine and sessions, Alembic migrations, stored documents and audit events."""
