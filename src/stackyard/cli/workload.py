"""The `stackyard workload` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="workload commands.", no_args_is_help=True)
