"""Hub configuration from `QIHUB_*` environment variables, with safe defaults for one machine."""

import os
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

    # --- trust (signing/): PKI, keys, timestamps, policy -------------------------------------------------
    pki_dir: Path | None = Field(default=None, description="Hub CA, TSA and log keys; default <data_dir>/pki.")
    ca_cert_file: Path | None = Field(default=None, description="Use an existing CA certificate (PEM).")
    ca_key_file: Path | None = Field(default=None, description="Private key (PEM) of that existing CA.")
    master_key: str | None = Field(default=None, description="Master key encrypting hub-held signing keys.")
    master_key_file: Path | None = Field(default=None, description="File holding the master key instead.")
    tsa_url: str | None = Field(default=None, description="External RFC 3161 TSA; default the hub's own TSA.")
    policy_file: Path | None = Field(default=None, description="Signature validation policy (YAML).")
    pkcs11_module: str | None = Field(default=None, description="PKCS#11 module path (e.g. SoftHSM2) for keys.")
    pkcs11_token_label: str | None = Field(default=None, description="PKCS#11 token label.")
    pkcs11_pin: str | None = Field(default=None, description="PKCS#11 user PIN.")

    # --- document processes (api/document_pool.py): verifying and examining beside the API process -----------
    document_processes: int = Field(
        default_factory=lambda: min(2, os.cpu_count() or 1),
        ge=0,
        description="Processes that verify signatures (public verification) and examine the documents of batch "
        "uploads (parse, XSD, rules): CPU-bound work that holds the GIL, so the API process alone uses one core; "
        "started on first use; 0 does it all in the API process. Default min(2, CPUs).",
    )
    document_job_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a document process may take over one job (a verification, or up to 16 documents of "
        "a batch); a process that takes longer (hung) is killed and replaced, and its request answers 503.",
    )

    # --- knowledge graph (graph/): store and SPARQL endpoint ---------------------------------------------
    graph_dir: Path | None = Field(default=None, description="Embedded Oxigraph store; default <data_dir>/graph.")
    graph_query_url: str | None = Field(default=None, description="Remote SPARQL 1.1 query endpoint.")
    graph_update_url: str | None = Field(default=None, description="Remote SPARQL 1.1 update endpoint.")
    graph_store_url: str | None = Field(default=None, description="Remote Graph Store Protocol endpoint.")
    sparql_timeout_s: float = Field(default=10.0, description="Default SPARQL query timeout (seconds).")
    sparql_max_timeout_s: float = Field(default=60.0, description="Largest timeout a request may ask for.")
    sparql_result_cap: int = Field(default=10_000, description="Most result rows returned (signalled if cut).")
    sparql_service_allowlist: list[str] = Field(default_factory=list, description="SERVICE targets allowed.")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"], description="Origins allowed to read via CORS.")

    # --- adapters (adapters/): landing zone, worker, events --------------------------------------------------
    adapter_max_message_bytes: int = Field(
        default=1024 * 1024, description="Largest inbound adapter message parsed; bigger ones are quarantined."
    )
    adapter_retry_base_s: float = Field(default=0.5, description="First backoff delay of a failed source call.")
    adapter_retry_max_s: float = Field(default=60.0, description="Longest backoff delay between retries.")
    adapter_retry_max_attempts: int = Field(default=8, description="Tries of a source call before giving up.")
    adapter_health_timeout_s: float = Field(
        default=30.0, description="An instance not heard from for this long is reported unhealthy."
    )
    worker_poll_interval_s: float = Field(default=1.0, description="How often the worker looks for new work.")
    events_mqtt_url: str | None = Field(
        default=None, description="MQTT broker the hub publishes its events to (mqtt://host:port); off if unset."
    )
    events_mqtt_topic_prefix: str = Field(default="qihub/events", description="Topic prefix of published events.")
    webhook_timeout_s: float = Field(default=5.0, description="Timeout of one webhook delivery.")
    webhook_max_attempts: int = Field(default=8, description="Deliveries tried before an event is dead-lettered.")
    webhook_retry_base_s: float = Field(
        default=5.0, gt=0, description="Wait after a webhook's first failed attempt; doubled per further failure."
    )
    webhook_retry_max_s: float = Field(default=6 * 3600.0, gt=0, description="Longest wait between two attempts.")
    command_max_attempts: int = Field(default=5, description="Tries of a write-back command before dead-lettering.")
    complaint_warning_hours: float = Field(
        default=24.0, description="A complaint.deadline.near event fires this long before the deadline."
    )

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL actually used (SQLite in the data dir unless configured)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'qihub.sqlite3').resolve()}"

    @property
    def resolved_pki_dir(self) -> Path:
        """Where the hub's keys and CA live."""
        return self.pki_dir or self.data_dir / "pki"

    @property
    def resolved_graph_dir(self) -> Path:
        """Where the embedded RDF store lives."""
        return self.graph_dir or self.data_dir / "graph"

    def ensure_data_dir(self) -> Path:
        """Create the data dir if missing and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
