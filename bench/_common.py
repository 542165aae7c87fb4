"""Helpers shared by the benches: logging, figures, child processes, the Score workload, error
text, and the environment benches' temporary home, platform and clean-up (command servers
included: a bench that runs the ``stackyard`` console script keeps its own server's socket in
``<home>/cmd-sockets``, and ``temp_home`` makes sure no server of that directory outlives it).

Not a bench. The benches run as ``python bench/X.py``, so bench/ is on ``sys.path`` and they
``import _common`` (as crash.py imports ``_worker``). Nothing here imports stackyard at module
level: each helper that needs it imports it when called.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCORE = EXAMPLES / "hello" / "score.yaml"
PARENT = "dev"  # the long-lived environment the ephemeral ones are made from
TTL_S = 3600
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_ERROR_CHARS = 300
#: The bench's own ``STACKYARD_DAEMON_DIR`` under its temporary home (never a user's).
CMD_SOCKETS = "cmd-sockets"
#: The module a command server (and each command it forks) runs as.
CMDSERVER_MODULE = "stackyard.cli.cmdserver"

_SECRET_PATTERNS = (
    (re.compile(r"(://[^/\s:@]*:)[^@\s/]*@"), r"\1***@"),  # scheme://user:password@
    (re.compile(r"(?i)\b(password\s*=\s*)\S+"), r"\1***"),  # DSN keyword style
)

Log = Callable[[str], None]
#: Per environment name, the progress callback to give lifecycle calls (None: quiet).
ProgressFor = Callable[[str], Callable[[str], None] | None]

_LOG_LOCK = threading.Lock()


def make_log(tag: str) -> Log:
    """A thread-safe stderr logger: ``[tag seconds] message``, seconds since this call."""
    t0 = time.perf_counter()

    def log(message: str) -> None:
        line = f"[{tag} {time.perf_counter() - t0:7.3f}] {message}\n"
        with _LOG_LOCK:
            sys.stderr.write(line)
            sys.stderr.flush()

    return log


def _quiet(_name: str) -> None:
    return None


# -- figures -------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def r3(value: float | None) -> float | None:
    """Rounded to three decimals; None (JSON null) for nothing or NaN."""
    return None if value is None or value != value else round(value, 3)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    """``p50``, ``p90`` and ``max`` of ``values`` times ``scale`` (1000: seconds to ms)."""
    if not values:
        return {"p50": None, "p90": None, "max": None}
    scaled = [v * scale for v in values]
    return {
        "p50": r3(quantile(scaled, 0.5)),
        "p90": r3(quantile(scaled, 0.9)),
        "max": r3(max(scaled)),
    }


# -- child processes ---------------------------------------------------------------------------


def run_child(
    argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``argv`` to its exit, with no stdin and its output captured as text; the result and
    the wall-clock seconds it took. Raises ``subprocess.TimeoutExpired`` after ``timeout``."""
    t0 = time.perf_counter()
    res = subprocess.run(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return res, time.perf_counter() - t0


def score_text(name: str, *, resources: dict[str, str], variables: dict[str, str]) -> str:
    """A Score workload ``name``: one ``sleep`` container (busybox) with ``variables``, and
    ``resources`` (resource name to type)."""
    doc = {
        "apiVersion": "score.dev/v1b1",
        "metadata": {"name": name},
        "containers": {
            "main": {"image": "busybox", "command": ["sleep", "3600"], "variables": variables}
        },
        "resources": {r: {"type": t} for r, t in resources.items()},
    }
    return yaml.safe_dump(doc, sort_keys=False)


# -- error text ----------------------------------------------------------------------------------


def masked(text: str) -> str:
    """``text`` without credentials, on one line, truncated."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def describe(exc: BaseException) -> str:
    """The error's type and (masked) message; stackyard errors carry ``message``."""
    message = getattr(exc, "message", None) or str(exc) or ""
    return masked(f"{type(exc).__name__}: {message}")


# -- the platform --------------------------------------------------------------------------------


def add_service_args(parser: argparse.ArgumentParser) -> None:
    """``--services embedded|machine``, ``--pg-url`` and ``--redis-url``."""
    parser.add_argument("--services", choices=("embedded", "machine"), default="embedded")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="with --services machine")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="with --services machine")


def _url_params(url: str, default_port: int, default_user: str) -> dict[str, Any]:
    p = urlsplit(url)
    return {
        "host": p.hostname or "127.0.0.1",
        "port": p.port or default_port,
        "username": unquote(p.username or default_user),
        "password": unquote(p.password or ""),
    }


def platform_dir(directory: Path, services: str, pg_url: str, redis_url: str) -> Path:
    """A copy of ``examples/platform`` at ``directory`` (its policies and their modules
    included). With ``services == "machine"``, ``dev`` is bound there to the given servers:
    ``postgres-external`` and ``redis-external`` serve its core (as tests/_platform.py's
    ``write_platform`` binds its environments)."""
    shutil.copytree(EXAMPLES / "platform", directory)
    if services == "embedded":
        return directory
    pg = {
        **_url_params(pg_url, 5432, "postgres"),
        "database": (urlsplit(pg_url).path or "/postgres").lstrip("/") or "postgres",
    }
    bindings = [
        {"type": "postgres-instance", "component": "postgres-external@^1", "params": pg},
        {
            "type": "redis-instance",
            "component": "redis-external@^1",
            "params": _url_params(redis_url, 6379, "default"),
        },
    ]
    path = directory / "environments.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        if d.get("kind") == "Environment" and d["metadata"]["name"] == PARENT:
            d["spec"] = {**d["spec"], "bindings": bindings}
    path.write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
    path.chmod(0o600)  # it may hold a password
    return directory


