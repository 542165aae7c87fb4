"""The ``stackyard workload`` commands: checking Score files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackyard.cli.output import OutputFormat, validation_report
from stackyard.diagnostics import Diagnostic, has_errors
from stackyard.model.workload import validate_workload_file

app = typer.Typer(
    help="Score workloads: validate the files software teams write.", no_args_is_help=True
)


@app.command("validate")
def validate(
    files: Annotated[
        list[Path],
        typer.Argument(help="Score files (score.dev/v1b1) to check.", metavar="FILE"),
    ],
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format: text or json.")
    ] = OutputFormat.TEXT,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            help="Also run every check a deploy to this environment makes before it creates "
            "anything (resolve, params, resource configs); nothing is planned or applied.",
        ),
    ] = None,
) -> None:
    """Check Score files and report every problem at once. Exit 0 if all are valid, else 2."""
    diags: list[Diagnostic] = []
    for path in files:
        _, found = validate_workload_file(path)
        diags.extend(found)
    if env is not None and not has_errors(diags):
        from stackyard.cli.common import workspace
        from stackyard.environments.preflight import deploy_diagnostics

        with workspace() as ws:
            diags.extend(deploy_diagnostics(ws, env, files))
    valid = not has_errors(diags)
    noun = "workload is" if len(files) == 1 else "workloads are"
    validation_report(diags, output, valid=valid, ok_text=f"{len(files)} {noun} valid")
    if not valid:
        raise typer.Exit(2)
