"""`qihub log …`: offline checks of the transparency log."""

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from signing.transparency import audit_log
from storage.database import make_engine, session_scope
from storage.migrate import upgrade_database
from storage.settings import Settings

app = typer.Typer(help="Transparency log.", no_args_is_help=True)
console = Console()


@app.command("audit")
def audit(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a summary")] = False,
) -> None:
    """Recompute the whole log from its leaves: exit 0 when consistent, 1 when anything does not match."""
    settings = Settings()
    engine = make_engine(settings)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            result = audit_log(session, settings=settings)
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(result.model_dump(mode="json", by_alias=True), indent=2) + "\n")
        raise typer.Exit(0 if result.ok else 1)
    table = Table(title="Transparency log audit", show_header=False)
    table.add_row("verdict", "[green]consistent[/]" if result.ok else f"[red]{result.problem_count} problem(s)[/]")
    table.add_row("tree size", str(result.tree_size))
    table.add_row("root hash", result.root_hash)
    table.add_row("leaves recomputed", str(result.leaves_checked))
    table.add_row("subtree hashes checked", str(result.nodes_checked))
    table.add_row("signed tree heads checked", str(result.tree_heads_checked))
    console.print(table)
    for problem in result.problems:
        console.print(f"  [red]✗[/] {problem}")
    if result.problem_count > len(result.problems):
        console.print(f"  … and {result.problem_count - len(result.problems)} more")
    raise typer.Exit(0 if result.ok else 1)
