"""Crash-consistency bench on the real providers: SIGKILL `stackyard deploy` and
`stackyard remove` at random moments, re-run them, and check the real servers.

    python bench/crash_real.py --runs 100          # 200 kills: a deploy and a remove per run

Each run deploys a workload (a PostgreSQL database, role and grant, a Redis ACL user, a
volume directory and a supervised process) into ``dev`` bound to the machine's PostgreSQL and
Redis, as a real CLI process killed with SIGKILL after a random delay within the calibrated
duration of a deploy; then runs the same deploy to completion, and checks the servers against
the state: every object labelled with the environment is recorded (no orphans), each recorded
object exists once (no duplicates, no missing). Then it removes the workload the same way
(killed, then re-run) and checks that nothing labelled with that workload is left. Prints one
JSON object::

    {"runs": 100, "kills": 200, "orphans": 0, "missing": 0, "left_after_remove": 0,
     "failures": 0, "deploy_s_p50": ..., "remove_s_p50": ...}

``failures`` counts re-runs that exited non-zero; details go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
from _common import (
    PARENT,
    add_service_args,
    apply_platform,
    describe,
    init_home,
    make_log,
    run_child,
    score_text,
    summary,
    temp_home,
    terminate_on_sigterm,
)

LABELS_KEY = "stackyard:acl-owners"
MARKER = ".stackyard-owner"
#: Where volumes live when stackyard runs as root (out of the 0700 home; see docs/runtime-local.md).
SHARED_BUCKETS = Path("/var/lib/stackyard/buckets")


def _score(path: Path, name: str) -> Path:
    variables = {
        "DB": "${resources.db.name}",
        "CACHE": "${resources.cache.username}",
        "DATA": "${resources.data.path}",
    }
    resources = {"db": "postgres", "cache": "redis", "data": "volume"}
    path.write_text(score_text(name, resources=resources, variables=variables))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stackyard.cli", *args]


def _run(args: list[str]) -> tuple[int, str]:
    res, _ = run_child(args, timeout=600)
    return res.returncode, res.stderr[-2000:]


def _kill_after(args: list[str], delay: float) -> int:
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.wait()


def _labelled(pg_url: str, redis_url: str, home: Path, env: str, needle: str) -> set[str]:
    """Every real object whose ownership label names ``env`` and contains ``needle``."""
    like = f"stackyard:%:{env}:%{needle}%"
    out: set[str] = set()
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
        for kind, name in conn.execute(
            "SELECT 'role', rolname FROM pg_authid"
            " WHERE coalesce(shobj_description(oid, 'pg_authid'), '') LIKE %(l)s"
            " UNION ALL SELECT 'database', datname FROM pg_database"
            " WHERE coalesce(shobj_description(oid, 'pg_database'), '') LIKE %(l)s",
            {"l": like},
        ):
            out.add(f"{kind}:{name}")
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    try:
        users = set(client.acl_users())
        for name, label in client.hgetall(LABELS_KEY).items():
            if f":{env}:" in label and needle in label and name in users:
                out.add(f"redis-user:{name}")
    finally:
        client.close()
    markers = [*(home / "buckets").glob(f"*/{MARKER}"), *SHARED_BUCKETS.glob(f"*/*/{MARKER}")]
    for marker in markers:
        text = marker.read_text(errors="replace")
        if f":{env}:" in text and needle in text:
            out.add(f"directory:{marker.parent.name}")
    return out


def _recorded(env: str, needle: str) -> set[str]:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    kinds = {
        "postgres.role": "role",
        "postgres.database": "database",
        "redis.acl_user": "redis-user",
        "local.directory": "directory",
    }
    with Workspace.open(Settings.load()) as ws:
        snap = ws.store.snapshot(env)
        return {
            f"{kinds[r.kind]}:{r.physical_name}"
            for r in snap.resources.values()
            if r.kind in kinds and needle in r.address
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    add_service_args(parser)
    parser.set_defaults(services="machine")
    args = parser.parse_args()
    log = make_log("crash-real")
    terminate_on_sigterm()
    rng = random.Random(args.seed)
    totals: dict[str, Any] = {
        "runs": 0,
        "kills": 0,
        "orphans": 0,
        "missing": 0,
        "left_after_remove": 0,
        "failures": 0,
    }
    deploy_s: list[float] = []
    remove_s: list[float] = []
    with temp_home("crash-real", log) as (home, leftovers):
        init_home(home, log)
        from stackyard.environments import lifecycle
        from stackyard.environments.workspace import Workspace
        from stackyard.settings import Settings

        with Workspace.open(Settings.load()) as ws:
            apply_platform(ws, home, args.services, args.pg_url, args.redis_url)
            lifecycle.create(ws, PARENT)
        score = _score(home / "crash.yaml", "crash")
        deploy = _cli("deploy", str(score), "--env", PARENT, "--yes")
        remove = _cli("remove", "crash", "--env", PARENT, "--yes")
        # calibrate: how long one deploy and one remove take as whole processes
        for _ in range(2):
            t0 = time.perf_counter()
            code, err = _run(deploy)
            deploy_s.append(time.perf_counter() - t0)
            assert code == 0, err
            t0 = time.perf_counter()
            code, err = _run(remove)
            remove_s.append(time.perf_counter() - t0)
            assert code == 0, err
        d_window, r_window = max(deploy_s), max(remove_s)
        log(f"deploy {d_window:.2f} s, remove {r_window:.2f} s")
        for i in range(args.runs):
            totals["runs"] += 1
            # deploy, killed at a random moment, then converged
            _kill_after(deploy, rng.uniform(0.0, d_window))
            totals["kills"] += 1
            code, err = _run(deploy)
            if code != 0:
                totals["failures"] += 1
                log(f"run {i}: deploy after the kill exited {code}: {err}")
                continue
            real = _labelled(args.pg_url, args.redis_url, home, PARENT, "#crash.")
            recorded = _recorded(PARENT, "#crash.")
            orphans, missing = real - recorded, recorded - real
            totals["orphans"] += len(orphans)
            totals["missing"] += len(missing)
            if orphans or missing:
                log(f"run {i}: orphans {sorted(orphans)} missing {sorted(missing)}")
            # remove, killed at a random moment, then converged
            _kill_after(remove, rng.uniform(0.0, r_window))
            totals["kills"] += 1
            code, err = _run(remove)
            if code != 0 and "No workload 'crash'" not in err:
                totals["failures"] += 1
                log(f"run {i}: remove after the kill exited {code}: {err}")
                continue
            left = _labelled(args.pg_url, args.redis_url, home, PARENT, "#crash.")
            totals["left_after_remove"] += len(left)
            if left:
                log(f"run {i}: left after remove: {sorted(left)}")
            if i % 10 == 9:
                log(f"{i + 1} runs: {totals}")
    try:
        totals["deploy_s_p50"] = summary(deploy_s)["p50"]
        totals["remove_s_p50"] = summary(remove_s)["p50"]
    except Exception as exc:  # figures are a bonus; the counts are the result
        log(f"no timing summary: {describe(exc)}")
    totals["leftovers"] = leftovers
    print(json.dumps(totals))
    bad = totals["orphans"] + totals["missing"] + totals["left_after_remove"] + totals["failures"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
