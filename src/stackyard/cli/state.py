"""The `stackyard state` commands: inspect an environment's state, journal and lock."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.errors import InvalidInputError
from stackyard.settings import Settings
from stackyard.state import open_store

app = typer.Typer(help="Inspect and repair environment state.", no_args_is_help=True)

_ENV = typer.Argument(..., help="The environment.")
_OUTPUT = typer.Option(OutputFormat.TEXT, "--output", "-o", help="Output format.")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@app.command("lock")
def lock(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """Show who holds the environment's lock."""
    with open_store(Settings.load()) as store:
        info = store.lock_info(env)
        now = store.now()  # leases run out by the store's clock
    if output is OutputFormat.JSON:
        print_json(
            None
            if info is None
            else {
                "env": info.env,
                "lock_id": info.lock_id,
                "holder": info.holder,
                "token": info.token,
                "acquired_at": _when(info.acquired_at),
                "expires_at": _when(info.expires_at),
                "expired": info.expires_at <= now,
            }
        )
        return
    con = stdout()
    if info is None:
        con.print(f"Environment '{escape(env)}' is not locked.")
        return
    expired = " [yellow](expired)[/]" if info.expires_at <= now else ""
    con.print(f"Environment '{escape(env)}' is locked by {escape(info.holder)}{expired}")
    con.print(f"  lock id:   {info.lock_id}")
    con.print(f"  token:     {info.token}")
    con.print(f"  acquired:  {_when(info.acquired_at)}")
    con.print(f"  expires:   {_when(info.expires_at)}")


@app.command("force-unlock")
def force_unlock(
    env: str = _ENV,
    lock_id: str = typer.Argument(..., help="The lock id, from 'stackyard state lock'."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Break an environment's lock. Only do this when its holder is gone."""
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(
                f"Refusing to force-unlock environment '{env}' without confirmation",
                hint="Pass --yes to confirm when not running in a terminal.",
            )
        if not typer.confirm(
            f"Break the lock {lock_id} on environment '{env}'? A running operation that "
            "holds it will fail on its next write.",
            default=False,
        ):
            raise typer.Exit(1)
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import Action

    settings = Settings.load()
    if settings.database_url.startswith("sqlite") and not (settings.home / "state.db").exists():
        raise InvalidInputError(f"No stackyard home at {settings.home}", hint="Nothing to unlock.")
    with (
        Workspace.open(settings) as ws,
        ws.act(Action.STATE_UNLOCK, env=env, detail={"lock_id": lock_id}),
    ):
        ws.store.force_unlock(env, lock_id)
    stdout().print(f"Unlocked environment '{escape(env)}'.")


@app.command("list")
def list_resources(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """List the environment's recorded resources (never their secrets)."""
    with open_store(Settings.load()) as store:
        snap = store.snapshot(env)
    rows = [
        {"address": r.address, "kind": r.kind, "physical_name": r.physical_name}
        for r in sorted(snap.resources.values(), key=lambda r: r.address)
    ]
    if output is OutputFormat.JSON:
        print_json({"env": env, "serial": snap.serial, "lineage": snap.lineage, "resources": rows})
        return
    table = Table("address", "kind", "physical name", title=f"{env} (serial {snap.serial})")
    for row in rows:
        table.add_row(escape(row["address"]), escape(row["kind"]), escape(row["physical_name"]))
    stdout().print(table)


@app.command("intents")
def list_intents(env: str = _ENV, output: OutputFormat = _OUTPUT) -> None:
    """List the environment's pending intents (calls that may not have finished)."""
    with open_store(Settings.load()) as store:
        pending = store.intents(env)
    rows = [
        {
            "id": i.id,
            "op": i.op,
            "address": i.address,
            "kind": i.kind,
            "physical_name": i.physical_name,
            "created_at": i.created_at,
        }
        for i in pending
    ]
    if output is OutputFormat.JSON:
        print_json({"env": env, "intents": rows})
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
