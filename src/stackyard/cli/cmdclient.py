"""The client half of the command server (``stackyard.cli.cmdserver`` explains the server).

``stackyard`` calls ``delegate(argv)`` before it imports anything else: when a warm server of
the same interpreter and stackyard answers on the user's private socket, the command runs in
a child forked by it, with this process's stdin, stdout and stderr (passed as descriptors),
argv, working directory, environment and umask, and this process exits with the child's
status.

Every command pays for this module's imports, so it takes only the interpreter's built-in
``_socket`` and ``_signal`` (``socket`` and ``signal`` build enums on import, and ``socket``
imports ``selectors``), and speaks a protocol that needs no ``json``:

- a request is its length (4 bytes, big-endian), then NUL-separated fields (neither an
  argument, a path nor an environment variable can hold a NUL): the protocol's version, the
  kind (``run``, or ``op`` for ``stackyard daemon``), then for ``run`` the working
  directory, the umask, the number of arguments, the arguments and the environment's
  ``NAME=value`` entries; text is UTF-8 with ``surrogateescape`` (any bytes round-trip);
- the server answers a command with lines ``pid N`` and ``exit N``, and the client sends
  ``signal N`` (a forwarded signal) and ``done`` (the exit status arrived);
- the answer to an ``op`` is one JSON line (``stackyard daemon`` imports ``json``).
"""

from __future__ import annotations

import _socket
import os
import sys

__all__ = ["delegate", "enabled", "server_key", "socket_dir", "status", "stop_all"]

#: ``STACKYARD_DAEMON`` values that keep every command in its own process.
OFF = frozenset({"0", "off", "false", "no"})
#: The signals a client forwards to its command.
FORWARDED = (2, 15, 1, 3)  # SIGINT, SIGTERM, SIGHUP, SIGQUIT
#: The request format's version (client and server are always the same stackyard: the key
#: holds its version; this guards a server of a checkout edited in place).
PROTOCOL = "sy1"


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
    return sys.platform == "linux" and hasattr(_socket.socket, "sendmsg")


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


def encode(kind: str, fields: list[str]) -> bytes:
    """A request of ``kind`` (``run`` or ``op``) with ``fields``: its length, then its body."""
    body = "\0".join([PROTOCOL, kind, *fields]).encode("utf-8", "surrogateescape")
    return len(body).to_bytes(4, "big") + body


def run_request(argv: list[str], cwd: str, umask: int, environ: dict[str, str]) -> bytes:
    """The request to run ``argv`` (``decode_run`` on the server reads it back)."""
    fields = [cwd, str(umask), str(len(argv)), *argv]
    fields += [f"{k}={v}" for k, v in environ.items()]
    return encode("run", fields)


def _send_with_fds(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """Send ``data`` with the descriptors ``fds`` attached (``SCM_RIGHTS``), then the rest of
    ``data`` if the first send was short."""
    rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


class _Lines:
    """The server's answer lines, read from the socket without ``socket.makefile``."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        """The next line without its newline; b"" when the server closed the connection."""
        while b"\n" not in self.buffer:
            more = self.sock.recv(4096)
            if not more:
                return b""
            self.buffer += more
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line or b" "


def _number(line: bytes, word: bytes) -> int | None:
    """N from the line ``<word> N``; None for any other line."""
    name, _, value = line.partition(b" ")
    if name != word:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def delegate(argv: list[str]) -> int | None:
    """Run ``argv`` in a command server's child; its exit status, or None when no server
    took it: then nothing ran, the caller runs the command itself, and a server is started
    in the background for the next one."""
    directory = socket_dir()
    if directory is None:
        return None
    key = server_key()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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
        lines = _Lines(sock)
        try:
            _send_with_fds(sock, run_request(argv, cwd, mask, dict(os.environ)), [0, 1, 2])
            first = lines.next()
        except OSError:
            return None
        code = _number(first, b"exit")
        if code is not None:  # it ended before the server told its pid
            _done(sock)
            return code
        if _number(first, b"pid") is None:  # refused (stale, stopping): nothing ran
            return None
        sock.settimeout(None)
        return _follow(sock, lines)
    finally:
        sock.close()


def _follow(sock: _socket.socket, lines: _Lines) -> int:
    """Forward this process's signals to the command until the server reports its exit."""
    # signal.py without its enums (typeshed has no stub for it)
    import _signal  # type: ignore[import-not-found]

    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105  (contextlib is an import every command would pay for)
            sock.sendall(b"signal %d\n" % signum)
        except OSError:
            pass

    for signum in FORWARDED:
        try:
            _signal.signal(signum, forward)
        except (OSError, ValueError):
            continue
    while True:
        try:
            line = lines.next()
        except OSError:
            line = b""
        if not line:
            sys.stderr.write(
                "error: the stackyard command server stopped during the command\n"
                "  hint: run it again; STACKYARD_DAEMON=0 runs commands without a server.\n"
            )
            return 1
        code = _number(line, b"exit")
        if code is not None:
            _done(sock)
            return code


def _done(sock: _socket.socket) -> None:
    """Tell the server that the exit status arrived (from the command's own process, which
    writes it once its output is flushed, before it stops its helpers and exits): the
    client's going away is then no reason to stop what the command left running."""
    try:  # noqa: SIM105  (contextlib is an import every command would pay for)
        sock.sendall(b"done\n")
    except OSError:
        pass


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
            info = ask(os.path.join(directory, name), "status")
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
        if name.startswith("cmd-") and name.endswith(".sock") and ask(path, "stop"):
            stopped += 1
    return stopped


def ask(path: str, op: str) -> dict[str, object] | None:
    """One administrative request (``status`` or ``stop``) to the server at ``path``; its
    answer, or None."""
    import json

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(path)
        _send_with_fds(sock, encode("op", [op]), [])
        line = _Lines(sock).next()
        answer = json.loads(line) if line.strip() else None
        return answer if isinstance(answer, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
