"""Ephemeral bench: an ephemeral environment from a warm ``dev``, to a running app, and back.

    python bench/ephemeral.py                            # embedded: dev's own local servers
    python bench/ephemeral.py --services machine         # dev bound to the machine's servers
    python bench/ephemeral.py --runs 10 --concurrent 20

Each run creates an ephemeral environment from ``dev`` (``lifecycle.create``), deploys
``examples/hello/score.yaml`` to it (``deploy_files``: a PostgreSQL database, role and grant, a
Redis ACL user, a volume directory, and the app started and waited for), then destroys it
(``lifecycle.destroy``). *ready* is create + deploy until the app is ready; *destroy* is timed
apart. The concurrent round does the same for M environments at once, from M threads with
their own workspaces, released together by a barrier.

One JSON object on stdout (progress goes to stderr): ``ready_p50_s``, ``destroy_p50_s``,
``concurrent``, ``concurrent_failures``, ``first_ready_s``, ``last_ready_s`` and a few extra
keys (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    PARENT,
    SCORE,
    TTL_S,
    add_service_args,
    apply_platform,
    describe,
    init_home,
    make_log,
    masked,
    quantile,
    r3,
    summary,
    temp_home,
    terminate_on_sigterm,
)

TARGETS = {"ready_p50_s": 2.0, "destroy_p50_s": 1.0, "last_over_first_max": 1.5}
MAX_ERRORS = 5

log = make_log("ephemeral")


def phase_summary(rows: Sequence[dict[str, float]], stat: str) -> dict[str, float | None]:
    rows = [r for r in rows if r]
    return {p: summary([r[p] for r in rows])[stat] for p in PHASES}


def where(exc: BaseException) -> str:
    """Where ``exc`` was raised: its innermost frames in stackyard (file:line function), the
    store's own and contextlib's left out, innermost first; no values."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "/stackyard/" in f.filename and not f.filename.endswith("/state/sql.py")
    ]
    shown = [
        f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} {f.name}"
        for f in frames[-5:]
    ]
    return " <- ".join(reversed(shown)) or "(no stackyard frame)"


# -- one environment ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One environment's create + deploy (seconds from its start, or from the common start)."""

    name: str
    created_s: float | None = None
    ready_s: float | None = None
    destroy_s: float | None = None
    error: str | None = None
    where: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    cpu: tuple[float, float] | None = None  # (machine busy, this process) CPU s of bring_up


def progress_for(name: str, verbose: bool) -> Callable[[str], None] | None:
    if not verbose:
        return None
    return lambda message: log(f"{name}: {masked(message)}")


#: Deploy progress messages that end a phase: (prefix, phase). ``applied`` is the last engine
#: event before the workload starts, so it is updated by every ``finished`` line.
_MARKS = (("applying ", "planned"), ("finished ", "applied"), ("started workload", "started"))
PHASES = ("create", "plan", "apply", "start", "ready")


def marker(out: Outcome, t0: float, verbose: bool) -> Callable[[str], None]:
    """A progress callback that records when each phase of the deploy ended."""
    echo = progress_for(out.name, verbose)

    def say(message: str) -> None:
        now = time.perf_counter() - t0
        for prefix, mark in _MARKS:
            if message.startswith(prefix):
                out.marks[mark] = now
        if echo is not None:
            echo(message)

    return say


def phases(out: Outcome) -> dict[str, float]:
    """Seconds spent in each phase: create (the environment), plan (resolve, expand, plan),
    apply (the engine), start (outputs, records, starting the supervisor), ready (probes)."""
    m = out.marks
    ends = [m.get("created"), m.get("planned"), m.get("applied"), m.get("started"), out.ready_s]
    if any(v is None for v in ends):
        return {}
    points = [0.0, *[float(v) for v in ends if v is not None]]
    return {p: points[i + 1] - points[i] for i, p in enumerate(PHASES)}


def bring_up(ws: Any, name: str, t0: float, out: Outcome, verbose: bool) -> None:
    """Create ``name`` from ``dev`` and deploy hello to it; times relative to ``t0``."""
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    say = marker(out, t0, verbose)
    lifecycle.create(ws, name, type_name="ephemeral", parent=PARENT, ttl_s=TTL_S, progress=say)
    out.created_s = out.marks["created"] = time.perf_counter() - t0
    result = deploy_files(ws, [SCORE], name, confirm=lambda _p: True, progress=say)
    state = result.workloads.get("hello")
    if state is None or state.state != "ready":
        raise RuntimeError(f"hello is {state.state if state else 'missing'} after the deploy")
    out.ready_s = time.perf_counter() - t0


