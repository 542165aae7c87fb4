"""The command server (issue 13): a command run by a warm server's child behaves exactly as the
same command run in its own process: output, exit status, working directory, environment,
terminal, signals. Each test has its own socket directory, and stops its servers on the way
out (``conftest`` turns the server off for every other test)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackyard.cli import cmdclient, cmdserver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello" / "score.yaml"
STACKYARD = Path(sys.executable).parent / "stackyard"


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[Path]:
    """A private socket directory; every server started there is stopped after the test."""
    directory = tmp_path / "sockets"
    directory.mkdir(mode=0o700)
    yield directory
    env = {**os.environ, "STACKYARD_DAEMON_DIR": str(directory)}
    for server in _servers(env):
        _stop(int(server["pid"]))


def _env(sockets: Path, home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "STACKYARD_DAEMON": "1", "STACKYARD_DAEMON_DIR": str(sockets)}
    env.update(NO_COLOR="1", COLUMNS="120")
    env["STACKYARD_HOME"] = str(home) if home else str(sockets.parent / "no-home")
    env.update(extra)
    return env


def _run(
    args: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    *,
    command: tuple[str, ...] = (str(STACKYARD),),
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def _servers(env: dict[str, str]) -> list[dict[str, object]]:
    """The servers answering in the test's socket directory (as ``stackyard daemon`` lists
    them; ``test_stop_and_off`` runs that command itself)."""
    directory = env["STACKYARD_DAEMON_DIR"]
    current = cmdclient.server_key(env)
    found = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("cmd-") and name.endswith(".sock"):
            info = cmdclient.ask(os.path.join(directory, name), "status")
            if info is not None:
                found.append({**info, "current": name == f"cmd-{current}.sock"})
    return found


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _warm(env: dict[str, str]) -> dict[str, object]:
    """Start a server through a first command, and wait until it answers."""
    _run(["--help"], env)
    for _ in range(400):  # preloading takes a second or two on a loaded machine
        servers = [s for s in _servers(env) if s.get("current")]
        if servers:
            return servers[0]
        time.sleep(0.05)
    raise AssertionError(f"no command server started: {_log(env)}")


def _log(env: dict[str, str]) -> str:
    log = Path(env["STACKYARD_DAEMON_DIR"]) / "cmdserver.log"
    return log.read_text() if log.exists() else "(no log)"


def _served(env: dict[str, str]) -> int:
    return sum(int(s["served"]) for s in _servers(env) if s.get("current"))  # type: ignore[call-overload]


def test_the_first_command_starts_a_server_that_serves_the_next(sockets: Path) -> None:
    env = _env(sockets)
    first = _run(["workload", "validate", str(HELLO)], env)
    assert first.returncode == 0, first.stderr
    _warm(env)
    before = _served(env)
    again = _run(["workload", "validate", str(HELLO)], env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert _served(env) == before + 1, "the command did not go through the server"
    listed = _servers(env)
    assert len(listed) == 1 and os.stat(sockets).st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["env", "--help"],
        ["workload", "validate", "score.yaml", "-o", "json"],
        ["workload", "validate", "broken.yaml"],
        ["workload", "validate", "missing.yaml"],
        ["no-such-command"],
        ["env", "list"],
    ],
    ids=["help", "group-help", "validate-json", "invalid", "missing-file", "usage", "no-home"],
)
def test_a_served_command_is_the_same_command(
    sockets: Path, tmp_path: Path, args: list[str]
) -> None:
    """Same stdout, stderr and exit status as without the server, with relative paths read
    from the client's working directory and STACKYARD_HOME from its environment."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "score.yaml").write_text(HELLO.read_text())
    (work / "broken.yaml").write_text("apiVersion: score.dev/v1b1\nmetadata: {}\ncontainers: 3\n")
    env = _env(sockets)
    _warm(env)
    before = _served(env)
    served = _run(args, env, cwd=work)
    alone = _run(args, {**env, "STACKYARD_DAEMON": "0"}, cwd=work)
    assert _served(env) == before + 1
    assert (served.returncode, served.stdout, served.stderr) == (
        alone.returncode,
        alone.stdout,
        alone.stderr,
    )
    assert "Traceback" not in served.stderr


def test_the_environment_and_umask_are_the_clients(sockets: Path, tmp_path: Path) -> None:
    """A home named only in the client's environment is the one used, and the files a
    served command writes get the client's umask (the server's is 022)."""
    env = _env(sockets)
    _warm(env)
    home = tmp_path / "their-home"
    res = _run(["env", "list"], {**env, "STACKYARD_HOME": str(home)})
    assert res.returncode != 0 and str(home) in res.stderr
    made = tmp_path / "scaffold"
    scaffold = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 077 && exec {STACKYARD} component init thing --type thing --to {made}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert scaffold.returncode == 0, scaffold.stderr
    files = [p for p in made.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o077 == 0 for p in files), (
        "the files the command wrote ignore the client's umask"
    )


