"""Helpers of the metrics tests: a home with a small platform and a scripted history written
through the store's record functions with controlled timestamps (deployments, releases,
environments, instances, decisions, events, jobs), and the DORA figures that history gives.

The history (``base`` is ten days before the home was made; times in seconds after it):

    release R1 (checkout, cart) made at 0; R2 (checkout) at 86400; R3 (checkout) at 87400
    production:
      d1  R1  checkout, cart  succeeded, finished 3660        lead 3660 for both
      d2  R2  checkout        failed, finished 87000          checkout broken since 87000
      d3  R3  checkout        interrupted, finished 87600     (still broken)
      d4  R3  checkout        succeeded, finished 90600       lead 3200, restored in 3600
      d5  --  cart            failed, finished 172800         cart broken since 172800
      d6  --  cart            succeeded, finished 174600      restored in 1800
      a denied one, and one awaiting approval (not DORA: nothing was applied)
    dev: d7 R1 succeeded (not production)
    ephemeral pr-1: created at 432000, ready in 90 s, destroyed 7200 s after its creation;
    pr-2: ready in 30 s, still live
    drift: production's newest scan found 2, dev's newest completed one 1

``checkout`` is annotated with team ``team-payments``; ``cart`` is not, so it is the
production environment's owner's, ``team-platform``.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = ["ADMIN", "DEV", "SECRET", "History", "expected_dora", "make_home", "samples"]

ADMIN = "root-admin"
#: A developer on the development type only: no ``view`` on the organisation.
DEV = "dev-dana"
#: An instance's secret output: it must never reach a metric.
SECRET = "s3cr3t-metrics-canary-7f1c"
DAY = 86400.0

PLATFORM = textwrap.dedent(
    """\
    apiVersion: stackyard.dev/v1
    kind: EnvironmentType
    metadata: {name: development}
    spec: {description: Shared development.}
    ---
    apiVersion: stackyard.dev/v1
    kind: EnvironmentType
    metadata: {name: production}
    spec: {description: Production.}
    ---
    apiVersion: stackyard.dev/v1
    kind: EnvironmentType
    metadata: {name: preview}
    spec: {description: Per change., ephemeral: true, ttl: {default: 4h, maximum: 3d}}
    ---
    apiVersion: stackyard.dev/v1
    kind: Team
    metadata: {name: team-checkout}
    spec: {members: []}
    ---
    apiVersion: stackyard.dev/v1
    kind: Team
    metadata: {name: team-platform}
    spec: {members: []}
    ---
    apiVersion: stackyard.dev/v1
    kind: Team
    metadata: {name: team-payments}
    spec: {members: []}
    ---
    apiVersion: stackyard.dev/v1
    kind: Environment
    metadata: {name: dev}
    spec: {type: development, owner: team-checkout}
    ---
    apiVersion: stackyard.dev/v1
    kind: Environment
    metadata: {name: production}
    spec: {type: production, owner: team-platform}
    ---
    apiVersion: stackyard.dev/v1
    kind: PromotionPath
    metadata: {name: default}
    spec: {stages: [dev, production]}
    """
)


@dataclass(frozen=True)
class History:
    """The home and the times its history was written at."""

    home: Path
    settings: Any
    base: float
    heartbeat: float  # the running job's heartbeat (the store's clock)
    queued_at: float  # the queued job's creation


def _workload(name: str, team: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if team:
        meta["annotations"] = {"stackyard.dev/team": team}
    return {
        "apiVersion": "score.dev/v1b1",
        "metadata": meta,
        "containers": {"main": {"image": "none"}},
    }


def make_home(root: Path, *, database_url: str | None = None) -> History:
    """A home (no library: nothing here deploys) with the platform and the history above,
    its state in ``database_url`` when given."""
    from unittest import mock

    import stackyard.service as service
    from stackyard.environments.platform import apply_dir
    from stackyard.environments.workspace import Workspace
    from stackyard.policy.rbac import ORG, Grant, Role
    from stackyard.settings import Settings
    from stackyard.state import open_store
    from stackyard.state.governance import Governance

    home = root / "home"
    settings = Settings.load(
        home=home, actor="server-os-user", database_url=database_url, environ={}
    )
    with mock.patch.object(service.library, "names", lambda: []):
        service.init_home(settings)
    with open_store(settings) as store:
        gov = Governance(store)
        gov.grant(Grant(f"user:{ADMIN}", Role.ADMIN, ORG), by="test")
        gov.grant(Grant(f"user:{DEV}", Role.DEVELOPER, "type:development"), by="test")
    platform = root / "platform"
    platform.mkdir()
    (platform / "platform.yaml").write_text(PLATFORM)
    admin = dataclasses.replace(settings, actor=ADMIN)
    base = time.time() - 10 * DAY
    with Workspace.open(admin) as ws:
        apply_dir(ws.platform, ws.access, platform, confirm=lambda _q: True)
        _environments(ws, base)
        _history(ws, base)
        heartbeat, queued_at = _jobs(ws, base)
    return History(home, settings, base, heartbeat, queued_at)


def _environments(ws: Any, base: float) -> None:
    from stackyard.model.environment import Environment
    from stackyard.model.status import EnvironmentStatus as S

    for name in ("dev", "production"):
        ws.records.set_status(name, S.CREATING, created_at=base - DAY)
        ws.records.set_status(name, S.READY)
    for name, made in (("pr-1", base + 5 * DAY), ("pr-2", base + 6 * DAY)):
        ws.records.insert_environment(
            Environment(
                name=name,
                type="preview",
                status=S.CREATING,
                parent="dev",
                owner="team-checkout",
                created_at=made,
                created_by=ADMIN,
            )
        )
        ws.records.set_status(name, S.READY)
    ws.records.set_status("pr-1", S.DESTROYING)
    ws.records.set_status("pr-1", S.DESTROYED)


def _release(ws: Any, made: float, *workloads: dict[str, Any]) -> str:
    from stackyard.state.records import release_digest
    from stackyard.state.tables import releases

    document = {"format": 1, "workloads": list(workloads), "images": {}, "lock": {}}
    rid = release_digest(document)
    assert ws.records.put_release(rid, document, actor=ADMIN)
    with ws.store.writing() as conn:
        conn.execute(sa.update(releases).where(releases.c.id == rid).values(created_at=made))
    return rid


def _deploy(
    ws: Any,
    ident: str,
    env: str,
    status: str,
    *,
    start: float,
    end: float | None,
    workloads: tuple[str, ...] = (),
    release: str | None = None,
    kind: str = "deploy",
) -> None:
    from stackyard.model.environment import Deployment
    from stackyard.model.status import DeploymentStatus

    dep = Deployment(
        id=ident,
        env=env,
        kind=kind,
        status=DeploymentStatus("running" if status == "interrupted" else status),
        actor=ADMIN,
        created_at=start,
        release_id=release,
        finished_at=end,
        workloads=workloads,
    )
    ws.records.put_deployment(dep)
    if status == "interrupted":
        ws.records.put_deployment(dataclasses.replace(dep, status=DeploymentStatus.INTERRUPTED))


def _history(ws: Any, base: float) -> None:
    from stackyard.model.environment import InstanceRecord
    from stackyard.policy.decision import Decision, Result
    from stackyard.state.tables import drift_scans

    checkout = _workload("checkout", team="team-payments")
    r1 = _release(ws, base, checkout, _workload("cart"))
    r2 = _release(ws, base + DAY, {**checkout, "containers": {"main": {"image": "v2"}}})
    r3 = _release(ws, base + DAY + 1000, {**checkout, "containers": {"main": {"image": "v3"}}})
    both = ("cart", "checkout")
    p = "production"
    _deploy(
        ws, "d1", p, "succeeded", start=base + 3600, end=base + 3660, workloads=both, release=r1
    )
    _deploy(ws, "d2", p, "failed", start=base + 86900, end=base + 87000, workloads=("checkout",), release=r2, kind="promote")  # fmt: skip
    _deploy(ws, "d3", p, "interrupted", start=base + 87500, end=base + 87600, workloads=("checkout",), release=r3, kind="promote")  # fmt: skip
    _deploy(ws, "d4", p, "succeeded", start=base + 90000, end=base + 90600, workloads=("checkout",), release=r3, kind="promote")  # fmt: skip
    _deploy(ws, "d5", p, "failed", start=base + 2 * DAY - 100, end=base + 2 * DAY, workloads=("cart",))  # fmt: skip
    _deploy(ws, "d6", p, "succeeded", start=base + 2 * DAY + 1000, end=base + 2 * DAY + 1800, workloads=("cart",))  # fmt: skip
    _deploy(ws, "d8", p, "denied", start=base + 3 * DAY, end=base + 3 * DAY, workloads=("cart",))
    _deploy(ws, "d9", p, "awaiting-approval", start=base + 3 * DAY, end=None, workloads=("cart",))
    _deploy(
        ws, "d7", "dev", "succeeded", start=base + 60, end=base + 120, workloads=both, release=r1
    )
    for env in ("dev", "production"):
        _deploy(ws, f"c-{env}", env, "succeeded", start=base - DAY, end=base - DAY + 5, kind="create")  # fmt: skip
    # the ephemeral environments: pr-1 lived 7200 s (ready in 90), pr-2 is live (ready in 30)
    t1, t2 = base + 5 * DAY, base + 6 * DAY
    _deploy(ws, "c-pr-1", "pr-1", "succeeded", start=t1, end=t1 + 90, kind="create")
    _deploy(ws, "x-pr-1", "pr-1", "succeeded", start=t1 + 7000, end=t1 + 7200, kind="destroy")
    _deploy(ws, "c-pr-2", "pr-2", "succeeded", start=t2, end=t2 + 30, kind="create")

    def instance(env: str, uid: str, ref: str, cost: str | None) -> InstanceRecord:
        return InstanceRecord(
            env=env,
            uid=uid,
            component=ref,
            digest="sha256:" + "0" * 64,
            core=False,
            params={},
            requires={},
            outputs={"password": SECRET, "host": "127.0.0.1"},
            secret_keys=("password",),
            monthly_cost=cost,
            currency="USD" if cost else None,
        )

    for env, found in {
        "production": [
            instance(p, "postgres.default#checkout.db", "postgres-database@1.2.0", "12.50"),
            instance(p, "redis.default#cart.cache", "redis-cache@2.0.0", "7.25"),
        ],
        "dev": [instance("dev", "postgres.default#checkout.db", "postgres-database@1.2.0", "3")],
        "pr-1": [instance("pr-1", "postgres.default#checkout.db", "postgres-database@9.9.9", "1")],
    }.items():
        ws.records.record_deploy(env, put_workloads=[], put_instances=found)

    deny = Result("deny", "limits", "org", "deny", "too big")
    for i, stage in enumerate(("deploy", "deploy", "promote")):
        ws.governance.record_decision(
            Decision(f"dec-{i}", base + i, stage, p, ADMIN, "h", "rev", (deny,))
        )
    ws.governance.record_decision(Decision("dec-ok", base, "deploy", p, ADMIN, "h", "rev", ()))

    # drift scans: only each live environment's newest completed one counts
    finding = {"root": {"address": "x"}, "dependents": []}
    for env, at, findings, error in (
        (p, base, 3, None),
        (p, base + DAY, 2, None),
        ("dev", base, 1, None),
        ("dev", base + DAY, 0, "the scan failed"),
        ("pr-1", base, 5, None),  # destroyed since
    ):
        with ws.store.writing() as conn:
            conn.execute(
                sa.insert(drift_scans).values(
                    id=f"ds-{env}-{at}",
                    env=env,
                    at=at,
                    trigger="manual",
                    actor=ADMIN,
                    resources=10,
                    drifted=findings,
                    findings=[finding] * findings,
                    error=error,
                )
            )


def _jobs(ws: Any, base: float) -> tuple[float, float]:
    """One queued job (made at ``base``) and one running job with a heartbeat; the heartbeat's
    time and the queued job's creation."""
    from stackyard.jobs.store import JobStore, jobs

    store = JobStore(ws.store)
    queued = store.insert("deploy", env="dev", actor=ADMIN, teams=(), args={"env": "dev"}, max_attempts=3)  # fmt: skip
    running = store.insert("reap", env=None, actor=ADMIN, teams=(), args={}, max_attempts=3)
    assert store.start(running.id, worker="w1@host (pid 1)") is not None
    with ws.store.writing() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == queued.id).values(created_at=base))
        beat = conn.execute(sa.select(jobs.c.heartbeat_at).where(jobs.c.id == running.id)).scalar()
    return float(beat), base


def expected_dora(window_days: float = 30.0) -> dict[tuple[str, str], dict[str, Any]]:
    """What the history gives, per (team, workload)."""
    return {
        ("team-payments", "checkout"): {
            "succeeded": 2,
            "failed": 2,
            "deployment_frequency_per_day": 2 / window_days,
            "lead_time_seconds": (3660 + 3200) / 2,
            "change_failure_ratio": 0.5,
            "time_to_restore_seconds": 3600.0,
            "restores": 1,
        },
        ("team-platform", "cart"): {
            "succeeded": 2,
            "failed": 1,
            "deployment_frequency_per_day": 2 / window_days,
            "lead_time_seconds": 3660.0,
            "change_failure_ratio": 1 / 3,
            "time_to_restore_seconds": 1800.0,
            "restores": 1,
        },
    }


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, read with prometheus-client's parser:
    ``(name, sorted labels) → value``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out
