"""The ``stackyard token`` commands: API tokens for the server, made, listed and revoked on
its home by an admin."""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.common import OUTPUT, when, workspace
from stackyard.cli.output import OutputFormat, print_json, stderr, stdout

app = typer.Typer(
    help="API tokens for the server: create, list and revoke them.", no_args_is_help=True
)


@app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="The user the token acts as."),
    ttl: str | None = typer.Option(
        None, "--ttl", help="How long it lives: 12h, 30d, 2w (default 30d).", metavar="<duration>"
    ),
    description: str = typer.Option("", "--description", help="What the token is for."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Make a token for a user and print it once (only its hash is kept)."""
    from stackyard.identity import tokens

    with workspace() as ws:
        issued = tokens.create(ws, user=user, ttl=ttl, description=description)
    if output is OutputFormat.JSON:
        print_json(issued.to_json())
        return
    rec = issued.record
    stderr().print(
        f"[green]✓[/] token {rec.id} for {escape(rec.user)}, expires {when(rec.expires_at)}; "
        "it is shown this once:"
    )
    stdout().print(issued.token)


@app.command("list")
def list_tokens(
    user: str | None = typer.Option(None, "--user", help="Only this user's tokens."),
    output: OutputFormat = OUTPUT,
) -> None:
    """List tokens (never their secrets): user, status, expiry and last use."""
    from stackyard.identity import tokens

    with workspace() as ws:
        listing = tokens.list_tokens(ws, user=user)
    if output is OutputFormat.JSON:
        print_json(listing.to_json())
        return
    if not listing.tokens:
        stdout().print("No tokens.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "user", "status", "expires", "last used", "description"):
        table.add_column(column)
    for t in listing.tokens:
        status = t.status(listing.now).value
        colour = "green" if status == "active" else "red" if status == "revoked" else "yellow"
        table.add_row(
            t.id,
            escape(t.user),
            f"[{colour}]{status}[/]",
            when(t.expires_at),
            when(t.last_used_at),
            escape(t.description),
        )
    stdout().print(table)


@app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., metavar="ID", help="The token's id (from 'token list')."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Revoke a token: it is refused from now on."""
    from stackyard.identity import tokens

    with workspace() as ws:
        record = tokens.revoke(ws, token_id)
    if output is OutputFormat.JSON:
        print_json(record.to_json(time.time()))
        return
    stdout().print(f"[green]✓[/] token {record.id} of {escape(record.user)} is revoked")
