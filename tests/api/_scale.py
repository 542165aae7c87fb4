"""The scale-out site (issue 14): ``stackyard server`` and ``stackyard worker`` processes on
one PostgreSQL store, and the accounting of what they made in the machine's PostgreSQL and
Redis.

Every process shares one home (its local registry holds the components the site binds and
the ``noop-thing`` test double, its runtime folder the workloads' supervisors) and one state
database, a fresh one per test. The platform is one dev-like environment type whose core
instances are the machine's PostgreSQL and Redis (``postgres-external``, ``redis-external``),
and ``count`` environments of it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from _apisupport import ADMIN, free_socket

#: How long the test waits for a process or a job (a bound against hanging, never a timing
#: assertion).
PATIENCE_S = 150.0
#: Kinds of the real objects a workload's resources make, and where they live.
PG_ROLE, PG_DATABASE, REDIS_USER = "postgres.role", "postgres.database", "redis.acl_user"
ACL_OWNERS = "stackyard:acl-owners"


def _jobsite() -> Any:
    """``tests/jobs/_jobsite.py`` (the ``noop-thing`` component and its publisher), loaded
    by path: ``tests/jobs`` is not on ``sys.path`` (its ``conftest`` would shadow ours)."""
    if "_jobsite" in sys.modules:
        return sys.modules["_jobsite"]
    path = Path(__file__).resolve().parents[1] / "jobs" / "_jobsite.py"
    spec = importlib.util.spec_from_file_location("_jobsite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_jobsite"] = module
    spec.loader.exec_module(module)
    return module


#: The components the site publishes (the built-in library's part it binds; not all of it, so
#: that a component elsewhere in the library being worked on cannot stop this test).
COMPONENTS = ("postgres-external", "postgres-database", "redis-external", "redis-cache")


def make_template(home: Path, folder: Path) -> Path:
    """A home with ``COMPONENTS`` and ``noop-thing`` published (made once per session; each
    test copies it)."""
    from unittest import mock

    from stackyard import service
    from stackyard.settings import Settings

    settings = Settings.load(home=home, actor="server-os-user", environ={})
    from stackyard import library

    with mock.patch.object(library, "names", lambda: list(COMPONENTS)):
        service.init_home(settings)
    folder.mkdir(parents=True, exist_ok=True)
    _jobsite()._publish_thing(home, folder)
    return home


def platform(prefix: str, count: int, *, pg_params: str, rd_params: str) -> str:
    """Type ``scale-dev`` and the environments ``<prefix>-0`` … ``<prefix>-<count-1>``."""
    doc = textwrap.dedent(
        f"""\
        apiVersion: stackyard.dev/v1
        kind: EnvironmentType
        metadata: {{name: scale-dev}}
        spec:
          description: Development on the machine's PostgreSQL and Redis.
          runtime: local
          core:
            - {{type: postgres-instance}}
            - {{type: redis-instance}}
          bindings:
            - {{type: postgres-instance, component: postgres-external@^1, params: {pg_params}}}
            - {{type: redis-instance, component: redis-external@^1, params: {rd_params}}}
            - {{type: postgres, component: postgres-database@^1}}
            - {{type: redis, component: redis-cache@^1}}
            - {{type: thing, component: noop-thing@^1}}
        ---
        apiVersion: stackyard.dev/v1
        kind: Team
        metadata: {{name: team-checkout}}
        spec: {{members: []}}
        """
    )
    for i in range(count):
        doc += textwrap.dedent(
            f"""\
            ---
            apiVersion: stackyard.dev/v1
            kind: Environment
            metadata: {{name: {prefix}-{i}}}
            spec: {{type: scale-dev, owner: team-checkout}}
            """
        )
    return doc


def score(name: str, *, slow_ms: int = 0) -> str:
    """A sleeper ``name`` with a PostgreSQL database and a Redis user; with ``slow_ms``, also
    a ``thing`` whose create takes that long (it holds the apply open)."""
    text = textwrap.dedent(
        f"""\
        apiVersion: score.dev/v1b1
        metadata: {{name: {name}}}
        containers:
          main:
            image: none
            command: ["sh", "-c", "sleep 3600"]
            variables:
              PGDATABASE: ${{resources.db.name}}
              PGUSER: ${{resources.db.username}}
              REDIS_USERNAME: ${{resources.cache.username}}
        resources:
          db: {{type: postgres}}
          cache: {{type: redis}}
        """
    )
    if slow_ms:
        text += f"  thing: {{type: thing, params: {{latency_ms: {slow_ms}}}}}\n"
    return text


@dataclass
class Fleet:
    """The site and its processes: servers and workers, each with a log file."""

    home: Path
    database_url: str
    ledger: Path
    logs: Path
    envs: list[str]
    token: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def settings(self, actor: str = ADMIN) -> Any:
        from stackyard.settings import Settings

        return Settings.load(
            home=self.home, actor=actor, database_url=self.database_url, environ={}
        )

    def environ(self) -> dict[str, str]:
        """A server's or worker's environment: this home and store, nothing of the test's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKYARD_")}
        env.update(
            STACKYARD_HOME=str(self.home),
            STACKYARD_DATABASE_URL=self.database_url,
            STACKYARD_NOOP_LEDGER=str(self.ledger),
            STACKYARD_DAEMON="0",
            NO_COLOR="1",
        )
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as out:  # the child keeps its own fd
            proc = subprocess.Popen(
                [sys.executable, "-m", "stackyard.cli", *args],
                env=self.environ(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def start_server(self, name: str) -> str:
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        self._spawn(name, "server", "--port", str(port), "--workers-in-process", "0")
        url = f"http://127.0.0.1:{port}"
        self.urls[name] = url
        return url

    def start_worker(self, name: str, *, heartbeat: str = "1s", stalled_after: str = "5s") -> None:
        self._spawn(
            name,
            "worker",
            "--name",
            name,
            "--concurrency",
            "2",
            "--heartbeat",
            heartbeat,
            "--stalled-after",
            stalled_after,
        )

    def wait_ready(self) -> None:
        """Every server answers ``/readyz`` (store and queue reachable)."""
        deadline = time.monotonic() + 60
        for name, url in self.urls.items():
            while True:
                proc = self.procs[name]
                assert proc.poll() is None, f"{name} exited {proc.returncode}: {self.log(name)}"
                try:
                    if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{name} is not ready: {self.log(name)}"
                time.sleep(0.1)

    def client(self, name: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.urls[name],
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to every live process (workers finish their jobs), SIGKILL past a bound."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)


@contextlib.contextmanager
def fleet(
    template: Path,
    tmp_path: Path,
    *,
    database_url: str,
    prefix: str,
    count: int,
    pg_url: str,
    redis_url: str,
) -> Iterator[Fleet]:
    """The site set up (home, store, platform, ``count`` environments created, an admin
    token); at exit, its processes stopped and its environments destroyed."""
    from _platform import _binding_params
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens
    from stackyard.policy.rbac import ORG, Grant, Role
    from stackyard.state import open_store

    home = tmp_path / "home"
    shutil.copytree(template, home)
    logs = tmp_path / "logs"
    logs.mkdir()
    envs = [f"{prefix}-{i}" for i in range(count)]
    site = Fleet(home, database_url, tmp_path / "ledger.jsonl", logs, envs)
    settings = site.settings()
    with open_store(settings) as store:
        from stackyard.state.governance import Governance

        Governance(store).grant(Grant(f"user:{ADMIN}", Role.ADMIN, ORG), by="test")
    pg_params, rd_params = _binding_params(pg_url, redis_url)
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "platform.yaml").write_text(
        platform(prefix, count, pg_params=pg_params, rd_params=rd_params)
    )
    try:
        with Workspace.open(settings) as ws:
            apply_dir(ws.platform, ws.access, tmp_path / "platform", confirm=lambda _q: True)
            for env in envs:
                lifecycle.create(ws, env)
            site.token = tokens.create(ws, user=ADMIN, ttl="1h").token
        yield site
    finally:
        site.stop()
        _destroy(site)


def _destroy(site: Fleet) -> None:
    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace

    previous = os.environ.get("STACKYARD_NOOP_LEDGER")
    os.environ["STACKYARD_NOOP_LEDGER"] = str(site.ledger)  # the things' deletes need it

    def destroy(env: str) -> None:
        try:
            with Workspace.open(site.settings()) as ws:
                lifecycle.destroy(ws, env)
        except Exception as exc:  # report, and keep tearing down
            print(f"teardown: destroy {env} failed: {exc}")

    try:  # the environments are independent: destroyed side by side
        with ThreadPoolExecutor(len(site.envs)) as pool:
            list(pool.map(destroy, site.envs))
    finally:
        if previous is None:
            os.environ.pop("STACKYARD_NOOP_LEDGER", None)
        else:
            os.environ["STACKYARD_NOOP_LEDGER"] = previous


# -- events --------------------------------------------------------------------------------


def sse_events(client: httpx.Client, job_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A job's ``progress`` events and its ``end`` (the job), read from its event stream."""
    import json

    progress: list[dict[str, Any]] = []
    end: dict[str, Any] | None = None
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200, response.read()
        kind, data = "message", ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data += line.split(":", 1)[1].strip()
            elif line == "" and data:
                if kind == "progress":
                    progress.append(json.loads(data))
                elif kind == "end":
                    end = json.loads(data)
                kind, data = "message", ""
            if end is not None:
                break
    assert end is not None, f"the stream of {job_id} ended without an end event"
    return progress, end


def instant(at: Any) -> float:
    """An event's or a job's time as seconds since the epoch (a number or ISO 8601)."""
    if isinstance(at, int | float):
        return float(at)
    return datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp()


def overlaps(spans: Sequence[tuple[float, float, str]]) -> list[tuple[str, str]]:
    """Pairs of spans (``start, end, label``) that overlap."""
    ordered = sorted(spans)
    out = []
    for i, (_s1, e1, a) in enumerate(ordered):
        for s2, _e2, b in ordered[i + 1 :]:
            if s2 < e1:
                out.append((a, b))
    return out


# -- the real world against the state ------------------------------------------------------


def labelled(pg_url: str, redis_url: str, prefix: str, envs: Sequence[str]) -> Counter[str]:
    """Every real object of the environments: PostgreSQL roles and databases whose ownership
    label names one of ``envs`` (or whose name starts with ``prefix``), and Redis ACL users
    labelled so (or so named); as ``"<kind> <name>"``, counted."""
    found: Counter[str] = Counter()
    likes = [f"stackyard:%:{env}:%" for env in envs]
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
        for kind, query in (
            (
                PG_ROLE,
                "SELECT rolname FROM pg_authid WHERE coalesce(shobj_description(oid,"
                " 'pg_authid'), '') LIKE ANY(%(likes)s) OR left(rolname, %(m)s) = %(p)s",
            ),
            (
                PG_DATABASE,
                "SELECT datname FROM pg_database WHERE coalesce(shobj_description(oid,"
                " 'pg_database'), '') LIKE ANY(%(likes)s) OR left(datname, %(m)s) = %(p)s",
            ),
        ):
            for (name,) in conn.execute(query, {"likes": likes, "m": len(prefix), "p": prefix}):
                found[f"{kind} {name}"] += 1
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    try:
        owners = {str(k): str(v) for k, v in client.hgetall(ACL_OWNERS).items()}
        users = {str(u) for u in client.acl_users()}
    finally:
        client.close()
    for user, value in owners.items():
        label = value.removeprefix("deleting:")  # a tombstone left behind is a leak too
        if label.startswith("stackyard:") and any(f":{env}:" in label for env in envs):
            found[f"{REDIS_USER} {user}"] += 1
            if user not in users:
                found[f"{REDIS_USER} {user} (label without user)"] += 1
    for user in users:
        if user.startswith(prefix) and f"{REDIS_USER} {user}" not in found:
            found[f"{REDIS_USER} {user} (user without label)"] += 1
    return found


def recorded(settings: Any, envs: Sequence[str]) -> tuple[Counter[str], dict[str, list[str]]]:
    """The real objects the state records for ``envs`` (``"<kind> <physical name>"``,
    counted), and each environment's pending intents."""
    from stackyard.state import open_store

    found: Counter[str] = Counter()
    pending: dict[str, list[str]] = {}
    with open_store(settings) as store:
        for env in envs:
            for r in store.snapshot(env).resources.values():
                if r.kind in (PG_ROLE, PG_DATABASE, REDIS_USER):
                    found[f"{r.kind} {r.physical_name}"] += 1
            intents = store.intents(env)
            if intents:
                pending[env] = [f"{i.op} {i.address}" for i in intents]
    return found, pending


def workload_kinds(settings: Any, envs: Sequence[str]) -> dict[str, Counter[str]]:
    """Per ``env/workload``: how many resources of each kind the state records."""
    from stackyard.state import open_store

    out: dict[str, Counter[str]] = {}
    with open_store(settings) as store:
        for env in envs:
            for address, r in store.snapshot(env).resources.items():
                workload = address.split("#", 1)[-1].split(".", 1)[0] if "#" in address else ""
                out.setdefault(f"{env}/{workload}", Counter())[r.kind] += 1
    return out


__all__ = [
    "COMPONENTS",
    "PATIENCE_S",
    "Fleet",
    "fleet",
    "instant",
    "labelled",
    "make_template",
    "overlaps",
    "platform",
    "recorded",
    "score",
    "sse_events",
    "workload_kinds",
]
