"""`stackyard slo`: each workload's and component instance's measured availability against its
objective, with the error budget left, and `stackyard slo probe` (``stackyard.ops.slo``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.common import OUTPUT
from stackyard.cli.output import OutputFormat, print_json, stdout

if TYPE_CHECKING:
    from stackyard.ops.slo import SloSummary

app = typer.Typer(
    help="Service level objectives: measured availability and the error budget left.\n\n"
    "Each workload and component instance over a window (--window, 30d by default). A "
    "component's objective is its SLA availability; a workload's is STACKYARD_DEFAULT_SLO "
    "(none when unset). Availability is the share of good probes; a target without a probe "
    "in the window is unknown, never 100%.",
    no_args_is_help=False,
    invoke_without_command=True,
)


@app.callback()
def slo(
    ctx: typer.Context,
    component: str | None = typer.Option(
        None, "--component", "-c", help="Only the instances of this component."
    ),
    env: str | None = typer.Option(None, "--env", "-e", help="Only this environment."),
    window: str = typer.Option(
        "30d", "--window", "-w", help="How far back to measure (12h, 7d, 30d)."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Availability of each workload and component instance over a window, against its SLO.

    A component's objective is its SLA availability; a workload's is STACKYARD_DEFAULT_SLO
    (none when unset). Availability is the share of good probes; a target without a probe in
    the window is unknown, never 100%.
    """
    if ctx.invoked_subcommand is not None:
        return
    from stackyard.cli.backend import backend
    from stackyard.settings import parse_ttl

    window_s = parse_ttl(window, "--window")
    found = backend().slo(env=env, component=component, window=window)
    if output is OutputFormat.JSON:
        print_json({"window": window, "window_s": window_s, "slos": [s.to_json() for s in found]})
        return
    render(found)


@app.command("probe")
def probe(
    env: str | None = typer.Option(
        None, "--env", "-e", help="Only this environment (default: every one you may view)."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Probe every workload and component instance now and record one observation each."""
    from stackyard.cli.backend import backend

    count = backend().slo_probe(env)
    if output is OutputFormat.JSON:
        print_json({"recorded": count})
        return
    stdout().print(f"Recorded {count} observation(s).")


def _percent(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "[dim]-[/]"
    return f"{value * 100:.{digits}f}".rstrip("0").rstrip(".") + "%"


def render(found: Sequence[SloSummary]) -> None:
    """The summaries as a table."""
    con = stdout()
    if not found:
        con.print("No workload or component instance to measure.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("env", "target", "component"):
        table.add_column(column, overflow="fold")
    for column in ("objective", "availability", "budget left", "met"):
        table.add_column(column, no_wrap=True)
    for s in found:
        if s.availability is None:
            availability = "[dim]unknown (no probe)[/]"
        else:
            availability = f"{_percent(s.availability)} ({s.good}/{s.samples})"
        budget = _percent(s.error_budget_remaining, 1)
        if s.error_budget_remaining is not None and s.error_budget_remaining < 0:
            budget = f"[red]{budget}[/]"
        met = {True: "[green]yes[/]", False: "[red]missed[/]", None: "[dim]-[/]"}[s.met]
        table.add_row(
            escape(s.env),
            escape(s.target),
            escape(s.component or "-"),
            _percent(s.objective),
            availability,
            budget,
            met,
        )
    con.print(table)
