"""CLI rendering helpers: output format, JSON printing and diagnostics rendering."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from stackyard.diagnostics import Diagnostic, Severity, sort_key


class OutputFormat(enum.StrEnum):
    """``--output`` values."""

    TEXT = "text"
    JSON = "json"


#: The width of output that goes to a file or a pipe: wide enough that no table cuts a value.
UNBOUNDED_WIDTH = 1000


def _width(stream: Any) -> int | None:
    """``None`` (the terminal's width, or ``COLUMNS``) on a terminal; without one, a width no
    value is cut at ("postgres-datab…" in a pipe is of no use to anyone)."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return UNBOUNDED_WIDTH


def stdout() -> Console:
    """A console on standard output."""
    return Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


def stderr() -> Console:
    """A console on standard error."""
    return Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def print_json(data: Any) -> None:
    """Print one JSON document on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def render_diagnostics(diags: Sequence[Diagnostic], console: Console | None = None) -> None:
    """Render diagnostics as text, errors first within each file."""
    con = console or stderr()
    for d in sorted(diags, key=sort_key):
        colour = "red" if d.severity is Severity.ERROR else "yellow"
        where = ":".join(x for x in (d.file, d.path) if x)
        head = f"[{colour}]{d.severity.value}[/]: [bold]{escape(d.summary)}[/]"
        if where:
            head += f"  [dim]{escape(where)}[/]"
        con.print(head)
        if d.detail:
            con.print(f"  {escape(d.detail)}")


def validation_report(
    diags: Sequence[Diagnostic], fmt: OutputFormat, *, valid: bool, ok_text: str
) -> None:
    """The ``{"valid", "diagnostics"}`` report shared by the ``validate`` commands."""
    if fmt is OutputFormat.JSON:
        print_json(
            {"valid": valid, "diagnostics": [d.to_json() for d in sorted(diags, key=sort_key)]}
        )
        return
    render_diagnostics(diags)
    if valid:
        stdout().print(f"[green]✓[/] {escape(ok_text)}")
