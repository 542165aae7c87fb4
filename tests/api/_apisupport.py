"""Test-only support of the API tests (imported by their ``conftest`` and modules under this
unique name: every test folder has a ``conftest``).

A real API server for the tests: uvicorn in a thread on a free 127.0.0.1 port, serving a
home with the library published, the ``lite`` platform applied and one environment created;
tokens for the users the tests act as; optionally an in-process worker; and a capture of
every log line the server wrote (for the canary checks).
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _lite import lite_platform

ADMIN = "root-admin"
#: A component whose only output is a random secret (type ``canary``).
CANARY = Path(__file__).parent / "canary"


class LogCapture(logging.Handler):
    """Every formatted record, from every logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Live:
    """A running server and what tests need to call it."""

    url: str
    home: Path
    settings: Any
    env: str
    logs: LogCapture
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        """A token for ``user`` (made once, by the admin, through the service layer)."""
        if user not in self.tokens:
            from stackyard.environments.workspace import Workspace
            from stackyard.identity import tokens

            with Workspace.open(self.as_user(ADMIN)) as ws:
                self.tokens[user] = tokens.create(ws, user=user, ttl="1d").token
        return self.tokens[user]

    def as_user(self, user: str) -> Any:
        import dataclasses

        return dataclasses.replace(self.settings, actor=user)

    def client(self, user: str | None = ADMIN, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=60)

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end: {job}")


def free_socket() -> socket.socket:
    # IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(settings: Any, *, worker: bool, config: Any = None) -> Iterator[tuple[str, LogCapture]]:
    """uvicorn on a free port in a thread (and a worker thread when ``worker``)."""
    import uvicorn

    from stackyard.portal import site

    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    previous = root.level
    root.setLevel(logging.INFO)
    # a server made with access_log=False (tests/remote) stops uvicorn.access propagating,
    # for the whole process: these servers' access lines are captured
    logging.getLogger("uvicorn.access").propagate = True
    app = site(settings, config)  # the API and the portal, as `stackyard server` serves them
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="on", access_log=True, log_level="info")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    stop = threading.Event()
    worker_thread = None
    if worker:
        from stackyard.jobs import Worker

        worker_thread = threading.Thread(
            target=Worker(settings, concurrency=2, name="test").run, args=(stop,), daemon=True
        )
        worker_thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}", capture
    finally:
        stop.set()
        server.should_exit = True
        thread.join(timeout=30)
        if worker_thread is not None:
            worker_thread.join(timeout=60)
        sock.close()
        root.removeHandler(capture)
        root.setLevel(previous)


def prepare(
    home: Path, library_template: Path, env: str, *, database_url: str | None = None
) -> Any:
    """Copy the library home, make ``root-admin`` the only admin, apply the lite platform and
    create ``env``; the server's settings (its store in ``database_url`` when given)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import ORG, Grant, Role
    from stackyard.settings import Settings
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(library_template, home)
    settings = Settings.load(
        home=home, actor="server-os-user", database_url=database_url, environ={}
    )
    with open_store(settings) as store:
        Governance(store).grant(Grant(f"user:{ADMIN}", Role.ADMIN, ORG), by="test")
    platform = home.parent / "platform"
    platform.mkdir(exist_ok=True)
    (platform / "platform.yaml").write_text(
        lite_platform(env).replace(
            "    - {type: volume, component: local-volume@^1}\n",
            "    - {type: volume, component: local-volume@^1}\n"
            "    - {type: canary, component: canary-secret@^1}\n",
        )
    )
    import dataclasses

    with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        lifecycle.create(ws, env)
    return settings


def teardown(settings: Any) -> None:
    """Destroy every live environment (stops the workloads, removes the volumes)."""
    import dataclasses

    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace

    with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
        for e in ws.records.environments():
            if e.status in ("declared", "destroyed"):
                continue
            try:
                lifecycle.destroy(ws, e.name)
            except Exception as exc:
                print(f"teardown: destroy {e.name} failed: {exc}")


def sleeper(name: str) -> str:
    from _lite import sleeper_score

    return sleeper_score(name)


Factory = Callable[..., Any]
