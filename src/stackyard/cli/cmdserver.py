"""The command server: a warm process that forks one child per ``stackyard`` command.

Most of a short command's time goes to importing its libraries (SQLAlchemy, psycopg,
pydantic, jsonschema, Rich, Typer, stackyard's own modules), not to its work. Like the Gradle
daemon or Rails' Spring, a command server imports them once and forks a child for every
command: the child runs the command exactly as the process would have (the client's argv,
working directory, environment, umask and its very stdin, stdout and stderr, passed as file
descriptors), and the client exits with the child's exit status.

- **Started on first use.** When no server answers, the command runs in its own process as
  before and starts one in the background for the next command. It exits after
  ``STACKYARD_DAEMON_IDLE`` seconds without a command (600 by default).
- **Never stale.** A server is keyed by stackyard's version, the interpreter, the
  interpreter-affecting variables and the installed packages (``cmdclient.server_key``), and
  it watches the size and time of every stackyard source file it preloaded: when one
  changes (an editable checkout being edited), it refuses the command (which then runs in
  its own process) and exits.
- **Same account only.** The socket lives in a directory of the user's own (``0700``,
  ``$XDG_RUNTIME_DIR/stackyard`` or ``/tmp/stackyard-<uid>``; a directory that is not the
  user's, or is open to others, disables the server), and the server refuses a peer whose
  uid differs from its own (``SO_PEERCRED``). The child is a fork of the user's own
  process, so the actor is the same OS account as without the server.
- **Signals.** Ctrl-C, SIGTERM, SIGHUP and SIGQUIT received by the client are forwarded to
  the child's process group; a client that goes away (killed) gets its child terminated.
- **Off switch.** ``STACKYARD_DAEMON=0`` runs every command in its own process;
  ``stackyard daemon status`` and ``stackyard daemon stop`` show and stop the servers.

The client half is ``stackyard.cli.cmdclient`` (a few milliseconds of imports); this half
imports the world once, before any command arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from typing import Any

from stackyard.cli.cmdclient import PROTOCOL, server_key, socket_path

__all__ = ["PRELOAD", "serve", "warm"]

DEFAULT_IDLE_S = 600.0
#: How often an idle server checks that the code and packages it preloaded are still those on
#: disk (a stale server exits instead of idling out).
_RECHECK_S = 10.0
_MAX_REQUEST = 4 * 1024 * 1024
#: What the server imports before it forks its first child: the libraries and the modules of
#: the commands' road (each import is tried; one that fails is imported by the child instead).
#: ``tests/cli/test_cmdserver_preload.py`` fails when an everyday command's child still imports
#: a module: add it here.
PRELOAD = (
    "sqlite3",
    "_strptime",  # datetime.strptime's first call imports it
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "psycopg",
    "pydantic",
    "jsonschema",
    "yaml",
    "rich.console",
    "rich.table",
    "rich._emoji_codes",  # the first markup rendered imports it
    "typer",
    "typer._click.decorators",
    "typer._click._textwrap",
    "typer.rich_utils",  # --help renders with it (Markdown, Pygments)
    "cryptography.hazmat.primitives.ciphers.aead",
    "regorus",
    "stackyard.home",
    "stackyard.cli.main",
    "stackyard.cli.tree",
    "stackyard.cli.backend",
    "stackyard.cli.remote",
    "stackyard.cli.common",
    "stackyard.cli.output",
    "stackyard.cli.deploy",
    "stackyard.cli.envs",
    "stackyard.cli.state",
    "stackyard.cli.workload",
    "stackyard.cli.governance",
    "stackyard.cli.release",
    "stackyard.environments.confirmation",
    "stackyard.environments.deploy",
    "stackyard.environments.promotion",
    "stackyard.environments.lifecycle",
    "stackyard.environments.views",
    "stackyard.environments.inspect",
    "stackyard.environments.state",
    "stackyard.state.sql",
    "stackyard.state.records",
    "stackyard.state.governance",
    "stackyard.state.driftlog",
    "stackyard.policy.rego",
    "stackyard.providers.postgres",
    "stackyard.providers.redis",
    "stackyard.providers.local",
    "stackyard.providers.random",
    "stackyard.providers.noop",
    "stackyard.runtime.local",
)


# -- the server -------------------------------------------------------------------------------


def preloaded_sources() -> dict[str, tuple[int, int]]:
    """Size and modification time of the source of every stackyard module imported so far."""
    import stackyard

    root = os.path.dirname(os.path.abspath(stackyard.__file__))
    found: dict[str, tuple[int, int]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.startswith(root):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found[path] = (st.st_size, st.st_mtime_ns)
    return found


def changed(sources: dict[str, tuple[int, int]]) -> bool:
    """Whether any of ``sources`` differs on disk now (edited, replaced or removed)."""
    for path, seen in sources.items():
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_size, st.st_mtime_ns) != seen:
            return True
    return False


#: What makes a process's context besides its uid: a client in another container or sandbox
#: (toolbox, bwrap: other namespaces), or with other groups (``newgrp``), must not have its
#: command run in ours. (A cgroup of its own on the same host, a terminal's scope, is fine.)
_NAMESPACES = ("mnt", "pid", "net", "user", "ipc", "uts", "cgroup")


def same_context(pid: int) -> bool:
    """Whether process ``pid`` shares this process's namespaces and groups (False when any of
    them cannot be read)."""
    try:
        for ns in _NAMESPACES:
            if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"):
                return False
        return _groups(pid) == _groups("self")
    except OSError:
        return False


def _groups(pid: int | str) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("Groups:"):
                return " ".join(sorted(line.split()[1:]))
    return ""


def _send(conn: socket.socket, word: str, number: int) -> None:
    """One line to a command's client: ``pid N`` or ``exit N``."""
    conn.sendall(f"{word} {number}\n".encode())