def tear_down(ws: Any, name: str, verbose: bool) -> float | None:
    """Destroy ``name`` if it exists; the seconds it took (None when there was nothing)."""
    from stackyard.environments import lifecycle

    env = ws.records.environment(name)
    if env is None or env.status in ("destroyed", "declared"):
        return None
    t0 = time.perf_counter()
    lifecycle.destroy(ws, name, progress=progress_for(name, verbose))
    return time.perf_counter() - t0


def cpu_now() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, this process's user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    return busy, usage.ru_utime + usage.ru_stime


def sequential(ws: Any, name: str, verbose: bool) -> Outcome:
    out = Outcome(name)
    t0 = time.perf_counter()
    cpu0 = cpu_now()
    try:
        bring_up(ws, name, t0, out, verbose)
        cpu1 = cpu_now()
        out.cpu = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
    except Exception as exc:
        out.error, out.where = describe(exc), where(exc)
        log(f"{name} failed: {out.error} at {out.where}")
    try:
        out.destroy_s = tear_down(ws, name, verbose)
    except Exception as exc:
        out.error = out.error or describe(exc)
        out.where = out.where or where(exc)
        log(f"destroy of {name} failed: {describe(exc)} at {where(exc)}")
    return out


# -- the concurrent round -----------------------------------------------------------------------


@dataclass
class Round:
    """The concurrent round: each environment's outcome, and the round's own figures."""

    outcomes: list[Outcome]
    destroy_wall_s: float | None = None
    busy_cpu_s: float | None = None  # the whole machine's, from the start to the last ready
    own_cpu_s: float | None = None  # this process's (the stackyard side, under one GIL)


