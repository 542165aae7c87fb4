"""What a ``stackyard`` command imports: run it in a fresh interpreter, read ``sys.modules``.

The child runs the console script's entry point (as installed, what a user runs) and writes
``sorted(sys.modules)`` from an ``atexit`` hook, which runs after the ``SystemExit`` that ends
every run. Used by the import guard (``tests/unit/test_import_guard.py``) and by the deploy
test that checks only the plan's providers are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

__all__ = ["heavy", "imported_by", "tops"]

_WRAPPER = textwrap.dedent(
    """
    import atexit, importlib, json, sys

    out, target, *args = sys.argv[1:]

    def dump():
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(sorted(sys.modules), fh)

    atexit.register(dump)
    module, _, attr = target.partition(":")
    sys.argv = ["stackyard", *args]
    run = getattr(importlib.import_module(module), attr)
    sys.exit(run())
    """
)


def _entry_point() -> str:
    """The console script's ``module:function``, as installed."""
    [ep] = metadata.entry_points(group="console_scripts", name="stackyard")
    return ep.value


def imported_by(
    args: list[str], out: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``stackyard ARGS``: the finished process and the modules it had imported.

    ``out`` is the file the child writes its module list to; ``env`` defaults to this one's.
    """
    res = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(out), _entry_point(), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        check=False,
        timeout=300,
    )
    modules: list[str] = json.loads(out.read_text(encoding="utf-8"))
    return res, modules


def heavy(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden modules (a name or anything under it) in ``modules``."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in forbidden)]


def tops(found: list[str]) -> list[str]:
    """The outermost names of ``found`` (``cryptography`` for all of ``cryptography.*``)."""
    return sorted({m for m in found if not any(m.startswith(f + ".") for f in found)})
