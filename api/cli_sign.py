"""`qihub sign`: sign a DCC on the lab's own machine with its own key (XAdES B-B, or B-T with a TSA)."""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)

KEY_PASSWORD_ENV = "QIHUB_SIGNING_KEY_PASSWORD"


def _default_output(file: Path) -> Path:
    return file.with_name(f"{file.stem}.signed{file.suffix or '.xml'}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        errors.print(f"[red]cannot read the {what}[/] {path}: {error.strerror}")
        raise typer.Exit(2) from None


def _load_key(data: bytes, path: Path) -> object:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: the password comes from the environment, else a prompt
        password = os.environ.get(KEY_PASSWORD_ENV) or typer.prompt(f"Password of {path}", hide_input=True)
        try:
            return serialization.load_pem_private_key(data, password=password.encode())
        except ValueError:
            errors.print(f"[red]wrong password for[/] {path}")
            raise typer.Exit(2) from None
    except ValueError:
        errors.print(f"[red]not a PEM private key:[/] {path}")
        raise typer.Exit(2) from None


def _load_certificates(data: bytes, path: Path) -> list:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        errors.print(f"[red]no PEM certificate in[/] {path}")
        raise typer.Exit(2) from None


def sign(
    file: Annotated[Path, typer.Argument(help="The DCC XML to sign (DCC 3.2.0 or later)")],
    key: Annotated[Path, typer.Option("--key", help="The signing key (PEM; if encrypted, $" + KEY_PASSWORD_ENV + ")")],
    cert: Annotated[Path, typer.Option("--cert", help="The signing certificate (PEM; may be followed by its chain)")],
    chain: Annotated[Path | None, typer.Option("--chain", help="Intermediate CA certificates (PEM)")] = None,
    tsa: Annotated[str | None, typer.Option("--tsa", help="RFC 3161 TSA URL: makes a B-T signature")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the result (default FILE.signed.xml)")
    ] = None,
) -> None:
    """Sign a DCC with XAdES B-B (B-T with --tsa): exit 0 when signed, 1 when refused, 2 when input is unreadable."""
    from certificates.xml import XmlRejected
    from signing.pki import fingerprint_sha256
    from signing.timestamps import request_timestamp
    from signing.xades import sign_dcc
    from storage.errors import DomainError

    document = _read(file, "document")
    private_key = _load_key(_read(key, "key"), key)
    certificates = _load_certificates(_read(cert, "certificate"), cert)
    if chain is not None:
        certificates += _load_certificates(_read(chain, "chain"), chain)
    timestamper = (lambda data: request_timestamp(data, url=tsa)) if tsa else None
    try:
        signed = sign_dcc(
            document,
            private_key=private_key,  # type: ignore[arg-type]
            certificate_chain=certificates,
            timestamper=timestamper,
        )
    except DomainError as error:
        errors.print(f"[red]not signed:[/] {error.detail}")
        raise typer.Exit(1) from None
    except XmlRejected as error:
        errors.print(f"[red]not readable XML:[/] {file}: {error.detail}")
        raise typer.Exit(2) from None
    target = out or _default_output(file)
    target.write_bytes(signed)
    level = "B-T" if tsa else "B-B"
    console.print(f"signed ({level}) by {fingerprint_sha256(certificates[0])} → {target}")