def concurrent_round(count: int, tag: str, verbose: bool) -> Round:
    """``count`` environments created + deployed at once, then destroyed at once."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    outcomes = [Outcome(f"c{i}-{tag}") for i in range(count)]
    workspaces: list[Any] = []
    starts: dict[str, Any] = {}

    def mark(key: str) -> None:
        starts[key] = time.perf_counter()
        starts[f"{key}_cpu"] = cpu_now()

    up = threading.Barrier(count, action=lambda: mark("up"))
    down = threading.Barrier(count, action=lambda: mark("down"))
    ends: list[float] = []

    def worker(i: int) -> None:
        ws, out = workspaces[i], outcomes[i]
        try:
            up.wait(timeout=120)
            t0 = starts["up"]
            try:
                bring_up(ws, out.name, t0, out, verbose)
            except Exception as exc:
                out.error, out.where = describe(exc), where(exc)
                failed_after = time.perf_counter() - t0
                log(f"{out.name} failed after {failed_after:.2f} s: {out.error}")
                log(f"  at {out.where}")
            down.wait(timeout=300)
            try:
                out.destroy_s = tear_down(ws, out.name, verbose)
            except Exception as exc:
                log(f"destroy of {out.name} failed: {describe(exc)} at {where(exc)}")
                out.error = out.error or f"destroy: {describe(exc)}"
                out.where = out.where or where(exc)
            ends.append(time.perf_counter())
        except threading.BrokenBarrierError:
            out.error = out.error or "the barrier broke (another thread did not arrive)"

    threads = [
        threading.Thread(target=worker, args=(i,), name=o.name) for i, o in enumerate(outcomes)
    ]
    try:
        for _ in range(count):
            workspaces.append(Workspace.open(Settings.load()))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except BaseException:
        # Interrupted (SIGTERM, Ctrl-C): release the waiting threads and let the running ones
        # finish before their workspaces close; the final destroy removes what they made.
        up.abort()
        down.abort()
        for t in threads:
            if t.is_alive():
                t.join()
        raise
    finally:
        for ws in workspaces:
            try:
                ws.close()
            except Exception as exc:
                log(f"could not close a workspace: {describe(exc)}")
    out = Round(outcomes)
    if ends and "down" in starts:
        out.destroy_wall_s = max(ends) - starts["down"]
        (b0, o0), (b1, o1) = starts["up_cpu"], starts["down_cpu"]
        out.busy_cpu_s, out.own_cpu_s = b1 - b0, o1 - o0
    return out


# -- setup and teardown -------------------------------------------------------------------------


def setup(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from stackyard.environments import lifecycle
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    init_s = init_home(home, log)
    with Workspace.open(Settings.load()) as ws:
        apply_platform(ws, home, args.services, args.pg_url, args.redis_url)
        t0 = time.perf_counter()
        lifecycle.create(ws, PARENT, progress=progress_for(PARENT, args.verbose))
        dev_s = time.perf_counter() - t0
    log(f"'{PARENT}' ready in {dev_s:.1f} s ({args.services} services)")
    return {"init_home_s": r3(init_s), "dev_create_s": r3(dev_s)}


# -- the bench ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    tag = secrets.token_hex(2)
    result: dict[str, Any] = {"mode": args.services}
    result["setup"] = setup(args, home)

    with Workspace.open(Settings.load()) as ws:
        for i in range(args.warmup):
            one = sequential(ws, f"w{i}-{tag}", args.verbose)
            log(
                f"warm-up {i + 1}/{args.warmup}: ready {r3(one.ready_s)} s, destroy {r3(one.destroy_s)} s"
            )
            if one.error:
                raise SystemExit(f"the warm-up failed: {one.error}")
        runs: list[Outcome] = []
        for i in range(args.runs):
            one = sequential(ws, f"e{i}-{tag}", args.verbose)
            runs.append(one)
            log(
                f"run {i + 1}/{args.runs}: ready {r3(one.ready_s)} s, destroy {r3(one.destroy_s)} s"
            )

    ok = [r for r in runs if r.error is None and r.ready_s is not None]
    ready = [r.ready_s for r in ok if r.ready_s is not None]
    destroy = [r.destroy_s for r in ok if r.destroy_s is not None]
    ready_p50 = quantile(ready, 0.5) if ready else None
    destroy_p50 = quantile(destroy, 0.5) if destroy else None

    rnd = Round([])
    if args.concurrent > 0:
        log(f"concurrent: {args.concurrent} environments at once")
        rnd = concurrent_round(args.concurrent, tag, args.verbose)
    c_ok = [o for o in rnd.outcomes if o.error is None and o.ready_s is not None]
    c_ready = sorted(o.ready_s for o in c_ok if o.ready_s is not None)
    failures = [o for o in rnd.outcomes if o.error is not None]
    first = c_ready[0] if c_ready else None
    last = c_ready[-1] if c_ready else None
    ratio = last / first if first and last else None
    cpus = os.cpu_count() or 1

    result.update(
        {
            "ready_p50_s": r3(ready_p50),
            "destroy_p50_s": r3(destroy_p50),
            "concurrent": args.concurrent,
            "concurrent_failures": len(failures),
            "concurrent_errors": [f"{o.name}: {o.error}" for o in failures[:MAX_ERRORS]],
            "first_ready_s": r3(first),
            "last_ready_s": r3(last),
            "ratio_last_to_first": r3(ratio),
            "runs": args.runs,
            "run_failures": len(runs) - len(ok),
            "run_errors": [f"{r.name}: {r.error}" for r in runs if r.error][:MAX_ERRORS],
            "ready_s": summary(ready),
            "destroy_s": summary(destroy),
            "phases_p50_s": phase_summary([phases(r) for r in ok], "p50"),
            "cpu_per_env_p50_s": {
                "machine": r3(quantile([r.cpu[0] for r in ok if r.cpu], 0.5)),
                "bench_process": r3(quantile([r.cpu[1] for r in ok if r.cpu], 0.5)),
            },
            "run_list": [
                {"ready_s": r3(r.ready_s), "destroy_s": r3(r.destroy_s), "error": r.error}
                for r in runs
            ],
            "concurrent_ready_s": [r3(v) for v in c_ready],
            "concurrent_phases_p50_s": phase_summary([phases(o) for o in c_ok], "p50"),
            "concurrent_phases_max_s": phase_summary([phases(o) for o in c_ok], "max"),
            "concurrent_destroy_wall_s": r3(rnd.destroy_wall_s),
            "concurrent_cpu_s": {
                "machine": r3(rnd.busy_cpu_s),
                "bench_process": r3(rnd.own_cpu_s),
                "cpus": cpus,
                "floor_s": r3(rnd.busy_cpu_s / cpus) if rnd.busy_cpu_s is not None else None,
            },
            "targets": TARGETS,
            "met": {
                "ready_p50_s": ready_p50 is not None and ready_p50 <= TARGETS["ready_p50_s"],
                "destroy_p50_s": destroy_p50 is not None
                and destroy_p50 <= TARGETS["destroy_p50_s"],
                "last_over_first_max": ratio is not None
                and ratio <= TARGETS["last_over_first_max"],
                "no_failures": not failures and len(ok) == len(runs),
            },
        }
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="An ephemeral environment, up and down.")
    parser.add_argument("--runs", type=int, default=10, help="sequential timed runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--concurrent", type=int, default=20, help="environments at once (0: none)")
    add_service_args(parser)
    parser.add_argument("--verbose", action="store_true", help="every step of every environment")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.concurrent < 0:
        parser.error("--runs must be at least 1, --warmup and --concurrent at least 0")

    terminate_on_sigterm()
    started = time.perf_counter()
    result: dict[str, Any] = {}

    def progress(name: str) -> Callable[[str], None] | None:
        return progress_for(name, args.verbose)

    with temp_home("ephemeral", log, progress) as (home, leftovers):
        result = run(args, home)
    result["leftovers"] = leftovers
    result["total_s"] = r3(time.perf_counter() - started)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
