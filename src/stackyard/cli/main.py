"""The ``stackyard`` command: the Typer app, global options and the error boundary."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.markup import escape

from stackyard import __version__
from stackyard.cli import (
    component,
    deploy,
    envs,
    governance,
    keys,
    platform,
    providers,
    release,
    state,
    workload,
)
from stackyard.cli.output import OutputFormat, print_json, render_diagnostics, stderr, stdout
from stackyard.errors import InvalidInputError, PolicyDeniedError, StackyardError

app = typer.Typer(
    name="stackyard",
    help="Self-service infrastructure: components, environments and Score workloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Registration order is the order of `stackyard --help`: the delivery flow first.
app.command("quickstart")(release.quickstart)
app.add_typer(platform.app, name="platform")
app.add_typer(envs.app, name="env")
deploy.register(app)
app.add_typer(release.app, name="release")
app.command("promote")(release.promote)
governance.register(app)
app.add_typer(component.app, name="component")
app.add_typer(workload.app, name="workload")
app.add_typer(providers.app, name="providers")
app.add_typer(state.app, name="state")
app.add_typer(keys.app, name="keys")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stackyard {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for internal errors."),
) -> None:
    """Self-service infrastructure: components, environments and Score workloads."""
    # --debug is read from the arguments by the boundary (``invoke``), which runs after the
    # callback has returned: nothing to keep here.


@app.command("init")
def init(
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
    ] = OutputFormat.TEXT,
) -> None:
    """Create the home (state, local registry, signing key) and publish the built-in library."""
    from stackyard.service import init_home
    from stackyard.settings import Settings

    con = stderr()
    result = init_home(Settings.load(), progress=lambda msg: con.print(f"[dim]{escape(msg)}[/]"))
    if output is OutputFormat.JSON:
        print_json(result.to_json())
        return
    out = stdout()
    out.print(f"[green]✓[/] home {escape(result.home)}")
    out.print(f"  state     {escape(result.database)}")
    out.print(f"  registry  {escape(result.registry)}")
    out.print(f"  key       {escape(result.key_id)}")
    out.print(f"  library   {len(result.published)} published, {len(result.already)} already there")


def run() -> None:
    """Entry point of the ``stackyard`` command."""
    sys.exit(invoke(sys.argv[1:]))


def invoke(args: Sequence[str]) -> int:
    """Run the CLI on ``args`` and return its exit status: the one error boundary.

    A ``StackyardError`` becomes one clear line, a hint (or its diagnostics) and the class's
    ``exit_code``; anything else is an internal error, exit 1, with a traceback only under
    ``--debug``. ``docs/errors.md`` lists every exit status.
    """
    argv = list(args)
    debug = "--debug" in argv
    try:
        app(args=argv, prog_name="stackyard")  # standalone: usage errors exit 2 with click's text
    except SystemExit as exc:  # how typer ends every run, successful or not
        return _status(exc.code)
    except StackyardError as exc:
        if debug:
            traceback.print_exc()
        _report(exc, json_output=_wants_json(argv))
        return exc.exit_code
    except Exception as exc:  # the last boundary: never a traceback unless --debug
        if debug:
            traceback.print_exc()
        stderr().print(f"[red]error:[/] internal error: {type(exc).__name__}: {escape(str(exc))}")
        stderr().print("  Run again with --debug for the traceback, and report it.")
        return 1
    return 0


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    stderr().print(f"[red]error:[/] {escape(str(code))}")
    return 1


def _report(exc: StackyardError, *, json_output: bool) -> None:
    if isinstance(exc, PolicyDeniedError):
        if json_output:
            print_json(
                {
                    "denied": True,
                    "message": exc.message,
                    "decision": exc.decision_id,
                    "diagnostics": [d.to_json() for d in exc.diagnostics],
                }
            )
            return
        stderr().print(f"[red]denied:[/] {escape(exc.message)} (decision {exc.decision_id})")
        render_diagnostics(exc.diagnostics)
        return
    if isinstance(exc, InvalidInputError) and exc.diagnostics:
        if json_output:
            print_json({"valid": False, "diagnostics": [d.to_json() for d in exc.diagnostics]})
        else:
            render_diagnostics(exc.diagnostics)
        return
    if json_output:
        print_json(
            {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}
        )
        return
    con = stderr()
    con.print(f"[red]error:[/] {escape(exc.message)}")
    if exc.hint:
        con.print(f"  [dim]hint:[/] {escape(exc.hint)}")


def _wants_json(argv: Sequence[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--output=json" or (
            arg in ("--output", "-o") and i + 1 < len(argv) and argv[i + 1] == "json"
        ):
            return True
    return False
