"""Shared fixtures: isolated hubs on SQLite and on a uniquely named PostgreSQL database."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from organizations.models import OrganizationCreate, OrganizationKind, Scope
from organizations.service import create_api_key, create_organization
from storage.database import session_scope
from storage.settings import Settings

POSTGRES_SERVER = os.environ.get("QIHUB_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
ADMIN_KEY = "qh_test_admin_key_0123456789"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_available() -> bool:
    try:
        engine = create_engine(f"{POSTGRES_SERVER}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run (this worker), dropped at the end."""
    if not _postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {POSTGRES_SERVER}")
        pytest.skip("PostgreSQL not reachable")
    name = f"qihub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Hub:
    """A running test hub: its client, settings and a way to make organizations with keys."""

    client: TestClient
    settings: Settings
    backend: str

    @property
    def engine(self):
        """The hub's database engine."""
        return self.client.app.state.engine  # type: ignore[attr-defined]

    def make_org(
        self,
        name: str = "Lab",
        *,
        kind: OrganizationKind = OrganizationKind.lab,
        scopes: list[Scope] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Register an organization with a key; returns its id and the auth header."""
        with session_scope(self.engine) as session:
            organization = create_organization(session, data=OrganizationCreate(name=name, kind=kind))
            created = create_api_key(
                session,
                organization_id=organization.id,
                name="test",
                scopes=scopes or [Scope.certificates_read, Scope.certificates_write],
            )
        return organization.id, {"Authorization": f"Bearer {created.key}"}


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars()
        names = ", ".join(f'"{table}"' for table in tables)
        if names:
            connection.execute(text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@contextmanager
def running_hub(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, *, document_processes: int = 0
) -> Iterator[Hub]:
    """A hub with an admin key on `backend` ("sqlite" or "postgres"), its pool sized `document_processes`."""
    database_url = None
    if backend == "postgres":
        database_url = request.getfixturevalue("postgres_url")
        _truncate_all(database_url) if _has_tables(database_url) else None
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        bootstrap_admin_key=ADMIN_KEY,
        document_processes=document_processes,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Hub(client=client, settings=settings, backend=backend)
    app.state.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A hub with an admin key, once on SQLite and once on PostgreSQL."""
    # Verification runs in the API process here: the pool's own tests (tests/api/test_document_pool.py)
    # cover the processes, and hundreds of short-lived hubs need not start them.
    with running_hub(request, tmp_path, request.param) as hub:
        yield hub


def _has_tables(url: str) -> bool:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar()
    engine.dispose()
    return bool(count)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """Auth header of the bootstrap admin."""
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
