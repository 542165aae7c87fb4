"""Drift bench: scan N recorded resources on the machine's PostgreSQL and Redis; prints JSON.

    python bench/drift.py                      # 100 and 1,000 resources, and the growth
    python bench/drift.py --sizes 1000 --runs 5

For each size N, half PostgreSQL roles and half Redis ACL users are created through the
engine (one apply, real providers) in a unique environment of a temporary home, a few of
them are changed by hand (a role's password, a user's commands, a role dropped), and the
drift scan (``stackyard.environments.drift.scan_snapshot``: observe every recorded resource
at the default parallelism, compare, group) runs ``--runs`` times. Everything is destroyed
afterwards.

One JSON object: ``sizes`` (per N: ``resources``, ``scans_s`` (each scan), ``p50_s``,
``findings``, ``create_s``), ``growth`` (p50 of the largest size over the smallest) and the
targets: ``p50_s`` of 1,000 resources at most 2 s, ``growth`` 100 → 1,000 at most 12×.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from stackyard.engine.engine import Engine
from stackyard.engine.kinds import naming_lookup
from stackyard.environments.drift import DEFAULT_PARALLELISM, scan_snapshot
from stackyard.model.component import ComponentManifest, ResourceTemplate
from stackyard.model.ids import ResourceUid
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph, Instance, expand
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _graph(env: str, n: int, kinds: Any, pg_url: str, redis_url: str) -> Graph:
    resources: dict[str, ResourceTemplate] = {}
    for i in range(n):
        if i % 2 == 0:
            config: dict[str, Any] = {"server": pg_url, "password": f"pw-{i}-bench"}
            resources[f"r{i}"] = ResourceTemplate(f"r{i}", "postgres.role", config)
        else:
            config = {"server": redis_url, "password": f"pw-{i}-bench"}
            resources[f"r{i}"] = ResourceTemplate(f"r{i}", "redis.acl_user", config)
    comp = ComponentManifest(
        name="drift-bench",
        version="1.0.0",
        owner="bench",
        description="Roles and ACL users for the drift bench.",
        provides="drift-bench",
        resources=resources,
    )
    uid = ResourceUid("drift-bench", "default", "bench")
    g, diags = expand(
        [Instance(uid, comp, {}, {"env": env, "name": env})],
        env=env,
        naming_for=naming_lookup(kinds),
    )
    if diags:
        raise SystemExit("; ".join(d.detail or d.summary for d in diags))
    return g


def _tamper(store: SqlStateStore, env: str, pg_url: str, redis_url: str) -> int:
    """Change three objects by hand; returns how many."""
    recs = sorted(store.snapshot(env).resources.values(), key=lambda r: r.address)
    roles = [r for r in recs if r.kind == "postgres.role"]
    users = [r for r in recs if r.kind == "redis.acl_user"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE \"{roles[0].physical_name}\" PASSWORD 'changed-by-hand'")
        conn.execute(f'DROP ROLE "{roles[1].physical_name}"')
    client = redis.Redis.from_url(redis_url)
    try:
        client.execute_command("ACL", "SETUSER", users[0].physical_name, "+@all")
    finally:
        client.close()
    return 3


def one_size(n: int, runs: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stackyard-bench-drift-") as tmp:
        home = Path(tmp)
        env = f"drift{uuid.uuid4().hex[:8]}"
        store = SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))
        kinds = ProviderRegistry.discover()
        engine = Engine(store=store, kinds=kinds, parallelism=16)
        try:
            graph = _graph(env, n, kinds, args.pg_url, args.redis_url)
            t0 = time.perf_counter()
            _plan, applied = engine.converge(env, graph)
            create_s = time.perf_counter() - t0
            if not applied.ok:
                raise SystemExit(f"the bench could not create its objects: {applied.failed}")
            tampered = _tamper(store, env, args.pg_url, args.redis_url)
            scans, findings = [], 0
            for _ in range(runs):
                snap = store.snapshot(env)
                t1 = time.perf_counter()
                result = scan_snapshot(
                    snap,
                    kinds,
                    installation=store.installation_id(),
                    parallelism=args.parallelism,
                )
                scans.append(time.perf_counter() - t1)
                findings = len(result.findings)
            if findings != tampered:
                raise SystemExit(f"expected {tampered} findings, found {findings}")
        finally:
            engine.converge(env, None)  # destroy: the dropped role is already gone
            store.close()
    return {
        "resources": n,
        "create_s": round(create_s, 3),
        "scans_s": [round(s, 3) for s in scans],
        "p50_s": round(statistics.median(scans), 3),
        "findings": findings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Drift scan bench on PostgreSQL and Redis.")
    parser.add_argument("--sizes", default="100,1000", help="comma-separated resource counts")
    parser.add_argument("--runs", type=int, default=5, help="scans per size")
    parser.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict[str, Any] = {
        "parallelism": args.parallelism,
        "sizes": {str(n): one_size(n, args.runs, args) for n in sizes},
    }
    if len(sizes) > 1:
        small, large = out["sizes"][str(min(sizes))], out["sizes"][str(max(sizes))]
        out["growth"] = round(large["p50_s"] / small["p50_s"], 2) if small["p50_s"] else None
    largest = out["sizes"][str(max(sizes))]
    out["targets"] = {
        "p50_s_at_1000_le_2": largest["p50_s"] <= 2.0 if max(sizes) == 1000 else None,
        "growth_le_12": out.get("growth") is not None and out["growth"] <= 12,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
