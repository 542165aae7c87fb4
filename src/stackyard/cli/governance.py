"""Governance commands: approve, reject, approvals, decisions, audit, access, cost, policy."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.backend import backend
from stackyard.cli.common import LOCK_TIMEOUT, OUTPUT, progress, when, workspace
from stackyard.cli.output import OutputFormat, print_json, stdout
from stackyard.errors import InvalidInputError, PolicyDeniedError, VerificationFailedError
from stackyard.model.status import AuditResult, DecisionOutcome

audit_app = typer.Typer(
    help="The audit log: every mutating action, hash-chained.",
    no_args_is_help=False,
    invoke_without_command=True,
)
access_app = typer.Typer(help="Role grants: who may do what, where.", no_args_is_help=True)
policy_app = typer.Typer(help="Rego policies: test and evaluate them.", no_args_is_help=True)

#: How an audit result is coloured (any other, such as ``awaiting-approval``, is yellow).
_AUDIT_COLOURS: dict[str, str] = {
    AuditResult.OK: "green",
    AuditResult.FAILED: "red",
    AuditResult.DENIED: "red",
}
_DECISION_COLOURS = {
    DecisionOutcome.DENY: "red",
    DecisionOutcome.APPROVAL: "yellow",
    DecisionOutcome.ALLOW: "green",
}


# -- approvals -------------------------------------------------------------------------------


def approve(
    deployment: str = typer.Argument(..., help="The deployment awaiting approval."),
    comment: str = typer.Option("", "--comment", "-m", help="Why (kept with the approval)."),
    lock_timeout: str | None = LOCK_TIMEOUT,
    output: OutputFormat = OUTPUT,
) -> None:
    """Approve a parked deployment: it is re-planned, re-evaluated and applied."""
    from stackyard.cli.deploy import report

    result = backend().approve(
        deployment, comment=comment, lock_timeout=lock_timeout, progress=progress(output)
    )
    from stackyard.environments.lifecycle import DestroyResult

    if not isinstance(result, DestroyResult):
        report(result, output)
        return
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    dep = result.deployment
    stdout().print(f"[green]✓[/] approved; destroy {dep.status if dep else 'done'}")


def reject(
    deployment: str = typer.Argument(..., help="The deployment awaiting approval."),
    comment: str = typer.Option("", "--comment", "-m", help="Why (kept with the rejection)."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Reject a parked deployment: nothing is applied."""
    dep = backend().reject(deployment, comment=comment)
    if output is OutputFormat.JSON:
        print_json(dep.to_json())
        return
    stdout().print(f"[green]✓[/] rejected deployment {dep.id}")


def approvals(
    env: str | None = typer.Option(None, "--env", "-e", help="Only this environment."),
    output: OutputFormat = OUTPUT,
) -> None:
    """List deployments awaiting approval, with the policies that asked for it."""
    rows = backend().approvals(env)
    if output is OutputFormat.JSON:
        print_json(rows)
        return
    out = stdout()
    if not rows:
        out.print("Nothing awaits approval.")
    for r in rows:
        out.print(
            f"[bold]{r['id']}[/]  {r['kind']} to {escape(r['env'])} by {escape(r['actor'])}  {when(r['created_at'])}"
        )
        for a in r["approvals_needed"]:
            out.print(
                f"  [yellow]approval[/] {escape(a['message'])}  [dim]{escape(a['policy'])}[/]"
            )


# -- decisions -------------------------------------------------------------------------------


