"""The client half of the command server (``stackyard.cli.cmdserver`` explains the server).

``stackyard`` calls ``delegate(argv)`` before it imports anything else: when a warm server of
the same interpreter and stackyard answers on the user's private socket, the command runs in
a child forked by it, with this process's stdin, stdout and stderr (passed as descriptors),
argv, working directory, environment and umask, and this process exits with the child's
status. This module imports only the standard library's ``socket``, ``struct`` and ``json``:
its whole cost is a few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys

__all__ = ["delegate", "enabled", "server_key", "socket_dir", "status", "stop_all"]

#: ``STACKYARD_DAEMON`` values that keep every command in its own process.
OFF = frozenset({"0", "off", "false", "no"})
#: The signals a client forwards to its command.
FORWARDED = (2, 15, 1, 3)  # SIGINT, SIGTERM, SIGHUP, SIGQUIT (the signal module costs more)


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether commands go through a command server (``STACKYARD_DAEMON``, on by default;
    Linux only: it needs ``SO_PEERCRED`` and descriptor passing)."""
    env = os.environ if environ is None else environ
    if env.get("STACKYARD_DAEMON", "1").strip().lower() in OFF:
        return False
    flags = sys.flags
    if flags.dev_mode or flags.isolated or flags.ignore_environment or flags.no_user_site:
        return False  # an interpreter started with options of its own runs its command
    if sys.warnoptions or getattr(sys, "_xoptions", None):
        return False
    return sys.platform == "linux" and hasattr(socket, "send_fds")


def socket_dir(environ: dict[str, str] | None = None) -> str | None:
    """The user's private directory for the servers' sockets (made when missing):
    ``STACKYARD_DAEMON_DIR``, else ``$XDG_RUNTIME_DIR/stackyard``, else
    ``/tmp/stackyard-<uid>``. None when it is not safe: not a directory (a link is not
    followed), not the user's, or open to group or others."""
    env = os.environ if environ is None else environ
    path = env.get("STACKYARD_DAEMON_DIR") or ""
    if not path:
        runtime = env.get("XDG_RUNTIME_DIR") or ""
        if runtime and os.path.isdir(runtime):
            path = os.path.join(runtime, "stackyard")
        else:
            path = f"/tmp/stackyard-{os.geteuid()}"  # noqa: S108  (checked below: ours, 0700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return path


def server_key(environ: dict[str, str] | None = None) -> str:
    """Which server may run this process's commands: one of the same stackyard version,
    interpreter, interpreter and loader variables (``PYTHON*``, ``LD_*``, ``FAKETIME*``),
    and installed packages (a site-packages directory changes when a package is installed or
    removed). The server itself watches the source files it preloaded, so an edited
    checkout never runs stale code."""
    import zlib

    from stackyard import __version__

    env = os.environ if environ is None else environ
    # What shapes a process before its first line of Python runs: the interpreter and its
    # variables, and the dynamic loader's (LD_PRELOAD: libfaketime, sanitizers).
    parts = [sys.executable, sys.prefix]
    parts += sorted(
        f"{k}={v}" for k, v in env.items() if k.startswith(("PYTHON", "LD_", "FAKETIME"))
    )
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")):
            try:
                parts.append(f"{entry}@{os.stat(entry).st_mtime_ns}")
            except OSError:
                continue
    digest = zlib.crc32("\0".join(parts).encode("utf-8", "surrogateescape"))
    return f"{__version__}-{digest:08x}"


def socket_path(directory: str, key: str) -> str:
    return os.path.join(directory, f"cmd-{key}.sock")


def frame(message: dict[str, object]) -> bytes:
    """A request: its length (4 bytes, big-endian), then its JSON."""
    body = json.dumps(message).encode("utf-8", "surrogateescape")
    return struct.pack("!I", len(body)) + body


