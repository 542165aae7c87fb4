"""Supervising a detached server process: start, pidfile, readiness, liveness and stop.

A server is started through a tiny launcher (a second Python process) that forks once and
exits, so the server is nobody's child: it outlives the stackyard process, and no
``subprocess.Popen`` object is left behind to reap it. The launcher drops to the server user
(``setgroups``/``setgid``/``setuid``) in the forked child just before ``exec``; it has to,
because the unprivileged user may not be able to run our Python at all.

The pidfile holds the pid and the process's start time (``/proc/<pid>/stat``), so a reused
pid is never mistaken for our server, and a zombie (a server killed while its parent does not
reap) counts as stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stackyard.host import accounts

DEFAULT_SERVER_USER = "stackyard"

_LAUNCHER = """
import json, os, sys
spec = json.loads(sys.argv[1])
pid = os.fork()
if pid:
    print(pid, flush=True)
    os._exit(0)
try:
    os.dup2(2, 1)
    if spec["uid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
    os.chdir(spec["cwd"])
    os.umask(0o077)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])
except BaseException as exc:
    sys.stderr.write("stackyard: cannot start %s: %s\\n" % (spec["argv"][0], exc))
    os._exit(127)
"""


#: The unprivileged account a server runs as when stackyard runs as root.
ServerUser = accounts.Account


def server_user(purpose: str = "") -> ServerUser | None:
    """The account to run a server as: ``None`` (ourselves) unless we are root.

    Under root: ``$STACKYARD_SERVER_USER`` if set (the operator's choice, shared by every
    server); else an account of the server's own (``accounts.ensure(purpose)``), so no two
    servers share a uid; else the system user ``stackyard``, created with ``useradd --system``
    when missing; else ``nobody``. Safe to call concurrently: a lost ``useradd`` race is
    followed by a second look-up.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("STACKYARD_SERVER_USER")
    if not wanted and purpose:
        own = accounts.ensure(purpose, f"stackyard server {purpose}")
        if own is not None:
            return own
    wanted = wanted or DEFAULT_SERVER_USER
    found = accounts.lookup(wanted)
    if found is None and wanted == DEFAULT_SERVER_USER:
        found = accounts.useradd(wanted)
    return found or accounts.lookup("nobody")


def reachable_by(path: Path, user: ServerUser | None) -> bool:
    """Whether ``user`` can traverse every directory from ``/`` down to ``path``."""
    if user is None:
        return True
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == user.gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def give(path: Path, user: ServerUser | None, mode: int) -> None:
    """Hand ``path`` to ``user`` (when we are root) with ``mode``."""
    if user is not None:
        os.chown(path, user.uid, user.gid)
    path.chmod(mode)


def give_tree(path: Path, user: accounts.Account) -> None:
    """Hand ``path`` and everything under it to ``user``; symlinks are not followed."""
    os.lchown(path, user.uid, user.gid)
    for parent, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(parent, name), user.uid, user.gid)


@dataclass(frozen=True, slots=True)
class Process:
    """A started server: its pid and start time (clock ticks since boot; 0 when unknown)."""

    pid: int
    start: int


def _start_time(pid: int) -> int | None:
    """The process's start time, or ``None`` when it does not exist or is a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(proc: Process) -> bool:
    """Whether ``proc`` is running (not a zombie, not a newer process reusing its pid)."""
    if Path("/proc/self/stat").exists():
        started = _start_time(proc.pid)
        return started is not None and (proc.start in (0, started))
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pidfile(path: Path) -> Process | None:
    """The process recorded in ``path``, or ``None`` when there is no readable record."""
    try:
        data = json.loads(path.read_text())
        return Process(int(data["pid"]), int(data.get("start", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(pidfile: Path) -> Process | None:
    """The live process recorded in ``pidfile``, or ``None``."""
    proc = read_pidfile(pidfile)
    return proc if proc is not None and alive(proc) else None


def launch(
    argv: Sequence[str],
    *,
    pidfile: Path,
    logfile: Path,
    cwd: Path,
    env: Mapping[str, str],
    user: ServerUser | None,
) -> Process:
    """Start ``argv`` detached (new session, output appended to ``logfile``); write ``pidfile``.

    Returns as soon as the process exists; readiness is the caller's ``wait_ready``.
    """
    spec = {
        "argv": list(argv),
        "cwd": str(cwd),
        "env": dict(env),
        "uid": user.uid if user else None,
        "gid": user.gid if user else None,
    }
    fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=fd,
            start_new_session=True,
            timeout=30,
            check=True,
            text=True,
        )
    finally:
        os.close(fd)
    pid = int(out.stdout.strip())
    proc = Process(pid, _start_time(pid) or 0)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": proc.pid, "start": proc.start}))
    tmp.replace(pidfile)
    return proc


def wait_ready(
    proc: Process, ready: Callable[[], bool], *, timeout: float, interval: float = 0.05
) -> bool:
    """Poll ``ready`` until it holds (True), the process dies or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive(proc):
            return False
        time.sleep(interval)
    return ready()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pidfile: Path, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop the server in ``pidfile``: ``sig``, then SIGKILL after ``timeout``; reap leftovers.

    The server leads its own session, so its process group holds its children too: they are
    killed as well, which also cleans up after a server that was killed on its own. Stopping a
    stopped server succeeds. Removes the pidfile.
    """
    proc = read_pidfile(pidfile)
    if proc is None:
        return
    if alive(proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        deadline = time.monotonic() + timeout
        while alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    reap_group(proc)
    pidfile.unlink(missing_ok=True)


def reap_group(proc: Process, *, timeout: float = 5.0) -> None:
    """SIGKILL what is left of ``proc``'s process group and wait until it is gone."""
    if proc.pid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if alive(proc):
            os.kill(proc.pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
    # A zombie member keeps the group alive until its parent reaps it; that is harmless
    # (it holds no port and no shared memory), so only live members are waited for.
    deadline = time.monotonic() + timeout
    while _group_has_live_member(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _group_has_live_member(pgid: int) -> bool:
    proc_root = Path("/proc")
    if not proc_root.exists():
        return _group_alive(pgid)
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(logfile: Path, lines: int = 5) -> str:
    """The last lines of a log, for error messages."""
    try:
        text = logfile.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
