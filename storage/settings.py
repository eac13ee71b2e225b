"""Hub configuration from `QIHUB_*` environment variables, with safe defaults for one machine."""

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the hub; the app factory takes an instance so tests build isolated hubs."""

    model_config = SettingsConfigDict(env_prefix="QIHUB_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Where the embedded database and stores live.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default SQLite (WAL) in the data dir, or postgresql+psycopg://…",
    )
    bootstrap_admin_key: str | None = Field(
        default=None, description="When set and no admin exists, an admin API key with this value is created."
    )
    max_document_bytes: int = Field(
        default=25 * 1024 * 1024,
        description="Largest XML/JSON document accepted (embedded PDFs make them big).",
    )
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="Base URL printed and linked.")
    log_level: str = Field(default="INFO", description="Log level of the structured (JSON) log.")

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL actually used (SQLite in the data dir unless configured)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'qihub.sqlite3').resolve()}"

    def ensure_data_dir(self) -> Path:
        """Create the data dir if missing and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
