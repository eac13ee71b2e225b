"""`qihub verify FILE`: offline signature verification against trust anchors given on the command line."""

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from certificates.xml import XmlRejected
from signing.policy import PolicyError, load_policy
from signing.report import CheckResult, Indication
from signing.verification import trust_from_pem, verify_document

console = Console()
errors = Console(stderr=True)
_STYLE = {
    CheckResult.PASSED: "green",
    CheckResult.FAILED: "red",
    CheckResult.WARNING: "yellow",
    CheckResult.INFORMATION: "cyan",
    CheckResult.SKIPPED: "dim",
}


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def verify(
    file: Annotated[Path, typer.Argument(help="Signed XML document (DCC)")],
    trust: Annotated[
        list[Path] | None, typer.Option("--trust", help="Trust anchor certificate(s), PEM or DER (repeatable)")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Validate as of this ISO 8601 time (default now)")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Validation policy YAML (default: hub's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Verify a signed document offline: exit 0 TOTAL_PASSED, 1 otherwise, 2 when a file cannot be read."""
    moment = _parse_time(at)
    try:
        data = file.read_bytes()
        anchors = trust_from_pem(path.read_bytes() for path in trust or [])
        validation_policy = load_policy(policy)
    except (OSError, ValueError, PolicyError) as error:
        errors.print(f"[red]cannot read[/] {error}")
        raise typer.Exit(2) from error
    try:
        report = verify_document(data, trust=anchors, policy=validation_policy, at=moment)
    except XmlRejected as rejected:
        errors.print(f"[red]unreadable XML[/] {file}: {rejected.code}: {rejected.detail}")
        raise typer.Exit(2) from rejected
    if as_json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False) + "\n")
    else:
        colour = {"TOTAL_PASSED": "green", "TOTAL_FAILED": "red"}.get(report.indication, "yellow")
        sub = f" / {report.sub_indication}" if report.sub_indication else ""
        console.print(f"[bold {colour}]{report.indication}{sub}[/] {file}")
        if report.signer:
            console.print(f"   signer  {report.signer.subject}")
        best, validated = report.best_signature_time.isoformat(), report.validation_time.isoformat()
        console.print(f"   time    best signature time {best} (validated as of {validated})")
        for check in report.checks:
            style = _STYLE[check.result]
            console.print(f"   [{style}]{check.result:<11}[/] {check.id}: {check.message}", highlight=False)
    raise typer.Exit(0 if report.indication == Indication.TOTAL_PASSED else 1)
