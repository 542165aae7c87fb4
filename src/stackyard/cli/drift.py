"""`stackyard drift`, `stackyard adopt` and `stackyard forget`: what reality holds that the
records do not say, and the ways out of it (``stackyard.environments.drift``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from stackyard.cli.common import LOCK_TIMEOUT, OUTPUT, YES, confirm, progress, when
from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.errors import DriftFoundError, InvalidInputError

if TYPE_CHECKING:
    from stackyard.environments.drift import DriftReport

_COLOURS = {
    "stopped": "red",
    "unreachable": "red",
    "missing": "red",
    "unmanaged": "magenta",
    "changed": "yellow",
    "degraded": "yellow",
}


def drift(
    env: list[str] = typer.Option(  # noqa: B008 - Typer's way to declare a repeated option
        [], "--env", "-e", help="An environment to scan (repeatable)."
    ),
    all_envs: bool = typer.Option(False, "--all", help="Scan every environment you may view."),
    fix: bool = typer.Option(
        False,
        "--fix",
        help="Repair each drifted environment through the governed road (plan, policies, "
        "approval, apply), then scan again.",
    ),
    parallelism: int = typer.Option(
        8, "--parallelism", min=1, max=64, help="Observations in flight per environment."
    ),
    history: bool = typer.Option(
        False,
        "--history",
        help="List the environments' past scans (scheduled or asked for) instead of scanning.",
    ),
    limit: int = typer.Option(20, "--limit", min=1, max=200, help="Scans listed by --history."),
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Observe every recorded resource and report what drifted, grouped by root cause.

    Exit status 0 when nothing drifted, 11 when a finding was printed (after --fix: when
    drift remains). Sensitive values are never shown.
    """
    from stackyard.cli.backend import backend

    if bool(env) == all_envs:
        raise InvalidInputError(
            "Name the environments to scan, or --all",
            hint="stackyard drift --env dev, or stackyard drift --all.",
        )
    if history:
        if fix:
            raise InvalidInputError(
                "--history lists past scans; it cannot --fix", hint="Drop one of the two."
            )
        _history(env, all_envs, limit, output)
        return
    names = None if all_envs else list(dict.fromkeys(env))
    report = backend().drift(
        names,
        fix=fix,
        parallelism=parallelism,
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    if output is OutputFormat.JSON:
        print_json(report.to_json())
    else:
        _render(report)
    if report.drift:
        raise typer.Exit(DriftFoundError.exit_code)


def _history(env: list[str], all_envs: bool, limit: int, output: OutputFormat) -> None:
    from stackyard.cli.backend import backend

    names = None if all_envs else list(dict.fromkeys(env))
    found = backend().drift_history(names, limit=limit)
    if output is OutputFormat.JSON:
        print_json({name: [s.to_json() for s in scans] for name, scans in found.items()})
        return
    con = stdout()
    for name, scans in found.items():
        con.print(f"[bold]{escape(name)}[/] ({len(scans)} scan(s))")
        for s in scans:
            if s.error:
                said = f"[red]failed[/] {escape(s.error)}"
            elif s.drifted:
                said = f"[red]{len(s.findings)} finding(s), {s.drifted} drifted[/]"
            else:
                said = f"[green]no drift[/] in {s.resources}"
            con.print(f"  {s.id}  {when(s.at)}  {s.trigger:8}  {said}  [dim]{escape(s.actor)}[/]")


def _render(report: DriftReport) -> None:
    con = stdout()
    for env, result in sorted(report.fixed.items()):
        dep = result.deployment
        con.print(f"[cyan]fix[/] {escape(env)}: repair {dep.id} {dep.status}")
    for scanned in report.environments:
        if not scanned.findings:
            con.print(
                f"[green]✓[/] {escape(scanned.env)}: no drift in {scanned.resources} resource(s)"
            )
            continue
        con.print(
            f"[red]✗[/] {escape(scanned.env)}: {len(scanned.findings)} finding(s), "
            f"{scanned.drifted} of {scanned.resources} resource(s) drifted"
        )
        for f in scanned.findings:
            colour = _COLOURS.get(f.root.status, "white")
            con.print(
                f"  [{colour}]{f.root.status:11}[/] {escape(f.root.address)} "
                f"[dim]({escape(f.root.kind)})[/]"
            )
            for c in f.root.changes:
                con.print(
                    f"      {escape(c['field'])}: {escape(repr(c['recorded']))} → "
                    f"{escape(repr(c['observed']))}"
                )
            if f.root.detail:
                con.print(f"      [dim]{escape(f.root.detail)}[/]")
            con.print(f"      why: {escape(f.why)}")
            for d in f.dependents:
                con.print(f"      ↳ {d.status:11} {escape(d.address)} [dim]({escape(d.kind)})[/]")
    if report.drift and not report.before:
        con.print("[dim]'stackyard drift --fix' repairs it through the governed road[/]")


def adopt(
    env: str = typer.Argument(..., help="The environment."),
    address: str = typer.Argument(..., help="The resource address whose record was lost."),
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Record an object whose record was lost: only at its deterministic name, with our label."""
    from stackyard.cli.backend import backend

    adopted = backend().adopt(env, address, lock_timeout=lock_timeout, progress=progress(output))
    if output is OutputFormat.JSON:
        print_json(adopted.to_json())
        return
    stdout().print(
        f"[green]✓[/] adopted {escape(address)} ({escape(adopted.kind)} "
        f"{escape(adopted.physical_name)}) in {escape(env)}"
    )


def forget(
    env: str = typer.Argument(..., help="The environment."),
    addresses: list[str] = typer.Argument(..., help="The addresses whose records to drop."),  # noqa: B008
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Drop records without touching the objects (admin only, audited)."""
    from stackyard.cli.backend import backend
    from stackyard.errors import CancelledError

    question = (
        f"Forget {len(addresses)} record(s) in '{env}'? The objects stay; "
        "stackyard stops managing them."
    )
    if not confirm(question, yes=yes):
        raise CancelledError("Cancelled: nothing was changed")
    serial = backend().forget(env, list(addresses), lock_timeout=lock_timeout)
    if output is OutputFormat.JSON:
        print_json({"env": env, "forgotten": sorted(set(addresses)), "serial": serial})
        return
    stdout().print(
        f"[green]✓[/] forgot {len(set(addresses))} record(s) in {escape(env)} "
        f"(state serial {serial}); the objects were not touched"
    )
