"""Issue 17, the scheduled part of drift: an EnvironmentType sets ``drift: {every: ...}``,
the workers' ticker scans its environments when their last scan is that old (and no others),
each scan (scheduled or asked for) is kept in the history, ``status`` shows the last one, and
a scan that finds drift publishes ``drift.found``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _local_env import apply_types, environments, write_score

pytestmark = pytest.mark.integration

SCANNED = """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: scanned}
spec:
  description: Volumes only, scanned for drift every hour.
  runtime: local
  drift: {every: 1h}
  bindings:
    - {type: volume, component: local-volume@^1}
"""

APP = """\
import time
print("DONE", flush=True)
time.sleep(3600)
"""


def _ws() -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    return Workspace.open(Settings.load())


def _cli(*args: str) -> tuple[int, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"exit {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None


def test_scheduled_scans_history_status_and_events(
    library_home: Path, tmp_path: Path, sweeper: Any
) -> None:
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.ops import driftscan, ticker
    from stackyard.ops.events import read
    from stackyard.state.driftlog import history

    env, plain = sweeper.env, f"{sweeper.env}-p"
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
        (tmp_path / "platform" / "scanned.yaml").write_text(SCANNED)
        from stackyard.environments.platform import apply_dir

        apply_dir(ws.platform, ws.access, tmp_path / "platform", confirm=lambda _q: True)
    with environments(_ws, env, plain), _ws() as ws:
        lifecycle.create(ws, env, type_name="scanned", owner="team-checkout")
        lifecycle.create(ws, plain, type_name="bare", owner="team-checkout")  # never scanned
        score = write_score(tmp_path / "app", "app", APP, resources={"data": "volume"})
        deploy_files(ws, [score], env, confirm=lambda _p: True)

        # the first turn scans the scanned type's environment, and only it
        assert driftscan.due(ws) == [env]
        assert ticker.run_due(ws, only={"drift.schedule"}) == ["drift.schedule"]
        (first,) = history(ws.store, env)
        assert (first.trigger, first.actor, first.drifted, first.error) == (
            "schedule",
            driftscan.ACTOR,
            0,
            None,
        )
        assert first.resources >= 1
        assert history(ws.store, plain) == []

        # not again before the hour is up; an hour later, again
        assert driftscan.scan_due(ws) == []
        assert driftscan.due(ws, now=time.time() + 3601) == [env]

        # drift made by hand: the next scheduled scan finds it, keeps it and announces it
        (directory,) = [
            r for r in ws.store.snapshot(env).resources.values() if r.kind == "local.directory"
        ]
        shutil.rmtree(directory.physical_id)
        (second,) = driftscan.scan_due(ws, now=time.time() + 3601)
        assert second.drifted >= 1 and second.findings, second
        assert second.findings[0]["address"] == directory.address
        (announced,) = [e for e in read(ws.store, types=["drift.found"]) if e.env == env]
        assert announced.data["actor"] == driftscan.ACTOR
        assert announced.data["roots"][0]["address"] == directory.address

        # status shows the last scan; the history lists both, newest first; a scan asked for
        # is recorded too, as the user who asked
        code, status = _cli("status", env)
        assert code == 0 and status["drift"]["id"] == second.id, status
        assert status["drift"]["trigger"] == "schedule" and status["drift"]["drifted"] >= 1
        assert "detail" not in status["drift"]
        code, found = _cli("drift", "--env", env)
        assert code == 11, found
        # the portal's environment page shows the last scan, its root cause and the earlier
        # ones (an HTML page, escaped like every value)
        page = _portal_page(ws, f"/environments/{env}")
        assert 'id="h-drift"' in page and directory.address in page, page
        assert "schedule" in page and "Earlier scans" in page
        code, listed = _cli("drift", "--env", env, "--history")
        assert code == 0
        assert [s["trigger"] for s in listed[env]] == ["manual", "schedule", "schedule"]
        assert listed[env][1]["id"] == second.id
        assert listed[env][0]["actor"] != driftscan.ACTOR


def _portal_page(ws: Any, path: str) -> str:
    """One portal page, rendered by the portal's app in process (Starlette's test client)."""
    import warnings

    from stackyard.identity import tokens
    from stackyard.portal import site

    token = tokens.create(ws, user=ws.access.actor, ttl="1h").token
    with warnings.catch_warnings():
        # this Starlette wants the httpx2 package for its test client; httpx does the job
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

        with TestClient(site(ws.settings), base_url="http://127.0.0.1") as client:
            r = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.text


def test_the_schedule_is_validated() -> None:
    from stackyard.model.platform import parse_document

    doc, diags = parse_document(
        {
            "apiVersion": "stackyard.dev/v1",
            "kind": "EnvironmentType",
            "metadata": {"name": "t"},
            "spec": {"drift": {"every": "soon", "when": "always"}},
        },
        file="types.yaml",
    )
    assert doc is None
    assert {d.path for d in diags} >= {"spec.drift.every", "spec.drift.when"}, diags
    good, none = parse_document(
        {
            "apiVersion": "stackyard.dev/v1",
            "kind": "EnvironmentType",
            "metadata": {"name": "t"},
            "spec": {"drift": {"every": "6h"}},
        },
        file="types.yaml",
    )
    assert none == [] and good is not None and good.value.drift_every_s == 6 * 3600
