"""The `stackyard providers` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="providers commands.", no_args_is_help=True)
