"""The ``stackyard catalog`` commands: the published components seen from the environments
(adoption of each version) and the catalog's export to other tools (Backstage);
``stackyard component`` works on the builds themselves."""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, print_json, stdout

app = typer.Typer(
    help="Who runs which component versions (adoption), and the Backstage export.",
    no_args_is_help=True,
)

Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]


class ExportFormat(enum.StrEnum):
    """``catalog export --format`` values."""

    BACKSTAGE = "backstage"


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
    from stackyard.cli.backend import backend

    data: dict[str, Any] = backend().adoption(name)
    if output is OutputFormat.JSON:
        print_json(data)
        return
    render(data)


@app.command("export")
def export_cmd(
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="The catalog's format: backstage.", case_sensitive=False),
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="A directory: writes DIR/catalog-info.yaml atomically (default: print the YAML).",
        ),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Export the catalog as Backstage entities: a Group per team, a System per environment, a
    Resource per component instance and a Component per workload, in one multi-document
    catalog-info.yaml. Never an output or a parameter of an instance (docs/backstage.md)."""
    from stackyard.cli.backend import backend
    from stackyard.integrations import backstage

    done = backend().catalog_export(env)
    if to is None:
        if output is OutputFormat.JSON:
            print_json(done.to_json())
        else:
            sys.stdout.write(done.to_yaml())
            sys.stdout.flush()
        return
    path = backstage.write(done, to)
    counts = done.counts()
    if output is OutputFormat.JSON:
        print_json({"format": fmt.value, "path": str(path), "entities": counts})
        return
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    stdout().print(
        f"[green]✓[/] wrote {len(done.entities)} entities ({escape(kinds)}) to {escape(str(path))}"
    )


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
            if (v.get("slo") or {}).get("missed_in"):
                standing += f" [red]SLO missed in {escape(', '.join(v['slo']['missed_in']))}[/]"
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
