"""The `qihub` command line: serve, validate, ingest, export, database and admin tasks."""

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer
from fastapi import FastAPI
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import Session

from api import cli_adapters, cli_log, cli_pki, cli_verify
from api.cli_sign import sign as sign_command
from certificates.models import ValidationReport
from certificates.validation import validate_document
from organizations.models import OrganizationCreate, OrganizationKind, Scope
from storage.database import make_engine, session_scope
from storage.migrate import upgrade_database
from storage.settings import Settings

app = typer.Typer(help="qihub: quality-infrastructure hub for digital calibration certificates.", no_args_is_help=True)
db_app = typer.Typer(help="Database tasks.", no_args_is_help=True)
admin_app = typer.Typer(help="Organizations and API keys.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(demo_app, name="demo")
app.add_typer(cli_pki.app, name="pki")
app.add_typer(cli_log.app, name="log")
app.command(name="sign")(sign_command)
app.command(name="verify")(cli_verify.verify)
app.add_typer(cli_adapters.app, name="adapters")
app.command(name="worker")(cli_adapters.worker)

console = Console()
errors = Console(stderr=True)


def _engine(settings: Settings | None = None):
    engine = make_engine(settings or Settings())
    upgrade_database(engine)
    return engine


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    with_worker: Annotated[
        bool, typer.Option("--with-worker/--no-worker", help="Also run the adapter worker (`qihub worker`)")
    ] = True,
) -> None:
    """Run the hub's HTTP API (and, unless told not to, the adapter worker beside it)."""
    import subprocess

    import uvicorn

    settings = Settings()
    base = f"http://{host}:{port}"
    console.print(f"[bold]qihub[/] on {base}")
    console.print(f"  API docs:           {base}/docs")
    console.print(f"  verification page:  {base}/verify")
    console.print(f"  SPARQL endpoint:    {base}/sparql")
    console.print(f"  adapters:           {base}/api/v1/adapters/catalog")
    console.print(f"  data dir:           {settings.data_dir.resolve()}")
    # The worker is its own process: adapters' network loops never compete with request handling for the GIL.
    worker = (
        subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], preexec_fn=_stop_with_parent)
        if with_worker
        else None
    )
    try:
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()


def _stop_with_parent() -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown, so `finally` may never run: on Linux the kernel
    # sends the worker SIGTERM when `qihub serve` dies (prctl PR_SET_PDEATHSIG), whatever way it dies.
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _report_json(path: str, report: ValidationReport) -> dict[str, object]:
    return {
        "file": path,
        "valid": report.valid,
        "schemaValid": report.schema_valid,
        "schemaVersion": report.schema_version,
        "findings": [finding.model_dump(mode="json") for finding in report.findings],
    }


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="DCC XML files")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table")] = False,
) -> None:
    """Validate files: exit 0 when all are valid, 1 when any is invalid, 2 when a file cannot be read."""
    results: list[dict[str, object]] = []
    unreadable = False
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            errors.print(f"[red]cannot read[/] {path}: {error.strerror}")
            unreadable = True
            continue
        results.append(_report_json(str(path), validate_document(data)))
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    else:
        for result in results:
            mark = "[green]valid[/]" if result["valid"] else "[red]invalid[/]"
            console.print(f"{mark} {result['file']} (schema {result['schemaVersion']})")
            for finding in result["findings"]:  # type: ignore[attr-defined]
                location = f" line {finding['line']}" if finding.get("line") else ""
                console.print(f"   {finding['severity']:<7} {finding['rule']}{location}: {finding['message']}")
    if unreadable:
        raise typer.Exit(2)
    raise typer.Exit(0 if all(result["valid"] for result in results) else 1)


def _expand(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.rglob("*.xml")) if path.is_dir() else [path])
    return found


def _ingest_remote(url: str, key: str, path: Path, *, issue: bool) -> tuple[str, str]:
    response = httpx.post(
        f"{url.rstrip('/')}/api/v1/certificates",
        params={"issue": str(issue).lower()},
        content=path.read_bytes(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/xml"},
        timeout=60,
    )
    body = response.json()
    if response.status_code == 201:
        return "registered", body["id"]
    return "refused", f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}"


@contextmanager
def _wired_hub() -> Iterator[FastAPI]:
    """A fully wired hub without its HTTP server: CLI changes reach the transparency log and graph as API ones do.

    The embedded graph store admits one writing process: while `qihub serve` runs, ingest with --url instead.
    """
    from api.app import create_app

    hub = create_app(Settings())
    try:
        yield hub
    finally:
        hub.state.graph_mapper.close()  # drains the queue: every ingested certificate reaches the graph
        hub.state.graph_store.close()
        hub.state.engine.dispose()


def _hub_session(hub: FastAPI) -> AbstractContextManager[Session]:
    return session_scope(hub.state.engine, hooks=hub.state.hooks)


