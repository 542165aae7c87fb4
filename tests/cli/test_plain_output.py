"""Output for people, off a terminal: full values, and sentences rather than Python reprs
(issue 12, papercuts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _platform import EXAMPLES

pytestmark = pytest.mark.integration


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1"}
    env.pop("COLUMNS", None)  # a pipe, as in CI or `| grep`: no terminal width to fit
    env.pop("STACKYARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_tables_print_full_values_without_a_terminal(library_home: Path) -> None:
    res = _run(library_home, "component", "list")
    assert res.returncode == 0, res.stderr
    assert "postgres-database" in res.stdout
    assert "…" not in res.stdout


def test_platform_apply_says_what_it_applied_in_words(library_home: Path, tmp_path: Path) -> None:
    import shutil

    plat = tmp_path / "platform"
    shutil.copytree(EXAMPLES / "platform", plat)
    res = _run(library_home, "platform", "apply", str(plat), "--yes")
    assert res.returncode == 0, res.stderr
    assert "{" not in res.stdout and "'create'" not in res.stdout
    assert "created" in res.stdout and "document(s)" in res.stdout
