"""The ``local`` runtime against real processes: start, probes, restarts, logs, stop."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stackyard.errors import InvalidInputError, StackyardError
from stackyard.host import supervise
from stackyard.runtime.local import LocalRuntime
from stackyard.runtime.spec import (
    ContainerSpec,
    FileSpec,
    HttpProbe,
    PortSpec,
    VolumeSpec,
    WorkloadSpec,
    WorkloadStatus,
)
from stackyard.runtime.supervisor import Limits

pytestmark = pytest.mark.integration

T = TypeVar("T")

APP = r"""
import http.server, json, os, subprocess, sys, threading
from urllib.parse import parse_qs, urlparse

print(f"hello from {os.environ.get('APP_NAME', 'app')}", flush=True)
if os.environ.get("CRASH"):
    print(f"fatal: cannot start, token {os.environ.get('SECRET_TOKEN')}", flush=True)
    sys.exit(1)
child = None
if os.environ.get("SPAWN_CHILD"):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
if os.environ.get("BIG_LOG"):
    for i in range(int(os.environ["BIG_LOG"])):
        print(f"line {i:05d} " + "x" * 40)
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        status, body = 200, b"ok"
        if url.path == "/live" and os.environ.get("LIVE_FAIL"):
            status = 500
        elif url.path.startswith("/env/"):
            value = os.environ.get(url.path[len("/env/"):])
            status, body = (404, b"") if value is None else (200, value.encode())
        elif url.path == "/file":
            try:
                with open(parse_qs(url.query)["p"][0], "rb") as f:
                    body = f.read()
            except OSError:
                status, body = 404, b""
        elif url.path == "/info":
            body = json.dumps({
                "pid": os.getpid(), "pgid": os.getpgid(0), "cwd": os.getcwd(),
                "exe": sys.executable, "child": child.pid if child else None,
            }).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("GET " + self.path, flush=True)


if os.environ.get("APP_PORT_VAR2"):
    second = int(os.environ[os.environ["APP_PORT_VAR2"]])
    server2 = http.server.ThreadingHTTPServer(("127.0.0.1", second), Handler)
    threading.Thread(target=server2.serve_forever, daemon=True).start()
port = int(os.environ[os.environ.get("APP_PORT_VAR", "PORT")])
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

TICKER = r"""
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""

SECRET = "s3cr3t-Value-8d1f"


@pytest.fixture
def programs(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, text in (("app", APP), ("ticker", TICKER)):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        out[name] = str(path)
    return out


def _processes_under(root: Path) -> list[int]:
    """Live processes whose working directory is under ``root`` (supervisors and apps)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)) and _live(int(entry.name)):
            out.append(int(entry.name))
    return out


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., LocalRuntime]]:
    """Runtimes with custom limits; each one's workloads are stopped and checked for leaks."""
    made: list[LocalRuntime] = []

    def make(limits: Limits | None = None) -> LocalRuntime:
        made.append(LocalRuntime(tmp_path / f"workloads-{len(made)}", limits=limits))
        return made[-1]

    try:
        yield make
    finally:
        for runtime in made:
            runtime.stop_all()
            assert runtime.names() == []
            assert _processes_under(runtime.root) == []


@pytest.fixture
def rt(make_runtime: Callable[..., LocalRuntime]) -> LocalRuntime:
    return make_runtime()