def _interrupted_at_the_prompt(env: dict[str, str], *, served: bool) -> int:
    """``platform apply`` on a terminal, Ctrl-C at its question; the exit status."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [str(STACKYARD), "platform", "apply", str(REPO / "examples" / "platform")],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"?" not in seen and time.monotonic() < deadline:
            seen += os.read(primary, 4096)
        assert b"?" in seen, seen.decode(errors="replace")
        assert b"\x1b[" in seen, "no colour: the command did not see a terminal"
        if served:
            running = [s for s in _servers(env) if s.get("current")]
            assert running and running[0]["running"] == 1
        # Seen as soon as it is written: the command may not be reading the terminal yet.
        # A Ctrl-C that lands between the prompt and the read is only acted on once the read
        # returns (Python handles signals between bytecodes, and the read never sees it), as
        # without the server; a user presses it again, and so does this test.
        for _ in range(30):
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError("Ctrl-C did not end the command")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)


def test_a_terminal_stays_a_terminal_and_ctrl_c_reaches_the_command(
    sockets: Path, library_home: Path
) -> None:
    """The child writes to the client's own terminal (colours, prompts) and a Ctrl-C sent to
    the client ends the command as it ends one without the server (cancelled, nothing
    changed), leaving no child behind."""
    env = _env(sockets, home=library_home)
    env.pop("NO_COLOR")
    _warm(env)
    served = _interrupted_at_the_prompt(env, served=True)
    alone = _interrupted_at_the_prompt({**env, "STACKYARD_DAEMON": "0"}, served=False)
    assert served == alone == 10  # CancelledError: docs/errors.md
    for _ in range(100):
        if all(s["running"] == 0 for s in _servers(env)):
            break
        time.sleep(0.05)
    assert all(s["running"] == 0 for s in _servers(env)), "the command outlived Ctrl-C"


def test_a_killed_client_takes_its_command_with_it(sockets: Path, library_home: Path) -> None:
    env = _env(sockets, home=library_home)
    _warm(env)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [str(STACKYARD), "platform", "apply", str(REPO / "examples" / "platform")],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"?" not in seen and time.monotonic() < deadline:
            seen += os.read(primary, 4096)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        os.close(primary)
    for _ in range(200):
        if all(s["running"] == 0 for s in _servers(env)):
            break
        time.sleep(0.05)
    assert all(s["running"] == 0 for s in _servers(env))


def test_stop_and_off(sockets: Path) -> None:
    env = _env(sockets)
    server = _warm(env)
    off = _run(["workload", "validate", str(HELLO)], {**env, "STACKYARD_DAEMON": "0"})
    assert off.returncode == 0
    assert _served(env) == server["served"], "STACKYARD_DAEMON=0 still used the server"
    listed = _run(["daemon", "-o", "json"], {**env, "STACKYARD_DAEMON": "0"})
    assert [s["pid"] for s in json.loads(listed.stdout)["servers"]] == [server["pid"]]
    stopped = _run(["daemon", "stop", "-o", "json"], {**env, "STACKYARD_DAEMON": "0"})
    assert json.loads(stopped.stdout) == {"stopped": 1}
    pid = int(server["pid"])  # type: ignore[call-overload]
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the server did not stop")
    assert not list(sockets.glob("*.sock"))


def test_an_unsafe_socket_directory_turns_the_server_off(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert cmdclient.socket_dir({"STACKYARD_DAEMON_DIR": str(shared)}) is None
    link = tmp_path / "link"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    link.symlink_to(private)
    assert cmdclient.socket_dir({"STACKYARD_DAEMON_DIR": str(link)}) is None
    assert cmdclient.socket_dir({"STACKYARD_DAEMON_DIR": str(private)}) == str(private)
    env = {**os.environ, "STACKYARD_DAEMON": "1", "STACKYARD_DAEMON_DIR": str(shared)}
    res = _run(["workload", "validate", str(HELLO)], env)
    assert res.returncode == 0, res.stderr
    assert not list(shared.iterdir()), "a server was started in a directory others can write"


def test_the_key_follows_what_shapes_the_interpreter() -> None:
    base = {"PATH": "/usr/bin"}
    key = cmdclient.server_key(base)
    assert cmdclient.server_key({**base, "STACKYARD_HOME": "/elsewhere"}) == key
    for changed in ("PYTHONPATH", "LD_PRELOAD", "FAKETIME", "PYTHONHASHSEED"):
        assert cmdclient.server_key({**base, changed: "x"}) != key, changed
    assert not cmdclient.enabled({"STACKYARD_DAEMON": "0"})
    assert not cmdclient.enabled({"STACKYARD_DAEMON": "off"})


def test_an_edited_source_file_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    st = module.stat()
    sources = {str(module): (st.st_size, st.st_mtime_ns)}
    assert not cmdserver.changed(sources)
    module.write_text("x = 22\n")
    assert cmdserver.changed(sources)
    module.unlink()
    assert cmdserver.changed(sources)
    preloaded = cmdserver.preloaded_sources()
    assert any(p.endswith("cmdserver.py") for p in preloaded)


#: What a client may import beyond what pip's console-script wrapper already has (``re``,
#: ``sys``): stackyard's entry module, the client, and the interpreter's own ``_socket``.
CLIENT_IMPORTS = {
    "stackyard",
    "stackyard.cli",
    "stackyard.cli.main",
    "stackyard.cli.cmdclient",
    "__future__",
    "_socket",
    "zlib",
}

_CLIENT = """
import re, sys
mark = set(sys.modules)
out = sys.argv[1]
from stackyard.cli import cmdclient
code = cmdclient.delegate(sys.argv[2:])
with open(out, "w") as fh:
    fh.write(repr(code) + "\\n" + "\\n".join(sorted(set(sys.modules) - mark)))
