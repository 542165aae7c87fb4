"""The `stackyard providers` commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.providers.registry import ProviderRegistry

app = typer.Typer(help="List the installed providers and their kinds.", no_args_is_help=True)


@app.command("list")
def list_providers(
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format: text or json.")
    ] = OutputFormat.TEXT,
) -> None:
    """List every provider: its kinds, version and origin; broken ones say why."""
    infos = ProviderRegistry.discover().providers()
    if output is OutputFormat.JSON:
        print_json([info.to_json() for info in infos])
        return
    con = stdout()
    table = Table(title="Providers", title_justify="left")
    for column in ("name", "version", "kinds", "origin", "status"):
        table.add_column(column, style="bold" if column == "name" else None)
    for info in infos:
        table.add_row(
            escape(info.name),
            escape(info.version or "-"),
            escape(", ".join(info.kinds) or "-"),
            escape(info.origin),
            "[red]broken[/]" if info.broken else "[green]ok[/]",
        )
    con.print(table)
    for info in infos:
        if info.broken:
            con.print(f"[red]broken[/] [bold]{escape(info.name)}[/] ({escape(info.module)}):")
            con.print(f"  {escape(info.error)}")
