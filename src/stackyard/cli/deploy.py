"""Delivery commands: deploy, explain, status, outputs, logs, deployments, remove."""

from __future__ import annotations

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
from stackyard.cli.output import OutputFormat, print_json, render_diagnostics, stdout
from stackyard.errors import CancelledError, InvalidInputError
from stackyard.model.status import DeploymentStatus

if TYPE_CHECKING:
    from stackyard.engine.plan import Plan
    from stackyard.environments.deploy import DeployResult

_ENV = typer.Option(..., "--env", "-e", help="The environment.")


def deploy(
    scores: Annotated[
        list[str] | None, typer.Argument(help="Score files to deploy (or --release).")
    ] = None,
    env: str = _ENV,
    release: str | None = typer.Option(None, "--release", help="Deploy a release's pinned builds."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show the plan; apply nothing."),
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Resolve, plan, confirm, apply and run workloads in an environment."""
    from stackyard.environments import confirmation

    if bool(scores) == bool(release):
        raise InvalidInputError(
            "Give Score files or --release, not both or neither",
            hint="stackyard deploy score.yaml --env dev",
        )
    text = output is OutputFormat.TEXT

    def ask(plan: Plan) -> bool:
        if text:
            render_plan(plan)
        return confirm(confirmation.apply_plan(plan).question, yes=yes)

    result = backend().deploy(
        env,
        scores=scores or [],
        release=release,
        plan_only=plan_only,
        yes=yes,
        ask=ask,
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    report(result, output, plan_only=plan_only)


def report(result: DeployResult, output: OutputFormat, *, plan_only: bool = False) -> None:
    """Print a deploy's outcome."""
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    out = stdout()
    if result.diagnostics:
        render_diagnostics(result.diagnostics)
    if plan_only and result.plan is not None:
        render_plan(result.plan)
        out.print("[dim]--plan-only: nothing applied.[/]")
        return
    dep = result.deployment
    if dep.status is DeploymentStatus.CANCELLED:
        out.print("Cancelled: nothing applied.")
        raise typer.Exit(CancelledError.exit_code)
    if dep.status is DeploymentStatus.AWAITING_APPROVAL:
        out.print(
            f"[yellow]⏸[/] deployment [bold]{dep.id}[/] to {escape(dep.env)} awaits approval; nothing was applied."
        )
        out.print(
            f"  An approver runs: stackyard approve {dep.id}  (or: stackyard reject {dep.id})"
        )
        return
    if result.plan is not None and not result.plan.has_changes and not result.changed:
        out.print(f"[green]✓[/] {escape(dep.env)} is up to date (deployment {dep.id})")
    else:
        out.print(f"[green]✓[/] deployed to [bold]{escape(dep.env)}[/] (deployment {dep.id})")
    cost = dep.summary.get("cost") if dep.summary else None
    if cost:
        delta = cost["delta"]
        sign = "" if delta.startswith("-") else "+"
        out.print(f"  monthly cost {cost['monthly_total']} {cost['currency']} ({sign}{delta})")
    for name, st in result.workloads.items():
        eps = ", ".join(f"{k}: {v}" for k, v in st.endpoints.items()) or "no endpoints"
        out.print(f"  {escape(name)}: {st.state}  {escape(eps)}")


def explain(
    score: str = typer.Argument(..., help="A Score file."),
    env: str = _ENV,
    output: OutputFormat = OUTPUT,
) -> None:
    """Show every candidate binding for each resource request, why it matched or not, and the winner."""
    data = backend().explain(score, env)
    if output is OutputFormat.JSON:
        print_json(data)
        return
    out = stdout()
    out.print(f"Resolving in [bold]{escape(data['env'])}[/] (type {escape(data['type'])})")
    for row in data["requests"]:
        out.print(f"\n[bold]{escape(row['uid'])}[/]  [dim]{escape(row['requested_by'])}[/]")
        if row.get("from_parent"):
            out.print(f"  uses {escape(row['from_parent'])}'s instance read-only")
            continue
        for c in row["candidates"]:
            mark = "[green]✓[/]" if c["matched"] else "[red]✗[/]"
            out.print(
                f"  {mark} {escape(c['selector'])} → {escape(c['component'])}  [dim]{escape(c['source'])}: {escape(c['reason'])}[/]"
            )
        if row["component"]:
            p = row["component"]
            out.print(
                f"  → {escape(p['component'])}@{escape(p['version'])} {escape(p['digest'][:19])}"
            )
        elif not row["candidates"]:
            out.print("  [red]no binding for this type[/]")
    if data["diagnostics"]:
        out.print("")
        from stackyard.diagnostics import Diagnostic, Severity

        render_diagnostics(
            [
                Diagnostic(Severity(d["severity"]), d["summary"], d.get("detail", ""))
                for d in data["diagnostics"]
            ]
        )
        raise typer.Exit(2)


def status(
    env: str = typer.Argument(..., help="The environment."), output: OutputFormat = OUTPUT
) -> None:
    """Resources with observed health, workloads with readiness and endpoints, last deployments."""
    data = backend().status(env)
    if output is OutputFormat.JSON:
        print_json(data)
        return
    out = stdout()
    e = data["environment"]
    out.print(
        f"[bold]{escape(e['name'])}[/]  type {escape(e['type'])}  ({e['status']})"
        + (f"  parent {escape(e['parent'])}" if e["parent"] else "")
    )
    out.print(f"\n[bold]workloads[/] ({len(data['workloads'])})")
    for name, w in data["workloads"].items():
        eps = ", ".join(f"{k}: {v}" for k, v in w["endpoints"].items()) or "-"
        out.print(f"  {escape(name):20} {w['state']:9} restarts {w['restarts']}  {escape(eps)}")
    out.print(f"\n[bold]resources[/] ({len(data['resources'])})")
    for r in data["resources"]:
        colour = "green" if r["health"] == "ok" else "red"
        why = f"  {escape(r['detail'])}" if r.get("detail") and r["health"] != "ok" else ""
        out.print(
            f"  [{colour}]{r['health']:12}[/] {escape(r['address'])}  [dim]{escape(r['physical_name'])}[/]{why}"
        )
    iso = data.get("isolation")
    if iso:
        state = "on" if iso.get("isolated") else "off"
        out.print(
            f"\n[bold]isolation[/] {state} ({escape(str(iso.get('user', '-')))}): "
            f"{escape(str(iso.get('detail', '')))}"
        )
    scan = data.get("drift")
    if scan:
        if scan.get("error"):
            said, colour = f"failed: {scan['error']}", "red"
        elif scan["drifted"]:
            said = f"{scan['findings']} finding(s), {scan['drifted']} resource(s) drifted"
            colour = "red"
        else:
            said, colour = f"no drift in {scan['resources']} resource(s)", "green"
        out.print(
            f"\n[bold]drift[/] [{colour}]{escape(said)}[/]  last scan {when(scan['at'])} "
            f"({scan['trigger']})"
        )
    out.print("\n[bold]last deployments[/]")
    for d in data["deployments"]:
        out.print(
            f"  {d['id']}  {d['kind']:8} {d['status']:10} {when(d['created_at'])}  {escape(d['actor'])}"
        )


def outputs(
    env: str = typer.Argument(..., help="The environment."),
    workload: str | None = typer.Argument(None, help="Only this workload's resources."),
    reveal: bool = typer.Option(False, "--reveal", help="Show secret values."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Show resource outputs; secrets are masked unless --reveal."""
    data = backend().outputs(env, workload, reveal=reveal)
    if output is OutputFormat.JSON:
        print_json(data)
        return
    out = stdout()
    for key, entry in data.items():
        out.print(f"[bold]{escape(key)}[/]  [dim]{escape(str(entry.get('component')))}[/]")
        for k, v in entry["outputs"].items():
            out.print(f"  {escape(k):12} {escape(str(v))}")


def logs(
    env: str = typer.Argument(..., help="The environment."),
    workload: str = typer.Argument(..., help="The workload."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    container: str | None = typer.Option(None, "--container", "-c", help="Only this container."),
    lines: int | None = typer.Option(None, "--lines", "-n", help="Only the last N lines."),
) -> None:
    """Print a workload's captured logs."""
    captured = backend().logs(env, workload, container=container, follow=follow, lines=lines)
    try:
        for line in captured:
            typer.echo(line.rstrip("\n"))
    except KeyboardInterrupt:
        pass


def deployments(
    env: str = typer.Argument(..., help="The environment."),
    deployment: str | None = typer.Argument(
        None, help="A deployment id: show its events and plan summary."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """List an environment's deployments, or show one with its events."""
    if deployment:
        shown = backend().deployment(env, deployment)
        if output is OutputFormat.JSON:
            print_json(shown.to_json())
            return
        dep = shown.deployment
        out = stdout()
        out.print(
            f"[bold]{dep.id}[/]  {dep.kind} {dep.status}  by {escape(dep.actor)}  {when(dep.created_at)}"
        )
        out.print(f"  summary {escape(str(dep.summary))}")
        if dep.error:
            out.print(f"  [red]error[/] {escape(dep.error)}")
        lost = dep.summary.get("events_lost") if dep.summary else None
        if lost:  # an event hook failed (logged when it happened): the list below lacks some
            out.print(f"  [yellow]events lost[/] {lost}: the events below are incomplete")
        for e in shown.events:
            out.print(
                f"  {when(e.at)}  {e.kind:9} {escape(e.address)}  [dim]{escape(e.message)}[/]"
            )
        return
    deps = backend().deployments(env)
    if output is OutputFormat.JSON:
        print_json([d.to_json() for d in deps])
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "kind", "status", "actor", "started", "release", "workloads", "changes"):
        table.add_column(col)
    for d in deps:
        s = d.summary
        changes = (
            "-"
            if not s
            else f"+{s.get('create', 0)} ~{s.get('update', 0)} ±{s.get('replace', 0)} -{s.get('delete', 0)}"
        )
        table.add_row(
            d.id,
            d.kind,
            d.status,
            escape(d.actor),
            when(d.created_at),
            (d.release_id or "-").removeprefix("sha256:")[:12],
            escape(", ".join(d.workloads) or "-"),
            changes,
        )
    stdout().print(table)


def remove(
    workload: str | None = typer.Argument(None, help="The workload (or --resource)."),
    env: str = _ENV,
    resource: str | None = typer.Option(
        None, "--resource", help="Destroy one resource uid no live workload uses."
    ),
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Take a workload out of an environment (stop it, destroy what only it used), or destroy
    an unused resource."""
    if bool(workload) == bool(resource):
        raise InvalidInputError(
            "Give a workload or --resource UID, not both or neither",
            hint="stackyard remove hello --env dev",
        )
    what, result = backend().remove(
        env,
        workload=workload,
        resource=resource,
        ask=lambda question: confirm(question, yes=yes),
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    if output is OutputFormat.JSON or result.deployment.status is not DeploymentStatus.SUCCEEDED:
        report(result, output)
        return
    stdout().print(f"[green]✓[/] removed {escape(what)} from {escape(env)}")


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command("deploy")(deploy)
    app.command("explain")(explain)
    app.command("status")(status)
    app.command("outputs")(outputs)
    app.command("logs")(logs)
    app.command("deployments")(deployments)
    app.command("remove")(remove)
