"""Support for the remote CLI tests: a real server and a twin local home, both copied from one
template (the volume component published), so the same commands give the same results.

The server is uvicorn in a thread on a free 127.0.0.1 port with an in-process worker, on a
SQLite home; the CLI runs in subprocesses with ``STACKYARD_URL`` and ``STACKYARD_TOKEN``.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _cli import Result, finished

#: The OS account: the bootstrap admin of both homes, so actors read the same in both modes.
ME = getpass.getuser()


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> Result:
    """``stackyard ARGS`` in a subprocess with ``env`` over a clean environment."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STACKYARD_") and k not in ("COLUMNS", "XDG_CONFIG_HOME")
    }
    environ.update({"NO_COLOR": "1", "COLUMNS": "200", "STACKYARD_DAEMON": "0", **env})
    proc = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    return finished(args, proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def volume_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with only ``local-volume`` published (all the lite platform binds)."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.settings import Settings

    home = tmp_path_factory.mktemp("remote-template") / "home"
    settings = Settings.load(home=home, environ={})
    # Publishing the whole library needs local database servers; the tests bind volumes only.
    with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
        service.init_home(settings)
    return home


@dataclass
class Twin:
    """A local home, and a server on a copy of it with a token for the same user."""

    local: Path
    remote_home: Path
    url: str
    token: str
    config: Path  # an empty XDG_CONFIG_HOME: no stored login leaks in

    def local_env(self) -> dict[str, str]:
        return {"STACKYARD_HOME": str(self.local), "XDG_CONFIG_HOME": str(self.config)}

    def remote_env(self, **extra: str) -> dict[str, str]:
        # STACKYARD_HOME points nowhere: a command that touched a home would fail loudly
        return {
            "STACKYARD_HOME": str(self.config / "no-home"),
            "XDG_CONFIG_HOME": str(self.config),
            "STACKYARD_URL": self.url,
            "STACKYARD_TOKEN": self.token,
            **extra,
        }

    def local_cli(self, *args: str) -> Result:
        return run_cli(*args, env=self.local_env())

    def remote_cli(self, *args: str, **extra: str) -> Result:
        return run_cli(*args, env=self.remote_env(**extra))


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(settings: Any) -> Iterator[str]:
    """uvicorn on a free port in a thread, with an in-process worker thread."""
    import uvicorn

    from stackyard.api import create_app
    from stackyard.jobs import Worker

    app = create_app(settings, None)
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="on", access_log=False, log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    stop = threading.Event()
    worker = threading.Thread(
        target=Worker(settings, concurrency=2, name="remote-test").run, args=(stop,), daemon=True
    )
    worker.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        server.should_exit = True
        thread.join(timeout=30)
        worker.join(timeout=60)
        sock.close()


def _teardown(home: Path) -> None:
    """Destroy every live environment of ``home`` (stops the workloads)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    with Workspace.open(Settings.load(home=home, actor=ME, environ={})) as ws:
        for e in ws.records.environments():
            if e.status in ("declared", "destroyed"):
                continue
            try:
                lifecycle.destroy(ws, e.name)
            except Exception as exc:
                print(f"teardown: destroy {e.name} failed: {exc}")


@pytest.fixture
def twin(volume_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Twin]:
    """Two identical homes: one used locally, one behind a server."""
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens
    from stackyard.settings import Settings

    monkeypatch.delenv("STACKYARD_DATABASE_URL", raising=False)
    local, remote_home = tmp_path / "local" / "home", tmp_path / "server" / "home"
    for h in (local, remote_home):
        shutil.copytree(volume_home, h)
    config = tmp_path / "config"
    config.mkdir()
    settings = Settings.load(home=remote_home, actor=ME, environ={})
    with Workspace.open(settings) as ws:
        token = tokens.create(ws, user=ME, ttl="1d").token
    # the same audited act on the local home, so both audit logs are as long
    with Workspace.open(Settings.load(home=local, actor=ME, environ={})) as ws:
        tokens.create(ws, user=ME, ttl="1d")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        with serving(settings) as url:
            yield Twin(local, remote_home, url, token, config)
    finally:
        _teardown(remote_home)
        _teardown(local)


# -- comparing local and remote JSON -----------------------------------------------------

#: Keys whose values differ between two runs of the same flow (ids, times, processes).
VOLATILE = frozenset(
    {
        "id",
        "created_at",
        "finished_at",
        "at",
        "expires_at",
        "started_at",
        "claimed_at",
        "lineage",
        "pid",
        "decision",
        "hash",
        "prev_hash",
        "short",
        "deployment",
        "job_id",
        "start",  # a process's start time
        "subject",
    }
)
_HEX_ID = re.compile(r"\b(?:[0-9a-f]{12}|[0-9a-f]{16}|[0-9a-f]{32})\b")  # ids, installation ids


def differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two JSON values differ (dotted paths), for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(a.keys() | b.keys()):
            out += differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{at}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{at}[{i}]")
        ]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]


def normalise(value: Any, homes: tuple[Path, ...]) -> Any:
    """``value`` with ids, timestamps and home paths replaced by placeholders."""
    if isinstance(value, dict):
        # a running workload's digest covers its resolved values: paths inside its home
        volatile = VOLATILE | ({"digest"} if "containers" in value else set())
        return {
            k: "<volatile>" if k in volatile and v is not None else normalise(v, homes)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, homes) for v in value]
    if isinstance(value, float) and value > 1e9:
        return "<time>"
    if isinstance(value, str):
        for h in homes:
            value = value.replace(str(h), "<home>")
        return _HEX_ID.sub("<id>", value)
    return value
