"""The supervisor of one local workload: runs, probes, restarts and stops its container processes.

Run as ``python -m stackyard.runtime.supervisor`` by ``LocalRuntime``, never by hand. It reads
its ``SupervisorPlan`` as JSON from stdin (so variable values, which may be secrets, are never
on disk or in an argv), writes a first ``status.json``, forks and exits: the caller learns the
supervisor's pid from stdout, and the supervisor is nobody's child. It then keeps running
until SIGTERM or SIGINT, or until its pidfile names another process (the workload was taken
over or removed).

Imports stay within the standard library and ``spec``: it starts on every deploy.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stackyard.model.status import WORKLOAD, WorkloadState
from stackyard.runtime.spec import WorkloadStatus

__all__ = ["Limits", "ProbePlan", "ProcessPlan", "SupervisorPlan", "main"]


@dataclass(frozen=True)
class Limits:
    """The supervisor's timings (seconds) and log cap (bytes)."""

    backoff_start: float = 0.2
    backoff_max: float = 5.0
    backoff_reset: float = 10.0
    ready_poll: float = 0.05
    ready_period: float = 1.0
    settle: float = 0.1  # a probe-less, port-less container: up this long counts as ready
    #: ... or, sooner, once every process of its group has been asleep and used no CPU time
    #: this long (``group_activity``); 0 turns that off (the containers runtime: its
    #: container's processes are not the supervisor's to look at, only podman's client is)
    quiet: float = 0.02
    live_period: float = 2.0
    live_failures: int = 3
    probe_timeout: float = 1.0
    stop_grace: float = 5.0
    log_max_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class ProbePlan:
    """An HTTP probe against a host port (``url`` is complete), or, when ``argv`` is given, a
    command run on the host that passes when it exits 0 (the containers runtime's
    ``podman exec``)."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessPlan:
    """One container as a process: ``executable`` is resolved, ``env`` is the whole environment."""

    name: str
    executable: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    readiness: ProbePlan | None = None
    liveness: ProbePlan | None = None


@dataclass(frozen=True)
class SupervisorPlan:
    """Everything the supervisor needs. Holds secrets: it only ever travels over a pipe."""

    workload: str
    digest: str
    workdir: str
    endpoints: Mapping[str, str]
    tcp_ports: tuple[int, ...]
    processes: tuple[ProcessPlan, ...]
    limits: Limits = Limits()
    #: The account the processes run as (None: the supervisor's own, when not root).
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of ``from_json``)."""

        def probe(p: ProbePlan | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"url": p.url, "headers": [list(h) for h in p.headers], "argv": list(p.argv)}

        return {
            "workload": self.workload,
            "digest": self.digest,
            "workdir": self.workdir,
            "endpoints": dict(self.endpoints),
            "tcp_ports": list(self.tcp_ports),
            "limits": asdict(self.limits),
            "uid": self.uid,
            "gid": self.gid,
            "processes": [
                {
                    "name": p.name,
                    "executable": p.executable,
                    "argv": list(p.argv),
                    "env": dict(p.env),
                    "readiness": probe(p.readiness),
                    "liveness": probe(p.liveness),
                }
                for p in self.processes
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SupervisorPlan:
        """Read what ``to_json`` wrote."""

        def probe(p: Mapping[str, Any] | None) -> ProbePlan | None:
            if p is None:
                return None
            return ProbePlan(
                str(p["url"]),
                tuple((str(k), str(v)) for k, v in p["headers"]),
                tuple(str(a) for a in p.get("argv", ())),
            )

        return cls(
            workload=str(data["workload"]),
            digest=str(data["digest"]),
            workdir=str(data["workdir"]),
            endpoints={str(k): str(v) for k, v in data["endpoints"].items()},
            tcp_ports=tuple(int(p) for p in data["tcp_ports"]),
            limits=Limits(**data.get("limits", {})),
            uid=None if data.get("uid") is None else int(data["uid"]),
            gid=None if data.get("gid") is None else int(data["gid"]),
            processes=tuple(
                ProcessPlan(
                    name=str(p["name"]),
                    executable=str(p["executable"]),
                    argv=tuple(str(a) for a in p["argv"]),
                    env={str(k): str(v) for k, v in p["env"].items()},
                    readiness=probe(p["readiness"]),
                    liveness=probe(p["liveness"]),
                )
                for p in data["processes"]
            ),
        )


def _start_time(pid: int) -> int:
    """Clock ticks since boot at which ``pid`` started (``supervise.py``'s pidfile format)."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    return int(fields[19]) if fields is not None else 0


def group_activity(pgid: int) -> dict[int, tuple[str, int]] | None:
    """Every thread of the live (not zombie) processes of process group ``pgid``: its state
    letter (``S`` asleep, ``R`` running or runnable, ``D`` waiting on a disk...) and how long
    it has run so far (``schedstat``'s nanoseconds, else its clock ticks). None when
    ``/proc`` cannot be read. One ``stat`` read per process on the machine, and two per
    thread of the group."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found: dict[int, tuple[str, int]] = {}
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(f"/proc/{name}/stat")
        if fields is None or int(fields[2]) != pgid or fields[0] == "Z":
            continue
        try:
            tids = os.listdir(f"/proc/{name}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in tids:
            task = f"/proc/{name}/task/{tid}"
            fields = _stat_fields(f"{task}/stat")
            if fields is None or fields[0] == "Z":
                continue
            try:
                with open(f"{task}/schedstat", "rb") as fh:
                    ran = int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                ran = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
            found[int(tid)] = (fields[0], ran)
    return found


def _stat_fields(path: str) -> list[str] | None:
    """The fields of a ``/proc`` ``stat`` file after the command name (the state first), or
    None when it is gone."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


class LogFile:
    """A container's log: appended to by its output pumps and by our own notes; rotated to ``.1``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._at_line_start = True

    def write(self, data: bytes) -> None:
        """Append ``data``; past the cap, rotate at a line end so no line is split in two."""
        with self._lock:
            while data:
                room = self.max_bytes - self._size
                if len(data) <= room:
                    self._append(data)
                    return
                cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
                if cut == 0 and self._size == 0:
                    # One line longer than the cap: it goes whole into a file of its own.
                    end = data.find(b"\n")
                    cut = len(data) if end < 0 else end + 1
                if cut:
                    self._append(data[:cut])
                    data = data[cut:]
                if data:
                    self._rotate()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self._at_line_start = data.endswith(b"\n")

    def _rotate(self) -> None:
        os.close(self._fd)
        self.path.replace(self.path.with_name(self.path.name + ".1"))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0

    def note(self, text: str) -> None:
        """A line of our own (never a variable value), on a line of its own."""
        sep = "" if self._at_line_start else "\n"
        self.write(f"{sep}[stackyard] {text}\n".encode())

    def pump(self, fd: int) -> None:
        """Copy a process's output pipe into the log until every writer closed it."""
        try:
            while chunk := os.read(fd, 65536):
                self.write(chunk)
        except OSError:
            pass
        finally:
            os.close(fd)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Prober:
    """HTTP GET without proxies or redirects; 2xx and 3xx answers pass."""

    def __init__(self, timeout: float) -> None:
        import ssl
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        # Local services answer HTTPS with self-signed certificates; a probe checks liveness,
        # not identity.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._timeout = timeout
        self._opener: urllib.request.OpenerDirector = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            NoRedirect(),
            urllib.request.HTTPSHandler(context=ctx),
        )

    def ok(self, probe: ProbePlan) -> bool:
        """Whether ``probe`` answers 2xx or 3xx (a command: exits 0) within the timeout."""
        if probe.argv:
            return self._command_ok(probe.argv)
        import http.client
        import urllib.error
        import urllib.request

        # The URL is ours: http(s)://127.0.0.1:<port><path>, built by LocalRuntime.
        req = urllib.request.Request(probe.url, headers=dict(probe.headers), method="GET")  # noqa: S310
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                return 200 <= int(resp.status) < 400
        except urllib.error.HTTPError as exc:
            exc.close()
            return 300 <= exc.code < 400
        except (OSError, ValueError, http.client.HTTPException):
            return False

    def _command_ok(self, argv: tuple[str, ...]) -> bool:
        # A container's exec probe may take longer than an HTTP answer: starting a process in
        # a container costs a few hundred milliseconds.
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=max(self._timeout, 10.0),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0


#: How often a runner looks at its process's exit and at the stop request between checks.
TICK = 0.02


def next_check(
    limits: Limits, *, began: float, now: float, ever_ready: bool, settles: bool
) -> float:
    """When a runner next checks readiness (``time.monotonic()`` seconds), its process having
    started at ``began``: every ``ready_period`` once it was ready, every ``ready_poll``
    before. A container whose readiness is the settle (``settles``) is looked at every
    ``quiet`` (is it idle yet?), and also at the very moment the settle ends, so that it is
    reported ready then, not up to a poll later."""
    if ever_ready:
        return now + limits.ready_period
    if not settles:
        return now + limits.ready_poll
    settled = began + limits.settle
    if settled <= now:  # the settle ended while the last check ran: this one passes
        return now
    return min(now + (limits.quiet if limits.quiet > 0 else limits.ready_poll), settled)


#: The longest a runner sleeps on its process's exit handle (seconds): the stop request is
#: also looked at this often.
WAKE_MAX = 1.0


def _exit_handle(proc: subprocess.Popen[bytes]) -> int | None:
    """A descriptor that becomes readable when ``proc`` exits (Linux's pidfd), or None where
    there is none (the runner then looks every ``TICK``)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(proc.pid))
    except OSError:
        return None


def tick(due: float, now: float) -> float:
    """How long a runner waits before looking again: ``TICK``, or less when a check is due
    sooner, so that the check is made on time."""
    return max(0.0, min(TICK, due - now))


class Runner:
    """One container: start its process, watch it, restart it when it exits or is not live."""

    def __init__(self, sup: Supervisor, plan: ProcessPlan) -> None:
        self.sup = sup
        self.plan = plan
        self.log = LogFile(sup.workdir / "logs" / f"{plan.name}.log", sup.limits.log_max_bytes)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_ticks = 0
        self.state = WORKLOAD.check(None, WorkloadState.STARTING)
        self.restarts = 0
        self.exits = 0
        self.exit_code: int | None = None
        self.started_at: float | None = None
        #: how the process became ready after its last start: "probe", "ports", "idle" or
        #: "settle" (None until then)
        self.ready_by: str | None = None
        self._prober: Prober | None = None
        #: the group's activity when it was last seen all asleep, and when (``_idle``)
        self._asleep: tuple[float, dict[int, tuple[str, int]]] | None = None

    def status(self) -> dict[str, Any]:
        """This container's part of ``status.json``; no variable values."""
        return {
            "pid": self.proc.pid if self.proc else None,
            "start": self.start_ticks if self.proc else None,
            "state": self.state,
            "ready": self.state is WorkloadState.READY,
            "restarts": self.restarts,
            "exits": self.exits,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "ready_by": self.ready_by,
        }

    def run(self) -> None:
        """The thread's body: spawn, watch, back off, repeat until the supervisor stops."""
        limits = self.sup.limits
        backoff = limits.backoff_start
        while not self.sup.stopping.is_set():
            try:
                backoff = self._once(backoff)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                self.log.note(f"internal error supervising '{self.plan.name}'; retrying")
                self._set(state=WorkloadState.CRASHED)
                self.sup.stopping.wait(limits.backoff_max)
            if backoff < 0:
                return
            if self.sup.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, limits.backoff_max)
            with self.sup.lock:
                self.restarts += 1

    def _once(self, backoff: float) -> float:
        """Run the process once; return the delay before the next start (-1: stop)."""
        limits = self.sup.limits
        proc = self._spawn()
        if proc is None:
            return -1 if self.sup.stopping.is_set() else backoff
        began = time.monotonic()
        reason = self._watch(proc)
        if reason == "stop":
            return -1
        if reason == "liveness":
            self.log.note(f"liveness probe failed {limits.live_failures} times; restarting")
        _kill_group(proc.pid, signal.SIGKILL)
        code = proc.wait()
        if time.monotonic() - began >= limits.backoff_reset:
            backoff = limits.backoff_start
        with self.sup.lock:
            if self.sup.stopping.is_set():
                return -1
            self.proc = None
            self.exits += 1
            self.exit_code = code
            self.move_to(WorkloadState.CRASHED)
            self.sup.write_status()
        if reason != "liveness":
            self.log.note(f"process exited with code {code}; restarting in {backoff:g}s")
        return backoff

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self.sup.lock:
            if self.sup.stopping.is_set():
                return None
            plan = self.sup.plan
            # The account's uid and gid, and no supplementary groups, are set in the child
            # after its cwd (so a root the account owns is entered through the home's link).
            who: dict[str, Any] = (
                {}
                if plan.uid is None
                else {"user": plan.uid, "group": plan.gid, "extra_groups": []}
            )
            try:
                proc = subprocess.Popen(
                    self.plan.argv,
                    executable=self.plan.executable,
                    cwd=self.sup.workdir / "root",
                    env=dict(self.plan.env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                    **who,
                )
            except OSError as exc:
                self.exits += 1
                self.exit_code = 127
                self.move_to(WorkloadState.CRASHED)
                self.sup.write_status()
                self.log.note(f"cannot start {self.plan.argv[0]!r}: {exc.strerror}")
                return None
            assert proc.stdout is not None
            out = os.dup(proc.stdout.fileno())
            proc.stdout.close()
            threading.Thread(target=self.log.pump, args=(out,), daemon=True).start()
            self.proc = proc
            self.start_ticks = _start_time(proc.pid)
            self.started_at = time.time()
            self.exit_code = None
            self.ready_by = None
            self._asleep = None
            self.move_to(WorkloadState.STARTING)
            self.sup.write_status()
            return proc

    def move_to(self, state: WorkloadState) -> None:
        """Change state as ``status.WORKLOAD`` allows (a refused move is a bug: ``run``
        logs it and restarts). Call with ``sup.lock`` held."""
        self.state = WORKLOAD.check(self.state, state, subject=f"container '{self.plan.name}'")

    def _set(self, *, state: WorkloadState) -> None:
        with self.sup.lock:
            if self.state != state and not self.sup.stopping.is_set():
                self.move_to(state)
                self.sup.write_status()

    def _probe(self, probe: ProbePlan) -> bool:
        if self._prober is None:
            self._prober = Prober(self.sup.limits.probe_timeout)
        return self._prober.ok(probe)

    def _settles(self) -> bool:
        """Whether readiness is the settle (no readiness probe, no port to wait for)."""
        return self.plan.readiness is None and not self.sup.plan.tcp_ports

    def _ready(self, began: float, now: float) -> bool:
        if self.plan.readiness is not None:
            return self._readied("probe", self._probe(self.plan.readiness))
        if self.sup.plan.tcp_ports:
            return self._readied("ports", all(_port_open(p) for p in self.sup.plan.tcp_ports))
        # The same sum ``next_check`` schedules the check at: a check made at that moment
        # passes (``now - began`` may round to a hair under the settle).
        if now >= began + self.sup.limits.settle:
            return self._readied("settle", True)
        return self._readied("idle", self._idle(now))

    def _readied(self, how: str, ok: bool) -> bool:
        if ok and self.ready_by is None:
            self.ready_by = how
        return ok

    def _idle(self, now: float) -> bool:
        """Whether every process of the container's group has been asleep (``S``), using no
        CPU time at all, for ``quiet`` seconds: it has started and waits for something.

        What the settle is for, an immediate exit (a wrong argument, a missing file, an
        import that fails), happens while the process runs; it never looks idle first."""
        quiet = self.sup.limits.quiet
        if quiet <= 0 or self.proc is None:
            return False
        activity = group_activity(self.proc.pid)
        if not activity or any(state != "S" for state, _ in activity.values()):
            self._asleep = None
            return False
        if self._asleep is None or self._asleep[1] != activity:
            self._asleep = (now, activity)  # asleep now: is it still, unchanged, in ``quiet``?
            return False
        return now - self._asleep[0] >= quiet

    def _watch(self, proc: subprocess.Popen[bytes]) -> str:
        """Probe until the process exits ("exited"), is not live ("liveness") or we stop."""
        began = time.monotonic()
        settles = self._settles()
        exits = _exit_handle(proc)
        try:
            return self._watch_loop(proc, exits, began, settles)
        finally:
            if exits is not None:
                os.close(exits)

    def _watch_loop(
        self, proc: subprocess.Popen[bytes], exits: int | None, began: float, settles: bool
    ) -> str:
        limits = self.sup.limits
        next_ready = began
        next_live: float | None = None
        ever_ready = False
        failures = 0
        while True:
            if proc.poll() is not None:
                return "exited"
            if self.sup.stopping.is_set():
                return "stop"
            now = time.monotonic()
            if now >= next_ready:
                ok = self._ready(began, now)
                if proc.poll() is not None:
                    return "exited"
                self._set(
                    state=WorkloadState.READY
                    if ok
                    else WorkloadState.UNREADY
                    if ever_ready
                    else WorkloadState.STARTING
                )
                if ok and not ever_ready:
                    ever_ready = True
                    next_live = time.monotonic() + limits.live_period
                next_ready = next_check(
                    limits,
                    began=began,
                    now=time.monotonic(),
                    ever_ready=ever_ready,
                    settles=settles,
                )
            if self.plan.liveness is not None and next_live is not None and now >= next_live:
                failures = 0 if self._probe(self.plan.liveness) else failures + 1
                if failures >= limits.live_failures:
                    return "liveness"
                next_live = time.monotonic() + limits.live_period
            # (next_live is only kept up to date when there is a liveness probe)
            live_due = next_live if self.plan.liveness is not None else None
            due = next_ready if live_due is None else min(next_ready, live_due)
            if exits is None:
                self.sup.stopping.wait(tick(due, time.monotonic()))
            else:
                # Asleep until the process exits or a check is due (a stop kills the
                # process, which wakes this too): a ready workload costs one wake-up a
                # second instead of fifty.
                select.select([exits], [], [], max(0.0, min(due - time.monotonic(), WAKE_MAX)))


class Supervisor:
    """The workload: its runners, the shared lock, ``status.json`` and the shutdown."""

    def __init__(self, plan: SupervisorPlan) -> None:
        self.plan = plan
        self.limits = plan.limits
        self.workdir = Path(plan.workdir)
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.runners = [Runner(self, p) for p in plan.processes]

    def state(self) -> WorkloadState:
        """The workload's state from its containers'."""
        states = {r.state for r in self.runners}
        if states <= {WorkloadState.STOPPED}:
            return WorkloadState.STOPPED
        if WorkloadState.CRASHED in states:
            return WorkloadState.CRASHED
        if states == {WorkloadState.READY}:
            return WorkloadState.READY
        return WorkloadState.UNREADY if WorkloadState.UNREADY in states else WorkloadState.STARTING

    def write_status(self) -> None:
        """Rewrite ``status.json`` atomically. Call with ``lock`` held."""
        status = WorkloadStatus(
            name=self.plan.workload,
            state=self.state(),
            endpoints=self.plan.endpoints,
            restarts=sum(r.restarts for r in self.runners),
            containers={r.plan.name: r.status() for r in self.runners},
            digest=self.plan.digest,
            started_at=self.started_at,
        )
        try:
            _write_atomic(self.workdir / "status.json", json.dumps(status.to_json()))
        except OSError as exc:
            print(f"stackyard supervisor: cannot write status: {exc}", file=sys.stderr)

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT or until the pidfile is no longer ours; then stop."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for runner in self.runners:
            threading.Thread(target=runner.run, daemon=True).start()
        next_check = time.monotonic() + 1.0
        while not self.stopping.wait(0.1):
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                if not self._pidfile_is_ours():
                    self.stopping.set()
        self.shutdown()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping.set()

    def _pidfile_is_ours(self) -> bool:
        try:
            data = json.loads((self.workdir / "supervisor.pid").read_text())
            return int(data["pid"]) == os.getpid()
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            return True

    def shutdown(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after the grace, write "stopped"."""
        self.stopping.set()
        with self.lock:
            procs = [r.proc for r in self.runners if r.proc is not None]
        for proc in procs:
            _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.limits.stop_grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            # Also for a leader that exited: members it left behind may still hold a port.
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        with self.lock:
            for r in self.runners:
                r.proc = None
                r.move_to(WorkloadState.STOPPED)
            self.write_status()


def _on_early_signal(signum: int, frame: object) -> None:
    # Between the fork and the runners' start, a stop request ends us at once: no process
    # has been started yet.
    os._exit(0)


def main() -> int:
    """Read the plan from stdin, write the first status, detach (fork) and supervise.

    Started ahead as a spare (``LocalRuntime.prepare``), it waits here for the plan; an empty
    stdin means it is not needed, and it exits having done nothing. Its log is the
    workload's ``supervisor.log``, opened once the plan names the workload's folder."""
    data = sys.stdin.buffer.read()
    if not data.strip():
        return 0
    plan = SupervisorPlan.from_json(json.loads(data))
    os.umask(0o077)
    workdir = Path(plan.workdir)
    os.chdir(workdir)
    log = os.open(workdir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 2)
    os.close(log)
    sup = Supervisor(plan)
    with sup.lock:
        sup.write_status()
    signal.signal(signal.SIGTERM, _on_early_signal)
    pid = os.fork()
    if pid:
        _write_atomic(
            sup.workdir / "supervisor.pid",
            json.dumps({"pid": pid, "start": _start_time(pid)}),
        )
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sup.run()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
