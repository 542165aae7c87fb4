"""The `stackyard component` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="component commands.", no_args_is_help=True)
