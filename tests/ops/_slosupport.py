"""Helpers of the SLO tests: a workload with a database deployed on the ``stage`` platform, the
CLI run as a process, and observations read back from the store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = ["APP_SCORE", "cli", "deploy_app", "observations", "run"]

#: A workload ``app`` (a sleeping process) with a database.
APP_SCORE = textwrap.dedent(
    """\
    apiVersion: score.dev/v1b1
    metadata: {name: app}
    containers:
      main:
        image: none
        command: ["sh", "-c", "sleep 3600"]
        variables:
          DB_NAME: ${resources.db.name}
    resources:
      db:
        type: postgres
    """
)


def deploy_app(ws: Any, env: str, directory: Path) -> None:
    """Deploy ``app`` to ``env`` and check that it succeeded."""
    from stackyard.environments.deploy import deploy_files

    directory.mkdir(parents=True, exist_ok=True)
    score = directory / "score.yaml"
    score.write_text(APP_SCORE)
    done = deploy_files(ws, [score], env, confirm=lambda _p: True)
    assert done.deployment.status == "succeeded", done.deployment


def cli(*args: str) -> tuple[int, Any, str]:
    """``stackyard <args>`` as a process: exit status, the JSON document (None when the output
    is not JSON) and standard error."""
    proc = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        doc = None
    return proc.returncode, doc if doc is not None else proc.stdout, proc.stderr


def observations(ws: Any, env: str) -> list[dict[str, Any]]:
    """Every observation of ``env``, oldest first."""
    from stackyard.state.tables import slo_observations as t

    with ws.store.reading() as conn:
        rows = conn.execute(sa.select(t).where(t.c.env == env).order_by(t.c.id)).mappings().all()
    return [dict(r) for r in rows]


def run(capsys: Any, *args: str) -> tuple[int, Any, str]:
    """``stackyard <args>`` in this process (``stackyard.cli.main.invoke``), as ``cli``."""
    from stackyard.cli.main import invoke

    capsys.readouterr()
    code = invoke(list(args))
    out, err = capsys.readouterr()
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = None
    return code, doc if doc is not None else out, err
