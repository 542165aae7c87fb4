"""Concurrent deploys of different workloads into one environment (issue 11, item 1).

Ten deploys of ten workloads at once, each with a PostgreSQL database, a Redis user and a
volume, on the machine's services. Before the fix, the live workloads were read outside the
lock: most deploys failed at once on the busy lock, and a late one planned "no longer
desired" for a neighbour and dropped its database while ``status`` still said ready. Now
every deploy waits for the lock, plans against the workloads live at that moment, and all
ten survive, each with its real objects.

``STACKYARD_CONCURRENCY_RUNS`` (default 2) sets the number of rounds; the closing note of
issue 11 ran 50.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from _platform import Stage

pytestmark = pytest.mark.reliability

RUNS = int(os.environ.get("STACKYARD_CONCURRENCY_RUNS", "2"))
WORKLOADS = 10


def _score(directory: Path, name: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: score.dev/v1b1
            metadata: {{name: {name}}}
            containers:
              main:
                image: busybox
                command: ["sleep", "3600"]
                variables:
                  DB: ${{resources.db.name}}
                  CACHE: ${{resources.cache.username}}
                  DATA: ${{resources.data.path}}
            resources:
              db: {{type: postgres}}
              cache: {{type: redis}}
              data: {{type: volume}}
            """
        )
    )
    return path


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("STACKYARD_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "stackyard.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("run", range(RUNS), ids=lambda r: f"run{r}")
def test_ten_deploys_of_ten_workloads_at_once_lose_nothing(
    stage: Stage, tmp_path: Path, postgres_admin_url: str, run: int
) -> None:
    env = stage.name("dev")
    names = [f"w{run}x{i}" for i in range(WORKLOADS)]
    scores = [_score(tmp_path, n) for n in names]
    procs = [_cli(stage.home, "deploy", str(s), "--env", env, "--yes") for s in scores]
    outs = [(*p.communicate(timeout=600), p.returncode) for p in procs]
    for (out, err, code), name in zip(outs, names, strict=True):
        assert code == 0, f"deploy of {name} exited {code}:\n{out}\n{err}"

    with stage.ws() as ws:
        live = {w.name for w in ws.records.workloads(env)}
        assert set(names) <= live, f"workloads lost: {sorted(set(names) - live)}"
        instances = ws.records.instances(env)
        for name in names:
            for res in ("db", "cache", "data"):
                assert any(uid.endswith(f"#{name}.{res}") for uid in instances), (name, res)
        databases = {
            rec.outputs["name"] for uid, rec in instances.items() if uid.startswith("postgres.")
        }
        deps = ws.records.deployments(env, limit=200)
        assert not [d.id for d in deps if d.status == "running"]
    assert len(databases) >= WORKLOADS
    # The databases exist for real, not only in the records.
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        found = {
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (sorted(databases),)
            )
        }
    assert found == databases

    status = _cli(stage.home, "status", env, "--output", "json")
    out, err = status.communicate(timeout=120)
    assert status.returncode == 0, err
    doc = json.loads(out)
    text = json.dumps(doc)
    for name in names:
        assert name in text
