"""The `stackyard state` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="state commands.", no_args_is_help=True)
