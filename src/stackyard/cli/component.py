"""The ``stackyard component`` commands: work on component packages (``component.yaml``).

Each command is a thin renderer over the model: it calls one function, renders the
result as text or JSON and picks the exit code (0 ok, 2 invalid input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stackyard.cli.output import OutputFormat, print_json, stdout, validation_report
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


@app.command("build")
def build_cmd(
    path: ComponentDir,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the archive here (default: <name>-<version>.tar.gz)."),
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Build the component's reproducible archive; prints its digest."""
    from stackyard.components.package import build as build_archive
    from stackyard.components.package import write

    built = build_archive(path)
    target = out or Path(f"{built.manifest.name}-{built.manifest.version}.tar.gz")
    write(built, target)
    if output is OutputFormat.JSON:
        print_json(
            {"name": built.manifest.name, "version": built.manifest.version, "digest": built.digest}
        )
        return
    con = stdout()
    con.print(f"[green]✓[/] built {escape(built.manifest.ref)} → {escape(str(target))}")
    con.print(f"  digest {built.digest}, {len(built.files)} file(s)")
    for skipped in built.ignored:
        con.print(f"  [dim]left out: {escape(skipped)}[/]")