def delegate(argv: list[str]) -> int | None:
    """Run ``argv`` in a command server's child; its exit status, or None when no server
    took it: then nothing ran, the caller runs the command itself, and a server is started
    in the background for the next one."""
    directory = socket_dir()
    if directory is None:
        return None
    key = server_key()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        try:
            sock.connect(socket_path(directory, key))
        except OSError:
            start_server(directory, key)
            return None
        try:
            cwd = os.getcwd()
        except OSError:  # a removed directory: the command reports it as it would alone
            return None
        mask = os.umask(0o077)
        os.umask(mask)
        request = {"argv": argv, "cwd": cwd, "env": dict(os.environ), "umask": mask}
        try:
            socket.send_fds(sock, [frame(request)], [0, 1, 2])
            reader = sock.makefile("rb")
            first = reader.readline()
            message = json.loads(first) if first else {}
        except (OSError, ValueError):
            return None
        if not isinstance(message, dict):
            return None
        if isinstance(message.get("exit"), int):  # it ended before the server told its pid
            _done(sock)
            return int(message["exit"])
        if not isinstance(message.get("pid"), int):  # refused (stale, stopping): nothing ran
            return None
        sock.settimeout(None)
        return _follow(sock, reader)
    finally:
        sock.close()


def _follow(sock: socket.socket, reader: object) -> int:
    """Forward this process's signals to the command until the server reports its exit."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")

    for signum in FORWARDED:
        try:
            signal.signal(signum, forward)
        except (OSError, ValueError):
            continue
    readline = reader.readline  # type: ignore[attr-defined]
    while True:
        line = readline()
        if not line:
            sys.stderr.write(
                "error: the stackyard command server stopped during the command\n"
                "  hint: run it again; STACKYARD_DAEMON=0 runs commands without a server.\n"
            )
            return 1
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and isinstance(message.get("exit"), int):
            _done(sock)
            return int(message["exit"])


def _done(sock: socket.socket) -> None:
    """Tell the server that the exit status arrived (from the command's own process, which
    writes it once its output is flushed, before it stops its helpers and exits): the
    client's going away is then no reason to stop what the command left running."""
    with contextlib.suppress(OSError):
        sock.sendall(b'{"done": true}\n')


def start_server(directory: str, key: str) -> None:
    """Start a server for ``key`` in the background (a new session, no terminal, ``/`` as
    its directory, output to ``cmdserver.log`` beside the socket), unless one holds the
    key's lock already (running or starting). Never fails the command."""
    import fcntl
    import subprocess

    try:
        fd = os.open(os.path.join(directory, f"cmd-{key}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)  # the server takes it for its lifetime
        with open(os.path.join(directory, "cmdserver.log"), "ab") as out:
            subprocess.Popen(
                [sys.executable, "-P", "-m", "stackyard.cli.cmdserver", directory, key],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd="/",
                start_new_session=True,
                close_fds=True,
                env={k: v for k, v in os.environ.items() if k != "STACKYARD_DAEMON"},
            )
    except OSError:
        pass  # held: a server is running or starting
    finally:
        os.close(fd)


# -- administration (``stackyard daemon``) ----------------------------------------------------


def status() -> list[dict[str, object]]:
    """The servers of this user that answer: key, pid, uptime, commands served and running,
    and whether they serve this installation (``current``)."""
    directory = socket_dir()
    if directory is None:
        return []
    current = server_key()
    found: list[dict[str, object]] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("cmd-") and name.endswith(".sock"):
            info = ask(os.path.join(directory, name), {"op": "status"})
            if info is not None:
                key = name[len("cmd-") : -len(".sock")]
                found.append({"key": key, "current": key == current, **info})
    return found


def stop_all() -> int:
    """Ask every server of this user to stop (each one finishes its running commands
    first); how many answered."""
    directory = socket_dir()
    if directory is None:
        return 0
    stopped = 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.startswith("cmd-") and name.endswith(".sock") and ask(path, {"op": "stop"}):
            stopped += 1
    return stopped


def ask(path: str, request: dict[str, object]) -> dict[str, object] | None:
    """One administrative request to the server at ``path``; its answer, or None."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(path)
        socket.send_fds(sock, [frame(request)], [])
        line = sock.makefile("rb").readline()
        answer = json.loads(line) if line else None
        return answer if isinstance(answer, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
