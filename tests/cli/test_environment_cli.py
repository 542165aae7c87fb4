"""The environment commands through the real CLI: platform apply's diff and idempotence,
confirmation without a terminal, plan-only deploys, JSON output and clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _platform import EXAMPLES, Stage

pytestmark = pytest.mark.integration

HELLO = str(EXAMPLES / "hello" / "score.yaml")


def sy(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def test_platform_apply_shows_the_diff_and_is_idempotent(stage: Stage) -> None:
    again = sy("platform", "apply", str(stage.platform_dir), "--output", "json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["changed"] is False and data["counts"]["unchanged"] == 11
    text = sy("platform", "apply", str(stage.platform_dir))
    assert "unchanged" in text.stdout
    env_file = stage.platform_dir / "environments.yaml"
    env_file.write_text(
        env_file.read_text().replace("owner: team-checkout", "owner: team-platform", 1)
    )
    refused = sy("platform", "apply", str(stage.platform_dir))
    assert refused.returncode == 2
    assert f"~ Environment {stage.name('dev')} (owner)" in refused.stdout
    assert "pass --yes" in refused.stderr
    assert sy("platform", "apply", str(stage.platform_dir), "--yes").returncode == 0


def test_platform_apply_refuses_ties_and_unknown_references(stage: Stage, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "all.yaml").write_text(
        """\
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: t}
spec:
  bindings:
    - {type: postgres, component: postgres-database@^1}
    - {type: postgres, component: postgres-database@^1.1}
---
apiVersion: stackyard.dev/v1
kind: Environment
metadata: {name: e}
spec: {type: nope}
---
apiVersion: stackyard.dev/v1
kind: Team
metadata: {name: a-team}
spec: {members: [ann], colour: red}
"""
    )
    res = sy("platform", "apply", str(bad), "--yes", "--output", "json")
    assert res.returncode == 2
    summaries = {d["summary"] for d in json.loads(res.stdout)["diagnostics"]}
    assert {"Binding tie", "Unknown environment type", "Unknown field"} <= summaries
    with stage.ws() as ws:
        assert {d.name for d in ws.records.documents("EnvironmentType")} == {
            "development",
            "ephemeral",
            "staging",
            "production",
            "containers",
        }


def test_confirmations_refuse_without_a_terminal_and_plan_only_applies_nothing(
    stage: Stage,
) -> None:
    dev = stage.name("dev")
    plan = sy("deploy", HELLO, "--env", dev, "--plan-only")
    assert plan.returncode == 0, plan.stderr
    assert "postgres.default#hello.db/role" in plan.stdout and "nothing applied" in plan.stdout
    refused = sy("deploy", HELLO, "--env", dev)
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    with stage.ws() as ws:
        assert not any(
            r.uid.startswith("postgres.default#hello")
            for r in ws.store.snapshot(dev).resources.values()
        )
    done = sy("deploy", HELLO, "--env", dev, "--yes", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["workloads"]["hello"]["state"] == "ready"
    assert data["workloads"]["hello"]["endpoints"]["web"].startswith("http://127.0.0.1:")
    status = json.loads(sy("status", dev, "--output", "json").stdout)
    assert status["workloads"]["hello"]["endpoints"] == data["workloads"]["hello"]["endpoints"]
    masked = sy("outputs", dev, "hello", "--output", "json")
    revealed = sy("outputs", dev, "hello", "--reveal", "--output", "json")
    password = json.loads(revealed.stdout)["db"]["outputs"]["password"]
    assert len(password) >= 16 and password not in masked.stdout and password not in done.stdout
    for args in (
        ("status", dev),
        ("deployments", dev),
        ("logs", dev, "hello"),
        ("env", "show", dev),
    ):
        out = sy(*args)
        assert out.returncode == 0, (args, out.stderr)
        assert password not in out.stdout + out.stderr, args
    deps = json.loads(sy("deployments", dev, "--output", "json").stdout)
    shown = json.loads(sy("deployments", dev, deps[0]["id"], "--output", "json").stdout)
    assert shown["events"] and password not in json.dumps(shown)
    destroy = sy("env", "destroy", dev)
    assert destroy.returncode == 2 and "pass --yes" in destroy.stderr


def test_clear_refusals(stage: Stage) -> None:
    cases = [
        (("env", "create", "Bad_Name", "--type", "development"), "Invalid environment name"),
        (("env", "create", "x1", "--type", "nope"), "Unknown environment type 'nope'"),
        (("env", "create", "x1", "--type", "ephemeral", "--ttl", "5x"), "Invalid --ttl"),
        (
            ("env", "create", "x1", "--type", "ephemeral", "--ttl", "100h"),
            "longer than environment type",
        ),
        (("env", "destroy", "ghost", "--yes"), "No environment 'ghost'"),
        (("deploy", "/nonexistent/score.yaml", "--env", stage.name("dev")), "Score file not found"),
        (("deploy", HELLO, "--env", "ghost", "--yes"), "No environment 'ghost'"),
        (
            ("promote", "abcdef123456", "--to", stage.name("staging"), "--yes"),
            "No release 'abcdef123456'",
        ),
    ]
    for args, message in cases:
        res = sy(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
