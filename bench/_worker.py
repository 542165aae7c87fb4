"""The apply worker shared by ``bench/`` and ``tests/reliability``: converge one synthetic graph.

Run as a script, it opens the SQLite state in ``--home``, builds the synthetic graph of
``--nodes`` noop resources (deterministic from ``--seed``; the ledger is
``<home>/ledger.jsonl``) and runs ``Engine.converge`` on ``--env``::

    python bench/_worker.py --home H --env E --nodes 20 --latency-ms 30 --seed S [--lock-ttl 2]

With ``--go-file F`` it prints ``WAITING`` when set up and starts once ``F`` exists. It prints
``READY`` once it holds the environment's lock, ``finished <address>`` after each
change and ``DONE`` at the end, so a caller can synchronise with it and kill it at a chosen
moment. Exit codes: 0 converged, 4 ``LockHeldError`` (its message goes to stderr), 1 otherwise.

Imported as a module, it offers the same pieces in-process: ``fork`` runs the worker in a
forked child (no interpreter start-up, so dozens of crash runs stay cheap), and ``crash_once``
is one crash-consistency run, used by ``tests/reliability/test_crash.py`` and ``bench/crash.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.errors import LockHeldError
from stackyard.providers import noop
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore
from stackyard.testing import synthetic

WORKER = Path(__file__).resolve()
EDGES_PER_NODE = 2
EXIT_OK, EXIT_FAILED, EXIT_LOCKED = 0, 1, 4

Say = Callable[[str], None]


def ledger_path(home: Path) -> Path:
    """The noop ledger ("the real world") of one home."""
    return home / "ledger.jsonl"


def open_store(home: Path) -> SqlStateStore:
    """The SQLite state store of ``home`` (close it when done)."""
    return SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))


def registry() -> ProviderRegistry:
    """Only the noop provider: importing psycopg and redis would slow every worker's start."""
    return ProviderRegistry.from_providers([noop.PROVIDER])


def build_graph(
    home: Path, env: str, *, nodes: int, latency_ms: float, seed: int, edges: int = EDGES_PER_NODE
) -> Graph:
    """The synthetic graph every worker given ``seed`` builds identically."""
    deps = synthetic.dag(nodes, edges_per_node=edges, seed=seed)
    comp = synthetic.component(deps, ledger=str(ledger_path(home)), latency_ms=latency_ms)
    return synthetic.graph(env, comp)


def recorded_names(store: SqlStateStore, env: str) -> set[str]:
    """The physical names the state records for ``env``."""
    return {r.physical_name for r in store.snapshot(env).resources.values()}


# -- the worker ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Converge a synthetic noop graph once.")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--env", default="crash")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", type=int, default=EDGES_PER_NODE)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--lock-ttl", type=float, default=30.0)
    parser.add_argument("--holder", default=None, help="lock holder name (default user@host (pid))")
    parser.add_argument(
        "--go-file", type=Path, default=None, help="print WAITING, then start once this file exists"
    )
    return parser


def main(argv: list[str] | None = None, *, say: Say | None = None) -> int:
    """Converge once and return the exit code; progress lines go to ``say`` (stdout)."""
    args = _parser().parse_args(argv)
    emit = say or _stdout

    def progress(event: Event) -> None:
        if event.type == "locked":
            emit("READY")
        elif event.type == "finished":
            emit(f"finished {event.address}")

    graph = build_graph(
        args.home,
        args.env,
        nodes=args.nodes,
        latency_ms=args.latency_ms,
        seed=args.seed,
        edges=args.edges,
    )
    try:
        store = open_store(args.home)
    except Exception as exc:
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    try:
        engine = Engine(
            store=store,
            kinds=registry(),
            events=Events(progress),
            parallelism=args.parallelism,
            lock_ttl_s=args.lock_ttl,
            holder=args.holder,
        )
        if args.go_file is not None:  # a start barrier, so many workers collide on purpose
            emit("WAITING")
            while not args.go_file.exists():
                time.sleep(0.005)
        _, result = engine.converge(args.env, graph)
    except LockHeldError as exc:
        sys.stderr.write(exc.message + "\n")
        return EXIT_LOCKED
    except Exception as exc:
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    finally:
        store.close()
    if not result.ok:
        sys.stderr.write(f"apply did not converge: {result.to_json()}\n")
        return EXIT_FAILED
    emit("DONE")
    return EXIT_OK


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- a worker in a forked child -----------------------------------------------------------


