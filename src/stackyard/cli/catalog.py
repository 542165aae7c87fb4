"""The ``stackyard catalog`` commands: the published components seen from the environments
(adoption of each version); ``stackyard component`` works on the builds themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stdout

app = typer.Typer(
    help="Who runs which component versions: adoption across the environments.",
    no_args_is_help=True,
)

Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]

_STANDING = {
    "latest": "[green]latest[/]",
    "behind-compatible": "[yellow]behind {latest_compatible}[/]",
    "behind-major": "[cyan]major {latest} out[/]",
    "unpublished": "[red]unpublished[/]",
}


@app.command("adoption")
def adoption_cmd(
    name: Annotated[
        str | None, typer.Argument(help="One component (default: every component).")
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """For each component version: the environments and workloads that run it, how far it is
    behind, and the deprecated versions still in use with their owners."""
    from stackyard.cli.remote import target

    server = target()
    if server is not None:
        from stackyard.cli.remote_client import Client

        client = Client(server)
        try:
            data: dict[str, Any] = dict(client.get("/api/v1/catalog/adoption", name=name))
        finally:
            client.close()
    else:
        from stackyard.cli.common import workspace
        from stackyard.environments.adoption import adoption

        with workspace() as ws:
            data = adoption(ws, name).to_json()
    if output is OutputFormat.JSON:
        print_json(data)
        return
    render(data)


def render(data: Mapping[str, Any]) -> None:
    """The adoption report as text: a row per version, then the deprecated builds in use."""
    con = stdout()
    table = Table(box=None, header_style="bold")
    for column in ("component", "version", "standing", "used by"):
        table.add_column(column, no_wrap=column != "used by")
    for comp in data["components"]:
        for v in comp["versions"]:
            standing = _STANDING[v["standing"]].format(**v)
            if v["deprecated"]:
                standing += " [red]deprecated[/]"
            table.add_row(escape(comp["name"]), escape(v["version"]), standing, _used_by(v["uses"]))
    con.print(table)
    stale = data["deprecated_in_use"]
    if not stale:
        return
    con.print()
    con.print("[bold red]Deprecated versions still in use[/]")
    for d in stale:
        owners = ", ".join(d["owners"]) or "no owner"
        con.print(
            f"  {escape(d['component'])}@{escape(d['version'])} ({escape(d['deprecation'] or '')})"
            f" · owners: {escape(owners)}"
        )
        for use in d["uses"]:
            con.print(f"    {escape(describe(use))}")


def describe(use: Mapping[str, Any]) -> str:
    """One instance in words: ``prod (team-checkout): postgres.default#checkout.db, used by
    checkout``."""
    owner = f" ({use['owner']})" if use.get("owner") else ""
    users = ", ".join(use["workloads"]) or ("core" if use["core"] else "no workload")
    return f"{use['env']}{owner}: {use['uid']}, used by {users}"


def _used_by(uses: Sequence[Mapping[str, Any]]) -> str:
    if not uses:
        return "[dim]-[/]"
    by_env: dict[str, set[str]] = {}
    for use in uses:
        fallback = "(core)" if use["core"] else "(no workload)"
        by_env.setdefault(use["env"], set()).update(use["workloads"] or [fallback])
    return "; ".join(
        f"{escape(env)}: {escape(', '.join(sorted(users)))}"
        for env, users in sorted(by_env.items())
    )