"""


def test_a_served_command_costs_the_client_only_a_few_imports(sockets: Path) -> None:
    """Every command pays for the client's imports: no ``socket`` (its enums and
    ``selectors``), ``json``, ``struct``, ``signal`` or ``contextlib``."""
    env = _env(sockets)
    _warm(env)
    before = _served(env)
    out = sockets.parent / "client.txt"
    args = ["workload", "validate", str(HELLO)]
    res = _run(["-c", _CLIENT, str(out), *args], env, command=(sys.executable,))
    assert res.returncode == 0, res.stderr
    code, *modules = out.read_text().splitlines()
    assert code == "0", res.stderr
    assert _served(env) == before + 1, "the command did not go through the server"
    assert res.stdout == _run(args, {**env, "STACKYARD_DAEMON": "0"}).stdout
    assert set(modules) <= CLIENT_IMPORTS, sorted(set(modules) - CLIENT_IMPORTS)


HOSTILE = [
    "",
    "a=b=c",
    "line\nbreak",
    "tab\there",
    "ünïcödé ✓",
    "not utf-8: \udcff\udcfe",
    '{"json": true}',
    "sy1",
]


def test_a_request_reads_back_exactly_whatever_its_text() -> None:
    env = {f"V{i}": v for i, v in enumerate(HOSTILE)} | {"EMPTY": "", "EQ": "=x="}
    frame = cmdclient.run_request(HOSTILE, "/tmp/with\nnewline", 0o027, env)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert cmdserver.decode(frame[4:]) == {
        "argv": HOSTILE,
        "cwd": "/tmp/with\nnewline",
        "umask": 0o027,
        "env": env,
    }
    assert cmdserver.decode(cmdclient.encode("op", ["status"])[4:]) == {"op": "status"}


@pytest.mark.parametrize(
    "fields",
    [
        ["sy0", "run", "/", "18", "0"],  # another protocol version
        ["sy1", "exec", "/", "18", "0"],  # an unknown kind
        ["sy1", "run", "/", "18", "2", "only-one"],  # fewer arguments than counted
        ["sy1", "run", "/", "-1", "0"],  # not a umask
        ["sy1", "run", "/", "4096", "0"],  # beyond 0o777
        ["sy1", "run", "/", "18", "x"],  # not a count
        ["sy1", "run", "/", "18", "0", "NO_EQUALS_SIGN"],
        ["sy1", "run", "/", "18", "0", "=value"],
        ["sy1"],
    ],
)
def test_a_malformed_request_is_refused(fields: list[str]) -> None:
    with pytest.raises(ValueError):
        cmdserver.decode("\0".join(fields).encode())


def test_a_refused_request_closes_the_descriptors_sent_with_it() -> None:
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        opened = len(os.listdir("/proc/self/fd"))
        bad = b"sy1\0nonsense"
        socket.send_fds(ours, [len(bad).to_bytes(4, "big") + bad], [0, 1, 2])
        with pytest.raises(ValueError):
            cmdserver._receive(theirs)
        assert len(os.listdir("/proc/self/fd")) == opened
    finally:
        ours.close()
        theirs.close()


def test_the_output_ends_when_the_command_does_not_when_its_clean_up_does(
    tmp_path: Path,
) -> None:
    """A caller reading a served command's output from a pipe sees its end once the exit
    status is sent, while the child's exit handlers (stopping the policy worker, closing
    pools) still run: here one that takes 30 s."""
    import atexit
    import socket

    lock = os.open(tmp_path / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
    server = cmdserver._Server(str(tmp_path), "k", 60.0, lock)
    client, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    request = {"argv": ["--version"], "cwd": str(tmp_path), "umask": 0o022, "env": dict(os.environ)}
    ended = tmp_path / "clean-up-ended"

    def clean_up() -> None:
        time.sleep(30)
        ended.touch()

    pid = os.fork()
    if pid == 0:
        atexit._clear()  # the test process's own handlers (its caches' removal) are not ours
        atexit.register(clean_up)
        cmdserver._child(server, conn, request, [null, out_w, err_w])  # never returns
    try:
        for fd in (out_w, err_w, null, lock):
            os.close(fd)
        conn.close()
        with os.fdopen(out_r, "rb") as out:
            printed = out.read()  # until every writer closed it
        assert not ended.exists(), "the output ended only after the clean-up"
        assert printed.decode().startswith("stackyard ")
        assert client.recv(64) == b"exit 0\n"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(err_r)
        client.close()
        server.listener.close()
        server.selector.close()
