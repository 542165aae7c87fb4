"""A killed ``env create`` resumes: kill -9 of the CLI while the core's servers are being
created leaves the environment ``creating``; running the same create again converges the core
and marks it ready, and ``env destroy`` of a ``creating`` environment works too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _platform import EXAMPLES

pytestmark = pytest.mark.reliability


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "stackyard.cli", *args]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "STACKYARD_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("STACKYARD_DATABASE_URL", None)
    return env


def sy(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli(home, *args),
        env=_env(home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def _platform(home: Path, tmp_path: Path, name: str) -> None:
    plat = tmp_path / "platform"
    plat.mkdir()
    for doc in ("environment-types.yaml", "teams.yaml"):
        shutil.copy(EXAMPLES / "platform" / doc, plat / doc)
    (plat / "environments.yaml").write_text(
        "apiVersion: stackyard.dev/v1\nkind: Environment\n"
        f"metadata: {{name: {name}}}\nspec: {{type: development, owner: team-checkout}}\n"
    )
    res = sy(home, "platform", "apply", str(plat), "--yes")
    assert res.returncode == 0, res.stderr


def _query(home: Path, sql: str, *args: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True, timeout=5) as db:
        return db.execute(sql, args).fetchall()


def _status(home: Path, name: str) -> str:
    rows = _query(home, "SELECT status FROM environments WHERE name = ?", name)
    return str(rows[0][0]) if rows else "(none)"


def _kill_during_core_apply(home: Path, name: str) -> None:
    """Start ``env create`` and SIGKILL it while a core server's create is pending."""
    proc = subprocess.Popen(
        _cli(home, "env", "create", name),
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                pending = _query(
                    home,
                    "SELECT count(*) FROM intents WHERE env = ? AND kind LIKE 'local.%'",
                    name,
                )
            except sqlite3.OperationalError:  # not created yet, or busy: look again
                pending = [(0,)]
            if pending[0][0]:
                break
            assert proc.poll() is None, "env create finished before it could be killed"
            time.sleep(0.01)
        else:
            pytest.fail("no core server create was ever pending")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_create_resumes_when_run_again(
    library_home: Path,
    tmp_path: Path,
    sweeper,  # type: ignore[no-untyped-def]
) -> None:
    name = sweeper.env
    _platform(library_home, tmp_path, name)
    try:
        _kill_during_core_apply(library_home, name)
        assert _status(library_home, name) == "creating"
        again = sy(library_home, "env", "create", name)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "resuming" in again.stdout + again.stderr
        assert _status(library_home, name) == "ready"
        assert _query(library_home, "SELECT count(*) FROM intents WHERE env = ?", name) == [(0,)]
        kinds = sorted(
            r[0] for r in _query(library_home, "SELECT kind FROM resources WHERE env = ?", name)
        )
        assert kinds == ["local.postgres_server", "local.redis_server", *["random.password"] * 2]
        status = sy(library_home, "status", name, "--output", "json")
        assert status.returncode == 0, status.stderr
        health = {r["address"]: r["health"] for r in json.loads(status.stdout)["resources"]}
        assert set(health.values()) == {"ok"}, health  # both servers up, none half made
        # a third create of the ready environment changes nothing
        third = sy(library_home, "env", "create", name)
        assert third.returncode == 0, third.stderr
    finally:
        done = sy(library_home, "env", "destroy", name, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _status(library_home, name) == "declared"


def test_a_killed_create_can_be_destroyed(
    library_home: Path,
    tmp_path: Path,
    sweeper,  # type: ignore[no-untyped-def]
) -> None:
    name = sweeper.env
    _platform(library_home, tmp_path, name)
    try:
        _kill_during_core_apply(library_home, name)
        assert _status(library_home, name) == "creating"
    finally:
        done = sy(library_home, "env", "destroy", name, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _status(library_home, name) == "declared"
    assert _query(library_home, "SELECT count(*) FROM resources WHERE env = ?", name) == [(0,)]
    assert _query(library_home, "SELECT count(*) FROM intents WHERE env = ?", name) == [(0,)]
