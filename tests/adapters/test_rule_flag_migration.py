"""Migration 0006 gives rule flags raised before it the owner of the instance that landed their record."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from storage.migrate import current_revision, upgrade_database
from tests.conftest import POSTGRES_SERVER


@pytest.fixture(params=["sqlite", "postgres"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database of each backend (PostgreSQL: its own database, dropped after)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
        yield engine
        engine.dispose()
        return
    request.getfixturevalue("postgres_url")  # skips (or fails in CI) when PostgreSQL is not reachable
    name = f"qihub_migration_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(f"{POSTGRES_SERVER}/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _flag(connection, *, rule: str, kind: str, key: str, details: dict) -> None:
    connection.execute(
        text(
            "INSERT INTO rule_flags (rule, subject_kind, subject_key, reason, details, raised_at) "
            "VALUES (:rule, :kind, :key, 'r', :details, CURRENT_TIMESTAMP)"
        ),
        {"rule": rule, "kind": kind, "key": key, "details": json.dumps(details)},
    )


def test_flags_raised_before_the_migration_get_their_records_owner(empty_engine: Engine) -> None:
    upgrade_database(empty_engine, revision="0005")
    with empty_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO organizations (id, name, kind, created_at) "
                "VALUES ('org-lab', 'Lab', 'lab', CURRENT_TIMESTAMP)"
            )
        )
        for instance_id, owner in (("inst-lims", "org-lab"), ("inst-iot", None)):
            connection.execute(
                text(
                    "INSERT INTO adapter_instances (id, name, adapter, adapter_version, config, enabled, "
                    "organization_id, created_at, updated_at) VALUES (:id, :id, 'x', '1', '{}', TRUE, :owner, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": instance_id, "owner": owner},
            )
        connection.execute(
            text(
                "INSERT INTO rule_test_results (natural_key, record_id, instance_id, sample_id) "
                "VALUES ('L/R1', 1, 'inst-lims', 'S1')"
            )
        )
        # A test flagged during an excursion names the reading's (hub-wide) instance only inside `excursion`.
        _flag(connection, rule="test-during-excursion", kind="test-result", key="L/R1", details={"excursion": {}})
        _flag(connection, rule="calibration-expired", kind="instrument", key="i", details={"instanceId": "inst-lims"})
        _flag(
            connection,
            rule="environment-excursion",
            kind="environment-reading",
            key="e",
            details={"instanceId": "inst-iot"},
        )

    upgrade_database(empty_engine, revision="0006")

    assert current_revision(empty_engine) == "0006"
    with empty_engine.connect() as connection:
        owners = dict(connection.execute(text("SELECT rule, organization_id FROM rule_flags")).all())
    assert owners == {
        "test-during-excursion": "org-lab",
        "calibration-expired": "org-lab",
        "environment-excursion": None,
    }
