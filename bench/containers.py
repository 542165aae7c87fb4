"""Containers bench: an ephemeral environment on the ``containers`` runtime, up and down.

    python bench/containers.py                           # embedded: dev's own local servers
    python bench/containers.py --services machine        # dev bound to the machine's servers
    python bench/containers.py --runs 10 --concurrent 10

Each run creates an ephemeral environment of type ``containers-ephemeral`` (runtime
``containers``) from ``dev`` and deploys a busybox app with a PostgreSQL database and a Redis
ACL user: the app reaches both through the environment's relay (both servers listen on
127.0.0.1), speaks Redis ``AUTH``/``PING`` and only then serves HTTP, which is its readiness
probe. *ready* is create + deploy until the app is ready; *destroy* (containers, network,
relay, database and user gone) is timed apart. The concurrent round does the same for N
environments at once, from N threads with their own workspaces. Needs a working podman; the
busybox image is built from Debian's busybox-static when missing.

One JSON object on stdout (progress on stderr): ``ready_p50_s``, ``destroy_p50_s``,
``concurrent``, ``concurrent_failures``, ``load_average`` and a few more (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from _common import (
    PARENT,
    REPO,
    TTL_S,
    add_service_args,
    describe,
    init_home,
    make_log,
    platform_dir,
    quantile,
    r3,
    summary,
    temp_home,
    terminate_on_sigterm,
)

TARGETS = {"ready_p50_s": 3.0, "destroy_p50_s": 2.0, "concurrent_failures": 0}
TYPE = "containers-ephemeral"
MAX_ERRORS = 5
LABEL_ENV = "dev.stackyard.env"

log = make_log("containers")

ENV_TYPE = {
    "apiVersion": "stackyard.dev/v1",
    "kind": "EnvironmentType",
    "metadata": {"name": TYPE},
    "spec": {
        "description": "Ephemeral environments whose workloads run as podman containers.",
        "runtime": "containers",
        "ephemeral": True,
        "ttl": {"default": "4h", "maximum": "72h"},
        "core": [{"type": "postgres-instance"}, {"type": "redis-instance"}],
        "bindings": [
            {"type": "postgres-instance", "component": "postgres-server@^1"},
            {"type": "redis-instance", "component": "redis-server@^1"},
            {"type": "postgres", "component": "postgres-database@^1"},
            {"type": "redis", "component": "redis-cache@^1"},
        ],
    },
}

# Ready only once Redis answered PING with the app's credentials and PostgreSQL accepted a
# connection, both through the relay; then busybox httpd serves the probe.
APP = (
    'printf "AUTH %s %s\\r\\nPING\\r\\nQUIT\\r\\n" "$RU" "$RP" | nc -w 5 "$RH" "$RPORT" '
    "| grep -q PONG || { echo redis unreachable; exit 1; }; "
    'nc -w 5 "$PGH" "$PGP" </dev/null || { echo postgres unreachable; exit 1; }; '
    "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"
)
SCORE = {
    "apiVersion": "score.dev/v1b1",
    "metadata": {"name": "app"},
    "containers": {
        "main": {
            "image": "busybox",
            "command": ["sh", "-c", APP],
            "variables": {
                "PGH": "${resources.db.host}",
                "PGP": "${resources.db.port}",
                "RH": "${resources.cache.host}",
                "RPORT": "${resources.cache.port}",
                "RU": "${resources.cache.username}",
                "RP": "${resources.cache.password}",
            },
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}},
        }
    },
    "service": {"ports": {"web": {"port": 80, "targetPort": 8080}}},
    "resources": {"db": {"type": "postgres"}, "cache": {"type": "redis"}},
}


def busybox() -> str:
    """The test suite's busybox image (built from busybox-static when missing)."""
    sys.path.insert(0, str(REPO / "tests" / "runtime_containers"))
    from _images import busybox_image

    return str(busybox_image())


def setup(args: argparse.Namespace, home: Path, score: Path) -> dict[str, Any]:
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    init_s = init_home(home, log)
    directory = platform_dir(home / "bench-platform", args.services, args.pg_url, args.redis_url)
    types = directory / "environment-types.yaml"
    types.write_text(types.read_text() + "\n---\n" + yaml.safe_dump(ENV_TYPE))
    score.write_text(json.dumps(SCORE))
    with Workspace.open(Settings.load()) as ws:
        apply_dir(ws.platform, ws.access, directory, confirm=lambda _q: True)
        shutil.rmtree(directory, ignore_errors=True)
        t0 = time.perf_counter()
        lifecycle.create(ws, PARENT)
        dev_s = time.perf_counter() - t0
    log(f"'{PARENT}' ready in {dev_s:.1f} s ({args.services} services)")
    return {"init_home_s": r3(init_s), "dev_create_s": r3(dev_s)}


