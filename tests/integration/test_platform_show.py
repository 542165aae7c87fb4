"""``platform show`` (and ``GET /api/v1/platform``): a read behind ``view``, with the
credentials a binding's params may hold masked (issue 14: one service function for both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _as_user import cli
from _platform import write_platform

pytestmark = pytest.mark.integration

CANARY = "canary-pw-7f3a9"


def test_platform_show_masks_binding_credentials(library_home: Path, tmp_path: Path) -> None:
    directory = write_platform(
        tmp_path / "platform",
        "ps",
        pg_url=f"postgresql://admin:{CANARY}@127.0.0.1:5432/postgres",
        redis_url=f"redis://default:{CANARY}@127.0.0.1:6379/0",
    )
    applied = cli(library_home, "platform", "apply", str(directory), "--yes")
    assert applied.returncode == 0, applied.stderr
    shown = cli(library_home, "platform", "show", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert CANARY not in shown.stdout
    docs = json.loads(shown.stdout)
    env = next(d for d in docs if d["kind"] == "Environment" and d["name"] == "ps-dev")
    params = env["spec"]["bindings"][0]["params"]
    assert params["password"] == "***"
    assert params["username"] == "admin"  # only credential-like keys are masked
    text = cli(library_home, "platform", "show")
    assert text.returncode == 0 and CANARY not in text.stdout + text.stderr


def test_platform_show_needs_view(library_home: Path) -> None:
    refused = cli(library_home, "platform", "show", "-o", "json", user="mallory")
    assert refused.returncode == 6, refused.stdout + refused.stderr
