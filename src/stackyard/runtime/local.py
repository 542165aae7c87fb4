"""The ``local`` runtime: each container of a workload as a supervised process on this host.

A workload lives in ``<root>/<workload>/``::

    root/            the workload's filesystem root and its processes' cwd (recreated on start)
    status.json      written by the supervisor; no secrets
    supervisor.pid   pid and start time of the supervisor (``providers.local.supervise`` format)
    supervisor.log   the supervisor's own errors
    ports.json       {"<port name>": <host port>}, reused by the next start
    logs/<c>.log     stdout and stderr of container <c> (rotated to ``<c>.log.1``)

The supervisor (``runtime.supervisor``) is started detached and gets its plan, variables
included, over a pipe. See ``docs/runtime-local.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import stackyard
from stackyard.errors import StackyardError
from stackyard.providers.local import supervise
from stackyard.runtime.spec import (
    ContainerSpec,
    FileSpec,
    HttpProbe,
    WorkloadSpec,
    WorkloadStatus,
)
from stackyard.runtime.supervisor import Limits, ProbePlan, ProcessPlan, SupervisorPlan

__all__ = ["LocalRuntime"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
#: Exits before the first readiness after which ``wait_ready`` gives up at once.
_DYING_EXITS = 3
_POLL = 0.02
_FOLLOW_POLL = 0.1
_TAIL_LINES = 10
#: Variable values shorter than this are not redacted from error messages: they cannot be
#: told from ordinary words, and are poor secrets anyway.
_REDACT_MIN = 4


@dataclass(frozen=True)
class _Paths:
    """The files of one workload."""

    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "supervisor.pid"

    @property
    def ports(self) -> Path:
        return self.dir / "ports.json"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.dir / "supervisor.log"


class LocalRuntime:
    """Runs workloads as supervised host processes under ``root`` (``<home>/envs/<env>/workloads``).

    Every method is safe to repeat, and safe to call from several processes at once: changes
    are serialised by a lock on ``root``. Nothing a method returns or raises holds a variable
    value; error messages also have the values of the last started spec's variables redacted
    from the log lines they quote.
    """

    def __init__(self, root: Path, *, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self._limits = limits or Limits()
        self._redact: dict[str, tuple[str, ...]] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, spec: WorkloadSpec) -> tuple[WorkloadStatus, bool]:
        """Run ``spec``; returns its status (usually "starting") and whether anything changed.

        Same digest and a live supervisor: nothing happens (``changed`` is False). Otherwise
        the old supervisor and its processes are stopped, ``root/`` is recreated with the
        files and volumes, and a new supervisor starts, on the same host ports when they are
        free. The spec is checked before the old version is stopped: a ``ValueError`` (a probe
        on an undeclared port, a bad name) or ``StackyardError`` (a target outside the root,
        a command not found) leaves a running workload as it was. Readiness is ``wait_ready``.
        """
        _check_names(spec)
        digest = spec.digest()
        layout = _layout(spec)
        self._redact[spec.name] = _redactable(spec)
        paths = self._paths(spec.name)
        # A dry run of the plan checks probes and commands before anything is stopped.
        self._plan(spec, paths, {p.name: 0 for p in spec.ports}, digest)
        with self._locked():
            if supervise.running(paths.pidfile) is not None:
                current = _read_status(paths)
                if current is not None and current.digest == digest:
                    return self.status(spec.name), False
            previous = _read_ports(paths.ports)
            self._halt(paths)
            ports = _allocate(spec, previous)
            plan = self._plan(spec, paths, ports, digest)
            for d in (paths.dir, paths.logs):
                d.mkdir(mode=0o700, exist_ok=True)
            _write_private(paths.ports, json.dumps(ports).encode())
            _materialise(layout, paths.root)
            self._launch(plan, paths)
        return self.status(spec.name), True

    def wait_ready(self, name: str, *, timeout: float = 30.0) -> WorkloadStatus:
        """Poll until every container is ready; raise ``StackyardError`` if it will not be.

        Gives up when the supervisor is gone, when a container exited ``3`` times without
        being ready, or after ``timeout`` seconds. The message quotes the last log lines.
        """
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(name)
            if st.state == "ready":
                return st
            if st.state == "stopped":
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
            time.sleep(_POLL)

    def status(self, name: str) -> WorkloadStatus:
        """What the supervisor last wrote; state "stopped" when the workload does not run."""
        paths = self._paths(name)
        running = supervise.running(paths.pidfile) is not None
        st = _read_status(paths)
        if st is None:
            if not running:
                return WorkloadStatus.stopped(name)
            return WorkloadStatus(name, "starting", {}, 0, {}, "", None)
        if not running:
            containers = {
                c: {**info, "pid": None, "state": "stopped", "ready": False}
                for c, info in st.containers.items()
            }
            return WorkloadStatus(
                name, "stopped", {}, st.restarts, containers, st.digest, st.started_at
            )
        return st

    def names(self) -> list[str]:
        """The workloads that have a directory under ``root`` (running or not)."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and _NAME.fullmatch(d.name))

    def stop(self, name: str) -> bool:
        """Stop the supervisor and every process it started; remove the workload's directory.

        True when there was something to stop or remove. Stopping a stopped workload succeeds.
        """
        _check_name(name, "workload")
        if not self.root.is_dir():
            return False
        with self._locked():
            paths = self._paths(name)
            if not paths.dir.exists():
                return False
            self._halt(paths)
            shutil.rmtree(paths.dir)
        self._redact.pop(name, None)
        return True

    def stop_all(self) -> list[str]:
        """Stop every workload; returns the names of those that were stopped."""
        return [n for n in self.names() if self.stop(n)]

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
            raise StackyardError(
                f"Workload '{name}' is not running in this environment, so it has no logs",
                hint="Deploy it first; logs are removed when a workload is stopped.",
            )
        known = _container_names(paths)
        if container is not None and container not in known:
            raise StackyardError(
                f"Workload '{name}' has no container '{container}'",
                hint=f"Its containers are: {', '.join(known) or '(none)'}.",
            )
        chosen = [container] if container is not None else known
        return self._read_logs(paths, chosen, prefixed=len(known) > 1, follow=follow, lines=lines)

    # -- internals -----------------------------------------------------------------------

    def _paths(self, name: str) -> _Paths:
        _check_name(name, "workload")
        return _Paths(self.root / name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700, exist_ok=True)
            self.root.chmod(0o700)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _halt(self, paths: _Paths) -> None:
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
        for info in _raw_containers(paths):
            pid, start = info.get("pid"), info.get("start")
            if isinstance(pid, int) and pid > 1:
                _reap_group(pid, start if isinstance(start, int) else 0)
        paths.pidfile.unlink(missing_ok=True)

    def _plan(
        self, spec: WorkloadSpec, paths: _Paths, ports: dict[str, int], digest: str
    ) -> SupervisorPlan:
        processes = []
        for c in spec.containers:
            env = _environment(spec, c, ports, paths.root)
            processes.append(
                ProcessPlan(
                    name=c.name,
                    executable=_resolve(spec, c, env),
                    argv=c.argv,
                    env=env,
                    readiness=_probe(spec, c, c.readiness, ports, "readiness"),
                    liveness=_probe(spec, c, c.liveness, ports, "liveness"),
                )
            )
        return SupervisorPlan(
            workload=spec.name,
            digest=digest,
            workdir=str(paths.dir),
            endpoints={p.name: f"http://127.0.0.1:{ports[p.name]}" for p in spec.ports},
            tcp_ports=tuple(ports[p.name] for p in spec.ports),
            processes=tuple(processes),
            limits=self._limits,
        )

    def _launch(self, plan: SupervisorPlan, paths: _Paths) -> None:
        """Start the supervisor detached and hand it the plan over its stdin."""
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
        # When stackyard is imported from a source tree rather than installed, the
        # supervisor needs to be told where it is.
        package_parent = Path(stackyard.__file__).resolve().parent.parent
        if package_parent.name not in ("site-packages", "dist-packages"):
            env["PYTHONPATH"] = str(package_parent)
        log_fd = os.open(paths.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with subprocess.Popen(
                [sys.executable, "-P", "-m", "stackyard.runtime.supervisor"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_fd,
                cwd=paths.dir,
                env=env,
                start_new_session=True,
            ) as proc:
                try:
                    out, _ = proc.communicate(json.dumps(plan.to_json()).encode(), timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate()
        finally:
            os.close(log_fd)
        if proc.returncode != 0 or not out.strip().isdigit():
            raise StackyardError(
                f"The supervisor of workload '{plan.workload}' did not start: "
                + (supervise.log_tail(paths.supervisor_log) or f"exit code {proc.returncode}"),
                hint=f"See {paths.supervisor_log}.",
            )

    def _not_ready(self, name: str, st: WorkloadStatus, reason: str) -> StackyardError:
        paths = self._paths(name)
        message = f"Workload '{name}' did not become ready: {reason}."
        tail = list(
            self._read_logs(
                paths,
                list(st.containers) or _container_names(paths),
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
        return StackyardError(
            message,
            hint="Fix the command or the code it runs; stackyard keeps restarting it meanwhile.",
        )

    def _read_logs(
        self,
        paths: _Paths,
        containers: Sequence[str],
        *,
        prefixed: bool,
        follow: bool,
        lines: int | None,
    ) -> Iterator[str]:
        readers = [
            _LogReader(paths.logs / f"{c}.log", f"{c} | " if prefixed else "") for c in containers
        ]
        try:
            for r in readers:
                yield from r.backlog(lines, final=not follow)
            while follow:
                fresh = [line for r in readers for line in r.poll()]
                yield from fresh
                if not fresh:
                    if supervise.running(paths.pidfile) is None:
                        for r in readers:
                            yield from r.poll(final=True)
                        return
                    time.sleep(_FOLLOW_POLL)
        finally:
            for r in readers:
                r.close()


class _LogReader:
    """Reads one container log from its backlog on, across rotations."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self._file: BinaryIO | None = None
        self._ino = 0
        self._partial = b""

    def _read(self) -> bytes:
        """What was appended since the last read (opening the log once it exists)."""
        if self._file is None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return b""
            self._ino = os.fstat(self._file.fileno()).st_ino
        return self._file.read()

    def _split(self, data: bytes, *, final: bool) -> list[str]:
        """Complete lines of what was read; an unfinished last line waits unless ``final``."""
        *complete, rest = (self._partial + data).split(b"\n")
        self._partial = rest
        if final and rest:
            complete.append(rest)
            self._partial = b""
        return [self.prefix + line.decode(errors="replace") for line in complete]

    def backlog(self, lines: int | None, *, final: bool) -> list[str]:
        """The existing lines (the last ``lines``, from the rotated file too if needed)."""
        data = self._read()
        if lines is None or data.count(b"\n") < lines:
            with contextlib.suppress(OSError):
                data = self.path.with_name(self.path.name + ".1").read_bytes() + data
        out = self._split(data, final=final)
        if lines is not None:
            out = list(deque(out, maxlen=lines)) if lines > 0 else []
        return out

    def poll(self, *, final: bool = False) -> list[str]:
        """The lines written since the last call; follows a rotation to the new file."""
        out = self._split(self._read(), final=False)
        try:
            rotated = self._file is not None and os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            rotated = False
        if rotated:
            self.close()
            out += self._split(self._read(), final=False)
        if final:
            out += self._split(b"", final=True)
        return out

    def close(self) -> None:
        """Close the open file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None


# -- checks and mapping (no processes started) ---------------------------------------------


def _redactable(spec: WorkloadSpec) -> tuple[str, ...]:
    """The variable values to hide from quoted log lines, longest first."""
    values = {v for c in spec.containers for v in c.variables.values() if len(v) >= _REDACT_MIN}
    return tuple(sorted(values, key=len, reverse=True))


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Invalid {what} name {name!r}: the local runtime needs 1-63 letters, digits, "
            "'-', '_' or '.', starting with a letter or digit"
        )


def _check_names(spec: WorkloadSpec) -> None:
    _check_name(spec.name, "workload")
    if not spec.containers:
        raise ValueError(f"Workload '{spec.name}' has no containers")
    seen: set[str] = set()
    for c in spec.containers:
        _check_name(c.name, "container")
        if c.name in seen:
            raise ValueError(f"Workload '{spec.name}' has two containers named '{c.name}'")
        seen.add(c.name)
        for key, value in c.variables.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(
                    f"Container '{c.name}' of workload '{spec.name}' has variable {key!r} "
                    "with a name or value an environment cannot hold ('=' or NUL)"
                )
    if len({p.name for p in spec.ports}) != len(spec.ports):
        raise ValueError(f"Workload '{spec.name}' has two service ports with the same name")


@dataclass(frozen=True)
class _Layout:
    """Where files and volumes go under ``root/``, checked."""

    files: tuple[tuple[PurePosixPath, FileSpec], ...]
    volumes: tuple[tuple[PurePosixPath, Path], ...]


def _target(spec: WorkloadSpec, c: ContainerSpec, target: str, what: str) -> PurePosixPath:
    parts = [p for p in PurePosixPath(target).parts if not p.startswith("/")]
    if not parts or ".." in parts:
        raise StackyardError(
            f"The {what} target '{target}' of container '{c.name}' in workload '{spec.name}' "
            "is not inside the workload's root",
            hint="Use a path without '..' components that names a file or directory.",
        )
    return PurePosixPath(*parts)


def _layout(spec: WorkloadSpec) -> _Layout:
    files: dict[PurePosixPath, FileSpec] = {}
    volumes: dict[PurePosixPath, Path] = {}
    owner: dict[PurePosixPath, str] = {}

    def claim(rel: PurePosixPath, c: ContainerSpec, what: str) -> None:
        clash = next((o for o in owner if o == rel or o in rel.parents or rel in o.parents), None)
        if clash is not None:
            raise StackyardError(
                f"The {what} target '/{rel}' of container '{c.name}' in workload "
                f"'{spec.name}' overlaps '/{clash}' of container '{owner[clash]}'",
                hint="On the local runtime all containers of a workload share one "
                "filesystem root; give each file and volume its own path.",
            )
        owner[rel] = c.name

    for c in spec.containers:
        for f in c.files:
            rel = _target(spec, c, f.target, "file")
            if rel in files and files[rel] == f:
                continue
            claim(rel, c, "file")
            files[rel] = f
    for c in spec.containers:
        for v in c.volumes:
            rel = _target(spec, c, v.target, "volume")
            source = Path(v.source).absolute()
            if not source.is_dir():
                raise StackyardError(
                    f"The source of volume '{v.target}' of container '{c.name}' in workload "
                    f"'{spec.name}' is not a directory: {source}",
                )
            if volumes.get(rel) == source:
                continue
            claim(rel, c, "volume")
            volumes[rel] = source
    return _Layout(tuple(files.items()), tuple(volumes.items()))


def _materialise(layout: _Layout, root: Path) -> None:
    """Recreate ``root`` with the files (0600 unless set) and the volume symlinks."""
    if root.exists():
        shutil.rmtree(root)  # does not follow the volume symlinks
    root.mkdir(mode=0o700)
    for rel, f in layout.files:
        dest = _mkparents(root, rel)
        mode = f.mode if f.mode is not None else 0o600
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(f.content)
            os.fchmod(out.fileno(), mode)
    for rel, source in layout.volumes:
        _mkparents(root, rel).symlink_to(source, target_is_directory=True)


def _mkparents(root: Path, rel: PurePosixPath) -> Path:
    path = root
    for part in rel.parts[:-1]:
        path = path / part
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        if path.is_symlink() or not path.is_dir():
            raise StackyardError(f"Cannot create '/{rel}' in the workload root: '{part}' is taken")
    return path / rel.parts[-1]


def _allocate(spec: WorkloadSpec, previous: dict[str, int]) -> dict[str, int]:
    """A host port per service port: the previous one if it is free, else a new one."""
    out: dict[str, int] = {}
    for p in spec.ports:
        port = previous.get(p.name)
        if port is None or port in out.values() or not _bindable(port):
            port = supervise.free_port()
            while port in out.values():
                port = supervise.free_port()
        out[p.name] = port
    return out


def _bindable(port: int) -> bool:
    # SO_REUSEADDR: a port in TIME_WAIT after our old process is free for a server, which
    # sets the option too; a listening socket still makes bind fail.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_var(name: str) -> str:
    return "PORT_" + name.upper().replace("-", "_").replace(".", "_")


def _environment(
    spec: WorkloadSpec, c: ContainerSpec, ports: dict[str, int], root: Path
) -> dict[str, str]:
    """A minimal base (PATH with our interpreter first, HOME, LANG, TZ), then the variables,
    then the PORT variables and STACKYARD_ROOT, which the runtime owns."""
    exe_dir = str(Path(sys.executable).parent)
    env = {"PATH": os.pathsep.join([exe_dir, os.environ.get("PATH", os.defpath)])}
    for key in ("HOME", "LANG", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("HOME", str(Path.home()))
    env.update(c.variables)
    for name, port in ports.items():
        env[_port_var(name)] = str(port)
    if len(ports) == 1:
        env["PORT"] = str(next(iter(ports.values())))
    env["STACKYARD_ROOT"] = str(root)
    return env


def _resolve(spec: WorkloadSpec, c: ContainerSpec, env: dict[str, str]) -> str:
    if not c.argv or not c.argv[0]:
        raise StackyardError(
            f"Container '{c.name}' of workload '{spec.name}' has no command",
            hint="The local runtime runs host commands, not images: set 'command' in the "
            "Score file (for example ['python', 'app.py']).",
        )
    cmd = c.argv[0]
    if "/" in cmd:
        return cmd  # relative ones are relative to the workload root, the process's cwd
    found = shutil.which(cmd, path=env.get("PATH", ""))
    if found is None:
        raise StackyardError(
            f"The command '{cmd}' of container '{c.name}' in workload '{spec.name}' "
            "was not found on PATH",
            hint="Install it, or give its full path in the Score file's 'command'.",
        )
    return found


def _probe(
    spec: WorkloadSpec,
    c: ContainerSpec,
    probe: HttpProbe | None,
    ports: dict[str, int],
    what: str,
) -> ProbePlan | None:
    if probe is None:
        return None
    port = next((p for p in spec.ports if probe.port in (p.port, p.target_port)), None)
    if port is None:
        declared = ", ".join(f"{p.name} ({p.port}->{p.target_port})" for p in spec.ports)
        raise ValueError(
            f"The {what} probe of container '{c.name}' in workload '{spec.name}' uses port "
            f"{probe.port}, which is neither the port nor the targetPort of a service port "
            f"(declared: {declared or 'none'}); the local runtime can only probe those"
        )
    scheme = probe.scheme.upper()
    if scheme not in ("HTTP", "HTTPS"):
        raise ValueError(f"The {what} probe of container '{c.name}' has scheme {scheme!r}")
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    return ProbePlan(f"{scheme.lower()}://127.0.0.1:{ports[port.name]}{path}", probe.headers)


# -- files of a workload directory ---------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_status(paths: _Paths) -> WorkloadStatus | None:
    data = _read_json(paths.status)
    if not isinstance(data, dict):
        return None
    try:
        return WorkloadStatus.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _raw_containers(paths: _Paths) -> list[dict[str, Any]]:
    data = _read_json(paths.status)
    containers = data.get("containers") if isinstance(data, dict) else None
    return (
        [v for v in containers.values() if isinstance(v, dict)]
        if isinstance(containers, dict)
        else []
    )


def _read_ports(path: Path) -> dict[str, int]:
    data = _read_json(path)
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}


def _container_names(paths: _Paths) -> list[str]:
    st = _read_status(paths)
    if st is not None and st.containers:
        return list(st.containers)
    return sorted(p.name[: -len(".log")] for p in paths.logs.glob("*.log"))


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