def apply_platform(ws: Any, home: Path, services: str, pg_url: str, redis_url: str) -> None:
    """Apply ``platform_dir`` (written under ``home``) to ``ws``; the copy is removed after."""
    from stackyard.environments.platform import apply_dir

    directory = platform_dir(home / "bench-platform", services, pg_url, redis_url)
    try:
        apply_dir(ws.platform, ws.access, directory, confirm=lambda _q: True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- the temporary home --------------------------------------------------------------------------


def init_home(home: Path, log: Log) -> float:
    """``service.init_home`` (the library published) in ``home``; the seconds it took."""
    from stackyard.service import init_home as init
    from stackyard.settings import Settings

    t0 = time.perf_counter()
    init(Settings.load())
    elapsed = time.perf_counter() - t0
    log(f"home ready in {elapsed:.1f} s: {home}")
    return elapsed


def destroy_everything(log: Log, progress_for: ProgressFor = _quiet) -> list[str]:
    """Destroy every live environment, children before parents; those still live after."""
    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    def live(ws: Any) -> list[Any]:
        return [e for e in ws.records.environments() if e.status not in ("declared", "destroyed")]

    with Workspace.open(Settings.load()) as ws:
        for _ in range(4):
            envs = live(ws)
            if not envs:
                break
            parents = {e.parent for e in envs if e.parent}
            for env in envs:
                if env.name in parents:
                    continue
                log(f"destroying {env.name} ({env.status})")
                try:
                    lifecycle.destroy(ws, env.name, progress=progress_for(env.name))
                except Exception as exc:
                    log(f"could not destroy {env.name}: {describe(exc)}")
        return sorted(e.name for e in live(ws))


def sweep(home: Path, log: Log) -> list[str]:
    """Stop whatever process is still recorded under ``home``; what had to be stopped."""
    from stackyard.host import supervise
    from stackyard.runtime.local import LocalRuntime

    left: list[str] = []
    for workloads in sorted(home.glob("envs/*/workloads")):
        try:
            left += [f"{workloads.parent.name}/{w}" for w in LocalRuntime(workloads).stop_all()]
        except Exception as exc:
            log(f"could not stop the workloads in {workloads}: {describe(exc)}")
    for pidfile in sorted(home.rglob("*.pid")):
        if supervise.running(pidfile) is not None:
            left.append(str(pidfile.relative_to(home)))
            try:
                supervise.stop(pidfile)
            except Exception as exc:
                log(f"could not stop {pidfile}: {describe(exc)}")
    return left


# -- command servers -----------------------------------------------------------------------------


def server_processes(directory: Path) -> dict[int, str]:
    """The processes of this user started as ``python -m stackyard.cli.cmdserver <directory>``
    (the servers of ``directory`` and the commands they forked), pid to command line, from
    ``/proc``."""
    found: dict[int, str] = {}
    uid = os.geteuid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if CMDSERVER_MODULE in argv and str(directory) in argv:
            found[int(proc.name)] = " ".join(a for a in argv if a)
    return found


def reap_servers(directory: Path, log: Log, *, wait_s: float = 15.0) -> list[str]:
    """Wait up to ``wait_s`` for every process running as a command server of ``directory``
    (servers already asked to stop, and the commands they forked) to exit; those that did
    not are reported (``pid N: command line``), then stopped: SIGTERM (a server's own
    graceful stop), SIGKILL 5 s later. A pid is only signalled while its command line still
    names ``directory`` (never a reused pid)."""
    deadline = time.monotonic() + wait_s
    left = server_processes(directory)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = server_processes(directory)
    if not left:
        return []
    report = [f"pid {pid}: {masked(cmd)}" for pid, cmd in sorted(left.items())]
    log(f"command server processes still alive: {report}")
    for signum, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in left:
            try:
                os.kill(pid, signum)
            except OSError:
                continue
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = server_processes(directory)
        if not left:
            break
    return report


@contextmanager
def temp_home(
    tag: str, log: Log, progress_for: ProgressFor = _quiet
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A fresh ``STACKYARD_HOME``; yields it and the ``leftovers`` dict filled on the way out
    (also on failure or SIGTERM, see ``terminate_on_sigterm``): every environment destroyed
    (``undestroyed``: those still live), then any process still recorded under the home
    stopped (``stopped_after_destroy``), then, when a bench made ``<home>/cmd-sockets``,
    every command server of it that is still alive reported (``command_servers_alive``,
    added to what the bench's own stop found) and stopped, then the home removed."""
    home = Path(tempfile.mkdtemp(prefix=f"stackyard-bench-{tag}-"))
    os.environ["STACKYARD_HOME"] = str(home)
    leftovers: dict[str, Any] = {}
    try:
        yield home, leftovers
    finally:
        try:
            leftovers["undestroyed"] = destroy_everything(log, progress_for)
        except BaseException as exc:
            leftovers["undestroyed"] = [f"the final destroy failed: {describe(exc)}"]
            log(leftovers["undestroyed"][0])
        try:
            leftovers["stopped_after_destroy"] = sweep(home, log)
        except BaseException as exc:
            leftovers["stopped_after_destroy"] = [f"the sweep failed: {describe(exc)}"]
        if leftovers["stopped_after_destroy"]:
            log(f"processes left after destroy: {leftovers['stopped_after_destroy']}")
        if (home / CMD_SOCKETS).is_dir():
            found = list(leftovers.get("command_servers_alive", []))
            try:
                found += reap_servers(home / CMD_SOCKETS, log, wait_s=5.0)
            except BaseException as exc:
                found.append(f"the command-server check failed: {describe(exc)}")
            leftovers["command_servers_alive"] = found
        shutil.rmtree(home, ignore_errors=True)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind through every finally: clean up


def terminate_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so every ``finally`` (the clean-ups) runs."""
    signal.signal(signal.SIGTERM, _terminate)
