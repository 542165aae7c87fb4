"""Shared CLI pieces: options, the workspace, confirmation and plan rendering."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from stackyard.cli.output import OutputFormat, stderr, stdout
from stackyard.errors import CancelledError, InvalidInputError
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.engine.plan import Plan
    from stackyard.environments.workspace import Workspace

OUTPUT = typer.Option(
    OutputFormat.TEXT, "--output", "-o", help="Output format.", case_sensitive=False
)
YES = typer.Option(
    False, "--yes", "-y", help="Do not ask for confirmation (needed without a terminal)."
)

LOCK_TIMEOUT = typer.Option(
    None,
    "--lock-timeout",
    help="How long to wait for a busy environment's lock: 0 fails at once, else 30s, 5m, 1h "
    "(default 5m, or STACKYARD_LOCK_TIMEOUT).",
    metavar="<duration>",
)

_COLOURS = {
    "create": "green",
    "update": "yellow",
    "replace": "magenta",
    "delete": "red",
    "noop": "dim",
}


@contextmanager
def workspace(*, lock_timeout: str | None = None) -> Iterator[Workspace]:
    """The workspace of the current settings (``lock_timeout`` from ``--lock-timeout``).

    Refused in remote mode: a command that reaches the local home there has no remote form,
    and must say so rather than act on this machine's state."""
    from stackyard.cli.remote import refuse

    refuse(_command_path())
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import parse_duration

    wait = None if lock_timeout is None else parse_duration(lock_timeout, "--lock-timeout")
    ws = Workspace.open(Settings.load(lock_timeout_s=wait))
    try:
        yield ws
    finally:
        ws.close()


def _command_path() -> str:
    """The running command's words after ``stackyard`` (``env repair``)."""
    try:  # Typer vendors click privately from 0.27; older releases use click itself
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - an older Typer
        from click import get_current_context  # type: ignore[no-redef]

    ctx = get_current_context(silent=True)
    path = str(ctx.command_path) if ctx is not None else "this command"
    return path.removeprefix("stackyard").strip() or "this command"


def progress(output: OutputFormat) -> Callable[[str], None]:
    """A progress printer on standard error (quiet in JSON mode)."""
    con = stderr()

    def say(msg: str) -> None:
        if output is OutputFormat.TEXT:
            con.print(f"[dim]{escape(msg)}[/]")

    return say


def confirm(question: str, *, yes: bool) -> bool:
    """Ask ``question``; ``--yes`` answers it. Without a terminal, refuse instead of hanging."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidInputError(
            f"Confirmation needed: {question}", hint="No terminal to ask on: pass --yes to confirm."
        )
    try:
        return bool(typer.confirm(question, default=False, err=True))
    except typer.Abort:  # end of input or ^C at the prompt: the same as answering no
        raise CancelledError("Cancelled: nothing was changed") from None


def when(ts: float | None) -> str:
    """A timestamp for people."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_plan(plan: Plan) -> None:
    """The plan's changes (no-ops folded into the summary), secrets masked."""
    from stackyard.engine.plan import Action

    out = stdout()
    changes = [c for c in plan.changes if c.action is not Action.NOOP]
    if changes or plan.strays:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("action")
        table.add_column("address")
        table.add_column("why")
        for c in changes:
            colour = _COLOURS.get(c.action.value, "white")
            table.add_row(
                f"[{colour}]{c.action.value}[/]", escape(c.address), escape(c.reason or "")
            )
        for stray in plan.strays:
            table.add_row(
                "[red]delete[/]",
                escape(stray.address),
                escape(f"stray {stray.kind} {stray.physical_name}: labelled here, never recorded"),
            )
        out.print(table)
    s = plan.summary()
    out.print(
        f"Plan for [bold]{escape(plan.env)}[/]: {s['create']} to create, {s['update']} to update, "
        f"{s['replace']} to replace, {s['delete']} to delete, {s['noop']} unchanged."
        + (f" {len(plan.strays)} stray(s) to delete." if plan.strays else "")
    )