def _ingest_local(hub: FastAPI, organization_id: str, path: Path, *, issue: bool) -> tuple[str, str]:
    from certificates.service import Actor, submit_certificate
    from certificates.xml import XmlRejected, parse_xml
    from organizations.service import get_organization_or_raise
    from storage.errors import DomainError

    content = path.read_bytes()
    try:
        # One transaction per file: a refused file leaves the others of the batch intact.
        with _hub_session(hub) as session:
            organization = get_organization_or_raise(session, organization_id=organization_id)
            certificate, _ = submit_certificate(
                session,
                actor=Actor(organization=organization),
                content=content,
                root=parse_xml(content),
                issue=issue,
            )
            return "registered", certificate.id
    except XmlRejected as rejected:
        return "refused", f"xml-{rejected.code}: {rejected.detail}"
    except DomainError as error:
        return "refused", f"{error.code}: {error.detail}"


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of DCC XML")],
    url: Annotated[str | None, typer.Option(help="Hub URL; without it, write to the local database")] = None,
    key: Annotated[str | None, typer.Option(help="API key for --url", envvar="QIHUB_API_KEY")] = None,
    org: Annotated[str | None, typer.Option(help="Organization id for local ingest")] = None,
    issue: Annotated[bool, typer.Option(help="Issue instead of storing drafts")] = True,
) -> None:
    """Submit many certificates with a progress bar and a summary table."""
    files = _expand(paths)
    if url and not key:
        errors.print("--url needs --key (or QIHUB_API_KEY)")
        raise typer.Exit(2)
    if not url and not org:
        errors.print("local ingest needs --org ORGANIZATION_ID (or use --url and --key)")
        raise typer.Exit(2)
    outcomes: list[tuple[Path, str, str]] = []
    with (
        ExitStack() as stack,
        Progress(
            TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
        ) as progress,
    ):
        hub = None if url else stack.enter_context(_wired_hub())
        task = progress.add_task("ingest", total=len(files))
        for path in files:
            if hub is None:
                outcome = _ingest_remote(url or "", key or "", path, issue=issue)
            else:
                outcome = _ingest_local(hub, org or "", path, issue=issue)
            outcomes.append((path, *outcome))
            progress.advance(task)
    table = Table(title="Ingest summary")
    for column in ("file", "outcome", "certificate id / reason"):
        table.add_column(column)
    for path, verdict, detail in outcomes:
        table.add_row(str(path), verdict, detail)
    console.print(table)
    registered = sum(1 for _, verdict, _ in outcomes if verdict == "registered")
    console.print(f"{registered} registered, {len(outcomes) - registered} refused, {len(files)} files")
    raise typer.Exit(0 if registered == len(files) else 1)


@app.command()
def export(
    certificate_id: Annotated[str, typer.Argument(help="Certificate id")],
    format: Annotated[str, typer.Option("--format", help="xml (exact bytes) or json")] = "xml",
) -> None:
    """Print a stored certificate as its exact XML or as JSON."""
    from certificates.dcc_json import dcc_to_json
    from certificates.models import Certificate, CertificateRead
    from certificates.xml import parse_xml
    from storage.models import StoredDocument

    with session_scope(_engine()) as session:
        certificate = session.get(Certificate, certificate_id)
        document = session.get(StoredDocument, certificate.sha256) if certificate else None
        if certificate is None or document is None:
            errors.print(f"no certificate {certificate_id}")
            raise typer.Exit(1)
        if format == "json":
            body = {
                **CertificateRead.model_validate(certificate).model_dump(mode="json", by_alias=True),
                "content": dcc_to_json(parse_xml(document.content)),
            }
            sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.buffer.write(document.content)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    settings = Settings()
    upgrade_database(make_engine(settings))
    console.print(f"database at head: {settings.resolved_database_url.split('@')[-1]}")


@admin_app.command("create-org")
def create_org(
    name: Annotated[str, typer.Option(help="Organization name")],
    kind: Annotated[OrganizationKind, typer.Option(help="lab, regulator, platform or admin")] = OrganizationKind.lab,
    accreditation_number: Annotated[str | None, typer.Option(help="Accreditation number")] = None,
    credit_code: Annotated[str | None, typer.Option(help="统一社会信用代码 (unified social credit code)")] = None,
) -> None:
    """Register an organization and print its id."""
    from organizations.service import create_organization

    with session_scope(_engine()) as session:
        organization = create_organization(
            session,
            data=OrganizationCreate(
                name=name,
                kind=kind,
                accreditation_number=accreditation_number,
                unified_social_credit_code=credit_code,
            ),
        )
        console.print(organization.id)


@admin_app.command("create-key")
def create_key(
    org: Annotated[str, typer.Option(help="Organization id")],
    name: Annotated[str, typer.Option(help="Key name")] = "cli key",
    scope: Annotated[list[Scope] | None, typer.Option(help="Scope (repeatable)")] = None,
) -> None:
    """Mint an API key and print its secret (shown only once)."""
    from organizations.models import DEFAULT_LAB_SCOPES
    from organizations.service import create_api_key

    with session_scope(_engine()) as session:
        created = create_api_key(session, organization_id=org, name=name, scopes=scope or list(DEFAULT_LAB_SCOPES))
        console.print(created.key)


@demo_app.command("load")
def demo_load(
    folder: Annotated[Path, typer.Option(help="Demo folder")] = Path("demo"),
) -> None:
    """Load the demo lab and its certificates once (a second run changes nothing)."""
    from api.demo import load_demo

    with _wired_hub() as hub, _hub_session(hub) as session:
        summary = load_demo(session, folder=folder)
    console.print(summary)


if __name__ == "__main__":
    app()