def _spec(
    app: str,
    *,
    name: str = "web",
    variables: dict[str, str] | None = None,
    probe_port: int | None = 8080,
    ports: tuple[PortSpec, ...] = (PortSpec("web", 80, 8080),),
    **container: Any,
) -> WorkloadSpec:
    readiness = HttpProbe(probe_port, "/healthz") if probe_port is not None else None
    main = ContainerSpec(
        name="main",
        argv=("python", app),
        variables=variables or {},
        readiness=readiness,
        **container,
    )
    return WorkloadSpec(env="dev", name=name, containers=(main,), ports=ports)


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> tuple[int, str]:
    try:
        with _opener().open(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, ""


def _info(st: WorkloadStatus, port: str = "web") -> dict[str, Any]:
    code, body = _get(st.endpoints[port] + "/info")
    assert code == 200
    data: dict[str, Any] = json.loads(body)
    return data


def _eventually(fn: Callable[[], T | None], *, timeout: float = 10.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or fn}")
        time.sleep(0.05)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _live(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def _pid(st: WorkloadStatus, container: str = "main") -> int:
    pid = st.containers[container]["pid"]
    assert isinstance(pid, int)
    return pid


def test_ready_via_http_probe_with_ports_and_a_minimal_environment(
    rt: LocalRuntime, programs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKYARD_SECRET_KEY", "must-not-leak")
    spec = _spec(programs["app"], variables={"SECRET_TOKEN": SECRET})

    started = time.monotonic()
    st, changed = rt.start(spec)
    assert changed
    assert st.digest == spec.digest()
    st = rt.wait_ready("web", timeout=10)
    assert time.monotonic() - started < 5  # generous: the target is well under 2 s

    assert st.state == "ready"
    assert st.containers["main"]["ready"] is True
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", st.endpoints["web"])
    port = st.endpoints["web"].rsplit(":", 1)[1]
    base = st.endpoints["web"]
    assert _get(base + "/env/PORT") == (200, port)
    assert _get(base + "/env/PORT_WEB") == (200, port)
    assert _get(base + "/env/SECRET_TOKEN") == (200, SECRET)
    workdir = rt.root / "web"
    assert _get(base + "/env/STACKYARD_ROOT") == (200, str(workdir / "root"))
    assert _get(base + "/env/STACKYARD_SECRET_KEY")[0] == 404
    path = _get(base + "/env/PATH")[1]
    assert path.split(os.pathsep)[0] == str(Path(sys.executable).parent)
    info = _info(st)
    assert info["cwd"] == str(workdir / "root")
    assert info["pgid"] == info["pid"] == _pid(st)  # its own process group
    assert Path(info["exe"]).parent == Path(sys.executable).parent

    # Secrets stay out of everything stackyard itself writes.
    for f in workdir.iterdir():
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f.name
    assert SECRET not in repr(rt.status("web"))
    assert SECRET not in repr(spec)
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((workdir / "status.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(rt.root.stat().st_mode) == 0o700
    assert rt.names() == ["web"]


def test_variables_files_and_volumes_are_visible_to_the_process(
    rt: LocalRuntime, programs: dict[str, str], tmp_path: Path
) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "seed.txt").write_text("from the host")
    spec = _spec(
        programs["app"],
        variables={"GREETING": "hello world"},
        files=(
            FileSpec("/etc/app/app.conf", b"key=value\n"),
            FileSpec("data/rel.txt", b"relative", mode=0o640),
        ),
        volumes=(VolumeSpec("/mnt/data", str(volume)),),
    )
    rt.start(spec)
    st = rt.wait_ready("web", timeout=10)
    base = st.endpoints["web"]

    assert _get(base + "/env/GREETING") == (200, "hello world")
    assert _get(base + "/file?p=etc/app/app.conf") == (200, "key=value\n")
    assert _get(base + "/file?p=data/rel.txt") == (200, "relative")
    assert _get(base + "/file?p=mnt/data/seed.txt") == (200, "from the host")

    root = rt.root / "web" / "root"
    assert stat.S_IMODE((root / "etc/app/app.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "data/rel.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/app").stat().st_mode) == 0o700
    assert os.readlink(root / "mnt/data") == str(volume)

    # Stopping removes the symlink, never what it points to.
    assert rt.stop("web")
    assert (volume / "seed.txt").read_text() == "from the host"


def test_start_is_idempotent_and_a_changed_spec_restarts_on_the_same_port(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    spec = _spec(programs["app"], variables={"VERSION": "1"})
    rt.start(spec)
    first = rt.wait_ready("web", timeout=10)

    again, changed = rt.start(spec)
    assert not changed
    assert _pid(again) == _pid(first)

    changed_spec = _spec(programs["app"], variables={"VERSION": "2"})
    assert changed_spec.digest() != spec.digest()
    _, changed = rt.start(changed_spec)
    assert changed
    second = rt.wait_ready("web", timeout=10)
    assert _pid(second) != _pid(first)
    assert not _live(_pid(first))
    assert second.endpoints == first.endpoints
    assert second.digest == changed_spec.digest()
    assert _get(second.endpoints["web"] + "/env/VERSION") == (200, "2")


def test_a_killed_process_is_restarted_and_counted(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    rt.start(_spec(programs["app"]))
    first = rt.wait_ready("web", timeout=10)
    os.kill(_pid(first), signal.SIGKILL)

    def restarted() -> WorkloadStatus | None:
        st = rt.status("web")
        pid = st.containers["main"]["pid"]
        return st if pid is not None and pid != _pid(first) else None

    _eventually(restarted, what="a new process")
    st = rt.wait_ready("web", timeout=10)
    assert st.restarts == 1
    assert st.containers["main"]["restarts"] == 1
    assert st.containers["main"]["exits"] == 1
    assert st.endpoints == first.endpoints
    assert any("exited with code -9" in line for line in rt.logs("web"))


def test_a_failing_liveness_probe_restarts_the_process(
    make_runtime: Callable[..., LocalRuntime], programs: dict[str, str]
) -> None:
    # A short liveness period keeps the test fast; the default is 2 s.
    rt = make_runtime(Limits(live_period=0.2))
    spec = _spec(
        programs["app"],
        variables={"LIVE_FAIL": "1"},
        liveness=HttpProbe(80, "/live"),
    )
    rt.start(spec)
    first = rt.wait_ready("web", timeout=10)
    st = _eventually(lambda: (s := rt.status("web")).restarts >= 1 and s, what="a liveness restart")
    assert not _live(_pid(first))
    assert st.containers["main"]["pid"] != _pid(first)
    assert any("liveness probe failed 3 times" in line for line in rt.logs("web"))


def test_logs_are_captured_and_followed(rt: LocalRuntime, programs: dict[str, str]) -> None:
    rt.start(_spec(programs["app"]))
    st = rt.wait_ready("web", timeout=10)
    assert _get(st.endpoints["web"] + "/hello")[0] == 200

    lines = _eventually(
        lambda: (got := list(rt.logs("web"))) and any("GET /hello" in x for x in got) and got,
        what="the request in the log",
    )
    assert lines[0] == "hello from app"  # one container: no prefix
    assert len(list(rt.logs("web", lines=1))) == 1
    assert list(rt.logs("web", lines=0)) == []

    def until_followed(it: Iterator[str]) -> str:
        for line in it:
            if "/followed" in line:
                return line
        return ""

    attached = threading.Event()

    def collect(it: Iterator[str]) -> list[str]:
        out = []
        for line in it:
            out.append(line)
            attached.set()  # the first line came through: the follower is reading the log
        return out

    follow = rt.logs("web", follow=True, lines=0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.submit(until_followed, follow)
        # No sleep for "the follower has attached": request until it sees one (bounded).
        deadline = time.monotonic() + 10
        while not found.done() and time.monotonic() < deadline:
            _get(st.endpoints["web"] + "/followed")
            wait([found], timeout=0.1)
        assert found.result(timeout=10) == "GET /followed"
        follow.close()

        # Following ends by itself when the workload stops.
        rest = pool.submit(collect, rt.logs("web", follow=True))
        assert attached.wait(timeout=10), "the follower never read the existing lines"
        assert rt.stop("web")
        assert "hello from app" in "".join(rest.result(timeout=15))

    with pytest.raises(StackyardError, match="not running"):
        rt.logs("web")


def test_logs_rotate_at_the_cap(
    make_runtime: Callable[..., LocalRuntime], programs: dict[str, str]
) -> None:
    rt = make_runtime(Limits(log_max_bytes=64 * 1024))
    rt.start(_spec(programs["app"], variables={"BIG_LOG": "2000"}))  # ~100 KB
    rt.wait_ready("web", timeout=10)
    logs = rt.root / "web" / "logs"
    _eventually(lambda: (logs / "main.log.1").exists(), what="a rotation")
    assert (logs / "main.log").stat().st_size <= 64 * 1024
    assert (logs / "main.log.1").stat().st_size <= 64 * 1024
    # Rotation happens at line ends: every line is whole, in order, across both files.
    big = [x for x in rt.logs("web") if x.startswith("line ")]
    assert big == [f"line {i:05d} " + "x" * 40 for i in range(2000)]
    assert list(rt.logs("web", lines=2))[-2:] == list(rt.logs("web"))[-2:]


def test_stop_kills_every_process_and_removes_the_directory(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    rt.start(_spec(programs["app"], variables={"SPAWN_CHILD": "1"}))
    st = rt.wait_ready("web", timeout=10)
    info = _info(st)
    assert info["child"] is not None and _live(info["child"])
    group = _pid(st)
    supervisor = supervise.read_pidfile(rt.root / "web" / "supervisor.pid")
    assert supervisor is not None and supervise.alive(supervisor)

    assert rt.stop("web")
    assert not (rt.root / "web").exists()
    assert _group_members(group) == []
    assert not _live(info["child"])
    assert not supervise.alive(supervisor)
    assert rt.status("web").state == "stopped"
    assert rt.stop("web") is False  # stopping a stopped workload succeeds
    assert rt.names() == []


def test_a_killed_supervisor_leaves_nothing_behind_after_stop(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    rt.start(_spec(programs["app"]))
    st = rt.wait_ready("web", timeout=10)
    supervisor = supervise.read_pidfile(rt.root / "web" / "supervisor.pid")
    assert supervisor is not None
    os.kill(supervisor.pid, signal.SIGKILL)
    _eventually(lambda: rt.status("web").state == "stopped", what="the supervisor's death")
    assert _live(_pid(st))  # orphaned, until stop
    assert rt.stop("web")
    assert _group_members(_pid(st)) == []


def test_a_process_that_exits_at_once_fails_wait_ready_with_its_log(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    spec = _spec(programs["app"], variables={"CRASH": "1", "SECRET_TOKEN": SECRET})
    rt.start(spec)
    started = time.monotonic()
    with pytest.raises(StackyardError) as caught:
        rt.wait_ready("web", timeout=20)
    assert time.monotonic() - started < 10
    message = caught.value.message
    assert "Workload 'web' did not become ready" in message
    assert "exited 3 times (last exit code 1)" in message
    assert "fatal: cannot start, token [redacted]" in message
    assert SECRET not in message
    assert SECRET not in str(caught.value.hint)
    assert SECRET not in (rt.root / "web" / "status.json").read_text()
    assert SECRET not in (rt.root / "web" / "supervisor.log").read_text()
    assert rt.status("web").state in ("crashed", "starting")


def test_a_command_that_is_not_found_is_refused(rt: LocalRuntime) -> None:
    spec = WorkloadSpec("dev", "web", (ContainerSpec("main", ("no-such-command-xyz",), {}),))
    with pytest.raises(StackyardError, match=r"'no-such-command-xyz'.*not found on PATH"):
        rt.start(spec)


@pytest.mark.parametrize(
    "target",
    ["../escape.txt", "/etc/../../escape.txt", "a/../../escape.txt", "/"],
    ids=["relative", "absolute", "nested", "root-itself"],
)
def test_a_file_target_leaving_the_root_is_refused(
    rt: LocalRuntime, programs: dict[str, str], tmp_path: Path, target: str
) -> None:
    spec = _spec(programs["app"], files=(FileSpec(target, b"x"),))
    with pytest.raises(StackyardError, match="not inside the workload's root"):
        rt.start(spec)
    assert not list(tmp_path.rglob("escape.txt"))
    assert rt.status("web").state == "stopped"


def test_a_bad_spec_leaves_the_running_version_alone(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    rt.start(_spec(programs["app"]))
    first = rt.wait_ready("web", timeout=10)
    with pytest.raises(StackyardError):
        rt.start(_spec(programs["app"], files=(FileSpec("../x", b"x"),)))
    with pytest.raises(InvalidInputError, match="port 9999"):
        rt.start(_spec(programs["app"], probe_port=9999))
    st = rt.status("web")
    assert st.state == "ready"
    assert _pid(st) == _pid(first)


def test_a_probe_on_an_undeclared_port_is_a_value_error(
    rt: LocalRuntime, programs: dict[str, str]
) -> None:
    with pytest.raises(InvalidInputError, match=r"port 9999.*web \(80->8080\)"):
        rt.start(_spec(programs["app"], probe_port=9999))
    assert rt.names() == []


def test_two_containers_in_one_workload(rt: LocalRuntime, programs: dict[str, str]) -> None:
    web = ContainerSpec(
        "web",
        ("python", programs["app"]),
        {"APP_NAME": "web", "APP_PORT_VAR": "PORT_HTTP_API", "APP_PORT_VAR2": "PORT_ADMIN"},
        readiness=HttpProbe(80, "/healthz"),  # the service port, not the targetPort
    )
    side = ContainerSpec("side", (sys.executable, programs["ticker"]), {})
    spec = WorkloadSpec(
        "dev",
        "pair",
        (web, side),
        ports=(PortSpec("http-api", 80, 8080), PortSpec("admin", 81, 8081)),
    )
    rt.start(spec)
    st = rt.wait_ready("pair", timeout=10)
    assert set(st.containers) == {"web", "side"}
    assert all(c["ready"] for c in st.containers.values())
    assert set(st.endpoints) == {"http-api", "admin"}
    base = st.endpoints["http-api"]
    assert _get(base + "/env/PORT")[0] == 404  # two ports: no plain PORT
    assert _get(base + "/env/PORT_ADMIN")[1] == st.endpoints["admin"].rsplit(":", 1)[1]
    assert _pid(st, "web") != _pid(st, "side")

    lines = _eventually(
        lambda: (
            (got := list(rt.logs("pair"))) and any(x.startswith("side | tick") for x in got) and got
        ),
        what="both logs",
    )
    assert "web | hello from web" in lines
    side_only = list(rt.logs("pair", container="side"))
    assert side_only and all(x.startswith("side | ") for x in side_only)
    with pytest.raises(StackyardError, match="no container 'nope'"):
        rt.logs("pair", container="nope")
    assert rt.stop_all() == ["pair"]
    assert _group_members(_pid(st, "side")) == []
