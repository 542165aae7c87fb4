"""Portal bench: the server-side render time of every portal page over a seeded store, and of
the environment graph's SVG at 200 nodes (issue 15).

    python bench/portal.py                      # 100 environments, 1,000 resources, 10,000 audit events
    python bench/portal.py --envs 20 --audit 2000 --runs 10

Setup (untimed) in a temporary ``STACKYARD_HOME`` on its own SQLite store: ``init_home``
publishing only ``local-volume``, a platform of one environment type ``lite`` (a volume per
workload), then seeding **through the state store directly** (not through deploys, which
would take minutes): ``--envs`` environments (``Records.insert_environment``), in each one
workload (a Score ``sleep`` with one volume: its workload and instance records, with a
monthly cost) and ``--resources`` provider resources spread over the environments
(``local.directory`` rows written with the state store's lease and ``commit``, so a page
observes them as it would real ones), and ``--audit`` audit events appended to the keyed
chain (``Governance.append``). The user ``bench-admin`` (organisation admin) holds a token.

Timed: each page is requested ``--runs`` times (after 2 untimed warm-up requests) through the
app ``stackyard server`` serves (``stackyard.portal.site``), in process (Starlette's test
client: no socket), with the bearer token, so a figure is the whole server side of a page: the
token check, the service calls as that user, the store reads, observing the resources on an
environment's page, and rendering the template. Per page: ``p50_ms``, ``p90_ms``, ``max_ms``
and the answer's size. The graph: ``graph.build`` + ``graph.render`` of an environment with
50 workloads each requesting one volume whose instance holds one resource (200 nodes),
``--runs`` times.

Budgets (the issue's): every page's p50 ≤ 50 ms; the 200-node graph's p50 ≤ 100 ms. Prints
one JSON object (progress on stderr); exits 1 when a budget is missed or a page is not 200.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

PAGE_BUDGET_MS = 50.0
GRAPH_BUDGET_MS = 100.0
ADMIN = "bench-admin"
KIND = "local.directory"


def log(message: str) -> None:
    print(f"[portal {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def score(name: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: score.dev/v1b1
        metadata: {{name: {name}}}
        containers:
          main:
            image: none
            command: ["sh", "-c", "sleep 3600"]
            variables:
              DATA_DIR: ${{resources.data.path}}
        resources:
          data:
            type: volume
        """
    )


PLATFORM = textwrap.dedent(
    """\
    apiVersion: stackyard.dev/v1
    kind: EnvironmentType
    metadata: {name: lite}
    spec:
      description: Volumes only, no core servers.
      runtime: local
      bindings:
        - {type: volume, component: local-volume@^1}
    ---
    apiVersion: stackyard.dev/v1
    kind: Team
    metadata: {name: team-bench}
    spec: {members: []}
    """
)


def figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
        "runs": len(ordered),
    }


