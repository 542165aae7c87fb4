"""The ``stackyard webhooks`` commands: the applied webhooks, their deliveries, redelivery,
and a dispatch-and-deliver run for a home without a worker. On the local home or through a
server (``backend()``); platform engineers and admins."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.backend import backend
from stackyard.cli.common import OUTPUT, when
from stackyard.cli.output import OutputFormat, print_json, stdout

app = typer.Typer(
    help="Webhooks: the applied Webhook documents, their deliveries, and redelivery.",
    no_args_is_help=True,
)

_COLOUR = {"delivered": "green", "failed": "red", "pending": "yellow", "delivering": "cyan"}


def _status(status: str) -> str:
    return f"[{_COLOUR.get(status, 'white')}]{escape(status)}[/]"


@app.command("list")
def list_webhooks(output: OutputFormat = OUTPUT) -> None:
    """List the applied webhooks with their last delivery (never a secret)."""
    found = backend().webhooks()
    if output is OutputFormat.JSON:
        print_json({"webhooks": found})
        return
    out = stdout()
    if not found:
        out.print("No webhooks. Apply a 'kind: Webhook' document with 'stackyard platform apply'.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("name", "url", "events", "secret", "last delivery", "at"):
        table.add_column(column)
    for w in found:
        last = w["last_delivery"]
        secret = f"{w['secret_env']} ({'set' if w['secret_set'] else '[red]not set here[/]'})"
        table.add_row(
            escape(w["name"]),
            escape(w["url"]),
            escape(", ".join(w["events"])),
            secret,
            _status(last["status"]) if last else "-",
            when(last["last_at"] or last["created_at"]) if last else "-",
        )
    out.print(table)


@app.command("deliveries")
def list_deliveries(
    webhook: str | None = typer.Option(None, "--webhook", help="Only this webhook's."),
    status: str | None = typer.Option(
        None, "--status", help="Only these: pending, delivering, delivered or failed."
    ),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    output: OutputFormat = OUTPUT,
) -> None:
    """List webhook deliveries, newest first: status, attempts, response and error."""
    found = backend().webhook_deliveries(webhook=webhook, status=status, limit=limit)
    if output is OutputFormat.JSON:
        print_json({"deliveries": [d.to_json() for d in found]})
        return
    out = stdout()
    if not found:
        out.print("No deliveries.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "webhook", "event", "status", "attempts", "code", "last try", "error"):
        table.add_column(column)
    for d in found:
        table.add_row(
            d.id,
            escape(d.webhook),
            f"{escape(d.event_type)} #{d.event_seq}",
            _status(d.status),
            str(d.attempts),
            "-" if d.response_code is None else str(d.response_code),
            when(d.last_at),
            escape((d.error or "")[:80]),
        )
    out.print(table)


@app.command("redeliver")
def redeliver(
    delivery: str = typer.Argument(..., metavar="ID", help="The delivery's id ('deliveries')."),
    output: OutputFormat = OUTPUT,
) -> None:
    """Send a delivery again: it is pending now, with a fresh budget of attempts."""
    found = backend().webhook_redeliver(delivery)
    if output is OutputFormat.JSON:
        print_json(found.to_json(body=False))
        return
    stdout().print(
        f"[green]✓[/] delivery {found.id} ({escape(found.webhook)}, {escape(found.event_type)}) "
        "is pending: a worker sends it within seconds ('stackyard webhooks deliver' sends it now)."
    )


@app.command("deliver")
def deliver(output: OutputFormat = OUTPUT) -> None:
    """Dispatch new events and send the due deliveries now (for a home without a worker)."""
    result = backend().webhooks_deliver()
    if output is OutputFormat.JSON:
        print_json(result)
        return
    out = stdout()
    out.print(f"{result['dispatched']} new delivery(ies), {result['sent']} sent now")
    for d in result["deliveries"]:
        extra = f": {escape(d['error'])}" if d["error"] else ""
        out.print(f"  {d['id']} {escape(d['webhook'])} {_status(d['status'])}{extra}")
