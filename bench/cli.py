"""CLI bench: whole-process wall-clock latency of `stackyard` commands, on warm servers.

    python bench/cli.py                     # 7 runs of every command, with and without server
    python bench/cli.py --runs 20 --only deploy-nochange
    python bench/cli.py --server off        # only commands in their own process

Every figure is one `stackyard` process from start to exit (subprocess, wall clock), as a
pipeline step or a developer at a terminal pays for it, in two modes (``--server``):

- **on** (what a user gets by default): ``STACKYARD_DAEMON=1``, the console script hands the
  command to a warm command server (``stackyard.cli.cmdserver``), which forks a child to run
  it. The bench's server is its own: ``STACKYARD_DAEMON_DIR`` is a private (0700) directory
  of the temporary home, never a user's. The warm-up starts it, and the timing waits (up to
  30 s) until ``stackyard daemon -o json`` lists it as ``current``; at the end ``stackyard
  daemon stop`` stops it, and the home's clean-up checks that no server process is left.
- **off**: ``STACKYARD_DAEMON=0``, every command runs in its own process (the cold path: a
  machine with no server, or the first command of a session).

With ``both`` (the default) each command is timed in both modes back to back, in every run
(the mode that goes first alternates run by run). Setup, removals and the final clean-up
always run with the server off. It works in a temporary
``STACKYARD_HOME`` whose ``dev`` is bound to the machine's PostgreSQL (``postgres-external``,
and ``redis-external`` for the core's other binding). The bundle is a Score workload with one
``postgres`` resource (the library's ``postgres-database``: a login role, a database it owns,
CONNECT/CREATE/TEMP granted) and a ``sleep`` command container. Each run deploys a fresh
workload per mode (*deploy-create*), deploys it again (*deploy-nochange*), times the
read-only commands, then removes the workloads (untimed). Prints one JSON object::

    {"mode": "both",
     "commands": {"version": {"p50": s, "p90": s, "max": s, "runs": n}, ...},
     "commands_without_server": {...},
     "machine": {..., "command_server": {"warm": true, ...}}, "leftovers": {...}}

``commands`` holds the server-on figures (with ``--server off`` alone: the off ones), and
``commands_without_server`` the off ones when both modes ran.

Progress goes to stderr. ``peers.py`` imports ``Stackyard`` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    CMD_SOCKETS,
    DEFAULT_PG_URL,
    DEFAULT_REDIS_URL,
    PARENT,
    Log,
    make_log,
    masked,
    platform_dir,
    quantile,
    r3,
    reap_servers,
    run_child,
    score_text,
    temp_home,
    terminate_on_sigterm,
)

#: The commands timed, in the order of a run; ``--only`` takes one of these.
COMMANDS = (
    "deploy-create",
    "deploy-nochange",
    "version",
    "help",
    "validate",
    "env-list",
    "status",
)
DEPLOYS = ("deploy-create", "deploy-nochange")
#: Commands that need no environment (no platform, no deploy): the cheap setup.
NO_ENV = ("version", "help", "validate")
COMMAND_TIMEOUT_S = 300
#: The command-server modes: ``on`` hands each command to the bench's warm server
#: (``STACKYARD_DAEMON=1``, the default a user gets), ``off`` runs it in its own process.
MODES = ("on", "off")
#: The first letter of a workload's name, per mode (each mode deploys its own workloads).
MODE_PREFIX = {"on": "w", "off": "o"}
SERVER_WAIT_S = 30.0
SERVER_STOP_S = 15.0


class CommandFailed(RuntimeError):
    """A timed or setup command exited non-zero (the figures would mean nothing)."""


def guarded(log: Log, body: Callable[[], int]) -> int:
    """``body()``'s exit code; 1 when a command failed, 130 on Ctrl-C. Either way the bench's
    ``finally`` clauses have removed what it made by then."""
    try:
        return body()
    except CommandFailed as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted (what the bench made has been removed)")
        return 130


def stackyard_argv() -> list[str]:
    """The ``stackyard`` console script beside this interpreter (what a user runs), else
    ``python -m stackyard.cli``."""
    script = Path(sys.executable).parent / "stackyard"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "stackyard.cli"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the timed processes: this one (``STACKYARD_HOME`` included), less
    ``PYTHONDONTWRITEBYTECODE``, so the warm-up writes the bytecode cache as any user's first
    run does (with it set, every process compiles every module it imports again)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


def run_timed(argv: list[str], env: dict[str, str], *, timeout: float = COMMAND_TIMEOUT_S) -> float:
    """Run ``argv`` to its exit; the wall-clock seconds. Raises ``CommandFailed`` on a
    non-zero exit, with the (masked) tail of its output."""
    res, elapsed = run_child(argv, env=env, timeout=timeout)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise CommandFailed(f"{' '.join(argv[-6:])} exited {res.returncode}: {masked(tail)}")
    return elapsed


def figures(values: list[float]) -> dict[str, Any]:
    """``p50``, ``p90``, ``max`` (seconds) and ``runs``."""
    return {
        "p50": r3(quantile(values, 0.5)) if values else None,
        "p90": r3(quantile(values, 0.9)) if values else None,
        "max": r3(max(values)) if values else None,
        "runs": len(values),
    }


def server_version(pg_url: str) -> str | None:
    """The PostgreSQL server's version string, or None when it does not answer."""
    import psycopg

    try:
        with psycopg.connect(pg_url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None
    except psycopg.Error:
        return None


def machine_info(pg_url: str) -> dict[str, Any]:
    """What the figures were taken on; ``loadavg`` matters: a loaded machine is slower."""
    from stackyard import __version__

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgres": server_version(pg_url),
        "stackyard": __version__,
        "stackyard_command": " ".join(stackyard_argv()),
    }


