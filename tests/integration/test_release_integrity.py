"""Release integrity: a release edited in the state database is refused under its old id, by
``release show``, ``release list``, ``deploy --release`` and ``promote``, on the machine's
PostgreSQL and Redis (the stage's environments are bound to them)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from _as_user import cli
from _platform import EXAMPLES, Stage
from stackyard.environments.promotion import create_release

pytestmark = pytest.mark.integration

HELLO = EXAMPLES / "hello" / "score.yaml"


def sy(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(home, *args, columns=300)


def _tamper(home: Path, release_id: str) -> None:
    """Swap the release's image reference for another, as someone with the database would."""
    db = sqlite3.connect(home / "state.db")
    try:
        (raw,) = db.execute("SELECT document FROM releases WHERE id = ?", (release_id,)).fetchone()
        document = json.loads(raw)
        document["images"] = {"hello": "evil.example/backdoor:latest"}
        db.execute(
            "UPDATE releases SET document = ? WHERE id = ?", (json.dumps(document), release_id)
        )
        db.commit()
    finally:
        db.close()


def test_a_release_edited_in_the_database_is_refused_by_every_reader(stage: Stage) -> None:
    dev = stage.name("dev")
    with stage.ws() as ws:
        rel, _ = create_release(ws, [HELLO], env=dev)
    shown = sy(stage.home, "release", "show", rel.short)
    assert shown.returncode == 0, shown.stderr

    _tamper(stage.home, rel.id)

    for args in (
        ("release", "show", rel.short),
        ("release", "list"),
        ("deploy", "--release", rel.short, "--env", dev, "--yes"),
        ("promote", rel.short, "--to", stage.name("staging"), "--yes"),
    ):
        res = sy(stage.home, *args)
        assert res.returncode == 8, (args, res.stdout, res.stderr)  # verification failed
        assert f"Release {rel.id}" in res.stderr, (args, res.stderr)
        assert "tamper detected" in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    with stage.ws() as ws:
        assert ws.records.workloads(dev) == []  # nothing was deployed from the edited release
