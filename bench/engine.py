"""Engine bench: plan, apply and re-plan a synthetic graph of noop resources; prints JSON.

    python bench/engine.py --nodes 10000 --latency-ms 0 --parallelism 10
    python bench/engine.py --nodes 1000 --latency-ms 50 --parallelism 10
    python bench/engine.py --scaling          # 1,000 then 10,000 nodes, and the ratios

One JSON object: ``nodes``, ``latency_ms``, ``parallelism``, ``plan_s`` (first plan, empty
state), ``apply_s``, ``replan_s`` (a no-change plan, observing every resource),
``overhead_ms_per_resource`` (apply time above the ideal, per resource) and ``peak_rss_mb``.
The ideal apply is ``latency * max(critical path length, ceil(nodes / parallelism))``: the
time a perfect scheduler with free bookkeeping would need.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stackyard.engine.engine import Engine
from stackyard.providers import noop
from stackyard.providers.registry import ProviderRegistry
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore
from stackyard.testing import synthetic


def critical_path(deps: Mapping[str, Sequence[str]]) -> int:
    """Nodes on the longest dependency chain (``dag`` lists dependencies before dependents)."""
    depth: dict[str, int] = {}
    for node, ds in deps.items():
        depth[node] = 1 + max((depth[d] for d in ds), default=0)
    return max(depth.values(), default=0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stackyard-bench-") as tmp:
        home = Path(tmp)
        url = args.database_url or f"sqlite:///{home}/state.db"
        env = f"bench{uuid.uuid4().hex[:8]}"  # unique, so a shared PostgreSQL stays usable
        deps = synthetic.dag(args.nodes, edges_per_node=args.edges, seed=args.seed)
        comp = synthetic.component(
            deps, ledger=str(home / "ledger.jsonl"), latency_ms=args.latency_ms
        )
        graph = synthetic.graph(env, comp)
        store = SqlStateStore(
            url, SecretBox.from_home(home), sqlite_synchronous=args.sqlite_synchronous
        )
        try:
            engine = Engine(
                store=store,
                kinds=ProviderRegistry.from_providers([noop.PROVIDER]),
                parallelism=args.parallelism,
            )
            t0 = time.perf_counter()
            planned = engine.plan(env, graph)
            t1 = time.perf_counter()
            result = engine.apply(planned, graph)
            t2 = time.perf_counter()
            replanned = engine.plan(env, graph)
            t3 = time.perf_counter()
            if not result.ok or replanned.has_changes:
                raise SystemExit(f"the bench did not converge: {result.to_json()}")
            if args.database_url:  # leave nothing behind in a database we do not own
                engine.converge(env, None)
        finally:
            store.close()
    latency_s = args.latency_ms / 1000.0
    ideal = latency_s * max(critical_path(deps), math.ceil(args.nodes / args.parallelism))
    apply_s = t2 - t1
    return {
        "nodes": args.nodes,
        "latency_ms": args.latency_ms,
        "parallelism": args.parallelism,
        "plan_s": round(t1 - t0, 3),
        "apply_s": round(apply_s, 3),
        "replan_s": round(t3 - t2, 3),
        "overhead_ms_per_resource": round((apply_s - ideal) / args.nodes * 1000.0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    """1,000 and 10,000 nodes with zero latency, each in a fresh process (for its own RSS)."""
    runs = {}
    for n in (1000, 10000):
        cmd = [
            sys.executable,
            __file__,
            *("--nodes", str(n), "--latency-ms", "0", "--parallelism", str(args.parallelism)),
            *("--edges", str(args.edges), "--sqlite-synchronous", args.sqlite_synchronous),
        ]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[n] = json.loads(out)
    ratio = {
        k: round(runs[10000][k] / runs[1000][k], 2) if runs[1000][k] else None
        for k in ("plan_s", "apply_s", "replan_s")
    }
    return {"small": runs[1000], "large": runs[10000], "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description="Engine bench on synthetic noop graphs.")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--edges", type=int, default=0, help="dependencies per node (random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp home")
    parser.add_argument("--sqlite-synchronous", default="FULL", choices=["NORMAL", "FULL"])
    parser.add_argument("--scaling", action="store_true", help="run 1,000 and 10,000 nodes")
    args = parser.parse_args()
    print(json.dumps(scaling(args) if args.scaling else run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
