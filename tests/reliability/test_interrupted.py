"""A deployment whose writer is killed by a signal does not stay ``running`` forever
(issue 11, item 16): the next look at the environment, or the next writer, marks it
``interrupted``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _platform import Stage

pytestmark = pytest.mark.reliability


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "stackyard.cli", *args]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("STACKYARD_DATABASE_URL", None)
    return env


def test_a_killed_deploy_is_marked_interrupted(stage: Stage, tmp_path: Path) -> None:
    env = stage.name("dev")
    score = tmp_path / "slow.yaml"
    # never ready: the deploy waits for readiness (holding the lock) until it is killed
    score.write_text(
        textwrap.dedent(
            """\
            apiVersion: score.dev/v1b1
            metadata: {name: slow}
            containers:
              main:
                image: busybox
                command: ["sleep", "3600"]
                readinessProbe:
                  httpGet: {port: 8080, path: /}
            service:
              ports:
                web: {port: 8080, targetPort: 8080}
            resources:
              db: {type: postgres}
            """
        )
    )
    proc = subprocess.Popen(
        _cli(stage.home, "deploy", str(score), "--env", env, "--yes"),
        env=_env(stage.home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "started workload 'slow'" in line:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert any("started workload 'slow'" in line for line in seen), "".join(seen)

    with stage.ws() as ws:
        (dep,) = [d for d in ws.records.deployments(env) if d.workloads == ("slow",)]
        assert dep.status == "running"  # what a killed writer leaves behind
        info = ws.store.lock_info(env)
    assert info is not None
    deadline = time.monotonic() + 120
    while time.time() <= info.expires_at and time.monotonic() < deadline:
        time.sleep(0.1)  # the dead writer's lease runs out by itself

    listed = subprocess.run(
        _cli(stage.home, "deployments", env, "--output", "json"),
        env=_env(stage.home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    (row,) = [d for d in json.loads(listed.stdout) if d["id"] == dep.id]
    assert row["status"] == "interrupted"
    with stage.ws() as ws:
        from stackyard.environments import lifecycle

        lifecycle.remove_workload(ws, env, "slow")
