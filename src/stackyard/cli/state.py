"""The `stackyard state` commands: inspect an environment's state, journal and lock."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.common import workspace
from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.errors import CancelledError, InvalidInputError
from stackyard.settings import Settings

app = typer.Typer(help="Inspect and repair environment state.", no_args_is_help=True)

_ENV = typer.Argument(..., help="The environment.")
_OUTPUT = typer.Option(OutputFormat.TEXT, "--output", "-o", help="Output format.")


@app.command("lock")
def lock(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """Show who holds the environment's lock."""
    from stackyard.environments import state

    with workspace() as ws:
        held = state.lock(ws, env)
    data = held.to_json()
    if output is OutputFormat.JSON:
        print_json(data)
        return
    con = stdout()
    if data is None:
        con.print(f"Environment '{escape(env)}' is not locked.")
        return
    expired = " [yellow](expired)[/]" if held.expired else ""
    con.print(f"Environment '{escape(env)}' is locked by {escape(data['holder'])}{expired}")
    con.print(f"  lock id:   {data['lock_id']}")
    con.print(f"  token:     {data['token']}")
    con.print(f"  acquired:  {data['acquired_at']}")
    con.print(f"  expires:   {data['expires_at']}")


@app.command("force-unlock")
def force_unlock(
    env: str = _ENV,
    lock_id: str = typer.Argument(..., help="The lock id, from 'stackyard state lock'."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Break an environment's lock. Only do this when its holder is gone."""
    from stackyard.environments import confirmation, state

    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(
                f"Refusing to force-unlock environment '{env}' without confirmation",
                hint="Pass --yes to confirm when not running in a terminal.",
            )
        if not typer.confirm(confirmation.force_unlock(env, lock_id).question, default=False):
            raise CancelledError("Cancelled: nothing was changed")
    settings = Settings.load()
    if settings.database_url.startswith("sqlite") and not (settings.home / "state.db").exists():
        raise InvalidInputError(f"No stackyard home at {settings.home}", hint="Nothing to unlock.")
    with workspace() as ws:
        state.force_unlock(ws, env, lock_id)
    stdout().print(f"Unlocked environment '{escape(env)}'.")


@app.command("list")
def list_resources(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """List the environment's recorded resources (never their secrets)."""
    from stackyard.environments import state

    with workspace() as ws:
        recorded = state.resources(ws, env)
    if output is OutputFormat.JSON:
        print_json(recorded.to_json())
        return
    table = Table("address", "kind", "physical name", title=f"{env} (serial {recorded.serial})")
    for row in recorded.resources:
        table.add_row(escape(row["address"]), escape(row["kind"]), escape(row["physical_name"]))
    stdout().print(table)


@app.command("intents")
def list_intents(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """List the environment's pending intents (calls that may not have finished)."""
    from stackyard.environments import state

    with workspace() as ws:
        pending = state.intents(ws, env)
    rows = pending.intents
    if output is OutputFormat.JSON:
        print_json(pending.to_json())
        return
    if not rows:
        stdout().print(f"No pending intents in environment '{escape(env)}'.")
        return
    table = Table("created", "op", "address", "physical name", "id")
    for row in rows:
        table.add_row(
            row["created_at"],
            row["op"],
            escape(row["address"]),
            escape(row["physical_name"]),
            row["id"],
        )
    stdout().print(table)
