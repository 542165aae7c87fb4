"""The `stackyard platform` commands: apply and show the platform configuration as code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from stackyard.cli.backend import backend
from stackyard.cli.common import OUTPUT, YES, confirm
from stackyard.cli.output import OutputFormat, print_json, stdout

if TYPE_CHECKING:
    from stackyard.environments.platform import Change

app = typer.Typer(
    help="Platform configuration as code: environment types, environments, teams, paths.",
    no_args_is_help=True,
)

_SYMBOL = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "delete": "[red]-[/]",
    "unchanged": "[dim]=[/]",
}


@app.command("apply")
def apply(
    directory: Annotated[Path, typer.Argument(help="Folder of platform documents (*.yaml).")],
    yes: bool = YES,
    output: OutputFormat = OUTPUT,
) -> None:
    """Show what changes, then apply the folder's documents (idempotent)."""
    result = backend().platform_apply(
        directory,
        ask=lambda q: confirm(q, yes=yes),
        show=None if output is OutputFormat.JSON else _show,
    )
    if output is OutputFormat.JSON:
        print_json(result)
        return
    out = stdout()
    if not result["changed"]:
        out.print("[green]✓[/] platform configuration unchanged")
    elif result["applied"]:
        done = {"create": "created", "update": "updated", "delete": "deleted"}
        counts = ", ".join(
            f"{n} {done.get(what, what)}" for what, n in result["counts"].items() if n
        )
        out.print(f"[green]✓[/] applied: {counts} document(s)")
    else:
        out.print("Nothing applied.")


def _show(changes: list[Change]) -> None:
    out = stdout()
    for c in changes:
        extra = f" ({', '.join(c.fields)})" if c.fields else ""
        out.print(f"  {_SYMBOL[c.action]} {c.kind} {escape(c.name)}{escape(extra)}")


@app.command("show")
def show(output: OutputFormat = OUTPUT) -> None:
    """Show the applied platform configuration."""
    docs = backend().platform_show()
    if output is OutputFormat.JSON:
        print_json(docs)
        return
    out = stdout()
    if not docs:
        out.print("No platform configuration applied. Run 'stackyard platform apply DIR'.")
    for d in docs:
        out.print(f"{d['kind']:16} {escape(d['name'])}")
