"""Output for people, off a terminal: full values, and sentences rather than Python reprs
(issue 12, papercuts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from _as_user import cli
from _platform import EXAMPLES

pytestmark = pytest.mark.integration


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(home, *args, columns=None)  # a pipe, as in CI or `| grep`: no terminal width


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
