"""`stackyard metrics`: DORA, the platform and the job queue, the figures ``/metrics`` exposes
(``stackyard.ops.metrics``), as tables or as the JSON of ``GET /api/v1/metrics``."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.common import OUTPUT, workspace
from stackyard.cli.output import OutputFormat, print_json, stdout


def metrics(
    window: str = typer.Option("30d", "--window", "-w", help="The DORA window: 30d, 12h, 1d12h."),
    output: OutputFormat = OUTPUT,
) -> None:
    """DORA per team and workload, environments, approvals, drift, adoption, cost and jobs.

    Read from the local home, or from the server in remote mode; needs 'view' on the
    organisation. 'docs/metrics.md' says how each figure is counted.
    """
    from stackyard.errors import InvalidInputError
    from stackyard.model.platform import parse_duration

    try:
        window_s = parse_duration(window)
    except ValueError as exc:
        raise InvalidInputError(str(exc), hint="Use --window 30d, 12h or 1d12h.") from None
    doc = _remote(window)
    if doc is None:
        from stackyard.ops.metrics import collect

        with workspace() as ws:
            doc = collect(ws, window_s=window_s).to_json()
    if output is OutputFormat.JSON:
        print_json(doc)
    else:
        render(doc)


def _remote(window: str) -> dict[str, Any] | None:
    """The server's figures in remote mode; None in local mode."""
    from stackyard.cli.remote import target

    found = target()
    if found is None:
        return None
    from stackyard.cli.remote_client import Client

    client = Client(found)
    try:
        doc: dict[str, Any] = client.get("/api/v1/metrics", window=window)
    finally:
        client.close()
    return doc


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold")
    for c in columns:
        table.add_column(c, justify="right" if c in ("count", "amount") else "left")
    return table


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    from stackyard.model.platform import format_duration

    return f"{value:.0f}s" if value < 60 else format_duration(value)


def render(doc: dict[str, Any]) -> None:
    """The figures as tables."""
    out = stdout()
    days = float(doc["window_seconds"]) / 86400
    prod = ", ".join(doc["production"]) or "none (no environment is production)"
    out.print(f"[bold]DORA[/] over {days:g} day(s), production: {escape(prod)}")
    dora = _table("team", "workload", "deploys/day", "lead time", "failure rate", "restore")
    for d in doc["dora"]:
        ratio = d["change_failure_ratio"]
        dora.add_row(
            escape(d["team"]),
            escape(d["workload"]),
            f"{d['deployment_frequency_per_day']:.2f}",
            _seconds(d["lead_time_seconds"]),
            "-" if ratio is None else f"{ratio:.0%} ({d['failed']}/{d['failed'] + d['succeeded']})",
            _seconds(d["time_to_restore_seconds"]),
        )
    out.print(dora if doc["dora"] else "[dim]no production deployment in the window[/]")
    sections: list[tuple[str, str, tuple[str, ...]]] = [
        ("Deployments", "deployments", ("outcome", "env_type", "count")),
        ("Environments", "environments", ("type", "status", "count")),
        ("Policy denies", "policy_denies", ("stage", "count")),
        ("Drift findings (newest scans)", "drift_findings", ("env_type", "count")),
        ("Component instances", "component_instances", ("component", "version", "count")),
        ("Monthly cost", "cost_monthly", ("team", "env", "currency", "amount")),
        ("Jobs", "jobs", ("status", "count")),
    ]
    for title, key, columns in sections:
        out.print(f"\n[bold]{title}[/]")
        rows = doc[key]
        if not rows:
            out.print("[dim]none[/]")
            continue
        table = _table(*columns)
        for row in rows:
            table.add_row(*(escape(str(row[c])) for c in columns))
        out.print(table)
    for key, title in (
        ("ephemeral_environment_ready_seconds", "ready"),
        ("ephemeral_environment_lifetime_seconds", "lifetime"),
    ):
        h = doc[key]
        mean = h["sum"] / h["count"] if h["count"] else None
        out.print(f"Ephemeral environments' {title}: {h['count']} seen, mean {_seconds(mean)}")
    out.print(f"Approvals waiting: {doc['approvals_waiting']}")
    out.print(
        f"Oldest queued job: {_seconds(doc['job_oldest_queued_age_seconds'])}; "
        f"workers seen in the last minute: {doc['workers']}"
    )
    if doc.get("slo"):
        out.print("\n[bold]SLOs[/]")
        table = _table("env", "target", "component", "availability", "budget left")
        for s in doc["slo"]:
            left = s.get("error_budget_remaining_ratio")
            table.add_row(
                escape(s["env"]),
                escape(s["target"]),
                escape(s["component"]),
                f"{s['availability_ratio']:.4%}",
                "-" if left is None else f"{left:.0%}",
            )
        out.print(table)
