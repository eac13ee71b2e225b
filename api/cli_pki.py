"""`qihub pki`: the hub's certificate authority and master key."""

from typing import Annotated

import typer
from rich.console import Console

from signing.keys import create_dev_master_key, master_secret
from signing.pki import CA_CERT_FILENAME, CA_KEY_FILENAME, HSM_CA_KEY_LABEL, hub_ca_exists, load_or_create_hub_ca
from storage.errors import DomainError
from storage.settings import Settings

app = typer.Typer(help="The hub's PKI: root CA and master key.", no_args_is_help=True)
errors = Console(stderr=True)


@app.command("init")
def init(
    dev_master_key: Annotated[
        bool,
        typer.Option(
            "--dev-master-key",
            help="Local trials only: generate <pki dir>/master.key when no master key is configured.",
        ),
    ] = False,
) -> None:
    """Create the hub CA under the pki dir (or report the configured one) and print its fingerprint."""
    settings = Settings()
    try:
        if dev_master_key and master_secret(settings) is None:
            path = create_dev_master_key(settings)
            typer.echo(f"generated master key  {path}  (local trials only; set QIHUB_MASTER_KEY in production)")
        existed = hub_ca_exists(settings)
        ca = load_or_create_hub_ca(settings)
    except DomainError as error:
        errors.print(f"[red]{error.title}[/]: {error.detail}")
        raise typer.Exit(1) from error
    if settings.ca_cert_file is not None:
        origin = f"configured CA  {settings.ca_cert_file}"
    else:
        origin = f"{'existing' if existed else 'created'} hub CA  {settings.resolved_pki_dir / CA_CERT_FILENAME}"
    typer.echo(origin)
    typer.echo(f"subject               {ca.certificate.subject.rfc4514_string()}")
    typer.echo(f"SHA-256 fingerprint   {ca.fingerprint}")
    if settings.pkcs11_module and settings.ca_cert_file is None:
        typer.echo(f"CA key                PKCS#11 token {settings.pkcs11_token_label!r}, label {HSM_CA_KEY_LABEL!r}")
    else:
        key_path = settings.ca_key_file or settings.resolved_pki_dir / CA_KEY_FILENAME
        encrypted = b"ENCRYPTED" in key_path.read_bytes().split(b"\n", 1)[0]
        typer.echo(f"CA key encrypted      {'yes' if encrypted else 'no'}  {key_path}")
    if master_secret(settings) is None:
        typer.echo("hub-held signing keys need QIHUB_MASTER_KEY (or `qihub pki init --dev-master-key`).")
