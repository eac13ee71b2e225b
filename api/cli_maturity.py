"""`qihub adapters assess ID`: the maturity table of an adapter instance, computed like the API computes it."""

import json
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from adapters.maturity import MaturityReport, assess_instance, report_json
from adapters.models import AdapterInstance
from graph.store import GraphStore, GraphStoreError, open_graph_store
from storage.database import make_engine, session_scope
from storage.migrate import upgrade_database
from storage.settings import Settings

console = Console()
errors = Console(stderr=True)


def assess(
    instance_id: Annotated[str, typer.Argument(help="Adapter instance id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (as the API returns it)")] = False,
    url: Annotated[str | None, typer.Option(help="Ask a running hub (e.g. http://127.0.0.1:8000) instead")] = None,
    key: Annotated[str | None, typer.Option(help="API key for --url", envvar="QIHUB_API_KEY")] = None,
) -> None:
    """Assess an adapter instance's integration level L1–L5 from the hub's evidence and print every criterion."""
    report = _remote_report(url, key, instance_id) if url is not None else _local_report(instance_id)
    if as_json:
        console.print_json(json.dumps(report_json(report), ensure_ascii=False))
        return
    print_report(report)


def _remote_report(url: str, key: str | None, instance_id: str) -> MaturityReport:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{url.rstrip('/')}/api/v1/adapters/{instance_id}/maturity", headers=headers, timeout=300)
    if response.status_code != 200:
        errors.print(f"[red]{response.status_code}[/] {response.text[:500]}")
        raise typer.Exit(2)
    return MaturityReport.model_validate(response.json())


def _local_report(instance_id: str) -> MaturityReport:
    settings = Settings()
    engine = make_engine(settings)
    upgrade_database(engine)
    store: GraphStore | None = None
    try:
        store = open_graph_store(settings)
        store.count()  # the embedded store opens lazily: touch it now
    except GraphStoreError as error:
        if store is not None:
            store.close()
        # A running hub holds the embedded store: the L3 probes then need the hub itself (--url).
        errors.print(f"[yellow]The graph store cannot be opened ({error.detail}); L3 probes will fail. Use --url.[/]")
        store = None
    try:
        with session_scope(engine) as session:
            instance = session.get(AdapterInstance, instance_id)
            if instance is None:
                errors.print(f"[red]No adapter instance {instance_id}[/]")
                raise typer.Exit(2)
            return assess_instance(session, instance=instance, settings=settings, store=store)
    finally:
        if store is not None:
            store.close()
        engine.dispose()


def print_report(report: MaturityReport, out: Console | None = None) -> None:
    """The report as a table: one row per criterion, then the achieved level and service levels."""
    out = out or console
    simulator = " (against a simulator)" if report.simulator else ""
    table = Table(title=f"{report.instance_name}: {report.adapter} {report.adapter_version}{simulator}")
    table.add_column("criterion")
    table.add_column("level", justify="right")
    table.add_column("result")
    table.add_column("evidence", overflow="fold")
    for result in report.criteria:
        mark = "[green]pass[/]" if result.passed else "[red]fail[/]"
        table.add_row(f"{result.id} {result.title}", f"L{result.level}", mark, result.evidence)
    out.print(table)
    name = f" {report.achieved_level_name}" if report.achieved_level_name else ""
    out.print(f"achieved level: [bold]L{report.achieved_level}[/]{name}")
    levels = report.service_levels
    out.print(
        f"service levels: end-to-end p95 {levels.end_to_end_latency.p95_s} s, completeness {levels.completeness}, "
        f"commands acknowledged {levels.commands_acknowledged}/{levels.commands}"
    )
    if len(report.trend) > 1:
        out.print("trend: " + ", ".join(f"{p.adapter_version} L{p.achieved_level}" for p in report.trend[-8:]))