class Stackyard:
    """The stackyard side of both benches: a temporary home's ``dev`` bound to the machine's
    PostgreSQL, Score files under the home, and the CLI run as separate processes.

    The timed calls take a ``mode`` (``MODES``): ``on`` runs the command through the bench's
    own command server (``STACKYARD_DAEMON=1``, ``STACKYARD_DAEMON_DIR`` a private directory
    of the home), ``off`` in its own process (``STACKYARD_DAEMON=0``). Setup, removals and
    the tear-down always run with ``off``: untimed, they neither need nor start a server."""

    def __init__(self, home: Path, log: Log) -> None:
        self.home = home
        self.log = log
        self.argv = stackyard_argv()
        self.sockets = home / CMD_SOCKETS
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        self.sockets.chmod(0o700)  # cmdclient refuses a directory open to others
        own = {"STACKYARD_DAEMON_DIR": str(self.sockets)}
        self.envs = {
            "on": child_env({**own, "STACKYARD_DAEMON": "1"}),
            "off": child_env({**own, "STACKYARD_DAEMON": "0"}),
        }
        self.env = self.envs["off"]  # the untimed commands
        self.scores = home / "bench-scores"
        self.scores.mkdir(exist_ok=True)
        self.deployed: set[str] = set()
        self.created = False  # whether set_up went as far as creating dev

    def set_up(self, *, pg_url: str, redis_url: str, env: bool = True) -> dict[str, float]:
        """Untimed, through the CLI (as a new user would, and free of internal APIs):
        ``init`` (the library published), then with ``env``, ``platform apply`` of the
        example platform with ``dev`` bound to the machine's servers and ``env create dev``;
        the seconds each took."""
        took: dict[str, float] = {}
        took["init_s"] = run_timed([*self.argv, "init"], self.env)
        self.created = env
        if not env:
            return {k: round(v, 2) for k, v in took.items()}
        directory = platform_dir(self.home / "bench-platform", "machine", pg_url, redis_url)
        try:
            took["platform_apply_s"] = run_timed(
                [*self.argv, "platform", "apply", str(directory), "--yes"], self.env
            )
        finally:
            shutil.rmtree(directory, ignore_errors=True)  # it holds the server's password
        took["env_create_s"] = run_timed([*self.argv, "env", "create", PARENT], self.env)
        self.log(f"home, platform and {PARENT} ready: {took}")
        return {k: round(v, 2) for k, v in took.items()}

    def tear_down(self, leftovers: dict[str, Any] | None = None) -> None:
        """Best effort, for the way out: remove every workload deployed here, destroy
        ``dev``, then stop the bench's command server (``stop_servers``; what is still alive
        goes to ``leftovers["command_servers_alive"]``). ``temp_home`` then checks that
        nothing is left."""
        try:
            for name in sorted(self.deployed):
                try:
                    self.remove(name)
                except Exception as exc:
                    self.log(f"could not remove {name}: {masked(str(exc))}")
            if self.created:
                try:
                    run_timed([*self.argv, "env", "destroy", PARENT, "--yes"], self.env)
                except Exception as exc:
                    self.log(f"could not destroy {PARENT}: {masked(str(exc))}")
        finally:
            alive = self.stop_servers()
            if leftovers is not None:
                leftovers["command_servers_alive"] = alive

    # -- the bench's command server --------------------------------------------------------

    def servers(self, mode: str = "off") -> list[dict[str, Any]]:
        """The command servers answering in the bench's socket directory (``stackyard daemon
        -o json``; with ``mode`` ``on`` it goes through the server, and starts one when none
        answers, as any command does)."""
        try:
            res, _ = run_child(
                [*self.argv, "daemon", "-o", "json"], env=self.envs[mode], timeout=60
            )
        except Exception as exc:
            self.log(f"stackyard daemon -o json failed: {masked(str(exc))}")
            return []
        if res.returncode != 0:
            self.log(f"stackyard daemon -o json exited {res.returncode}: {masked(res.stderr)}")
            return []
        try:
            found = json.loads(res.stdout).get("servers") or []
        except (ValueError, AttributeError):
            self.log(f"stackyard daemon -o json printed no JSON: {masked(res.stdout)}")
            return []
        return [s for s in found if isinstance(s, dict)]

    def current_server(self, mode: str = "off") -> dict[str, Any] | None:
        """The server that serves this installation (``"current": true``), or None."""
        return next((s for s in self.servers(mode) if s.get("current") is True), None)

    def wait_for_server(self, timeout: float = SERVER_WAIT_S) -> dict[str, Any]:
        """Poll (through the server mode, which starts one if needed) until a current server
        answers, up to ``timeout``; whether it was warm, the seconds waited, its pid and the
        commands it had served."""
        t0 = time.perf_counter()
        while True:
            server = self.current_server("on")
            waited = round(time.perf_counter() - t0, 2)
            if server is not None or waited >= timeout:
                break
            time.sleep(0.5)
        if server is None:
            self.log(f"no command server answered after {waited} s: the 'on' figures are cold")
            return {"warm": False, "waited_s": waited, "pid": None, "served": None}
        self.log(f"command server warm (pid {server.get('pid')}) after {waited} s")
        return {
            "warm": True,
            "waited_s": waited,
            "pid": server.get("pid"),
            "served": server.get("served"),
        }

    def stop_servers(self) -> list[str]:
        """Stop the bench's command servers: their pids from ``stackyard daemon -o json``,
        then ``stackyard daemon stop`` (both with the server off: neither starts one), then a
        wait (up to 15 s) for every server process of the socket directory to exit. Those
        still alive are returned (and killed: they are the bench's own)."""
        listed = self.servers()
        if listed:
            self.log(f"stopping the command server(s): pids {[s.get('pid') for s in listed]}")
            try:
                res, _ = run_child([*self.argv, "daemon", "stop"], env=self.env, timeout=60)
                if res.returncode != 0:
                    self.log(f"stackyard daemon stop exited {res.returncode}: {masked(res.stderr)}")
            except Exception as exc:
                self.log(f"stackyard daemon stop failed: {masked(str(exc))}")
        log_file = self.sockets / "cmdserver.log"
        if log_file.is_file() and log_file.stat().st_size:
            self.log(f"cmdserver.log: {masked(log_file.read_text(errors='replace')[-1500:])}")
        return reap_servers(self.sockets, self.log, wait_s=SERVER_STOP_S)

    def score(self, name: str) -> Path:
        path = self.scores / f"{name}.yaml"
        if not path.exists():
            # The bundle: one postgres resource, read by a ``sleep`` container.
            variables = {"DB_NAME": "${resources.db.name}", "DB_USER": "${resources.db.username}"}
            path.write_text(score_text(name, resources={"db": "postgres"}, variables=variables))
        return path

    def argv_for(self, command: str, name: str) -> list[str]:
        """The argv of one of the read-only ``COMMANDS``."""
        return (
            self.argv
            + {
                "version": ["--version"],
                "help": ["--help"],
                "validate": ["workload", "validate", str(self.score(name))],
                "env-list": ["env", "list"],
                "status": ["status", PARENT],
            }[command]
        )

    def run(self, command: str, name: str, mode: str = "on") -> float:
        """One of the read-only ``COMMANDS`` in ``mode``: seconds."""
        return run_timed(self.argv_for(command, name), self.envs[mode])

    def deploy(self, name: str, mode: str = "on") -> float:
        """``stackyard deploy`` of the bundle named ``name`` into ``dev``, in ``mode``:
        seconds."""
        self.deployed.add(name)  # before: a deploy that fails half-way is removed too
        argv = [*self.argv, "deploy", str(self.score(name)), "--env", PARENT, "--yes"]
        return run_timed(argv, self.envs[mode])

    def database_seconds(self, env: str) -> float | None:
        """Untimed: how long the last deployment to ``env`` spent on its ``postgres.database``
        resource (its events' started to finished), or None when it made none."""
        try:
            listed, _ = run_child(
                [*self.argv, "deployments", env, "-o", "json"], env=self.env, timeout=60
            )
            rows = json.loads(listed.stdout)
            rows = rows.get("deployments", rows) if isinstance(rows, dict) else rows
            shown, _ = run_child(
                [*self.argv, "deployments", env, str(rows[0]["id"]), "-o", "json"],
                env=self.env,
                timeout=60,
            )
            events = json.loads(shown.stdout).get("events") or []
        except (ValueError, LookupError, TypeError, AttributeError, OSError) as exc:
            self.log(f"could not read the last deployment's events: {masked(str(exc))}")
            return None
        at = {
            e.get("kind"): float(e["at"])
            for e in events
            if str(e.get("address", "")).endswith("/database") and e.get("at") is not None
        }
        if "started" in at and "finished" in at:
            return at["finished"] - at["started"]
        return None

    def remove(self, name: str) -> None:
        """Untimed: take the workload out (stop it, drop its role and database)."""
        run_timed([*self.argv, "remove", name, "--env", PARENT, "--yes"], self.env)
        self.deployed.discard(name)


