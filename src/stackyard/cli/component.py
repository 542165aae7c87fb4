"""The ``stackyard component`` commands: work on component packages (``component.yaml``).

Each command is a thin renderer over the model: it calls one function, renders the
result as text or JSON and picks the exit code (0 ok, 2 invalid input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackyard.cli.output import OutputFormat, validation_report
from stackyard.diagnostics import has_errors
from stackyard.model.component import validate_component

app = typer.Typer(help="Build, check and publish infrastructure components.", no_args_is_help=True)

ComponentDir = Annotated[
    Path,
    typer.Argument(
        help="A component directory (holding component.yaml), or the component.yaml itself.",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]


@app.command("validate")
def validate(path: ComponentDir, output: Output = OutputFormat.TEXT) -> None:
    """Check a component: manifest structure, template lint and the type contract.

    Exits 0 when the component is valid (warnings allowed) and 2 when it is not.
    """
    manifest, diags = validate_component(path)
    valid = manifest is not None and not has_errors(diags)
    ok_text = f"{manifest.ref} is valid" if manifest is not None else "valid"
    validation_report(diags, output, valid=valid, ok_text=ok_text)
    if not valid:
        raise typer.Exit(2)
