"""The ``stackyard`` command: its entry point, the ``--version`` fast path and the error boundary.

This module imports almost nothing at import time, because the console script imports it for
every run: ``stackyard --version`` answers before Typer, Rich or any command module is
imported, and everything else is handed to the command tree (``stackyard.cli.tree``), which
imports a command's module only when that command runs.
"""

from __future__ import annotations

import os
import sys

from stackyard import __version__

#: ``typing`` is not imported at run time: it costs every command a few milliseconds (type
#: checkers treat a constant of this name as ``typing.TYPE_CHECKING``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from stackyard.errors import StackyardError

#: The root's flags that do not change what ``--version`` prints.
_VERSION_ONLY = frozenset({"--version", "--debug"})


def __getattr__(name: str) -> Any:
    """``app``: the root Typer app, from ``stackyard.cli.tree`` (kept importable from here)."""
    if name == "app":
        from stackyard.cli.tree import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    """Entry point of the ``stackyard`` command: through a warm command server when one
    answers (``stackyard.cli.cmdserver``; ``STACKYARD_DAEMON=0`` turns it off), else here."""
    argv = sys.argv[1:]
    if not _version_only(argv) and _daemon_on():
        from stackyard.cli.cmdclient import delegate, enabled

        if enabled():
            code = delegate(argv)
            if code is not None:
                # Nothing of this process's own needs finalising (it only imported the
                # client): its interpreter's clean-up is skipped.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    sys.exit(invoke(argv))


def _version_only(argv: Sequence[str]) -> bool:
    return "--version" in argv and _VERSION_ONLY.issuperset(argv)


def _daemon_on() -> bool:
    return os.environ.get("STACKYARD_DAEMON", "1").strip().lower() not in (
        "0",
        "off",
        "false",
        "no",
    )


def invoke(args: Sequence[str]) -> int:
    """Run the CLI on ``args`` and return its exit status: the one error boundary.

    A ``StackyardError`` becomes one clear line, a hint (or its diagnostics) and the class's
    ``exit_code``; anything else is an internal error, exit 1, with a traceback only under
    ``--debug``. ``docs/errors.md`` lists every exit status.
    """
    argv = list(args)
    if _version_only(argv):
        # What the eager ``--version`` option prints, without importing the command tree.
        sys.stdout.write(f"stackyard {__version__}\n")
        return 0
    from stackyard.errors import StackyardError

    debug = "--debug" in argv
    try:
        _refuse_local_only(argv)
        from stackyard.cli.tree import app

        app(args=argv, prog_name="stackyard")  # standalone: usage errors exit 2 with click's text
    except SystemExit as exc:  # how typer ends every run, successful or not
        return _status(exc.code)
    except StackyardError as exc:
        if debug:
            _print_traceback()
        _report(exc, json_output=_wants_json(argv))
        return exc.exit_code
    except Exception as exc:  # the last boundary: never a traceback unless --debug
        from rich.markup import escape

        from stackyard.cli.output import stderr

        if debug:
            _print_traceback()
        stderr().print(f"[red]error:[/] internal error: {type(exc).__name__}: {escape(str(exc))}")
        stderr().print("  Run again with --debug for the traceback, and report it.")
        return 1
    return 0


#: Commands that work on this machine's home or processes, never through a server.
_LOCAL_ONLY = {
    "init": "it creates this machine's home",
    "keys": "signing keys live on the machine that signs",
    "daemon": "it manages this machine's command server",
    "server": "it serves a home; run it where the home is",
    "worker": "it runs the jobs of a home; run it where the home is",
}


def _refuse_local_only(argv: Sequence[str]) -> None:
    """In remote mode, refuse a command that only works on the local home (exit 2)."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in _LOCAL_ONLY or "--help" in argv:
        return
    from stackyard.cli.remote import refuse

    refuse(words[0], _LOCAL_ONLY[words[0]])


def _print_traceback() -> None:
    import traceback  # not at the top: it costs more than the whole ``--version`` path

    traceback.print_exc()


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    from rich.markup import escape

    from stackyard.cli.output import stderr

    stderr().print(f"[red]error:[/] {escape(str(code))}")
    return 1


def _report(exc: StackyardError, *, json_output: bool) -> None:
    from rich.markup import escape

    from stackyard.cli.output import print_json, render_diagnostics, stderr
    from stackyard.errors import InvalidInputError, PolicyDeniedError

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
