"""CLI bench: whole-process wall-clock latency of `stackyard` commands, on warm servers.

    python bench/cli.py                     # 7 runs of every command
    python bench/cli.py --runs 20 --only deploy-nochange

Every figure is one `stackyard` process from start to exit (subprocess, wall clock), as a
pipeline step or a developer at a terminal pays for it. It works in a temporary
``STACKYARD_HOME`` whose ``dev`` is bound to the machine's PostgreSQL (``postgres-external``,
and ``redis-external`` for the core's other binding). The bundle is a Score workload with one
``postgres`` resource (the library's ``postgres-database``: a login role, a database it owns,
CONNECT/CREATE/TEMP granted) and a ``sleep`` command container. Each run deploys a fresh
workload (*deploy-create*), deploys it again (*deploy-nochange*), times the read-only
commands, then removes the workload (untimed). Prints one JSON object::

    {"commands": {"version": {"p50": s, "p90": s, "max": s, "runs": n}, ...},
     "machine": {...}, "leftovers": {...}}

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_PG_URL,
    DEFAULT_REDIS_URL,
    PARENT,
    Log,
    make_log,
    masked,
    platform_dir,
    quantile,
    r3,
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
    PostgreSQL, Score files under the home, and the CLI run as separate processes."""

    def __init__(self, home: Path, log: Log) -> None:
        self.home = home
        self.log = log
        self.argv = stackyard_argv()
        self.env = child_env()
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

    def tear_down(self) -> None:
        """Best effort, for the way out: remove every workload deployed here, then destroy
        ``dev`` (``temp_home`` then checks that nothing is left)."""
        for name in sorted(self.deployed):
            try:
                self.remove(name)
            except Exception as exc:
                self.log(f"could not remove {name}: {masked(str(exc))}")
        if not self.created:
            return
        try:
            run_timed([*self.argv, "env", "destroy", PARENT, "--yes"], self.env)
        except Exception as exc:
            self.log(f"could not destroy {PARENT}: {masked(str(exc))}")

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

    def run(self, command: str, name: str) -> float:
        return run_timed(self.argv_for(command, name), self.env)

    def deploy(self, name: str) -> float:
        """``stackyard deploy`` of the bundle named ``name`` into ``dev``: seconds."""
        self.deployed.add(name)  # before: a deploy that fails half-way is removed too
        argv = [*self.argv, "deploy", str(self.score(name)), "--env", PARENT, "--yes"]
        return run_timed(argv, self.env)

    def remove(self, name: str) -> None:
        """Untimed: take the workload out (stop it, drop its role and database)."""
        run_timed([*self.argv, "remove", name, "--env", PARENT, "--yes"], self.env)
        self.deployed.discard(name)


def bench(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    selected = (args.only,) if args.only else COMMANDS
    times: dict[str, list[float]] = {c: [] for c in selected}
    machine = machine_info(args.pg_url)
    tag = secrets.token_hex(2)
    with temp_home("cli", log) as (home, leftovers):
        sy = Stackyard(home, log)
        needs_env = any(c not in NO_ENV for c in selected)
        needs_deploys = any(c in DEPLOYS for c in selected)
        # A run: a fresh workload deployed (create), deployed again (no change), the
        # read-only commands while it runs, then its removal (untimed).
        steps = [*(DEPLOYS if needs_deploys else ())]
        steps += [c for c in COMMANDS if c in selected and c not in DEPLOYS]
        try:
            machine["setup"] = sy.set_up(
                pg_url=args.pg_url, redis_url=args.redis_url, env=needs_env
            )
            if (
                needs_env and not needs_deploys
            ):  # status and env list then show one running workload
                sy.deploy(f"resident{tag}")
            total = args.warmup + args.runs
            for i in range(total):
                name = f"w{i}{tag}"
                for command in steps:
                    elapsed = sy.deploy(name) if command in DEPLOYS else sy.run(command, name)
                    if i >= args.warmup and command in times:
                        times[command].append(elapsed)
                if needs_deploys:
                    sy.remove(name)
                log(f"run {i + 1}/{total}" + ("" if i >= args.warmup else " (warm-up, untimed)"))
        finally:
            sy.tear_down()
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["warmup"] = args.warmup
    return {
        "commands": {c: figures(v) for c, v in times.items()},
        "machine": machine,
        "leftovers": leftovers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--only", choices=COMMANDS, help="time this command alone")
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
        left = result["leftovers"]
        return 1 if left.get("undestroyed") or left.get("stopped_after_destroy") else 0

    return guarded(log, run)


if __name__ == "__main__":
    sys.exit(main())
