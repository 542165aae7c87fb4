"""Test-only: run the stackyard CLI in a subprocess, as ourselves or as another identity.

``python tests/_as_user.py bob approve ID`` runs ``stackyard approve ID`` with the actor
``bob``. The product has no way to do this (no variable, flag or file names the actor: it is
the operating-system account, see docs/governance.md); this script patches the one function
that reads the account, in its own process, the way the server of a later issue will pass an
authenticated identity. It ships nowhere: it lives only in tests/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import stackyard.settings

HERE = Path(__file__).resolve()


def cli(
    home: Path,
    *args: str,
    user: str | None = None,
    columns: int | None = 200,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``stackyard ARGS`` on ``home`` in a subprocess (as ``user`` when given, through
    this harness), with ``env`` added to the environment; never waits on a terminal.

    ``columns`` is the width tables are fitted to; ``None`` leaves ``COLUMNS`` unset, as in a
    pipe (CI, ``| grep``), where no terminal width is known."""
    environ = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1"}
    environ.pop("COLUMNS", None)
    if columns is not None:
        environ["COLUMNS"] = str(columns)
    environ.pop("STACKYARD_DATABASE_URL", None)
    environ.update(env)
    command = [str(HERE), user] if user else ["-m", "stackyard.cli"]
    return subprocess.run(
        [sys.executable, *command, *args],
        env=environ,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def main() -> None:
    user = sys.argv[1]
    stackyard.settings._os_user = lambda: user  # type: ignore[attr-defined]
    sys.argv = ["stackyard", *sys.argv[2:]]
    from stackyard.cli.main import run

    run()


if __name__ == "__main__":
    main()
