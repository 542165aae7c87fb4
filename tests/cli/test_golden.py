"""Golden tests for text users read: help and the wording of common errors.

Regenerate with ``STACKYARD_UPDATE_GOLDEN=1 pytest tests/cli/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "help": ["--help"],
    "workload-validate-help": ["workload", "validate", "--help"],
    "component-validate-help": ["component", "validate", "--help"],
    "missing-file": ["workload", "validate", "/nonexistent/score.yaml"],
    "missing-component": ["component", "validate", "/nonexistent/component"],
    "unknown-command": ["deploy-everything"],
    "deploy-help": ["deploy", "--help"],
    "env-create-help": ["env", "create", "--help"],
}


def _run(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    res = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}--- stderr\n{res.stderr}"


@pytest.mark.parametrize("name", sorted(CASES), ids=sorted(CASES))
def test_golden(name: str) -> None:
    got = _run(CASES[name])
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("STACKYARD_UPDATE_GOLDEN") == "1":
        path.write_text(got, encoding="utf-8")
    assert "Traceback" not in got
    assert got == path.read_text(encoding="utf-8"), f"{name} changed; regenerate and review"