def decisions(
    env: str | None = typer.Option(None, "--env", "-e", help="Only this environment."),
    decision: str | None = typer.Option(None, "--id", help="One decision."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Read the decision log: every policy evaluation with its results and policy revision."""
    rows = backend().decisions(env=env, limit=limit, decision_id=decision)
    if output is OutputFormat.JSON:
        print_json(rows)
        return
    out = stdout()
    for r in rows:
        colour = _DECISION_COLOURS[r["outcome"]]
        out.print(
            f"{r['id']}  {when(r['at'])}  {r['stage']:11} {escape(r['env'] or '-'):14} [{colour}]{r['outcome']:8}[/] {escape(r['actor'])}  [dim]{r['revision'][:19]} {r['input_hash'][:19]}[/]"
        )
        for res in r["results"]:
            out.print(
                f"    {res['kind']:8} {escape(res['message'])}  [dim]{escape(res['policy'])}/{escape(res['rule'])} ({res['layer']})[/]"
            )


# -- audit -----------------------------------------------------------------------------------


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    from stackyard.model.platform import parse_duration

    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidInputError(
            f"Invalid --since '{text}'",
            hint="Use a duration (2h, 1d) or an ISO time (2026-11-30T12:00:00Z).",
        ) from None


@audit_app.callback()
def audit(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Only events since a duration ago (2h) or an ISO time."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Read the audit log (who, what, target, result, when)."""
    if ctx.invoked_subcommand is not None:
        return
    events = backend().audit(since=_since(since))
    if output is OutputFormat.JSON:
        print_json([e.to_json() for e in events])
        return
    table = Table(box=None, header_style="bold")
    for col in ("seq", "when", "actor", "action", "target", "result"):
        table.add_column(col)
    for e in events:
        colour = _AUDIT_COLOURS.get(e.result, "yellow")
        table.add_row(
            str(e.seq),
            when(e.at),
            escape(e.actor),
            escape(e.action),
            escape(e.target),
            f"[{colour}]{escape(e.result)}[/]",
        )
    stdout().print(table)


@audit_app.command("verify")
def audit_verify(output: OutputFormat = OUTPUT) -> None:
    """Check the audit log's keyed hash chain and its signed head; exit 8 when a row was
    edited, removed or inserted, or the newest rows were cut."""
    result = backend().audit_verify()
    if output is OutputFormat.JSON:
        print_json(result.to_json())
    elif result.ok:
        stdout().print(f"[green]✓[/] audit chain intact ({result.events} events)")
    else:
        stdout().print(
            f"[red]✗[/] audit chain broken at event {result.broken_at}: {escape(result.reason)}"
        )
    if not result.ok:
        raise typer.Exit(VerificationFailedError.exit_code)


# -- access ----------------------------------------------------------------------------------


@access_app.command("grant")
def grant(
    role: str = typer.Argument(
        ..., help="viewer, developer, environment-owner, approver, platform-engineer or admin."
    ),
    user: str | None = typer.Option(None, "--user", help="A user name."),
    team: str | None = typer.Option(None, "--team", help="A team (from the Team documents)."),
    env: str | None = typer.Option(None, "--env", help="Scope: one environment."),
    env_type: str | None = typer.Option(None, "--type", help="Scope: every environment of a type."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Grant a role to a user or a team, organisation-wide or at a type or environment."""
    from stackyard.environments import grants

    g = grants.parse(role, user=user, team=team, env=env, env_type=env_type)
    done = backend().grant(g)
    if output is OutputFormat.JSON:
        print_json(done.to_json())
        return
    stdout().print(
        f"[green]✓[/] {escape(g.subject)} is {g.role.value} at {escape(g.scope)}"
        + ("" if done.changed else " (already)")
    )


@access_app.command("revoke")
def revoke(
    role: str = typer.Argument(..., help="The role."),
    user: str | None = typer.Option(None, "--user", help="A user name."),
    team: str | None = typer.Option(None, "--team", help="A team."),
    env: str | None = typer.Option(None, "--env", help="Scope: one environment."),
    env_type: str | None = typer.Option(None, "--type", help="Scope: every environment of a type."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Revoke a grant (the last organisation-wide admin cannot be revoked)."""
    from stackyard.environments import grants

    g = grants.parse(role, user=user, team=team, env=env, env_type=env_type)
    done = backend().revoke(g)
    if output is OutputFormat.JSON:
        print_json(done.to_json())
        return
    stdout().print(
        f"[green]✓[/] revoked {g.role.value} at {escape(g.scope)} from {escape(g.subject)}"
        if done.changed
        else "No such grant."
    )


@access_app.command("list")
def list_grants(output: OutputFormat = OUTPUT) -> None:
    """List every grant."""
    listed = backend().grants()
    if output is OutputFormat.JSON:
        print_json(listed.to_json())
        return
    out = stdout()
    out.print(
        f"you are {escape(listed.actor)}"
        + (f" (teams: {escape(', '.join(listed.teams))})" if listed.teams else "")
    )
    for g in listed.grants:
        out.print(f"  {escape(g.subject):30} {g.role.value:18} {escape(g.scope)}")


@access_app.command("table")
def table(output: OutputFormat = OUTPUT) -> None:
    """Show which role may do which action."""
    from stackyard.environments.grants import role_table

    roles = role_table()
    if output is OutputFormat.JSON:
        print_json(roles.to_json())
        return
    t = Table(box=None, header_style="bold")
    t.add_column("action")
    for r in roles.roles:
        t.add_column(r)
    for action, row in roles.actions.items():
        t.add_row(
            action + ("" if row["scoped"] else " (org)"),
            *("✓" if r in row["roles"] else "" for r in roles.roles),
        )
    stdout().print(t)


# -- cost ------------------------------------------------------------------------------------


def cost(
    env: str | None = typer.Option(None, "--env", "-e", help="One environment."),
    team: str | None = typer.Option(None, "--team", help="Environments a team owns."),
    by: str = typer.Option(
        "resource", "--by", help="Break down by resource, workload or environment."
    ),
    output: OutputFormat = OUTPUT,
) -> None:
    """Monthly cost from each component's declared cost (decimal, to the cent)."""
    from stackyard.environments.cost import check_breakdown

    check_breakdown(by)
    data = backend().cost(env=env, team=team, by=by)
    currency = data.currency
    if output is OutputFormat.JSON:
        print_json(data.to_json())
        return
    t = Table(box=None, header_style="bold")
    for col in ("environment", by if by != "environment" else "", "monthly"):
        if col:
            t.add_column(col)
    for item in data.items:
        cells = (
            [escape(item["env"])]
            + ([escape(str(item[by]))] if by != "environment" else [])
            + [f"{item['monthly']} {currency}"]
        )
        t.add_row(*cells)
    out = stdout()
    out.print(t)
    out.print(f"[bold]total[/] {data.total} {currency} per month")


# -- policy ----------------------------------------------------------------------------------


@policy_app.command("test")
def policy_test(
    directory: Annotated[
        Path, typer.Argument(help="A folder of .rego files and their *_test.rego.")
    ],
    output: OutputFormat = OUTPUT,
) -> None:
    """Run Rego unit tests (rules named test_*): each X_test.rego with X.rego (and libraries)."""
    from stackyard.policy.testing import run_dir

    results = run_dir(directory)
    failed = [r for r in results if not r.passed]
    if output is OutputFormat.JSON:
        print_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "tests": [r.to_json() for r in results],
            }
        )
    else:
        out = stdout()
        for r in results:
            mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
            out.print(
                f"{mark} {escape(r.file)}: {escape(r.name)}"
                + (f"  [dim]{escape(r.error)}[/]" if r.error else "")
            )
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        raise typer.Exit(InvalidInputError.exit_code)  # nothing to run is a mistake
    if failed:
        raise typer.Exit(VerificationFailedError.exit_code)


@policy_app.command("eval")
def policy_eval(
    stage: Annotated[
        str, typer.Option("--stage", help="publish, environment, plan, promote or destroy.")
    ],
    input_file: Annotated[Path, typer.Option("--input", help="The input document (JSON or YAML).")],
    env: str | None = typer.Option(
        None,
        "--env",
        "-e",
        help="Select environment (and its type's) policies; default: the input's environment.",
    ),
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Evaluate the Policy documents of a platform folder instead of the applied ones.",
        ),
    ] = None,
    output: OutputFormat = OUTPUT,
) -> None:
    """Show the decision for an input, and which policy and rule produced each result."""
    from stackyard.environments import views
    from stackyard.model.source import load_yaml

    views.check_stage(stage)
    document = load_yaml(input_file, what="policy input")
    if not isinstance(document, dict):
        raise InvalidInputError(f"{input_file} must hold a mapping (the input document)")
    if directory is not None:
        decision = views.evaluate_dir(directory, stage, document, env=env)
    else:
        with workspace() as ws:
            decision = views.evaluate(ws, stage, document, env=env)
    data = decision.to_json()
    if output is OutputFormat.JSON:
        print_json(data)
    else:
        out = stdout()
        colour = _DECISION_COLOURS[decision.outcome]
        out.print(
            f"[{colour}]{decision.outcome}[/]  stage {stage}, {len(decision.policies)} policies: {escape(', '.join(decision.policies) or 'none')}"
        )
        for r in decision.results:
            out.print(
                f"  {r.kind:8} {escape(r.message)}  [dim]{escape(r.policy)}/{escape(r.rule)} ({r.layer})[/]"
            )
    if decision.outcome is DecisionOutcome.DENY:
        raise typer.Exit(PolicyDeniedError.exit_code)


@policy_app.command("list")
def policy_list(output: OutputFormat = OUTPUT) -> None:
    """List the applied policies: layer, target, stages and modules."""
    applied = backend().policies()
    if output is OutputFormat.JSON:
        print_json(applied.to_json())
        return
    out = stdout()
    out.print(f"revision {applied.revision}")
    for r in applied.policies:
        out.print(
            f"  {escape(r['name']):32} {r['layer']:17} {escape(r['target'] or '*'):12} {','.join(r['stages'])}"
        )


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("approvals")(approvals)
    app.command("decisions")(decisions)
    app.command("cost")(cost)
    app.add_typer(audit_app, name="audit")
    app.add_typer(access_app, name="access")
    app.add_typer(policy_app, name="policy")
