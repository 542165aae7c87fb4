"""Release and promotion commands, and the quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.backend import backend
from stackyard.cli.common import (
    LOCK_TIMEOUT,
    OUTPUT,
    YES,
    confirm,
    progress,
    render_plan,
    when,
)
from stackyard.cli.deploy import report
from stackyard.cli.output import OutputFormat, print_json, stdout

if TYPE_CHECKING:
    from stackyard.engine.plan import Plan

app = typer.Typer(help="Immutable, content-addressed releases.", no_args_is_help=True)


@app.command("create")
def create(
    scores: Annotated[list[str], typer.Argument(help="Score files.")],
    image: Annotated[
        list[str] | None, typer.Option("--image", help="Container image: name=ref (repeatable).")
    ] = None,
    env: str | None = typer.Option(
        None,
        "--env",
        "-e",
        help="Resolve the lock here (default: the first stage of the promotion path).",
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Pin workload specs, app builds and the component lock into a release."""
    rel, created = backend().release_create(scores, env=env, images=image or [])
    if output is OutputFormat.JSON:
        print_json({**rel.to_json(), "created": created})
        return
    out = stdout()
    out.print(
        f"[green]✓[/] release [bold]{rel.short}[/] {'created' if created else '(identical release already exists)'}"
    )
    out.print(f"  id        {rel.id}")
    out.print(f"  workloads {escape(', '.join(rel.workload_names()))}")
    for uid, pin in sorted(rel.lock.items()):
        out.print(f"  {escape(uid):40} {escape(pin.ref)} {pin.digest[:19]}")


@app.command("list")
def list_(output: OutputFormat = OUTPUT) -> None:
    """List releases, newest first."""
    rels = backend().releases()
    if output is OutputFormat.JSON:
        print_json([r.to_json() for r in rels])
        return
    table = Table(box=None, header_style="bold")
    for col in ("release", "created", "by", "workloads"):
        table.add_column(col)
    for r in rels:
        table.add_row(
            r.short, when(r.created_at), escape(r.created_by), escape(", ".join(r.workload_names()))
        )
    stdout().print(table)


@app.command("show")
def show(
    release: str = typer.Argument(..., help="Release id (or a unique prefix)."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Show a release and where it was deployed."""
    shown = backend().release(release)
    if output is OutputFormat.JSON:
        print_json(shown.to_json())
        return
    rel, deps = shown.release, shown.deployments
    out = stdout()
    out.print(f"[bold]{rel.short}[/]  {rel.id}  by {escape(rel.created_by)} {when(rel.created_at)}")
    for uid, pin in sorted(rel.lock.items()):
        out.print(f"  {escape(uid):40} {escape(pin.ref)} {pin.digest[:19]}")
    for d in deps:
        out.print(f"  {d.kind:8} {escape(d.env):12} {d.status:10} {when(d.created_at)}")


def promote(
    release: str = typer.Argument(..., help="Release id (or a unique prefix)."),
    to: str = typer.Option(..., "--to", help="The next environment on the promotion path."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show the plan; apply nothing."),
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Deploy a release's pinned builds to the next stage (after it succeeded in the previous one)."""
    from stackyard.environments import confirmation

    def ask(plan: Plan) -> bool:
        if output is OutputFormat.TEXT:
            render_plan(plan)
        return confirm(confirmation.promote(plan, to).question, yes=yes)

    result = backend().promote(
        release,
        to,
        plan_only=plan_only,
        yes=yes,
        ask=ask,
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    report(result, output, plan_only=plan_only)


def quickstart(
    examples: Annotated[
        Path | None, typer.Option("--examples", help="Examples folder (default: the bundled one).")
    ] = None,
    output: OutputFormat = OUTPUT,
) -> None:
    """From nothing to a running app: home, platform, dev, an ephemeral env and the hello app."""
    from stackyard.cli.remote import refuse
    from stackyard.environments.quickstart import quickstart as run
    from stackyard.settings import Settings

    refuse("quickstart", "it makes a home and runs the app on this machine")

    data = run(Settings.load(), examples=examples, progress=progress(output))
    if output is OutputFormat.JSON:
        print_json(data)
        return
    out = stdout()
    out.print(
        f"\n[green]✓[/] hello is running in [bold]quickstart[/] (a child of dev): [bold]{escape(data['url'])}[/]"
    )
    out.print(
        "  "
        + ("changed: yes" if data["changed"] else "nothing changed (already up to date)")
        + f", {data['duration_s']} s"
    )
    out.print("\n[bold]outputs[/] (secrets masked)")
    for name, entry in data["outputs"].items():
        shown = ", ".join(f"{k}={v}" for k, v in entry["outputs"].items())
        out.print(f"  {escape(name):6} {escape(str(entry['component']))}: {escape(shown)}")
    out.print("\n[bold]next[/]")
    for cmd in data["next"]:
        out.print(f"  {escape(cmd)}")
