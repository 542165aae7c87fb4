"""API bench: read latency under 50 clients, deploy throughput with 1 and 3 workers, and a
no-change deploy through the API, on the machine's PostgreSQL (issue 14).

    python bench/api.py                         # every part, default sizes
    python bench/api.py --parts reads --processes 1,2 --duration 15
    python bench/api.py --parts throughput,nochange --deploys 30

Everything runs against real processes started the way an operator starts them: a fresh
PostgreSQL database on ``--pg-url``'s server (created here, dropped at the end) is the store
and the queue (``STACKYARD_DATABASE_URL``), in a temporary ``STACKYARD_HOME`` (the local
registry and keys); ``stackyard server --workers-in-process 0`` serves the API and
``stackyard worker`` processes run the jobs. Setup is untimed: ``service.init_home`` publishing
only ``local-volume`` (the rest of the library is not needed), then through the CLI a platform of one environment type ``lite`` (a local volume per
workload, workloads are local processes) with ``--envs`` environments (``api1`` …), ``env
create`` of each, the user ``bench-dev`` made ``viewer`` of the organisation and
``developer`` of the type, and a token for them: every request is that user's, through the
token check and RBAC as any client's.

**Reads.** ``GET /api/v1/environments`` and ``GET /api/v1/environments/{env}/status`` (the
environment cycles over the ``--envs``, each holding the workloads the throughput part
deployed, so a status observes real resources and processes). ``--clients`` (50) clients,
each one keep-alive HTTP/1.1 connection issuing one request at a time and alternating the two
routes, spread over ``--client-procs`` load processes (raw asyncio sockets: a few tens of µs
of client CPU per request). Two loads, each ``--duration`` seconds after ``--warmup``
seconds of untimed closed load:

- ``closed``: every client sends its next request as soon as its previous one is answered
  (back-to-back). This is the server's capacity: ``requests_per_s`` is its throughput and
  the latency is mostly queueing (Little's law: 50 / throughput).
- ``open``: every client sends ``--rate`` requests per second (50 × rate in all) at fixed
  times, evenly phased; a request's latency runs from its *scheduled* time to the end of its
  response, so a server that falls behind is charged for the wait (no coordinated
  omission). A client still waiting at its next slot sends as soon as it is answered (one
  request in flight per client), so ``requests_per_s`` falls below ``offered_per_s`` when
  the server cannot keep up.

``requests_per_s`` is the answered requests over the time from the load's start to its last
answer. Each load runs once per ``--processes`` value (the server's ``--processes N``: uvicorn worker
processes sharing the socket). Figures per route: ``p50_ms``, ``p90_ms``, ``p99_ms``,
``max_ms``, ``count``; ``errors`` counts non-200 answers and broken connections;
``server_cpu_ms_per_request`` is the CPU the server's processes used per answered request
(what a request costs, whatever else loads the machine) and ``machine_busy_pct`` the whole
machine's CPU use during the load. ``read_cache`` counts how the server's read cache
(docs/api.md) answered: ``hit`` (from memory), ``stale`` (the last status while it is observed
again) and ``miss`` (computed), with one server process (each process counts its own). Client and server share the machine's CPUs.

**Throughput.** For 1 then 3 ``stackyard worker`` processes (``--worker-concurrency`` jobs
each, default 1): a warm-up batch of one deploy per environment (untimed), then ``--deploys``
deploys of new workloads (a ``sleep`` process and a volume each), round-robin over the
environments, submitted at once through the API. ``deploys_per_min`` is the number of
deploys over the time from the first submission to the last job's end (server timestamps);
``ratio`` is 3 workers' over 1 worker's.

**No-change deploy.** With one worker: a workload deployed once (untimed), then
``--nochange-runs`` deploys of the same Score file, one after another. Each is timed from
just before ``POST …/deploy`` to the first ``GET /api/v1/jobs/{id}`` (polled every 10 ms)
that shows the job ended; ``submit_ms`` is the POST alone, ``queue_ms`` the job's created to
started, ``run_ms`` started to finished (server timestamps).

``--store sqlite`` runs the no-change deploy and the reads on the home's own SQLite store
instead: one server process (its default, with its in-process worker), no database made.

Prints one JSON object (progress on stderr). Everything it made is removed at the end, also
on failure, Ctrl-C or SIGTERM: the servers and workers stopped (their process groups), every
environment destroyed, leftover processes stopped, the home removed and the database
dropped; it exits 1 when something was left (``leftovers``) or a part failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as pyplatform
import secrets
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import (
    DEFAULT_PG_URL,
    Log,
    make_log,
    masked,
    quantile,
    r3,
    run_child,
    temp_home,
    terminate_on_sigterm,
)

PARTS = ("throughput", "nochange", "reads")
USER = "bench-dev"
ENV_TYPE = "lite"
FINAL = ("succeeded", "failed", "cancelled")
TARGETS = {
    "read_p50_ms": 20.0,
    "read_p99_ms": 100.0,
    "throughput_ratio": 1.5,
    "nochange_p50_s": 0.3,
}
COMMAND_TIMEOUT_S = 300
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0


class BenchFailed(RuntimeError):
    """A setup command or a part failed: its figures would mean nothing."""


# -- the load processes --------------------------------------------------------------------------


async def _send(conn: list[Any], host: str, port: int, raw: bytes) -> int:
    """One request on the client's connection (opened, or opened again once after the
    server closed a kept-alive one); its status."""
    for attempt in range(2):
        reused = conn[0] is not None
        if conn[0] is None:
            conn[0] = await asyncio.open_connection(host, port, limit=1 << 22)
        reader, writer = conn[0]
        try:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, chunked, close = 0, False, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            if close:
                writer.close()
                conn[0] = None
            return status
        except (ConnectionError, asyncio.IncompleteReadError):
            conn[0] = None
            if not reused or attempt:
                raise
    raise ConnectionError("unreachable")


async def _client(
    spec: dict[str, Any], index: int, samples: list[tuple[int, float, int]], errors: list[str]
) -> None:
    host, port, paths = spec["host"], spec["port"], spec["paths"]
    raws = [
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {spec['token']}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        for _route, path in paths
    ]
    clients, rate = spec["clients"], spec.get("rate")
    start, end = spec["start_at"], spec["start_at"] + spec["duration"]
    conn: list[Any] = [None]
    k = 0
    lists = [i for i, (route, _) in enumerate(paths) if route == "environments"]
    statuses = [i for i, (route, _) in enumerate(paths) if route == "status"]
    await asyncio.sleep(max(0.0, start - time.time()))
    phase = (index / clients) / rate if rate else 0.0
    while True:
        if rate:
            scheduled = start + phase + k / rate
            if scheduled >= end:
                break
            await asyncio.sleep(max(0.0, scheduled - time.time()))
        else:
            scheduled = time.time()
            if scheduled >= end:
                break
        # the routes alternate; the status cycles over the environments
        which = lists[0] if (index + k) % 2 == 0 else statuses[(index + k // 2) % len(statuses)]
        try:
            status = await _send(conn, host, port, raws[which])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            status = 0
            if len(errors) < 5:
                errors.append(f"{type(exc).__name__}: {exc}")
        samples.append((which, time.time() - scheduled, status))
        k += 1
    if conn[0] is not None:
        conn[0][1].close()


def load_child() -> int:
    """``--load-child``: run the clients the JSON spec on stdin describes; print the samples
    (``[route index, seconds, status]``) and the route names as JSON."""
    spec = json.loads(sys.stdin.read())
    samples: list[tuple[int, float, int]] = []
    errors: list[str] = []

    async def main() -> None:
        first = spec["first_client"]
        await asyncio.gather(
            *(_client(spec, first + i, samples, errors) for i in range(spec["count"]))
        )

    asyncio.run(main())
    routes = [route for route, _ in spec["paths"]]
    json.dump(
        {"routes": routes, "samples": samples, "errors": errors, "last_end": time.time()},
        sys.stdout,
    )
    return 0


# -- processes -----------------------------------------------------------------------------------


def stackyard_argv() -> list[str]:
    """The ``stackyard`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / "stackyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stackyard.cli"]


class Procs:
    """The servers and workers the bench started, each the leader of its own process group
    (uvicorn's worker processes and procrastinate's threads stay in it); stopped by group id."""

    def __init__(self, home: Path, log: Log) -> None:
        self.home = home
        self.log = log
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.left: list[str] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        self.running[name] = proc
        return proc

    def output(self, name: str) -> str:
        try:
            return (self.home / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, name: str) -> None:
        """SIGTERM to the group (a worker finishes its running jobs), SIGKILL after the grace;
        a group that had to be killed is a leftover."""
        proc = self.running.pop(name)
        pgid = proc.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.left.append(f"{name} (pid {pgid}) ignored SIGTERM for {STOP_GRACE_S:g} s")
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(pgid):
            self.left.append(f"processes of {name} (group {pgid}) outlived it")
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.running):
            try:
                self.stop(name)
            except BaseException as exc:
                self.left.append(f"could not stop {name}: {type(exc).__name__}")


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still counts; reap it first
    return _has_live_member(pgid)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of group ``pgid`` (from ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def _has_live_member(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# -- the database --------------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name`` (scheme ``postgresql``)."""
    p = urlsplit(admin_url)
    return urlunsplit(("postgresql", p.netloc, f"/{name}", p.query, ""))


@contextmanager
def fresh_database(admin_url: str, log: Log, leftovers: dict[str, Any]) -> Iterator[str]:
    """A new database on ``admin_url``'s server; dropped on the way out (its sessions ended
    first). ``leftovers["database"]`` names it when it could not be dropped."""
    import psycopg

    name = f"stackyard_apibench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    log(f"database {name} created")
    try:
        yield database_url(admin_url, name)
    finally:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                found = conn.execute(
                    "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
            leftovers["database"] = [name] if found and found[0] else []
            log(f"database {name} dropped")
        except Exception as exc:
            leftovers["database"] = [f"{name}: {masked(str(exc))}"]


# -- the bench -----------------------------------------------------------------------------------


def platform_text(envs: list[str]) -> str:
    """One environment type ``lite`` (a local volume per workload), a team, the environments."""
    docs = [
        textwrap.dedent(
            f"""\
            apiVersion: stackyard.dev/v1
            kind: EnvironmentType
            metadata: {{name: {ENV_TYPE}}}
            spec:
              description: Volumes only; workloads are local processes.
              runtime: local
              bindings:
                - {{type: volume, component: local-volume@^1}}
            """
        ),
        "apiVersion: stackyard.dev/v1\nkind: Team\nmetadata: {name: bench}\nspec: {members: []}\n",
    ]
    docs += [
        f"apiVersion: stackyard.dev/v1\nkind: Environment\nmetadata: {{name: {e}}}\n"
        f"spec: {{type: {ENV_TYPE}, owner: bench}}\n"
        for e in envs
    ]
    return "---\n".join(docs)


def score(name: str) -> str:
    """A workload ``name``: a ``sleep`` process given one volume's path."""
    return textwrap.dedent(
        f"""\
        apiVersion: score.dev/v1b1
        metadata: {{name: {name}}}
        containers:
          main:
            image: none
            command: ["sh", "-c", "sleep 3600"]
            variables:
              DATA_DIR: ${{resources.data.path}}
        resources:
          data:
            type: volume
        """
    )


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ms(values: list[float]) -> dict[str, Any]:
    """p50, p90, p99 and max in ms of seconds ``values``, and their count."""
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "count": 0}
    return {
        "p50_ms": r3(quantile(values, 0.5) * 1000),
        "p90_ms": r3(quantile(values, 0.9) * 1000),
        "p99_ms": r3(quantile(values, 0.99) * 1000),
        "max_ms": r3(max(values) * 1000),
        "count": len(values),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path, db_url: str | None, log: Log) -> None:
        self.args = args
        self.home = home
        self.log = log
        self.envs = [f"api{i + 1}" for i in range(args.envs)]
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "STACKYARD_HOME": str(home),
            "STACKYARD_DAEMON": "0",
        }
        self.sqlite = db_url is None
        if db_url is None:  # the home's SQLite, served with the in-process worker
            self.env.pop("STACKYARD_DATABASE_URL", None)
            os.environ.pop("STACKYARD_DATABASE_URL", None)
        else:
            self.env["STACKYARD_DATABASE_URL"] = db_url
            os.environ["STACKYARD_DATABASE_URL"] = db_url  # the final destroy's store
        self.procs = Procs(home, log)
        self.token = ""
        self.port = 0
        self.setup_s: dict[str, float] = {}
        self.workers = 0

    # -- setup --------------------------------------------------------------------------------

    def cli(self, *argv: str, what: str) -> str:
        res, elapsed = run_child(
            [*stackyard_argv(), *argv], timeout=COMMAND_TIMEOUT_S, env=self.env
        )
        if res.returncode != 0:
            tail = (res.stderr.strip() or res.stdout.strip())[-1500:]
            raise BenchFailed(f"{what} exited {res.returncode}: {masked(tail)}")
        self.setup_s[what] = round(self.setup_s.get(what, 0.0) + elapsed, 2)
        return res.stdout

    def init_home(self) -> None:
        """``service.init_home`` publishing only ``local-volume`` (all the platform binds):
        the rest of the library is not needed here, and may be mid-edit in a working tree."""
        from unittest import mock

        import stackyard.service as service
        from stackyard.settings import Settings

        t0 = time.perf_counter()
        with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
            service.init_home(Settings.load())
        self.setup_s["init"] = round(time.perf_counter() - t0, 2)

    def setup(self) -> None:
        self.init_home()
        folder = self.home / "bench-platform"
        folder.mkdir()
        (folder / "platform.yaml").write_text(platform_text(self.envs))
        self.cli("platform", "apply", str(folder), "--yes", what="platform_apply")
        t0 = time.perf_counter()
        creates = [
            subprocess.Popen(
                [*stackyard_argv(), "env", "create", e],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for e in self.envs
        ]
        failed = []
        for e, proc in zip(self.envs, creates, strict=True):
            _, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
            if proc.returncode != 0:
                failed.append(f"{e}: {masked(err.decode(errors='replace')[-500:])}")
        self.setup_s["env_create"] = round(time.perf_counter() - t0, 2)
        if failed:
            raise BenchFailed(f"env create failed: {failed}")
        self.cli("access", "grant", "viewer", "--user", USER, what="grants")
        self.cli("access", "grant", "developer", "--user", USER, "--type", ENV_TYPE, what="grants")
        out = self.cli("token", "create", "--user", USER, "--ttl", "1d", "-o", "json", what="token")
        self.token = json.loads(out)["token"]
        self.log(f"setup done: {self.setup_s}")

    # -- servers and workers --------------------------------------------------------------

    def start_server(self, processes: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = [*stackyard_argv(), "server", "--port", str(self.port)]
        if not self.sqlite:  # on SQLite the server's own worker runs the jobs (its default)
            argv += ["--workers-in-process", "0"]
        if processes > 1:
            argv += ["--processes", str(processes)]
        argv += shlex.split(self.args.server_args)
        self.procs.start("server", argv, self.env)
        self.wait_ready(processes)
        self.log(f"server on port {self.port} with {processes} process(es)")

    def wait_ready(self, processes: int) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            proc = self.procs.running["server"]
            if proc.poll() is not None:
                raise BenchFailed(
                    f"the server exited {proc.returncode}: "
                    f"{masked(self.procs.output('server')[-1500:])}"
                )
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise BenchFailed(f"the server did not answer /readyz in {READY_TIMEOUT_S:g} s")
        if processes > 1:  # every uvicorn worker process answers once it logged its start
            while time.monotonic() < deadline:
                if self.procs.output("server").count("Application startup complete") >= processes:
                    return
                time.sleep(0.1)
            raise BenchFailed(f"not every server process started in {READY_TIMEOUT_S:g} s")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_workers(self, count: int) -> None:
        if self.sqlite:
            raise BenchFailed("worker processes need a PostgreSQL store (--store postgres)")
        for i in range(count):
            name = f"worker{i + 1}"
            argv = [
                *stackyard_argv(),
                "worker",
                "--concurrency",
                str(self.args.worker_concurrency),
                "--name",
                f"bench-{name}",
            ]
            self.procs.start(name, argv, self.env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for i in range(count):
            name = f"worker{i + 1}"
            while "running jobs" not in self.procs.output(name):
                proc = self.procs.running[name]
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchFailed(
                        f"{name} did not start: {masked(self.procs.output(name)[-1500:])}"
                    )
                time.sleep(0.05)
        self.workers = count
        self.log(f"{count} worker(s) running")

    def stop_workers(self) -> None:
        for i in range(self.workers):
            self.procs.stop(f"worker{i + 1}")
        self.workers = 0

    def client(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    # -- jobs -------------------------------------------------------------------------------

    def submit_deploy(self, c: Any, env: str, workload: str) -> dict[str, Any]:
        r = c.post(
            f"/api/v1/environments/{env}/deploy", json={"scores": {"score.yaml": score(workload)}}
        )
        if r.status_code != 202:
            raise BenchFailed(f"deploy {workload} in {env}: {r.status_code} {masked(r.text)}")
        job: dict[str, Any] = r.json()
        return job

    def wait_jobs(self, c: Any, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                raise BenchFailed(f"{len(ids) - len(done)} job(s) did not end in {timeout:g} s")
            for job_id in ids:
                if job_id in done:
                    continue
                job = c.get(f"/api/v1/jobs/{job_id}").json()
                if job.get("status") in FINAL:
                    done[job_id] = job
            time.sleep(0.2)
        return [done[i] for i in ids]

    def batch(self, c: Any, names: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], float]:
        """Submit every ``(env, workload)`` deploy at once; the ended jobs and the wall time
        from the first submission to the last end (epoch seconds of the server's records)."""
        t0 = time.time()
        ids = [self.submit_deploy(c, env, w)["id"] for env, w in names]
        jobs = self.wait_jobs(c, ids)
        failed = [j for j in jobs if j["status"] != "succeeded"]
        if failed:
            raise BenchFailed(
                f"{len(failed)} deploy(s) failed: {masked(json.dumps(failed[0].get('error')))}"
            )
        end = max(_ts(j["finished_at"]) for j in jobs)
        return jobs, end - t0

    # -- the parts --------------------------------------------------------------------------

    def throughput(self) -> dict[str, Any]:
        rounds: dict[str, Any] = {}
        with self.client() as c:
            for workers in (1, 3):
                self.start_workers(workers)
                try:
                    warm = [(e, f"warm{workers}x{i}") for i, e in enumerate(self.envs)]
                    self.batch(c, warm)
                    names = [
                        (self.envs[i % len(self.envs)], f"t{workers}x{i}")
                        for i in range(self.args.deploys)
                    ]
                    self.log(f"{workers} worker(s): {len(names)} deploys at once")
                    jobs, wall = self.batch(c, names)
                finally:
                    self.stop_workers()
                runs = [_ts(j["finished_at"]) - _ts(j["started_at"]) for j in jobs]
                waits = [_ts(j["started_at"]) - _ts(j["created_at"]) for j in jobs]
                rounds[str(workers)] = {
                    "deploys": len(jobs),
                    "wall_s": r3(wall),
                    "deploys_per_min": r3(len(jobs) / wall * 60),
                    "job_run_s": {"p50": r3(quantile(runs, 0.5)), "max": r3(max(runs))},
                    "queue_wait_s": {"p50": r3(quantile(waits, 0.5)), "max": r3(max(waits))},
                    "by_worker": _count(j.get("worker") or "?" for j in jobs),
                }
                self.log(f"{workers} worker(s): {rounds[str(workers)]['deploys_per_min']}/min")
        one, three = rounds["1"]["deploys_per_min"], rounds["3"]["deploys_per_min"]
        return {
            "envs": len(self.envs),
            "deploys": self.args.deploys,
            "worker_concurrency": self.args.worker_concurrency,
            "workers": rounds,
            "ratio": r3(three / one) if one else None,
        }

    def nochange(self) -> dict[str, Any]:
        env, name = self.envs[0], "steady"
        totals, submits, queues, runs = [], [], [], []
        if not self.sqlite:
            self.start_workers(1)
        try:
            with self.client() as c:
                self.batch(c, [(env, name)])
                for i in range(self.args.warmup_deploys + self.args.nochange_runs):
                    t0 = time.perf_counter()
                    job = self.submit_deploy(c, env, name)
                    t1 = time.perf_counter()
                    while job["status"] not in FINAL:
                        time.sleep(0.01)
                        job = c.get(f"/api/v1/jobs/{job['id']}").json()
                    t2 = time.perf_counter()
                    if job["status"] != "succeeded" or job["result"].get("changed"):
                        raise BenchFailed(
                            f"a no-change deploy {job['status']}: {masked(json.dumps(job.get('error')))}"
                        )
                    if i < self.args.warmup_deploys:
                        continue
                    totals.append(t2 - t1 + (t1 - t0))
                    submits.append(t1 - t0)
                    queues.append(_ts(job["started_at"]) - _ts(job["created_at"]))
                    runs.append(_ts(job["finished_at"]) - _ts(job["started_at"]))
        finally:
            self.stop_workers()
        return {
            "runs": len(totals),
            "p50_s": r3(quantile(totals, 0.5)),
            "p90_s": r3(quantile(totals, 0.9)),
            "max_s": r3(max(totals)),
            "submit_p50_ms": r3(quantile(submits, 0.5) * 1000),
            "queue_p50_ms": r3(quantile(queues, 0.5) * 1000),
            "run_p50_ms": r3(quantile(runs, 0.5) * 1000),
            "run_list_s": [r3(t) for t in totals],
        }

    def load(self, *, duration: float, rate: float | None, processes: int = 1) -> dict[str, Any]:
        """One load round of ``--clients`` over ``--client-procs`` processes."""
        paths = [("environments", "/api/v1/environments")] + [
            ("status", f"/api/v1/environments/{e}/status") for e in self.envs
        ]
        clients, procs = self.args.clients, max(1, min(self.args.client_procs, self.args.clients))
        start_at = time.time() + 1.5
        children = []
        for p in range(procs):
            first = clients * p // procs
            count = clients * (p + 1) // procs - first
            spec = {
                "host": "127.0.0.1",
                "port": self.port,
                "token": self.token,
                "paths": paths,
                "clients": clients,
                "first_client": first,
                "count": count,
                "start_at": start_at,
                "duration": duration,
                "rate": rate,
            }
            errfile = self.home / f"load{p}.err"
            with open(errfile, "wb") as err:
                child = subprocess.Popen(
                    [sys.executable, __file__, "--load-child"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                )
            assert child.stdin is not None
            child.stdin.write(json.dumps(spec).encode())
            child.stdin.close()
            children.append((child, errfile))
        server = self.procs.running["server"].pid
        # one process's counters (with several, a scrape reaches any one of them)
        cache0 = self.cache_counts() if processes == 1 else {}
        cpu0, (busy0, all0) = group_cpu_s(server), machine_cpu()
        samples: dict[str, list[float]] = {}
        errors, messages, total, last_end = 0, [], 0, start_at + duration
        for child, errfile in children:
            assert child.stdout is not None
            out = child.stdout.read()
            child.wait(timeout=60)
            if child.returncode != 0:
                tail = errfile.read_text(errors="replace")[-800:]
                raise BenchFailed(f"a load process exited {child.returncode}: {masked(tail)}")
            got = json.loads(out)
            for route, latency, status in got["samples"]:
                total += 1
                if status != 200:
                    errors += 1
                    continue
                samples.setdefault(got["routes"][route], []).append(latency)
            messages += got["errors"]
            last_end = max(last_end, got["last_end"])
        cpu1, (busy1, all1) = group_cpu_s(server), machine_cpu()
        cache1 = self.cache_counts() if processes == 1 else {}
        cache = {k: int(cache1.get(k, 0) - cache0.get(k, 0)) for k in sorted(cache1)}
        return {
            # answered requests over the time from the start to the last answer
            "requests_per_s": r3(total / (last_end - start_at)),
            **({"offered_per_s": r3(clients * rate)} if rate else {}),
            # CPU the server's processes used per answered request (the loaders' start
            # and end included): what a request costs, whatever else loads the machine
            "server_cpu_ms_per_request": r3((cpu1 - cpu0) / max(1, total) * 1000),
            "machine_busy_pct": r3(100 * (busy1 - busy0) / max(1.0, all1 - all0)),
            # how the server's read cache answered (with one server process)
            **({"read_cache": cache} if cache else {}),
            "errors": errors,
            "error_examples": [masked(m) for m in messages[:3]],
            "routes": {route: ms(v) for route, v in sorted(samples.items())},
        }

    def cache_counts(self) -> dict[str, float]:
        """The read cache's answers so far (``stackyard_http_read_cache_total`` of /metrics);
        empty when the server has none."""
        import re

        with self.client() as c:
            text = c.get("/metrics").text
        pattern = r'^stackyard_http_read_cache_total\{result="(\w+)"\} (\S+)$'
        return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}

    def reads(self) -> dict[str, Any]:
        runs = []
        for processes in self.args.processes:
            self.start_server(processes)
            try:
                self.log(f"reads, {processes} process(es): warm-up {self.args.warmup:g} s")
                self.load(duration=self.args.warmup, rate=None, processes=processes)
                for load in self.args.loads:
                    rate = self.args.rate if load == "open" else None
                    self.log(
                        f"reads, {processes} process(es): {load} load {self.args.duration:g} s"
                    )
                    res = self.load(duration=self.args.duration, rate=rate, processes=processes)
                    runs.append(
                        {
                            "processes": processes,
                            "load": load,
                            **({"rate_per_client": rate} if rate else {}),
                            "duration_s": self.args.duration,
                            **res,
                        }
                    )
                    self.log(f"  {json.dumps(runs[-1]['routes'])} {runs[-1]['requests_per_s']}/s")
            finally:
                self.procs.stop("server")
        return {"clients": self.args.clients, "client_procs": self.args.client_procs, "runs": runs}


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine(admin_url: str) -> dict[str, Any]:
    import psycopg

    import stackyard

    try:
        with psycopg.connect(admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        pg = row[0] if row else None
    except Exception:
        pg = None
    return {
        "cpus": os.cpu_count(),
        "python": pyplatform.python_version(),
        "postgres": pg,
        "stackyard": stackyard.__version__,
        "loadavg_start": loadavg(),
    }


def verdict(out: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    met: dict[str, Any] = {}
    reads = out.get("reads")
    if reads:
        for run in reads["runs"]:
            key = f"reads_{run['load']}_{run['processes']}p"
            met[key] = (
                all(
                    (r["p50_ms"] or 1e9) <= TARGETS["read_p50_ms"]
                    and (r["p99_ms"] or 1e9) <= TARGETS["read_p99_ms"]
                    for r in run["routes"].values()
                )
                and run["errors"] == 0
            )
    if out.get("throughput"):
        ratio = out["throughput"]["ratio"]
        met["throughput_ratio"] = ratio is not None and ratio >= TARGETS["throughput_ratio"]
    if out.get("nochange"):
        met["nochange_p50_s"] = out["nochange"]["p50_s"] <= TARGETS["nochange_p50_s"]
    return TARGETS, met


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--parts",
        default=None,
        help=f"some of {','.join(PARTS)} (default all; sqlite: no throughput)",
    )
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a server where a database may be made")
    p.add_argument(
        "--store",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="sqlite: the home's own store, one server process with its in-process worker "
        "(no throughput part)",
    )
    p.add_argument("--envs", type=int, default=6)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of each read load")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of untimed load first")
    p.add_argument("--loads", default="closed,open", help="closed, open or both")
    p.add_argument("--rate", type=float, default=2.0, help="requests/s per client (open load)")
    p.add_argument("--processes", default="1,2", help="server processes, one read round each")
    p.add_argument("--deploys", type=int, default=24, help="deploys per throughput round")
    p.add_argument("--worker-concurrency", type=int, default=1)
    p.add_argument(
        "--server-args",
        default="",
        help="more options of 'stackyard server', e.g. '--no-read-cache' or '--status-max-age 2'",
    )
    p.add_argument("--nochange-runs", type=int, default=20)
    p.add_argument("--warmup-deploys", type=int, default=2)
    args = p.parse_args(argv)
    if args.parts is None:
        args.parts = ",".join(p for p in PARTS if args.store == "postgres" or p != "throughput")
    args.parts = [x for x in args.parts.split(",") if x]
    args.loads = [x for x in args.loads.split(",") if x]
    args.processes = [int(x) for x in args.processes.split(",") if x]
    bad = [x for x in args.parts if x not in PARTS] + [
        x for x in args.loads if x not in ("closed", "open")
    ]
    if bad or not args.processes or min(args.processes) < 1:
        p.error(f"invalid --parts, --loads or --processes: {bad or args.processes}")
    if args.store == "sqlite" and "--processes" not in (argv or sys.argv):
        args.processes = [1]
    if args.store == "sqlite" and (max(args.processes) > 1 or "throughput" in args.parts):
        p.error(
            "--store sqlite serves one process and has no workers: --processes 1, no throughput"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--load-child"]:
        return load_child()
    args = parse(argv)
    terminate_on_sigterm()
    log = make_log("api")
    out: dict[str, Any] = {"store": args.store, "machine": machine(args.pg_url)}
    leftovers: dict[str, Any] = {}
    failure: str | None = None
    try:
        database = (
            fresh_database(args.pg_url, log, leftovers)
            if args.store == "postgres"
            else nullcontext(None)
        )
        with database as db_url:
            with temp_home("api", log) as (home, home_left):
                bench = Bench(args, home, db_url, log)
                try:
                    bench.setup()
                    out["machine"]["setup_s"] = bench.setup_s
                    if "throughput" in args.parts or "nochange" in args.parts:
                        bench.start_server(1)
                        try:
                            if "throughput" in args.parts:
                                out["throughput"] = bench.throughput()
                            if "nochange" in args.parts:
                                out["nochange"] = bench.nochange()
                        finally:
                            bench.procs.stop("server")
                    if "reads" in args.parts:
                        out["reads"] = bench.reads()
                except BenchFailed as exc:
                    failure = str(exc)
                    log(f"failed: {failure}")
                finally:
                    bench.procs.stop_all()
                    leftovers["processes"] = bench.procs.left
            leftovers.update(home_left)
    except KeyboardInterrupt:
        log("interrupted (what the bench made has been removed)")
        return 130
    out["machine"]["loadavg_end"] = loadavg()
    out["targets"], out["met"] = verdict(out)
    out["leftovers"] = leftovers
    if failure:
        out["failure"] = masked(failure)
    print(json.dumps(out, indent=2))
    left = any(v for v in leftovers.values())
    return 1 if failure or left else 0


if __name__ == "__main__":
    sys.exit(main())
