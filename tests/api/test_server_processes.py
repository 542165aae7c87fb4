"""``stackyard server --processes N``: several uvicorn processes share the port on a
PostgreSQL store, each with the limits the command was given; a SQLite home is refused."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _apisupport import ADMIN, free_socket, prepare, teardown

pytestmark = pytest.mark.integration


def test_processes_need_a_postgresql_store(tmp_path: Path) -> None:
    env = {**os.environ, "STACKYARD_HOME": str(tmp_path), "NO_COLOR": "1"}
    env.pop("STACKYARD_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "server", "--processes", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "--processes needs a PostgreSQL store" in done.stderr


def test_several_processes_serve_one_postgresql_store(
    volume_template: Path, tmp_path: Path, sweeper: Any, pg_databases: Callable[[], str]
) -> None:
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens

    url = pg_databases()
    home = tmp_path / "home"
    settings = prepare(home, volume_template, sweeper.env, database_url=url)
    with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
        token = tokens.create(ws, user=ADMIN, ttl="1h").token
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "STACKYARD_HOME": str(home),
        "STACKYARD_DATABASE_URL": url,
        "NO_COLOR": "1",
    }
    log = (tmp_path / "server.log").open("w+")
    argv = ["server", "--port", str(port), "--processes", "2", "--body-limit", "2048"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackyard.cli", *argv],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log.seek(0)
            if log.read().count("Application startup complete") >= 2:
                break
            assert proc.poll() is None, "the server exited"
            time.sleep(0.1)
        log.seek(0)
        assert log.read().count("Application startup complete") == 2
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(20):
                who = c.get("/api/v1/whoami")
                assert who.status_code == 200 and who.json()["user"] == ADMIN
                assert who.headers["x-frame-options"] == "DENY"
            names = [e["name"] for e in c.get("/api/v1/environments").json()["items"]]
            assert names == [sweeper.env]
            # the limit given to the command holds in every process
            for _ in range(4):
                big = c.post("/api/v1/tokens", json={"user": "x", "description": "y" * 4096})
                assert big.status_code == 413, big.text
        assert httpx.get(base + "/api/v1/whoami").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        text = log.read()
        log.close()
        teardown(settings)
    assert token not in text
    assert "Traceback" not in text, text
    # every process of the server stopped with it
    with pytest.raises(ProcessLookupError):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.1)
