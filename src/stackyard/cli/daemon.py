"""The ``stackyard daemon`` commands: the warm command servers of this user
(``stackyard.cli.cmdserver``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli import cmdclient
from stackyard.cli.output import OutputFormat, print_json, stdout

app = typer.Typer(
    help="The command server that keeps commands fast: show or stop it.",
    invoke_without_command=True,
)

Output = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
]


@app.callback()
def status(ctx: typer.Context, output: Output = OutputFormat.TEXT) -> None:
    """Show this user's command servers: pid, uptime, commands served and running, and
    whether each one serves this installation (STACKYARD_DAEMON=0 turns them off)."""
    if ctx.invoked_subcommand is not None:
        return
    enabled = cmdclient.enabled()
    directory = cmdclient.socket_dir()
    servers = cmdclient.status()
    if output is OutputFormat.JSON:
        print_json({"enabled": enabled, "directory": directory, "servers": servers})
        return
    con = stdout()
    state = "on" if enabled else "off (STACKYARD_DAEMON)"
    con.print(f"command server: {state}; sockets in {escape(str(directory or '(unsafe: none)'))}")
    if not servers:
        con.print("no server running (the next command starts one)" if enabled else "")
        return
    table = Table("pid", "key", "current", "uptime", "served", "running", box=None)
    for s in servers:
        table.add_row(
            str(s.get("pid")),
            escape(str(s.get("key"))),
            "yes" if s.get("current") else "no",
            f"{s.get('uptime_s')} s",
            str(s.get("served")),
            str(s.get("running")),
        )
    con.print(table)


@app.command("stop")
def stop(output: Output = OutputFormat.TEXT) -> None:
    """Stop this user's command servers (each finishes the commands it is running)."""
    stopped = cmdclient.stop_all()
    if output is OutputFormat.JSON:
        print_json({"stopped": stopped})
        return
    stdout().print(f"stopped {stopped} command server(s)")
