"""`stackyard upgrade`: move every instance of a component to a new build, environment by
environment in promotion-path order (``stackyard.environments.upgrade``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from stackyard.cli.common import LOCK_TIMEOUT, OUTPUT, YES, confirm, progress
from stackyard.cli.output import OutputFormat, print_json, render_diagnostics, stdout

if TYPE_CHECKING:
    from stackyard.environments.upgrade import Campaign, Step

_MARKS = {
    "planned": "[cyan]•[/]",
    "blocked": "[red]✗[/]",
    "succeeded": "[green]✓[/]",
    "awaiting-approval": "[yellow]⏸[/]",
    "failed": "[red]✗[/]",
    "not-run": "[dim]-[/]",
}


def upgrade(
    component: str = typer.Argument(..., help="The component to move (its name)."),
    to: str = typer.Option(..., "--to", help="The version range: the newest build in it wins."),
    env_type: list[str] = typer.Option(  # noqa: B008 - Typer's way to declare a repeated option
        [], "--env-type", "-t", help="Only environments of this type (repeatable)."
    ),
    env: list[str] = typer.Option(  # noqa: B008
        [], "--env", "-e", help="Only this environment (repeatable)."
    ),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show the plans; apply nothing."),
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Move every instance of a component to the newest build in a range, in promotion order.

    Each environment goes through the governed road (plan, policies, approval, apply); the
    campaign stops at the first step that fails (exit status of its error) or waits for an
    approval (exit 0), and says what was done and what was not.
    """
    from stackyard.cli.backend import backend

    text = output is OutputFormat.TEXT

    def ask(campaign: Campaign) -> bool:
        if text:
            _render(campaign)
        n = len(campaign.steps)
        return confirm(f"Upgrade {n} environment(s) to {campaign.target.ref}?", yes=yes)

    # In JSON with --yes the answer is known and nothing is shown: no confirmation (a
    # server then applies without planning first).
    campaign = backend().upgrade(
        component,
        to,
        envs=list(env),
        env_types=list(env_type),
        plan_only=plan_only,
        confirm=None if plan_only or (yes and not text) else ask,
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    if output is OutputFormat.JSON:
        print_json(campaign.to_json())
    else:
        _render(campaign)
        _summary(campaign)
    stop = campaign.stopped_at
    if stop is not None and stop.exit_code:
        raise typer.Exit(stop.exit_code)


def _render(campaign: Campaign) -> None:
    out = stdout()
    out.print(
        f"Upgrade of [bold]{escape(campaign.component)}[/] to "
        f"[bold]{escape(campaign.target.ref)}[/] [dim]({escape(campaign.target.digest[:19])}, "
        f"newest in {escape(campaign.range)})[/]"
    )
    if not campaign.steps:
        out.print("Nothing to move: every matching instance runs it already.")
    for step in campaign.steps:
        _step(step)
    for s in campaign.skipped:
        out.print(
            f"[dim]left alone: {escape(s['env'])} {escape(s['uid'])} "
            f"@{escape(s['version'])}: {escape(s['why'])}[/]"
        )


def _step(step: Step) -> None:
    out = stdout()
    shown = step.status.value != "not-run"  # its deployment is only the plan's
    out.print(
        f"\n{_MARKS[step.status.value]} [bold]{escape(step.env)}[/] "
        f"[dim]({escape(step.env_type)})[/] {step.status.value}"
        + (f"  deployment {step.deployment}" if step.deployment and shown else "")
    )
    for m in step.moves:
        out.print(f"  {escape(m.uid)}: {escape(m.before.version)} → {escape(m.after.version)}")
    for c in step.changes:
        colour = "magenta" if c["action"] == "replace" else "yellow"
        note = "  [bold magenta]REPLACED[/]" if c["action"] == "replace" else ""
        out.print(
            f"    [{colour}]{c['action']:7}[/] {escape(c['address'])} "
            f"[dim]{escape(c['reason'] or '')}[/]{note}"
        )
    if step.status.value in ("planned", "blocked") and not step.changes and not step.error:
        out.print("    [dim]no resource changes (the lock records the new build)[/]")
    for why in step.approvals:
        verb = "waits" if step.status.value == "awaiting-approval" else "would wait"
        out.print(f"  [yellow]{verb} for approval:[/] {escape(why)}")
    if step.error:
        out.print(f"  [red]{escape(step.error)}[/]")
    if step.diagnostics:
        render_diagnostics(step.diagnostics, out)
    if step.status.value == "blocked":
        out.print("  [red]the campaign will stop here unless this is fixed first[/]")
    if step.hint:
        out.print(f"  [dim]{escape(step.hint)}[/]")


def _summary(campaign: Campaign) -> None:
    out = stdout()
    if campaign.plan_only:
        out.print("\n[dim]--plan-only: nothing applied.[/]")
        return
    done = [s.env for s in campaign.steps if s.status.value == "succeeded"]
    left = [s.env for s in campaign.steps if s.status.value == "not-run"]
    stop = campaign.stopped_at
    out.print("")
    if campaign.complete:
        out.print(f"[green]✓[/] upgraded {len(done)} environment(s) to {campaign.target.ref}")
        return
    out.print(f"done: {', '.join(done) or 'none'}")
    if stop is not None:
        what = "awaits approval" if stop.status.value == "awaiting-approval" else "failed"
        out.print(f"stopped at: {escape(stop.env)} ({what})")
    out.print(f"not run: {', '.join(left) or 'none'}")
