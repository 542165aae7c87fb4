"""The ``local`` runtime: each container of a workload as a supervised process on this host.

A workload lives in ``<root>/<workload>/`` (``runtime.layout``). ``start`` checks the spec and
maps it to a supervisor plan (``runtime.plan``); the supervisor (``runtime.supervisor``) is
started detached and gets that plan, variables included, over a pipe. ``logs`` reads what the
supervisor captured (``runtime.logs``). See ``docs/runtime-local.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import stackyard
from stackyard.errors import InvalidInputError, WorkloadFailedError
from stackyard.host import accounts, supervise
from stackyard.model.status import WorkloadState
from stackyard.runtime.isolation import Confinement, describe, files_root, remove_tree
from stackyard.runtime.layout import (
    NAME,
    RootLayout,
    WorkloadPaths,
    check_name,
    map_root,
    materialise,
    raw_containers,
    read_ports,
    read_status,
    write_private,
)
from stackyard.runtime.logs import container_names, read_logs
from stackyard.runtime.plan import allocate_ports, build_plan, check_spec
from stackyard.runtime.spec import WorkloadSpec, WorkloadStatus
from stackyard.runtime.supervisor import Limits, SupervisorPlan

__all__ = ["LocalRuntime"]

#: Exits before the first readiness after which ``wait_ready`` gives up at once.
_DYING_EXITS = 3
_POLL = 0.02
#: How often ``wait_ready`` looks whether ``status.json`` was replaced (one ``stat``).
_STAMP_POLL = 0.002
_TAIL_LINES = 10
#: Variable values shorter than this are not redacted from error messages: they cannot be
#: told from ordinary words, and are poor secrets anyway.
_REDACT_MIN = 4


class LocalRuntime:
    """Runs workloads as supervised host processes under ``root`` (``<home>/envs/<env>/workloads``).

    Every method is safe to repeat, and safe to call from several processes at once: changes
    are serialised by a lock on ``root``. Nothing a method returns or raises holds a variable
    value; error messages also have the values of the last started spec's variables redacted
    from the log lines they quote.
    """

    def __init__(
        self, root: Path, *, limits: Limits | None = None, account_for: str | None = None
    ) -> None:
        """``account_for`` names what the workloads' account is for (``isolation.env_purpose``):
        given, and when we run as root, every workload runs as that account (see
        ``runtime.isolation``). Without it, or when not root, they run as we do."""
        self.root = Path(root)
        self._limits = limits or Limits()
        self._redact: dict[str, tuple[str, ...]] = {}
        self._purpose = account_for
        #: supervisor interpreters started ahead (``prepare``), by workload, waiting for a plan
        self._spares: dict[str, subprocess.Popen[bytes]] = {}

    def isolation(self) -> dict[str, Any]:
        """Whether workloads are confined, as whom, and why not when they are not."""
        return describe(self._purpose)

    def reachable(
        self, workload: str, outputs: Mapping[str, Mapping[str, Any]]
    ) -> Mapping[str, Mapping[str, Any]]:
        """``outputs`` (resource name → outputs) as ``workload``'s processes reach them: as
        they are, since they run on this host (the containers runtime points loopback
        endpoints at its relay instead)."""
        return outputs

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, spec: WorkloadSpec) -> tuple[WorkloadStatus, bool]:
        """Run ``spec``; returns its status (usually "starting") and whether anything changed.

        Same digest and a live supervisor: nothing happens (``changed`` is False). Otherwise
        the old supervisor and its processes are stopped, ``root/`` is recreated with the
        files and volumes, and a new supervisor starts, on the same host ports when they are
        free. The spec is checked before the old version is stopped: an ``InvalidInputError``
        (a probe on an undeclared port, a bad name, a target outside the root, a command not
        found) leaves a running workload as it was. Readiness is ``wait_ready``.
        """
        check_spec(spec)
        digest = spec.digest()
        layout = map_root(spec)
        self._redact[spec.name] = _redactable(spec)
        paths = self._paths(spec.name)
        conf = self._confinement()
        if conf is not None:
            _check_volumes(spec.name, layout, conf)
        # A dry run of the plan checks probes and commands before anything is stopped.
        build_plan(
            spec, paths, {p.name: 0 for p in spec.ports}, digest, self._limits, confinement=conf
        )
        with self._locked():
            if supervise.running(paths.pidfile) is not None:
                current = read_status(paths)
                if current is not None and current.digest == digest:
                    return self.status(spec.name), False
            previous = read_ports(paths.ports)
            self._halt(paths)
            ports = allocate_ports(spec, previous)
            plan = build_plan(spec, paths, ports, digest, self._limits, confinement=conf)
            for d in (paths.dir, paths.logs):
                d.mkdir(mode=0o700, exist_ok=True)
            write_private(paths.ports, json.dumps(ports).encode())
            _materialise(layout, paths, conf)
            self._launch(plan, paths)
        return self.status(spec.name), True

    def unreserve(self, name: str) -> None:
        """Drop the reservation of workload ``name`` when that is all it has here (a deploy
        that reserved its ports, then was refused before it started anything)."""
        paths = self._paths(name)
        with self._locked():
            if not paths.dir.is_dir() or supervise.running(paths.pidfile) is not None:
                return
            if {p.name for p in paths.dir.iterdir()} <= {paths.ports.name}:
                paths.ports.unlink(missing_ok=True)
                paths.dir.rmdir()

    def reserve_ports(self, name: str, ports: Sequence[str]) -> dict[str, int]:
        """A host port for each of workload ``name``'s service ``ports`` (names), kept in its
        ``ports.json`` before it ever starts, so the deploy can hand them to resources (a
        route's upstream, another workload's ``service-port``) before it applies them.

        A port already kept stays (the running workload may hold it); a new one is a free
        port that no other workload of the environment keeps. ``start`` then reuses each
        while it is free. Ports of names no longer declared are dropped; ``stop`` frees
        them all. Safe to repeat: the same names give the same ports.
        """
        paths = self._paths(name)
        with self._locked():
            previous = read_ports(paths.ports)
            taken = {
                port
                for other in self.names()
                if other != name
                for port in read_ports(self._paths(other).ports).values()
            }
            out: dict[str, int] = {}
            for port_name in ports:
                port = previous.get(port_name)
                if port is None or port in out.values() or port in taken:
                    port = supervise.free_port()
                    while port in out.values() or port in taken:
                        port = supervise.free_port()
                out[port_name] = port
            if out != previous:
                paths.dir.mkdir(mode=0o700, exist_ok=True)
                write_private(paths.ports, json.dumps(out).encode())
        return out

    def wait_ready(self, name: str, *, timeout: float = 30.0) -> WorkloadStatus:
        """Poll until every container is ready; raise ``WorkloadFailedError`` if it will not be.

        Gives up when the supervisor is gone, when a container exited ``3`` times without
        being ready, or after ``timeout`` seconds. The message quotes the last log lines.

        The status is read again as soon as the supervisor replaces ``status.json`` (a
        ``stat`` every few milliseconds notices it), and at least every ``_POLL`` seconds
        (a supervisor that died writes nothing).
        """
        deadline = time.monotonic() + timeout
        status_file = self._paths(name).status
        while True:
            seen = _stamp(status_file)  # before the read: a write after it is not missed
            st = self.status(name)
            if st.state is WorkloadState.READY:
                return st
            if st.state is WorkloadState.STOPPED:
                raise self._not_ready(name, st, "it is not running")
            for cname, info in st.containers.items():
                exits = int(info.get("exits") or 0)
                if exits >= _DYING_EXITS and not info.get("ready"):
                    code = info.get("exit_code")
                    raise self._not_ready(
                        name,
                        st,
                        f"container '{cname}' exited {exits} times (last exit code {code})",
                    )
            if time.monotonic() >= deadline:
                raise self._not_ready(
                    name, st, f"it was not ready after {timeout:g} s (state '{st.state}')"
                )
            _await_change(status_file, seen, until=min(time.monotonic() + _POLL, deadline))

    def status(self, name: str) -> WorkloadStatus:
        """What the supervisor last wrote; state "stopped" when the workload does not run."""
        paths = self._paths(name)
        running = supervise.running(paths.pidfile) is not None
        st = read_status(paths)
        if st is None:
            if not running:
                return WorkloadStatus.stopped(name)
            return WorkloadStatus(name, WorkloadState.STARTING, {}, 0, {}, "", None)
        if not running:
            containers = {
                c: {**info, "pid": None, "state": WorkloadState.STOPPED, "ready": False}
                for c, info in st.containers.items()
            }
            return WorkloadStatus(
                name, WorkloadState.STOPPED, {}, st.restarts, containers, st.digest, st.started_at
            )
        return st

    def names(self) -> list[str]:
        """The workloads that have a directory under ``root`` (running or not)."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and NAME.fullmatch(d.name))

    def stop(self, name: str) -> bool:
        """Stop the supervisor and every process it started; remove the workload's directory.

        True when there was something to stop or remove. Stopping a stopped workload succeeds.
        """
        check_name(name, "workload")
        if not self.root.is_dir():
            return False
        with self._locked():
            paths = self._paths(name)
            if not paths.dir.exists():
                return False
            self._halt(paths)
            shutil.rmtree(paths.dir)  # the link to a confined root, not the root itself
            remove_tree(files_root(self.root, name))
        self._redact.pop(name, None)
        return True

    def stop_all(self) -> list[str]:
        """Stop every workload; returns the names of those that were stopped.

        The environment's account is then removed unless it still owns a bucket (the last
        bucket's delete removes it then).
        """
        stopped = [n for n in self.names() if self.stop(n)]
        if self._purpose is not None:
            accounts.remove(self._purpose, unless_owning=accounts.leftovers())
            accounts.reap_orphans()  # accounts left by creates killed before their first file
        return stopped

    def logs(
        self,
        name: str,
        *,
        container: str | None = None,
        follow: bool = False,
        lines: int | None = None,
    ) -> Iterator[str]:
        """Captured output lines, oldest first, per container in spec order.

        Lines are prefixed ``"<container> | "`` when the workload has several containers.
        ``lines`` keeps the last N of each container. ``follow`` then keeps yielding new lines
        until the workload stops or the consumer stops iterating. Raises ``StackyardError``
        (at once) for an unknown workload or container.
        """
        paths = self._paths(name)
        if not paths.dir.is_dir():
            raise InvalidInputError(
                f"Workload '{name}' is not running in this environment, so it has no logs",
                hint="Deploy it first; logs are removed when a workload is stopped.",
            )
        known = container_names(paths)
        if container is not None and container not in known:
            raise InvalidInputError(
                f"Workload '{name}' has no container '{container}'",
                hint=f"Its containers are: {', '.join(known) or '(none)'}.",
            )
        chosen = [container] if container is not None else known
        return read_logs(paths, chosen, prefixed=len(known) > 1, follow=follow, lines=lines)

    # -- internals -----------------------------------------------------------------------

    def _paths(self, name: str) -> WorkloadPaths:
        check_name(name, "workload")
        return WorkloadPaths(self.root / name)

    def _confinement(self) -> Confinement | None:
        """The account and roots to confine workloads to; None when we are not root."""
        if self._purpose is None or os.geteuid() != 0:
            return None
        account = accounts.ensure(self._purpose, f"stackyard workloads {self._purpose}")
        if account is None:
            raise WorkloadFailedError(
                "Cannot create the unprivileged account the workloads of this environment run as",
                workload="",
                hint="stackyard runs as root and needs 'useradd' to confine workloads; "
                "install it (package 'passwd'), or run stackyard as an ordinary user.",
            )
        return Confinement(account, self.root)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.root.exists():
            # Each missing folder (``envs/``, ``envs/<env>/``) is private, not the umask's.
            for folder in [*reversed(self.root.parents), self.root]:
                if not folder.exists():
                    folder.mkdir(mode=0o700, exist_ok=True)
            self.root.chmod(0o700)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _halt(self, paths: WorkloadPaths) -> None:
        """Stop the supervisor (SIGTERM, then SIGKILL) and kill what its processes left."""
        proc = supervise.read_pidfile(paths.pidfile)
        if proc is not None and supervise.alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self._limits.stop_grace + 2.0
            while supervise.alive(proc) and time.monotonic() < deadline:
                time.sleep(_POLL)
            if supervise.alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        # A supervisor that was killed could not stop its processes: their groups are in
        # status.json, with start times so a reused pid is never signalled.
        for info in raw_containers(paths):
            pid, start = info.get("pid"), info.get("start")
            if isinstance(pid, int) and pid > 1:
                _reap_group(pid, start if isinstance(start, int) else 0)
        paths.pidfile.unlink(missing_ok=True)

    def prepare(self, names: Iterable[str]) -> list[str]:
        """Start a supervisor interpreter ahead for each workload of ``names`` that is not
        running, so that its start-up (a Python interpreter: tens of milliseconds) overlaps
        the deploy's apply instead of following it. A spare holds no file and no plan: it
        waits on its stdin, ``start`` hands it the plan, and ``release_spares`` (or the end
        of this process, which closes the pipe) lets an unused one exit. Best effort: a
        spare that cannot start is no spare, and ``start`` starts its supervisor as usual.
        The workloads given a spare are returned."""
        given = []
        for name in names:
            if name in self._spares:
                continue
            try:
                paths = self._paths(name)
                if supervise.running(paths.pidfile) is not None:
                    continue  # a running workload restarts only when its spec changed
                self._spares[name] = self._spawn(subprocess.DEVNULL, cwd="/")
            except (OSError, InvalidInputError):
                continue
            given.append(name)
        return given

    def release_spares(self) -> None:
        """Let every unused spare exit (its stdin closes: no plan, nothing done)."""
        spares, self._spares = self._spares, {}
        for proc in spares.values():
            with contextlib.suppress(OSError):
                proc.communicate(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _spawn(self, stderr: int, *, cwd: Path | str) -> subprocess.Popen[bytes]:
        """A supervisor interpreter, detached in a session of its own, reading its plan on
        stdin (``supervisor.main``)."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
        # When stackyard is imported from a source tree rather than installed, the
        # supervisor needs to be told where it is.
        package_parent = Path(stackyard.__file__).resolve().parent.parent
        if package_parent.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = str(package_parent)
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "stackyard.runtime.supervisor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    def _launch(self, plan: SupervisorPlan, paths: WorkloadPaths) -> None:
        """Start the supervisor detached (a spare ``prepare`` started, when there is one)
        and hand it the plan over its stdin; it logs to ``supervisor.log`` itself."""
        spare = self._spares.pop(plan.workload, None)
        if spare is not None and spare.poll() is not None:
            spare = None  # it died waiting: start one now
        log_fd = -1
        if spare is None:
            log_fd = os.open(paths.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with spare or self._spawn(log_fd, cwd=paths.dir) as proc:
                try:
                    out, _ = proc.communicate(json.dumps(plan.to_json()).encode(), timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
        finally:
            if log_fd >= 0:
                os.close(log_fd)
        if proc.returncode != 0 or not out.strip().isdigit():
            raise WorkloadFailedError(
                f"The supervisor of workload '{plan.workload}' did not start: "
                + (supervise.log_tail(paths.supervisor_log) or f"exit code {proc.returncode}"),
                workload=plan.workload,
                hint=f"See {paths.supervisor_log}.",
            )

    def _not_ready(self, name: str, st: WorkloadStatus, reason: str) -> WorkloadFailedError:
        paths = self._paths(name)
        message = f"Workload '{name}' did not become ready: {reason}."
        tail = list(
            read_logs(
                paths,
                list(st.containers) or container_names(paths),
                prefixed=len(st.containers) > 1,
                follow=False,
                lines=_TAIL_LINES,
            )
        )
        if tail:
            quoted = "\n".join(f"  {line}" for line in tail)
            for value in self._redact.get(name, ()):
                quoted = quoted.replace(value, "[redacted]")
            message += " Last log lines:\n" + quoted
        return WorkloadFailedError(
            message,
            workload=name,
            hint="Fix the command or the code it runs; stackyard keeps restarting it meanwhile.",
        )


def _check_volumes(name: str, layout: RootLayout, conf: Confinement) -> None:
    """Refuse a volume whose source the workload's account cannot reach."""
    for rel, source in layout.volumes:
        if not supervise.reachable_by(source, conf.account):
            raise InvalidInputError(
                f"The source of volume '/{rel}' of workload '{name}' is not reachable by the "
                f"account the workload runs as ({conf.account.name}): {source}",
                hint="Workloads run unprivileged under root; put the volume outside private "
                "folders (a 'volume' resource is made where its workload can reach it).",
            )


def _materialise(layout: RootLayout, paths: WorkloadPaths, conf: Confinement | None) -> None:
    """Write the workload's root: in place, or (confined) outside the home, handed to the
    account, with ``root`` a link to it."""
    if paths.root.is_symlink():
        paths.root.unlink()
    if conf is None:
        materialise(layout, paths.root)
        return
    conf.prepare_parent()
    real = conf.files_root(paths.dir.name)
    materialise(layout, real)  # removes what was there without following links, as root
    supervise.give_tree(real, conf.account)
    if paths.root.exists():
        shutil.rmtree(paths.root)
    paths.root.symlink_to(real, target_is_directory=True)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one ``status.json`` from the next: the supervisor replaces the file (a new
    inode) on every write. None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _await_change(path: Path, seen: tuple[int, int, int] | None, *, until: float) -> None:
    """Sleep until ``path`` is no longer the file ``seen`` stamped, or ``until`` (monotonic)."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(_STAMP_POLL, left))
        if _stamp(path) != seen:
            return


def _redactable(spec: WorkloadSpec) -> tuple[str, ...]:
    """The variable values to hide from quoted log lines, longest first."""
    values = {v for c in spec.containers for v in c.variables.values() if len(v) >= _REDACT_MIN}
    return tuple(sorted(values, key=len, reverse=True))


def _reap_group(pid: int, start: int) -> None:
    """Kill the process group led by ``pid``, if that group is still ours.

    The leader's pid cannot be reused while its group has members, so a missing (or zombie)
    leader means the members are our orphans; a live process with another start time is
    someone else's, and is left alone.
    """
    proc = supervise.Process(pid, start)
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        state = raw[raw.rfind(")") + 2 :].split()
        leader_gone = state[0] in ("Z", "X")
    except FileNotFoundError:
        leader_gone = True
    if leader_gone or supervise.alive(proc):
        supervise.reap_group(proc)
