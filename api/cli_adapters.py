"""`qihub worker` and `qihub adapters …`: run the adapter instances, list them and the installed plug-ins."""

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from adapters import service
from adapters.models import AdapterInstance
from adapters.worker import run_worker
from api.cli_maturity import assess
from storage.database import make_engine, session_scope
from storage.migrate import upgrade_database
from storage.models import utc_now
from storage.settings import Settings

app = typer.Typer(help="Adapter plug-ins and instances.", no_args_is_help=True)
app.command(name="assess")(assess)
console = Console()


def worker(
    instance: Annotated[
        list[str] | None, typer.Option("--instance", help="Run only these instance ids (repeatable)")
    ] = None,
    fuse: Annotated[
        bool | None,
        typer.Option(
            "--fuse/--no-fuse",
            help="Fuse records into the graph here (default: only with a remote store; the API fuses the embedded one)",
        ),
    ] = None,
) -> None:
    """Run the enabled adapter instances and the background loops until SIGTERM/SIGINT."""
    settings = Settings()
    engine = make_engine(settings)
    upgrade_database(engine)
    engine.dispose()
    graph_store = None
    if fuse if fuse is not None else bool(settings.graph_query_url):
        from graph.store import open_graph_store

        graph_store = open_graph_store(settings)
    console.print("[bold]qihub worker[/]: adapters, outbox delivery, commands, rules (Ctrl-C stops)")
    try:
        asyncio.run(run_worker(settings, graph_store=graph_store, instance_ids=set(instance) if instance else None))
    finally:
        if graph_store is not None:
            graph_store.close()


def _instances_summary(settings: Settings) -> list[dict[str, Any]]:
    engine = make_engine(settings)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            rows = session.exec(select(AdapterInstance).order_by(col(AdapterInstance.name))).all()
            now = utc_now()
            return [
                {
                    "id": row.id,
                    "name": row.name,
                    "adapter": row.adapter,
                    "adapterVersion": row.adapter_version,
                    "organizationId": row.organization_id,
                    "enabled": row.enabled,
                    "health": service.health_of(
                        session, instance_id=row.id, now=now, timeout_s=settings.adapter_health_timeout_s
                    ).model_dump(mode="json", by_alias=True),
                    "counters": service.counters_of(session, instance_id=row.id).model_dump(mode="json", by_alias=True),
                }
                for row in rows
            ]
    finally:
        engine.dispose()


@app.command("list")
def list_instances(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Configured adapter instances with their health and landing counters."""
    summary = _instances_summary(Settings())
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    table = Table(title="Adapter instances")
    for column in (
        "id",
        "name",
        "adapter",
        "version",
        "enabled",
        "healthy",
        "received",
        "accepted",
        "quarantined",
        "dup",
    ):
        table.add_column(column)
    for item in summary:
        counters, health = item["counters"], item["health"]
        table.add_row(
            item["id"],
            item["name"],
            item["adapter"],
            item["adapterVersion"],
            "yes" if item["enabled"] else "no",
            "[green]yes[/]" if health["healthy"] else "[red]no[/]",
            str(counters["received"]),
            str(counters["accepted"]),
            str(counters["quarantined"]),
            str(counters["duplicates"]),
        )
    console.print(table)


@app.command("catalog")
def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Installed adapter plug-ins (entry points `qihub.adapters`) and the ones that failed to load."""
    found = service.read_catalog()
    if as_json:
        sys.stdout.write(json.dumps(found.model_dump(mode="json", by_alias=True), indent=2) + "\n")
        return
    table = Table(title="Adapter plug-ins")
    for column in ("name", "version", "source", "emits", "distribution"):
        table.add_column(column)
    for entry in found.adapters:
        manifest = entry.manifest
        table.add_row(
            entry.name,
            manifest.version,
            str(manifest.source_kind),
            ", ".join(str(kind) for kind in manifest.emits),
            entry.distribution or "",
        )
    console.print(table)
    for error in found.errors:
        console.print(f"  [red]✗[/] {error.name} ({error.target}): {error.error}")


def _standalone() -> typer.Typer:
    """`python -m api.cli_adapters worker|adapters …`, the same commands as `qihub` mounts."""
    root = typer.Typer(no_args_is_help=True)
    root.command("worker")(worker)
    root.add_typer(app, name="adapters")
    return root


if __name__ == "__main__":
    _standalone()()
