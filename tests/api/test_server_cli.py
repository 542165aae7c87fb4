"""``stackyard server``: refuses plain HTTP beyond loopback, and on a SQLite home serves the
API with an in-process worker (one command gives a working service)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _apisupport import ADMIN, free_socket, prepare, teardown

from _lite import sleeper_score

pytestmark = pytest.mark.integration


def _sy(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1"}
    env.pop("STACKYARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--host", "0.0.0.0"], "Refusing to serve plain HTTP on 0.0.0.0"),
        (["--host", "example.org"], "Refusing to serve plain HTTP on example.org"),
        (["--tls-cert", "cert.pem"], "Give --tls-cert and --tls-key together"),
    ],
    ids=["any-address", "a-name", "half-a-tls-pair"],
)
def test_refuses_what_would_expose_tokens(tmp_path: Path, args: list[str], said: str) -> None:
    done = _sy(tmp_path, "server", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert said in done.stderr


def test_serves_the_api_with_an_in_process_worker(
    volume_template: Path, tmp_path: Path, sweeper: Any
) -> None:
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens

    home = tmp_path / "home"
    settings = prepare(home, volume_template, sweeper.env)
    with Workspace.open(__import__("dataclasses").replace(settings, actor=ADMIN)) as ws:
        token = tokens.create(ws, user=ADMIN, ttl="1h").token
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "STACKYARD_HOME": str(home), "NO_COLOR": "1"}
    env.pop("STACKYARD_DATABASE_URL", None)
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackyard.cli", "server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/readyz").json()["status"] == "ok"
            accepted = c.post(
                f"/api/v1/environments/{sweeper.env}/deploy",
                json={"scores": {"score.yaml": sleeper_score("sleeper")}},
            )
            assert accepted.status_code == 202, accepted.text
            job_url = accepted.headers["location"]
            deadline = time.monotonic() + 120
            job = c.get(job_url).json()
            while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
                time.sleep(0.1)
                job = c.get(job_url).json()
            assert job["status"] == "succeeded", job
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        text = log.read()
        log.close()
        teardown(settings)
    assert token not in text
    assert "Traceback" not in text, text
