"""The ``stackyard keys`` commands: the signing key and the trusted keys in the home."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.components.keys import Keyring
from stackyard.diagnostics import error
from stackyard.errors import InvalidInputError
from stackyard.settings import Settings

app = typer.Typer(
    help="Show, generate, import, remove and export signing keys.", invoke_without_command=True
)

Output = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
]


def _ring() -> Keyring:
    return Keyring(Settings.load().home)


@app.callback()
def show(ctx: typer.Context, output: Output = OutputFormat.TEXT) -> None:
    """Show the signing key's id and the trusted keys (public keys only, never the private key)."""
    if ctx.invoked_subcommand is not None:
        return
    ring = _ring()
    own = ring.key_id() if ring.has_signing_key() else None
    trusted = ring.trusted_keys()
    if output is OutputFormat.JSON:
        print_json(
            {
                "signing_key": own,
                "public_pem": ring.public_pem().decode() if own else None,
                "trusted": [{"key_id": t.key_id, "name": t.name, "own": t.own} for t in trusted],
            }
        )
        return
    con = stdout()
    con.print(f"signing key: {escape(own) if own else '(none: run stackyard keys generate)'}")
    if own:  # what others import to trust this home's builds ('stackyard keys export' too)
        con.print(escape(ring.public_pem().decode().rstrip()))
    table = Table("key id", "name", "own", box=None)
    for t in trusted:
        table.add_row(escape(t.key_id), escape(t.name or ""), "yes" if t.own else "")
    con.print(table)


@app.command("generate")
def generate(
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing signing key.")
    ] = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Generate the home's Ed25519 signing key (and trust its public key)."""
    key_id = _ring().generate(force=force)
    if output is OutputFormat.JSON:
        print_json({"key_id": key_id})
    else:
        stdout().print(f"generated signing key {escape(key_id)}")


@app.command("import")
def import_key(
    file: Annotated[Path, typer.Argument(help="A PEM Ed25519 public key to trust.")],
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Trust another publisher's public key."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot read {file}",
            [
                error(
                    "File not readable", f"'{file}' cannot be read: {exc.strerror}.", file=str(file)
                )
            ],
        ) from None
    key_id = _ring().import_public(data, name=name)
    if output is OutputFormat.JSON:
        print_json({"key_id": key_id})
    else:
        stdout().print(f"trusted {escape(key_id)}")


@app.command("remove")
def remove(
    key: Annotated[str, typer.Argument(help="The id of the trusted key (see 'stackyard keys').")],
    output: Output = OutputFormat.TEXT,
) -> None:
    """Stop trusting a public key: builds signed only by it no longer verify."""
    _ring().remove(key)
    if output is OutputFormat.JSON:
        print_json({"removed": key})
    else:
        stdout().print(f"no longer trusted: {escape(key)}")


@app.command("export")
def export() -> None:
    """Print the signing key's public key (PEM), to import elsewhere."""
    typer.echo(_ring().public_pem().decode(), nl=False)
