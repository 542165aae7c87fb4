from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args], capture_output=True, text=True, check=False
    )


def test_version_prints_and_exits_zero() -> None:
    res = _run("--version")
    assert res.returncode == 0
    assert res.stdout.startswith("stackyard ")


def test_unknown_flag_is_a_usage_error_without_traceback() -> None:
    res = _run("--no-such-flag")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
