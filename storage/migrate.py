"""Run the Alembic migrations programmatically (`qihub db upgrade`, app start-up, tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, *, metadata: MetaData | None = None) -> Config:
    """An Alembic config bound to an engine (and, for autogenerate, the hub's metadata)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    config.attributes["target_metadata"] = metadata
    return config


def upgrade_database(engine: Engine, *, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