@dataclass
class Child:
    """A forked worker: its pid and the progress lines read from it so far."""

    pid: int
    fd: int
    lines: list[str] = field(default_factory=list)
    code: int | None = None
    _buf: bytes = b""

    def wait_for(self, line: str, timeout_s: float) -> bool:
        """Read progress until ``line`` arrives (True), the child exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while line not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return line in self.lines
        return True

    def kill(self) -> int:
        """SIGKILL the child (if it still runs), reap it and drain its output; the exit status."""
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):  # already exited (reaped below)
                os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def wait(self) -> int:
        """Reap the child; ``-9`` when it was killed."""
        if self.code is None:
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
            while self._read(0.0):
                pass
            os.close(self.fd)
        return self.code

    def _read(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(timeout_s, 0.0))
        if not ready:
            return False
        data = os.read(self.fd, 65536)
        if not data:
            return False
        self._buf += data
        *done, self._buf = self._buf.split(b"\n")
        self.lines.extend(d.decode() for d in done)
        return True


def fork(argv: list[str]) -> Child:
    """Run ``main(argv)`` in a forked child whose progress lines arrive on a pipe.

    The caller must not hold open store connections or run other threads: the child gets a
    copy of the parent as it is.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code
        code = EXIT_FAILED
        try:
            os.close(r)
            code = main(argv, say=lambda line: _write_line(w, line))
        finally:
            os._exit(code)
    os.close(w)
    return Child(pid, r)


def _write_line(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


# -- one crash-consistency run ------------------------------------------------------------


def apply_duration(
    home: Path, *, nodes: int = 20, latency_ms: float = 25.0, parallelism: int = 4
) -> float:
    """Seconds from ``READY`` to ``DONE`` of one uninterrupted worker: the window to kill in.

    Measured rather than computed, so kills stay spread over the apply on a slow machine.
    """
    argv = [
        *("--home", str(home), "--env", "calibrate", "--nodes", str(nodes)),
        *("--latency-ms", str(latency_ms), "--parallelism", str(parallelism)),
    ]
    child = fork(argv)
    try:
        if not child.wait_for("READY", timeout_s=120.0):
            raise RuntimeError(f"the worker never took the lock: {child.lines}")
        started = time.monotonic()
        if not child.wait_for("DONE", timeout_s=120.0):
            raise RuntimeError(f"the worker did not finish: {child.lines}")
        return time.monotonic() - started
    finally:
        child.kill()


@dataclass
class CrashReport:
    """What one crash run found. A good run has ``ok`` and every count at zero."""

    seed: int
    killed_after_s: float
    finished_before_kill: int
    child_exit: int
    ok: bool = False
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # live in the ledger, not in state
    missing: list[str] = field(default_factory=list)  # in state, not live in the ledger
    recovered: list[str] = field(default_factory=list)  # what recovery did with intents
    pending_intents: int = 0
    replan_changes: int = 0
    live_after_destroy: int = 0
    error: str = ""


def crash_once(
    home: Path,
    seed: int,
    *,
    nodes: int = 20,
    latency_ms: float = 25.0,
    parallelism: int = 4,
    expected_s: float = 0.5,
    env: str = "crash",
) -> CrashReport:
    """Start a worker, SIGKILL it at a random moment, then converge and destroy in-process.

    Most runs are killed ``uniform(0, expected_s)`` after the worker holds the lock (mid
    apply); one run in five is killed at a random moment after the fork instead, which can
    land in start-up, migrations, planning or lock acquisition.
    """
    rng = random.Random(seed)  # a reproducible kill schedule
    argv = [
        *("--home", str(home), "--env", env, "--nodes", str(nodes)),
        *("--latency-ms", str(latency_ms), "--seed", str(seed)),
        *("--parallelism", str(parallelism), "--lock-ttl", "30"),
    ]
    early = rng.random() < 0.2
    delay = rng.uniform(0.0, expected_s)
    child = fork(argv)
    try:
        if not early:
            child.wait_for("READY", timeout_s=120.0)
        time.sleep(delay)
    finally:
        code = child.kill()
    report = CrashReport(
        seed=seed,
        killed_after_s=round(delay, 3),
        finished_before_kill=sum(1 for line in child.lines if line.startswith("finished ")),
        child_exit=code,
    )
    graph = build_graph(home, env, nodes=nodes, latency_ms=latency_ms, seed=seed)
    ledger = noop.Ledger(ledger_path(home))
    store = open_store(home)
    try:
        # The killed worker cannot release its lease; the operator's way out is force-unlock
        # with the lock id (the lease would also expire by itself: see test_locks.py).
        info = store.lock_info(env)
        if info is not None:
            store.force_unlock(env, info.lock_id)
        engine = Engine(store=store, kinds=registry(), parallelism=parallelism)
        report.recovered = [f"{o.op} {o.address}: {o.result}" for o in engine.recover(env)]
        _, result = engine.converge(env, graph)
        report.ok = result.ok
        if not result.ok:
            report.error = f"converge after crash: {result.to_json()}"
        names = recorded_names(store, env)
        live = set(ledger.live())
        report.duplicates = ledger.duplicates()
        report.orphans = sorted(live - names)
        report.missing = sorted(names - live)
        report.pending_intents = len(store.intents(env))
        report.replan_changes = sum(
            1 for c in engine.plan(env, graph).changes if c.action.value != "noop"
        )
        _, destroyed = engine.converge(env, None)
        if not destroyed.ok:
            report.error = report.error or f"destroy: {destroyed.to_json()}"
        report.live_after_destroy = len(ledger.live())
    except Exception as exc:  # reported, so a bench run goes on and counts it as a failure
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        store.close()
    return report


if __name__ == "__main__":
    sys.exit(main())
