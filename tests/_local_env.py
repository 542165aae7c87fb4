"""Environments on embedded local servers for integration tests: the example environment types
(``development``: a local PostgreSQL and Redis as core) plus ``bare`` (no core, volumes only),
Score files written on the fly, and helpers to read a workload's output and a server's pid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from _platform import EXAMPLES

BARE_TYPE = """\
---
apiVersion: stackyard.dev/v1
kind: EnvironmentType
metadata: {name: bare}
spec:
  description: No core infrastructure; workloads with volumes only.
  runtime: local
  bindings:
    - {type: volume, component: local-volume@^1}
"""


def apply_types(ws: Any, directory: Path) -> None:
    """Apply the example environment types and teams, and ``bare``."""
    from stackyard.environments.platform import apply_dir

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "platform" / "teams.yaml", directory / "teams.yaml")
    types = (EXAMPLES / "platform" / "environment-types.yaml").read_text()
    (directory / "environment-types.yaml").write_text(types + BARE_TYPE)
    apply_dir(ws.platform, ws.access, directory, confirm=lambda _q: True)


def write_score(
    directory: Path,
    name: str,
    app: str,
    *,
    variables: dict[str, str] | None = None,
    resources: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """A Score file for a workload that runs ``python app.py`` (no ports)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(textwrap.dedent(app))
    listed = [{"target": "app.py", "source": "./app.py", "noExpand": True}]
    for target, content in (files or {}).items():
        listed.append({"target": target, "content": content, "noExpand": True})
    score = {
        "apiVersion": "score.dev/v1b1",
        "metadata": {"name": name},
        "containers": {
            "main": {
                "image": "python:3.11-slim",
                "command": ["python", "app.py"],
                "files": listed,
                "variables": {"PYTHONUNBUFFERED": "1", **(variables or {})},
            }
        },
        "resources": {k: {"type": v} for k, v in (resources or {}).items()},
    }
    path = directory / "score.yaml"
    path.write_text(json.dumps(score))  # JSON is YAML
    return path


def wait_for_line(ws: Any, env: str, workload: str, marker: str, timeout: float = 20) -> str:
    """The workload's log once a line holds ``marker``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = "\n".join(ws.runtime(env).logs(workload))
        if marker in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no {marker!r} in the log of {workload}:\n{text}")


def server_pids(home: Path) -> dict[str, int]:
    """``{server folder name: pid}`` of every local server of ``home``."""
    out = {}
    for pidfile in sorted((home / "servers").glob("*/server.pid")):
        out[pidfile.parent.name] = int(json.loads(pidfile.read_text())["pid"])
    return out


def uid_of(pid: int) -> int:
    """The real uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def written_out(ws: Any, env: str) -> None:
    """Write out what ``env``'s local PostgreSQL servers committed, before a test SIGKILLs
    them: a development server runs with ``synchronous_commit`` off, so its last commits (up
    to a few hundred milliseconds) may still be in its WAL buffers, which a SIGKILL loses, as
    it would for a real crash of that server. ``CHECKPOINT`` writes them (to the OS, which
    keeps them through the kill), so the test kills a server whose writes are all in."""
    import psycopg

    from stackyard.environments.inspect import outputs

    for shown in outputs(ws, env, reveal=True).values():
        url = str((shown.get("outputs") or {}).get("admin_url") or "")
        if url.startswith(("postgresql://", "postgres://")):
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                conn.execute("CHECKPOINT")


def kill9(pid: int, timeout: float = 10) -> None:
    """SIGKILL ``pid`` and wait until it is gone (or a zombie)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not die")


@contextmanager
def environments(ws_factory: Callable[[], Any], *names: str) -> Iterator[None]:
    """Destroy ``names`` (in reverse order) when the block ends, whatever happened."""
    from stackyard.environments import lifecycle

    try:
        yield
    finally:
        with ws_factory() as ws:
            for name in reversed(names):
                env = ws.records.environment(name)
                if env is None or env.status in ("declared", "destroyed"):
                    continue
                try:
                    lifecycle.destroy(ws, name)
                except Exception as exc:  # report, keep tearing down
                    print(f"teardown: destroy {name} failed: {exc}")


def needs_local_servers() -> None:
    """Skip unless this machine has PostgreSQL and Redis binaries for local servers."""
    from stackyard.providers.local import binaries

    if binaries.find_postgres() is None or binaries.find_redis_server() is None:
        pytest.skip("no PostgreSQL or redis-server binaries for local servers on this machine")