def one(ws: Any, name: str, score: Path) -> dict[str, Any]:
    """Create ``name``, deploy the app, destroy; seconds of each part, or the error."""
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    out: dict[str, Any] = {"name": name, "ready_s": None, "destroy_s": None, "error": None}
    t0 = time.perf_counter()
    try:
        lifecycle.create(ws, name, type_name=TYPE, parent=PARENT, ttl_s=TTL_S)
        result = deploy_files(ws, [score], name, confirm=lambda _p: True)
        state = result.workloads.get("app")
        if state is None or state.state != "ready":
            raise RuntimeError(f"app is {state.state if state else 'missing'} after the deploy")
        out["ready_s"] = time.perf_counter() - t0
    except Exception as exc:
        out["error"] = describe(exc)
    try:
        env = ws.records.environment(name)
        if env is not None and env.status not in ("destroyed", "declared"):
            t1 = time.perf_counter()
            lifecycle.destroy(ws, name)
            out["destroy_s"] = time.perf_counter() - t1
    except Exception as exc:
        out["error"] = out["error"] or f"destroy: {describe(exc)}"
    return out


def concurrent_round(count: int, tag: str, score: Path) -> list[dict[str, Any]]:
    """``count`` environments up and down at once, released together by a barrier."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    results: list[dict[str, Any]] = [{} for _ in range(count)]
    barrier = threading.Barrier(count)
    workspaces = [Workspace.open(Settings.load()) for _ in range(count)]

    def worker(i: int) -> None:
        name = f"c{i}-{tag}"
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            results[i] = {"name": name, "error": "the barrier broke"}
            return
        results[i] = one(workspaces[i], name, score)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for ws in workspaces:
            ws.close()
    return results


def podman_leftovers(names: set[str]) -> list[str]:
    """Containers and networks podman still has for the bench's environments."""
    podman = shutil.which("podman") or "podman"
    out: list[str] = []
    for args in (["ps", "-a", "--format", "{{.Names}} {{.Labels}}"], ["network", "ls"]):
        fmt = ["--format", "{{.Name}} {{.Labels}}"] if args[0] == "network" else []
        done = subprocess.run(
            [podman, *args, *fmt], capture_output=True, text=True, check=False, timeout=60
        )
        out += [
            line.split()[0]
            for line in done.stdout.splitlines()
            if any(f"{LABEL_ENV}:{n}" in line for n in names)
        ]
    return out


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    tag = secrets.token_hex(2)
    score = home / "app.json"
    result: dict[str, Any] = {"mode": args.services, "image": busybox()}
    result["setup"] = setup(args, home, score)
    names: set[str] = set()
    runs: list[dict[str, Any]] = []
    with Workspace.open(Settings.load()) as ws:
        for i in range(args.warmup + args.runs):
            name = f"{'w' if i < args.warmup else 'e'}{i}-{tag}"
            names.add(name)
            r = one(ws, name, score)
            log(
                f"{name}: ready {r3(r['ready_s'])} s, destroy {r3(r['destroy_s'])} s {r['error'] or ''}"
            )
            if i >= args.warmup:
                runs.append(r)
    ok = [r for r in runs if r["error"] is None]
    ready = [r["ready_s"] for r in ok]
    destroy = [r["destroy_s"] for r in ok if r["destroy_s"] is not None]
    rnd: list[dict[str, Any]] = []
    if args.concurrent:
        log(f"concurrent: {args.concurrent} environments at once")
        rnd = concurrent_round(args.concurrent, tag, score)
        names |= {r["name"] for r in rnd}
    failures = [r for r in rnd if r.get("error")]
    c_ready = sorted(r["ready_s"] for r in rnd if not r.get("error") and r.get("ready_s"))
    ready_p50 = quantile(ready, 0.5) if ready else None
    destroy_p50 = quantile(destroy, 0.5) if destroy else None
    result.update(
        {
            "ready_p50_s": r3(ready_p50),
            "destroy_p50_s": r3(destroy_p50),
            "concurrent": args.concurrent,
            "concurrent_failures": len(failures),
            "concurrent_errors": [f"{r['name']}: {r['error']}" for r in failures[:MAX_ERRORS]],
            "concurrent_ready_s": summary(c_ready),
            "concurrent_destroy_s": summary(
                [r["destroy_s"] for r in rnd if r.get("destroy_s") is not None]
            ),
            "runs": args.runs,
            "run_failures": len(runs) - len(ok),
            "run_errors": [f"{r['name']}: {r['error']}" for r in runs if r["error"]][:MAX_ERRORS],
            "ready_s": summary(ready),
            "destroy_s": summary(destroy),
            "podman_leftovers": podman_leftovers(names),
            "targets": TARGETS,
            "met": {
                "ready_p50_s": ready_p50 is not None and ready_p50 <= TARGETS["ready_p50_s"],
                "destroy_p50_s": destroy_p50 is not None
                and destroy_p50 <= TARGETS["destroy_p50_s"],
                "concurrent_failures": not failures,
            },
        }
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="A containers environment, up and down.")
    parser.add_argument("--runs", type=int, default=10, help="sequential timed runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--concurrent", type=int, default=10, help="environments at once (0: none)")
    add_service_args(parser)
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.concurrent < 0:
        parser.error("--runs must be at least 1, --warmup and --concurrent at least 0")
    terminate_on_sigterm()
    started = time.perf_counter()
    load_before = os.getloadavg()
    with temp_home("containers", log) as (home, leftovers):
        result = run(args, home)
    result["leftovers"] = leftovers
    result["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    result["total_s"] = r3(time.perf_counter() - started)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
