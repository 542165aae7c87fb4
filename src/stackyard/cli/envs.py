"""The `stackyard env` commands: create, list, show, extend, destroy, repair and reap environments."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.backend import backend
from stackyard.cli.common import LOCK_TIMEOUT, OUTPUT, YES, confirm, progress, when
from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.errors import ApplyFailedError, InvalidInputError
from stackyard.model.platform import format_duration, parse_duration
from stackyard.model.status import DeploymentStatus

app = typer.Typer(help="Create, inspect, extend and destroy environments.", no_args_is_help=True)


def _ttl(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"Invalid --ttl: {exc}", hint="Use forms like 30m, 4h, 2d."
        ) from None


def _expiry(expires_at: float | None, now: float) -> str:
    """When ``expires_at`` is, and how long from ``now`` (the state store's clock)."""
    if expires_at is None:
        return "never"
    left = expires_at - now
    return f"{when(expires_at)} ({'in ' + format_duration(left) if left > 0 else 'expired'})"


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The environment's name."),
    type_name: str | None = typer.Option(None, "--type", "-t", help="Environment type."),
    parent: str | None = typer.Option(
        None, "--from", help="Parent environment: use its core read-only."
    ),
    ttl: str | None = typer.Option(
        None, "--ttl", help="Time to live (30m, 4h, 2d); default from the type."
    ),
    owner: str | None = typer.Option(None, "--owner", help="Owner team."),
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Create an environment and deploy its type's core infrastructure."""
    _ttl(ttl)
    env, result, created, now = backend().env_create(
        name,
        type_name=type_name,
        parent=parent,
        ttl=ttl,
        owner=owner,
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    if output is OutputFormat.JSON:
        print_json(
            {
                "environment": env.to_json(),
                "created": created,
                "core": result.to_json() if result else None,
            }
        )
        return
    out = stdout()
    verb = "created" if created else "already exists:"
    out.print(
        f"[green]✓[/] {verb} environment [bold]{escape(env.name)}[/] (type {escape(env.type)}"
        + (f", from {escape(env.parent)}" if env.parent else "")
        + ")"
    )
    if env.expires_at:
        out.print(f"  expires {_expiry(env.expires_at, now)}")


@app.command("list")
def list_(output: OutputFormat = OUTPUT) -> None:
    """List environments."""
    listed = backend().env_list()
    envs, now = listed.environments, listed.now
    if output is OutputFormat.JSON:
        print_json(listed.to_json())
        return
    table = Table(box=None, header_style="bold")
    for col in ("name", "type", "status", "parent", "owner", "expires"):
        table.add_column(col)
    for e in envs:
        table.add_row(
            escape(e.name),
            escape(e.type),
            e.status,
            escape(e.parent or "-"),
            escape(e.owner or "-"),
            _expiry(e.expires_at, now) if e.expires_at else "never",
        )
    stdout().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The environment."), output: OutputFormat = OUTPUT
) -> None:
    """Show one environment: type, parent, owner, expiry, children and workloads."""
    shown = backend().env_show(name)
    if output is OutputFormat.JSON:
        print_json(shown.to_json())
        return
    env, now = shown.environment, shown.now
    children, workloads, instances = shown.children, shown.workloads, shown.resources
    out = stdout()
    out.print(f"[bold]{escape(env.name)}[/]  type {escape(env.type)}  ({env.status})")
    out.print(f"  owner     {escape(env.owner or '-')}")
    out.print(f"  parent    {escape(env.parent or '-')}")
    out.print(f"  created   {when(env.created_at)} by {escape(env.created_by or '-')}")
    out.print(f"  expires   {_expiry(env.expires_at, now)}")
    out.print(f"  children  {escape(', '.join(children) or '-')}")
    out.print(f"  workloads {escape(', '.join(workloads) or '-')}")
    out.print(f"  resources {len(instances)}: {escape(', '.join(instances) or '-')}")


@app.command("extend")
def extend(
    name: str = typer.Argument(..., help="The environment."),
    ttl: str = typer.Option(
        ..., "--ttl", help="New time to live from now (capped by the type's maximum)."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Push an environment's expiry out, within its type's maximum TTL."""
    _ttl(ttl)
    env, now = backend().env_extend(name, ttl)
    if output is OutputFormat.JSON:
        print_json(env.to_json())
        return
    stdout().print(f"[green]✓[/] {escape(name)} now expires {_expiry(env.expires_at, now)}")


@app.command("destroy")
def destroy(
    name: str = typer.Argument(..., help="The environment."),
    yes: bool = YES,
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Stop the environment's workloads and destroy everything it owns (never its parent's)."""
    result = backend().env_destroy(
        name,
        ask=lambda question: confirm(question, yes=yes),
        lock_timeout=lock_timeout,
        progress=progress(output),
    )
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    dep = result.deployment
    if dep is not None and dep.status is DeploymentStatus.AWAITING_APPROVAL:
        stdout().print(
            f"[yellow]⏸[/] the destroy of {escape(name)} awaits approval (deployment {dep.id}); nothing was destroyed."
        )
        stdout().print(f"  An approver runs: stackyard approve {dep.id}")
        return
    stdout().print(
        f"[green]✓[/] destroyed {escape(name)}: {result.destroyed} resource(s), {len(result.stopped)} workload(s) stopped"
    )


@app.command("repair")
def repair(
    name: str = typer.Argument(..., help="The environment."),
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Restart stopped servers and workloads, and re-make what they lost (no files needed)."""
    from stackyard.cli.backend import backend

    result = backend().env_repair(name, lock_timeout=lock_timeout, progress=progress(output))
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    dep = result.deployment
    if dep.status is DeploymentStatus.AWAITING_APPROVAL:
        stdout().print(f"[yellow]⏸[/] the repair awaits approval: stackyard approve {dep.id}")
        return
    verb = "repaired" if result.changed else "nothing to repair in"
    stdout().print(
        f"[green]✓[/] {verb} {escape(name)}: {len(result.workloads)} workload(s) "
        + ", ".join(f"{escape(n)} {s.state}" for n, s in sorted(result.workloads.items()))
    )


@app.command("reap")
def reap(output: OutputFormat = OUTPUT) -> None:
    """Destroy expired environments (safe from cron, and safe to run twice at once)."""
    result = backend().env_reap(progress=progress(output))
    if output is OutputFormat.JSON:
        print_json(result)
        return
    out = stdout()
    out.print(f"reaped {len(result['reaped'])}: {escape(', '.join(result['reaped']) or '-')}")
    for name, why in result["failed"].items():
        out.print(f"[red]failed[/] {escape(name)}: {escape(why)}")
    if result["failed"]:  # a destroy failed: its backend or its policies refused
        raise typer.Exit(ApplyFailedError.exit_code)