class _Server:
    def __init__(self, directory: str, key: str, idle_s: float, lock: int) -> None:
        import selectors

        self.lock = lock  # held for the server's lifetime; closed in its children
        self.sources = preloaded_sources()
        self.directory = directory
        self.key = key
        self.idle_s = idle_s
        self.path = socket_path(directory, key)
        self.started = time.time()
        self.last = time.monotonic()
        self.stopping = False
        self.served = 0
        self.children: dict[int, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def bind(self) -> bool:
        """Bind the socket, replacing a stale one; False when another server holds it."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
            return False  # a live server answers there
        except OSError:
            pass
        finally:
            probe.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.listener.setblocking(False)
        return True

    def loop(self) -> None:
        import selectors

        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        recheck = time.monotonic() + _RECHECK_S
        while True:
            self._reap()
            now = time.monotonic()
            if not self.children and (self.stopping or now - self.last >= self.idle_s):
                return
            if now >= recheck:
                recheck = now + _RECHECK_S
                if self.outdated():  # the code or the packages changed under us
                    self._stop()
                    continue
            for selected, _events in self.selector.select(timeout=5.0):
                what = selected.data
                if what == "accept":
                    self._accept()
                elif what == "wake":
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 4096)
                else:
                    self._from_client(what, selected.fileobj)  # type: ignore[arg-type]

    def outdated(self) -> bool:
        """Whether a source file it preloaded changed, or a package was installed or removed
        since it started (then no client asks for this server's key any more)."""
        return changed(self.sources) or server_key(dict(os.environ)) != self.key

    def _stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            with contextlib.suppress(OSError):
                self.selector.unregister(self.listener)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.listener.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(True)
        conn.settimeout(5.0)
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer, uid, _gid = struct.unpack("3i", creds)
            if uid != os.geteuid() or not same_context(peer):
                conn.close()  # the client runs the command itself
                return
            request, fds = _receive(conn)
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        op = request.get("op")
        if isinstance(op, str):
            self._admin(conn, op)
            for fd in fds:
                os.close(fd)
            return
        if not self.stopping and self.outdated():
            self._stop()  # a command must never run code older than what is on disk
        if self.stopping or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()  # the client runs the command itself
            return
        self.last = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(self, conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.served += 1
        self.children[pid] = conn
        conn.settimeout(None)
        try:
            _send(conn, "pid", pid)
        except OSError:
            self._signal(pid, signal.SIGTERM)
        import selectors

        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _admin(self, conn: socket.socket, op: str) -> None:
        with contextlib.closing(conn):
            reply = {
                "pid": os.getpid(),
                "uptime_s": round(time.time() - self.started, 1),
                "running": len(self.children),
                "served": self.served,
            }
            if op == "stop":
                self._stop()
                reply["stopping"] = True
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def _from_client(self, pid: int, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # the client is gone: so goes its command
            with contextlib.suppress(KeyError, OSError):
                self.selector.unregister(conn)
            self._signal(pid, signal.SIGTERM)
            return
        for line in data.splitlines():
            word, _, value = line.partition(b" ")
            if word == b"done":
                # The child told the client its exit status, and the client has gone: the
                # command ended, and what it left in its group is not for us to stop.
                with contextlib.suppress(KeyError, OSError):
                    self.selector.unregister(conn)
                return
            if word == b"signal" and value.isdigit():
                signum = int(value)
                if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                    self._signal(pid, signum)

    def _signal(self, pid: int, signum: int) -> None:
        if pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signum)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(KeyError, OSError):
                self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                _send(conn, "exit", code if code >= 0 else 128 - code)
            conn.close()
            self.last = time.monotonic()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Read one request (``cmdclient.encode``) and the descriptors sent with it."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    try:
        if len(data) < 4:
            raise ValueError("short request")
        length = int.from_bytes(data[:4], "big")
        if length > _MAX_REQUEST:
            raise ValueError("oversized request")
        body = bytearray(data[4:])
        while len(body) < length:
            more = conn.recv(min(65536, length - len(body)))
            if not more:
                raise ValueError("truncated request")
            body += more
        return decode(bytes(body)), list(fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def decode(body: bytes) -> dict[str, Any]:
    """A request's fields (``cmdclient.encode``): ``{"op": name}``, or ``argv``, ``cwd``,
    ``umask`` and ``env`` for a command. Raises ValueError when it is not one."""
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    if len(fields) < 3 or fields[0] != PROTOCOL:
        raise ValueError("not a request of this version")
    kind, rest = fields[1], fields[2:]
    if kind == "op":
        return {"op": rest[0]}
    if kind != "run" or len(rest) < 3 or not rest[1].isdigit() or not rest[2].isdigit():
        raise ValueError("malformed request")
    cwd, umask, count = rest[0], int(rest[1]), int(rest[2])
    if len(rest) < 3 + count or umask > 0o777:
        raise ValueError("malformed request")
    argv = rest[3 : 3 + count]
    env: dict[str, str] = {}
    for entry in rest[3 + count :]:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise ValueError("malformed environment entry")
        env[name] = value
    return {"argv": argv, "cwd": cwd, "umask": umask, "env": env}


def _child(server: _Server, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the client's command, run it, exit with its status."""
    code = 1
    try:
        os.setpgid(0, 0)  # the client's signals go to this command and what it starts
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        server.selector.close()
        for fd in (server.wake_r, server.wake_w, server.lock):
            os.close(fd)
        server.listener.close()
        for other in server.children.values():
            other.close()
        # ``conn`` stays open, write-only: the exit status goes to the client from here (the
        # server reads it, and reports the exit only once this process is reaped).
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_stdio(request["env"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()  # TZ is read at startup, and this process started as the server
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["stackyard", *argv]
        from stackyard.cli.main import invoke

        code = invoke(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # setting up the command failed (invoke reports its own)
        code = 1
        with contextlib.suppress(BaseException):
            sys.stderr.write(f"error: the command server could not run the command: {exc}\n")
            sys.stderr.write("  hint: STACKYARD_DAEMON=0 runs commands without it.\n")
    finally:
        import atexit

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        # The command's output is written: the client may exit now. What is left (the exit
        # handlers stop the policy worker and close the pools, then the kernel tears this
        # process down) is no reason for it to wait.
        with contextlib.suppress(BaseException):
            conn.settimeout(1.0)
            _send(conn, "exit", code)
            conn.close()
        # The client's descriptors go too: a caller that reads the command's output from a
        # pipe (a script, CI, ``$(stackyard ...)``) sees its end now, not after the clean-up.
        with contextlib.suppress(BaseException):
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _reopen_stdio(env: dict[str, str]) -> None:
    """New ``sys.stdin/stdout/stderr`` on descriptors 0-2 (now the client's), buffered as
    Python buffers a process's own: line-buffered on a terminal."""
    encoding = env.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115
    sys.stdout = open(  # noqa: SIM115
        1, "w", encoding=encoding, closefd=False, buffering=1 if os.isatty(1) else -1
    )
    sys.stderr = open(  # noqa: SIM115
        2, "w", encoding=encoding, errors="backslashreplace", closefd=False, buffering=1
    )


def warm() -> None:
    """Everything a child would otherwise do first on every command, done once here: import
    ``PRELOAD``, read the provider entry points and their distributions' metadata, render
    once with Rich (its first rendering fills caches that every later one reuses), check a
    Score workload (the schema's validator is built on first use), and compile the state
    store's everyday SQL statements (``state.compiled``). Best effort:
    what fails here is done by the child, as without a server."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112  (the child imports it, and reports, if needed)
            continue
    with contextlib.suppress(Exception):  # the children read them otherwise
        from stackyard.providers.registry import warm_entry_points

        warm_entry_points()
    with contextlib.suppress(Exception):
        _warm_rich()
    with contextlib.suppress(Exception):  # the Score schema's validator, and its first use
        from stackyard.model.workload import check_workload

        check_workload(
            {
                "apiVersion": "score.dev/v1b1",
                "metadata": {"name": "warm"},
                "containers": {"main": {"image": "busybox", "command": ["true"]}},
                "resources": {"db": {"type": "postgres"}},
            }
        )
    with contextlib.suppress(Exception):  # SQLite statements, on a throwaway store
        from stackyard.state import compiled

        compiled.warm()


def _warm_rich() -> None:
    """Render markup, a table and a rule to a string once: Rich compiles its markup and
    style parsers and fills its cell-width caches on first use."""
    import io

    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, width=100)
    table = Table("name", "state")
    table.add_row("web", "[green]ready[/]")
    console.print("[bold]stackyard[/] [dim]warm[/] :white_check_mark:")
    console.print(table)
    console.rule("done")


def serve(directory: str, key: str) -> int:
    """The server's main: take the key's lock, preload, bind, serve until idle."""
    import fcntl

    lock = os.open(os.path.join(directory, f"cmd-{key}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server has the key
    warm()
    idle = DEFAULT_IDLE_S
    with contextlib.suppress(ValueError):
        idle = float(os.environ.get("STACKYARD_DAEMON_IDLE", DEFAULT_IDLE_S))
    server = _Server(directory, key, idle, lock)
    if not server.bind():
        return 0
    try:
        server.loop()
    finally:
        with contextlib.suppress(OSError):
            if not server.stopping:
                os.unlink(server.path)
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