def bench(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    selected = (args.only,) if args.only else COMMANDS
    modes = MODES if args.server == "both" else (args.server,)
    times: dict[str, dict[str, list[float]]] = {m: {c: [] for c in selected} for m in modes}
    machine = machine_info(args.pg_url)
    machine["command_server"] = None
    tag = secrets.token_hex(2)
    with temp_home("cli", log) as (home, leftovers):
        sy = Stackyard(home, log)
        needs_env = any(c not in NO_ENV for c in selected)
        needs_deploys = any(c in DEPLOYS for c in selected)
        # A run: a fresh workload per mode deployed (create), deployed again (no change), the
        # read-only commands while they run, then their removal (untimed). Each command is
        # timed in each mode back to back; the mode that goes first alternates run by run.
        steps = [*(DEPLOYS if needs_deploys else ())]
        steps += [c for c in COMMANDS if c in selected and c not in DEPLOYS]
        try:
            machine["setup"] = sy.set_up(
                pg_url=args.pg_url, redis_url=args.redis_url, env=needs_env
            )
            if (
                needs_env and not needs_deploys
            ):  # status and env list then show one running workload
                sy.deploy(f"resident{tag}", "off")
            total = args.warmup + args.runs
            for i in range(total):
                if i == args.warmup and "on" in modes:
                    # Time a warm server only: the warm-up (or this poll) started it.
                    machine["command_server"] = sy.wait_for_server()
                order = modes[i % len(modes) :] + modes[: i % len(modes)]
                names = {m: f"{MODE_PREFIX[m]}{i}{tag}" for m in modes}
                for command in steps:
                    for mode in order:
                        name = names[mode]
                        elapsed = (
                            sy.deploy(name, mode)
                            if command in DEPLOYS
                            else sy.run(command, name, mode)
                        )
                        if i >= args.warmup and command in selected:
                            times[mode][command].append(elapsed)
                if needs_deploys:
                    for mode in modes:
                        sy.remove(names[mode])
                log(f"run {i + 1}/{total}" + ("" if i >= args.warmup else " (warm-up, untimed)"))
            if machine["command_server"] is not None:
                # The same server all along? (One whose code changed on disk stops itself,
                # and the next command starts another: a cold command among the timed.)
                end = sy.current_server()
                machine["command_server"]["pid_end"] = end.get("pid") if end else None
                machine["command_server"]["served_end"] = end.get("served") if end else None
        finally:
            sy.tear_down(leftovers)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["warmup"] = args.warmup
    figures_of = {m: {c: figures(v) for c, v in times[m].items()} for m in modes}
    result: dict[str, Any] = {"mode": args.server, "commands": figures_of[modes[0]]}
    if args.server == "both":
        result["commands_without_server"] = figures_of["off"]
    result["machine"] = machine
    result["leftovers"] = leftovers
    return result


def leftover(left: dict[str, Any]) -> bool:
    """Whether ``temp_home``'s ``leftovers`` found anything."""
    keys = ("undestroyed", "stopped_after_destroy", "command_servers_alive")
    return any(left.get(k) for k in keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--only", choices=COMMANDS, help="time this command alone")
    parser.add_argument(
        "--server",
        choices=("on", "off", "both"),
        default="both",
        help="through the bench's warm command server, in its own process, or both (default)",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1, --warmup at least 0")
    log = make_log("cli")
    terminate_on_sigterm()

    def run() -> int:
        result = bench(args, log)
        print(json.dumps(result))
        return 1 if leftover(result["leftovers"]) else 0

    return guarded(log, run)


if __name__ == "__main__":
    sys.exit(main())