def setup(home: Path, args: argparse.Namespace) -> tuple[Any, list[str], dict[str, int]]:
    """The seeded home's settings, the environment names and what was seeded."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import Environment, InstanceRecord, WorkloadRecord
    from stackyard.model.status import AuditResult
    from stackyard.policy.rbac import ORG, Grant, Role
    from stackyard.settings import Settings
    from stackyard.state import open_store
    from stackyard.state.api import ResourceRecord
    from stackyard.state.governance import Governance

    settings = Settings.load(home=home, actor="bench-os-user", environ={})
    t0 = time.perf_counter()
    with mock.patch.object(service.library, "names", lambda: ["local-volume"]):
        service.init_home(settings)
    with open_store(settings) as store:
        Governance(store).grant(Grant(f"user:{ADMIN}", Role.ADMIN, ORG), by="bench")
    plat = home.parent / "platform"
    plat.mkdir(exist_ok=True)
    (plat / "platform.yaml").write_text(PLATFORM)
    import dataclasses

    admin = dataclasses.replace(settings, actor=ADMIN)
    names = [f"env{i:03d}" for i in range(args.envs)]
    seeded = {"environments": 0, "resources": 0, "workloads": 0, "audit_events": 0}
    with Workspace.open(admin) as ws:
        apply_dir(ws.platform, ws.access, plat, confirm=lambda _q: True)
        from stackyard.components.catalog import entries

        latest = next(e.to_json()["latest"] for e in entries(ws.registry))
        component = f"local-volume@{latest}"
        digest = "sha256:" + "0" * 64
        now = time.time()
        per_env = [args.resources // args.envs] * args.envs
        for i in range(args.resources % args.envs):
            per_env[i] += 1
        for n, env in enumerate(names):
            made = Environment(
                name=env,
                type="lite",
                status="creating",
                owner="team-bench",
                created_at=now - 3600,
                created_by=ADMIN,
                expires_at=now + 3600 * (n % 48 + 1),
            )
            ws.records.insert_environment(made)
            ws.records.put_environment(dataclasses.replace(made, status="ready"))
            seeded["environments"] += 1
            import yaml

            from stackyard.environments.workloads import parse_spec

            spec = yaml.safe_load(score("app"))
            uid = str(next(iter(parse_spec(spec, file="score.yaml").resources.values())).uid)
            ws.records.record_deploy(
                env,
                put_workloads=[WorkloadRecord(env, "app", "seed", spec, (uid,))],
                put_instances=[
                    InstanceRecord(
                        env,
                        uid,
                        component,
                        digest,
                        False,
                        {},
                        {},
                        {"path": str(home / "vol" / env)},
                        monthly_cost=f"{(n % 7) + 0.5:.2f}",
                        currency="USD",
                    )
                ],
            )
            seeded["workloads"] += 1
            lease = ws.store.acquire(env, holder="bench", ttl_s=600)
            try:
                for r in range(per_env[n]):
                    address = f"{uid}.directory{'' if r == 0 else r}"
                    path = home / "vol" / env / str(r)
                    path.mkdir(parents=True, exist_ok=True)
                    ws.store.commit(
                        lease,
                        f"seed-{env}-{r}",
                        ResourceRecord(
                            address,
                            KIND,
                            f"{env}-{r}",
                            str(path),
                            {},
                            {"path": str(path), "source": str(path)},
                            uid=uid,
                            component=component,
                        ),
                        address=address,
                    )
                    seeded["resources"] += 1
            finally:
                ws.store.release(lease)
        log(f"seeded {args.envs} environments, {seeded['resources']} resources")
        gov = ws.governance
        for k in range(args.audit):
            gov.append(
                actor=f"user{k % 37}",
                action=("deploy", "env.create", "outputs.reveal", "approve")[k % 4],
                target=f"env:{names[k % len(names)]}",
                result=AuditResult.OK,
                detail={"n": k},
            )
            seeded["audit_events"] += 1
        seeded["audit_events"] = len(gov.audit())
    log(f"seeded {seeded['audit_events']} audit events in {time.perf_counter() - t0:.1f}s")
    return settings, names, seeded


def graph_200(runs: int) -> dict[str, Any]:
    """``graph.build`` + ``graph.render`` of 50 workloads → 50 requests → 50 instances → 50
    resources (200 nodes)."""
    from stackyard.portal import graph

    workloads = {f"w{i:02d}": {"state": ("ready", "starting", "failed")[i % 3]} for i in range(50)}
    requests = {w: [("data", "volume", f"volume.default#{w}.data")] for w in workloads}
    status = {
        "workloads": workloads,
        "resources": [
            {
                "address": f"volume.default#{w}.data.directory",
                "kind": KIND,
                "uid": f"volume.default#{w}.data",
                "component": "local-volume@1.0.0",
                "health": ("ok", "degraded", "missing")[i % 3],
            }
            for i, w in enumerate(workloads)
        ],
    }
    size = graph.build(status, requests).size
    samples = []
    svg = ""
    for _ in range(runs):
        t = time.perf_counter()
        svg = str(graph.render(graph.build(status, requests), title="bench"))
        samples.append((time.perf_counter() - t) * 1000)
    return {"nodes": size, "bytes": len(svg), **figures(samples)}


def pages(settings: Any, names: list[str], runs: int) -> dict[str, Any]:
    import dataclasses

    from starlette.testclient import TestClient

    from stackyard.environments.workspace import Workspace
    from stackyard.identity import tokens
    from stackyard.portal import site

    with Workspace.open(dataclasses.replace(settings, actor=ADMIN)) as ws:
        token = tokens.create(ws, user=ADMIN, ttl="1d").token
    env = names[len(names) // 2]
    paths = {
        "home": "/",
        "environment": f"/environments/{env}",
        "graph_svg": f"/environments/{env}/graph.svg",
        "deploy": f"/environments/{env}/deploy",
        "destroy": f"/environments/{env}/destroy",
        "new": "/new",
        "approvals": "/approvals",
        "releases": "/releases",
        "catalog": "/catalog",
        "component": "/catalog/local-volume",
        "decisions": "/decisions",
        "audit": "/audit",
        "cost": "/cost",
    }
    out: dict[str, Any] = {}
    app = site(settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for name, path in paths.items():
            for _ in range(2):
                warm = client.get(path)
            samples = []
            codes = {warm.status_code}
            for _ in range(runs):
                t = time.perf_counter()
                r = client.get(path)
                samples.append((time.perf_counter() - t) * 1000)
                codes.add(r.status_code)
            out[name] = {"path": path, "status": sorted(codes), "bytes": len(r.content)}
            out[name].update(figures(samples))
            log(f"{name}: p50 {out[name]['p50_ms']} ms")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--envs", type=int, default=100)
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--audit", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sy-bench-portal-"))
    os.environ.pop("STACKYARD_DATABASE_URL", None)
    result: dict[str, Any] = {
        "bench": "portal",
        "machine": {"python": pyplatform.python_version(), "cpus": os.cpu_count()},
        "params": vars(args),
    }
    try:
        settings, names, seeded = setup(tmp / "home", args)
        result["seeded"] = seeded
        result["pages"] = pages(settings, names, args.runs)
        result["graph_200_nodes"] = graph_200(args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    slow = [
        n
        for n, f in result["pages"].items()
        if f["p50_ms"] > PAGE_BUDGET_MS or f["status"] != [200]
    ]
    graph_ok = result["graph_200_nodes"]["p50_ms"] <= GRAPH_BUDGET_MS
    result["budgets"] = {
        "page_p50_ms": PAGE_BUDGET_MS,
        "graph_p50_ms": GRAPH_BUDGET_MS,
        "pages_over_budget_or_not_200": slow,
        "graph_within_budget": graph_ok,
        "ok": not slow and graph_ok,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["budgets"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
