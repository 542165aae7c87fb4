"""The platform's figures (DESIGN §10): DORA per team and workload, the platform's own state
and the service's queue, read from the state store at the time they are asked for.

``collect(ws)`` checks that the actor may ``view`` the organisation and returns a
``Metrics``; ``figures(ws)`` is the same without the check (the server's opt-in anonymous
scrape). Two renderers share the model: ``Metrics.to_json()`` (``stackyard metrics -o json``,
``GET /api/v1/metrics``) and the Prometheus collector of ``stackyard.api.routes.metrics``.

Production. An environment is production when its type is named ``production`` or ``prod``,
or its ``stage`` (or ``tier``) label says so; when no environment is marked that way, the last
stage of each promotion path is.

DORA, over a window (default 30 days) of the production deployments (``deploy`` and
``promote``) that finished in it, each counted for every workload it changed:

- deployment frequency: succeeded ones per day of the window;
- lead time for changes: release created → deployment succeeded (median; releases only);
- change failure rate: failed (or interrupted) ones / all finished ones;
- time to restore: a failed one → the next succeeded one of the same workload in the same
  environment (median; from the first failure after the last success).

A workload's team is its Score ``metadata.annotations["stackyard.dev/team"]`` when that names
a ``Team``, else the owner of the environment it was deployed to. Every label value is a name
the platform validated (or a fixed word): no id, path, secret or free text.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard.model.status import DecisionOutcome, DeploymentStatus, EnvironmentStatus
from stackyard.state.tables import (
    decisions,
    deployments,
    drift_scans,
    environments,
    instances,
    releases,
    workloads,
)

if TYPE_CHECKING:
    from stackyard.environments.platform import Platform
    from stackyard.environments.workspace import Workspace
    from stackyard.state.sql import SqlStateStore

__all__ = [
    "DEFAULT_WINDOW_S",
    "LIFETIME_BUCKETS",
    "READY_BUCKETS",
    "Dora",
    "Histogram",
    "Metrics",
    "collect",
    "figures",
    "production_envs",
]

log = logging.getLogger("stackyard.ops")

DEFAULT_WINDOW_S = 30 * 86400
#: The annotation of a Score workload naming its team.
TEAM_ANNOTATION = "stackyard.dev/team"
#: What a label says when there is no value, or one that is not a plain name.
NONE, OTHER = "(none)", "(other)"
#: Buckets (seconds) of the ephemeral environments' lifetime and ready time.
LIFETIME_BUCKETS = (3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0)
READY_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: A worker seen (a heartbeat, a job started or finished) this recently is counted.
WORKER_SEEN_S = 60.0

_CHANGES = ("deploy", "promote")
_FAILED = (DeploymentStatus.FAILED, DeploymentStatus.INTERRUPTED)
_FINISHED = (DeploymentStatus.SUCCEEDED, *_FAILED)
_PRODUCTION = frozenset({"production", "prod"})
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/#+~-]{0,199}$")

# The jobs read model's columns this module reads. Named here rather than imported from
# ``stackyard.jobs.store``: the worker imports ``stackyard.ops`` (its ticker), and the two
# packages must not import each other.
_jobs = sa.table(
    "jobs",
    sa.column("status", sa.String),
    sa.column("created_at", sa.Float),
    sa.column("started_at", sa.Float),
    sa.column("finished_at", sa.Float),
    sa.column("heartbeat_at", sa.Float),
    sa.column("worker", sa.String),
)
_JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def label(value: object) -> str:
    """``value`` as a label: a plain name as is, nothing as ``(none)``, anything else
    ``(other)`` (a label never carries free text)."""
    if value is None or value == "":
        return NONE
    text = str(value)
    return text if _SAFE.fullmatch(text) else OTHER


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations in cumulative buckets (``le`` upper bounds; ``+Inf`` is ``count``)."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]  # cumulative, one per bucket
    sum: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float], buckets: Sequence[float]) -> Histogram:
        """The histogram of ``values``."""
        seen = sorted(values)
        counts = tuple(sum(1 for v in seen if v <= b) for b in buckets)
        return cls(tuple(buckets), counts, float(sum(seen)), len(seen))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "buckets": [
                {"le": b, "count": c} for b, c in zip(self.buckets, self.counts, strict=True)
            ],
            "sum": self.sum,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class Dora:
    """The four DORA figures of one workload of one team, over the window."""

    team: str
    workload: str
    succeeded: int
    failed: int
    frequency_per_day: float
    lead_time_s: float | None  # median; None without a release deployed
    change_failure_ratio: float | None  # None without a finished deployment
    time_to_restore_s: float | None  # median; None without a restore
    restores: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "team": self.team,
            "workload": self.workload,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "deployment_frequency_per_day": self.frequency_per_day,
            "lead_time_seconds": self.lead_time_s,
            "change_failure_ratio": self.change_failure_ratio,
            "time_to_restore_seconds": self.time_to_restore_s,
            "restores": self.restores,
        }


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every figure, as read at ``at``."""

    at: float
    window_s: float
    production: tuple[str, ...]
    dora: tuple[Dora, ...]
    deployments: Mapping[tuple[str, str], int]  # (outcome, env type) → all time
    environments: Mapping[tuple[str, str], int]  # (type, status)
    ephemeral_lifetime: Histogram
    ephemeral_ready: Histogram
    policy_denies: Mapping[str, int]  # stage → all time
    approvals_waiting: int
    drift_findings: Mapping[str, int]  # env type → of the newest scans
    component_instances: Mapping[tuple[str, str], int]  # (component, version)
    cost: Mapping[tuple[str, str, str], Decimal]  # (team, env, currency) → monthly
    jobs: Mapping[str, int]  # status
    job_oldest_queued_age_s: float
    workers: int
    slo: tuple[Mapping[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (what ``stackyard metrics -o json`` prints)."""
        return {
            "at": self.at,
            "window_seconds": self.window_s,
            "production": list(self.production),
            "dora": [d.to_json() for d in self.dora],
            "deployments": [
                {"outcome": o, "env_type": t, "count": n}
                for (o, t), n in sorted(self.deployments.items())
            ],
            "environments": [
                {"type": t, "status": s, "count": n}
                for (t, s), n in sorted(self.environments.items())
            ],
            "ephemeral_environment_lifetime_seconds": self.ephemeral_lifetime.to_json(),
            "ephemeral_environment_ready_seconds": self.ephemeral_ready.to_json(),
            "policy_denies": [
                {"stage": s, "count": n} for s, n in sorted(self.policy_denies.items())
            ],
            "approvals_waiting": self.approvals_waiting,
            "drift_findings": [
                {"env_type": t, "count": n} for t, n in sorted(self.drift_findings.items())
            ],
            "component_instances": [
                {"component": c, "version": v, "count": n}
                for (c, v), n in sorted(self.component_instances.items())
            ],
            "cost_monthly": [
                {"team": t, "env": e, "currency": c, "amount": f"{a:.2f}"}
                for (t, e, c), a in sorted(self.cost.items())
            ],
            "jobs": [{"status": s, "count": n} for s, n in sorted(self.jobs.items())],
            "job_oldest_queued_age_seconds": self.job_oldest_queued_age_s,
            "workers": self.workers,
            "slo": [dict(s) for s in self.slo],
        }


def collect(
    ws: Workspace, *, window_s: float = DEFAULT_WINDOW_S, now: float | None = None
) -> Metrics:
    """Every figure, for an actor who may ``view`` the organisation (``PermissionDeniedError``
    otherwise): the figures span every environment and team."""
    from stackyard.policy.rbac import Action

    ws.access.authorize(Action.VIEW)
    return figures(ws, window_s=window_s, now=now)


def figures(
    ws: Workspace, *, window_s: float = DEFAULT_WINDOW_S, now: float | None = None
) -> Metrics:
    """Every figure, with no access check (``collect`` checks)."""
    at = time.time() if now is None else now
    store = ws.store
    platform = ws.platform()
    with store.reading() as conn:
        envs = {r.name: r for r in conn.execute(sa.select(environments)).all()}
    types = {name: r.type for name, r in envs.items()}
    production = production_envs(platform, envs.values())
    since = at - window_s
    lifetime, ready = _ephemeral(store, platform, types)
    jobs, oldest, workers = _queue(store, at)
    return Metrics(
        at=at,
        window_s=float(window_s),
        production=tuple(sorted(production)),
        dora=_dora(store, platform, envs, production, since=since, window_s=window_s),
        deployments=_deployments(store, types),
        environments=_count((r.type, r.status) for r in envs.values()),
        ephemeral_lifetime=lifetime,
        ephemeral_ready=ready,
        policy_denies=_denies(store),
        approvals_waiting=_waiting(store),
        drift_findings=_drift(store, envs),
        component_instances=_adoption(store, envs),
        cost=_cost(store, envs),
        jobs=jobs,
        job_oldest_queued_age_s=oldest,
        workers=workers,
        slo=_slo(ws),
    )


def production_envs(platform: Platform, envs: Iterable[Any]) -> set[str]:
    """The production environments: by type name or ``stage``/``tier`` label, else the last
    stage of each promotion path."""
    marked = set()
    for e in envs:
        labels = e.labels or {}
        words = {str(e.type).lower(), str(labels.get("stage", "")).lower()}
        words.add(str(labels.get("tier", "")).lower())
        if words & _PRODUCTION:
            marked.add(e.name)
    if marked:
        return marked
    return {p.stages[-1] for p in platform.paths.values() if p.stages}


# -- DORA ---------------------------------------------------------------------------------------


def _dora(
    store: SqlStateStore,
    platform: Platform,
    envs: Mapping[str, Any],
    production: set[str],
    *,
    since: float,
    window_s: float,
) -> tuple[Dora, ...]:
    if not production:
        return ()
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(
                deployments.c.env,
                deployments.c.release_id,
                deployments.c.status,
                deployments.c.finished_at,
                deployments.c.workloads,
            )
            .where(
                deployments.c.env.in_(sorted(production)),
                deployments.c.kind.in_(_CHANGES),
                deployments.c.status.in_([str(s) for s in _FINISHED]),
                deployments.c.finished_at >= since,
            )
            .order_by(deployments.c.finished_at)
        ).all()
        ids = sorted({r.release_id for r in rows if r.release_id})
        made = {
            r.id: (float(r.created_at), r.document)
            for r in conn.execute(
                sa.select(releases.c.id, releases.c.created_at, releases.c.document).where(
                    releases.c.id.in_(ids)
                )
            )
        }
        specs = {
            (r.env, r.name): r.spec
            for r in conn.execute(
                sa.select(workloads.c.env, workloads.c.name, workloads.c.spec).where(
                    workloads.c.env.in_(sorted(production))
                )
            )
        }
    teams = set(platform.teams)

    def team_of(env: str, name: str, release: str | None) -> str:
        spec: Any = specs.get((env, name))
        if release in made:
            for w in made[release][1].get("workloads", []):
                if isinstance(w, Mapping) and w.get("metadata", {}).get("name") == name:
                    spec = w
        annotations = ((spec or {}).get("metadata") or {}).get("annotations") or {}
        named = annotations.get(TEAM_ANNOTATION) if isinstance(annotations, Mapping) else None
        if isinstance(named, str) and named in teams:
            return named
        owner = envs[env].owner if env in envs else None
        return label(owner)

    per: dict[tuple[str, str], _Tally] = {}
    for r in rows:
        for name in r.workloads or ():
            key = (team_of(r.env, str(name), r.release_id), label(name))
            tally = per.setdefault(key, _Tally())
            tally.add(r.env, str(name), r, made.get(r.release_id or ""))
    days = window_s / 86400.0
    return tuple(t.dora(team, workload, days) for (team, workload), t in sorted(per.items()))


@dataclass
class _Tally:
    """One (team, workload)'s production deployments, in finishing order."""

    succeeded: int = 0
    failed: int = 0
    leads: list[float] = field(default_factory=list)
    restores: list[float] = field(default_factory=list)
    broken: dict[tuple[str, str], float] = field(default_factory=dict)  # since this failure

    def add(self, env: str, name: str, row: Any, release: tuple[float, Any] | None) -> None:
        done = float(row.finished_at)
        if row.status == DeploymentStatus.SUCCEEDED:
            self.succeeded += 1
            if release is not None:
                self.leads.append(done - release[0])
            failed_at = self.broken.pop((env, name), None)
            if failed_at is not None:
                self.restores.append(done - failed_at)
        else:
            self.failed += 1
            self.broken.setdefault((env, name), done)

    def dora(self, team: str, workload: str, days: float) -> Dora:
        finished = self.succeeded + self.failed
        return Dora(
            team=team,
            workload=workload,
            succeeded=self.succeeded,
            failed=self.failed,
            frequency_per_day=self.succeeded / days if days > 0 else 0.0,
            lead_time_s=statistics.median(self.leads) if self.leads else None,
            change_failure_ratio=self.failed / finished if finished else None,
            time_to_restore_s=statistics.median(self.restores) if self.restores else None,
            restores=len(self.restores),
        )


# -- the platform ---------------------------------------------------------------------------


def _count(pairs: Iterable[tuple[Any, Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for a, b in pairs:
        k = (label(a), label(b))
        out[k] = out.get(k, 0) + 1
    return out


def _deployments(store: SqlStateStore, types: Mapping[str, str]) -> dict[tuple[str, str], int]:
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(deployments.c.status, deployments.c.env, sa.func.count()).group_by(
                deployments.c.status, deployments.c.env
            )
        ).all()
    out: dict[tuple[str, str], int] = {}
    for status, env, n in rows:
        key = (label(status), label(types.get(env)))
        out[key] = out.get(key, 0) + int(n)
    return out


def _ephemeral(
    store: SqlStateStore, platform: Platform, types: Mapping[str, str]
) -> tuple[Histogram, Histogram]:
    """Each ephemeral environment's ready time (its core's create) and lifetime (create to
    destroy), from the succeeded ``create`` and ``destroy`` deployments."""
    brief = {n for n, t in types.items() if t in platform.types and platform.types[t].ephemeral}
    lifetimes: list[float] = []
    ready: list[float] = []
    if brief:
        with store.reading() as conn:
            rows = conn.execute(
                sa.select(
                    deployments.c.env,
                    deployments.c.kind,
                    deployments.c.created_at,
                    deployments.c.finished_at,
                )
                .where(
                    deployments.c.env.in_(sorted(brief)),
                    deployments.c.kind.in_(("create", "destroy")),
                    deployments.c.status == DeploymentStatus.SUCCEEDED,
                    deployments.c.finished_at.is_not(None),
                )
                .order_by(deployments.c.created_at)
            ).all()
        born: dict[str, float] = {}
        for r in rows:
            if r.kind == "create":
                born.setdefault(r.env, float(r.created_at))
                ready.append(float(r.finished_at) - float(r.created_at))
            elif r.env in born:
                lifetimes.append(float(r.finished_at) - born.pop(r.env))
    return Histogram.of(lifetimes, LIFETIME_BUCKETS), Histogram.of(ready, READY_BUCKETS)


def _denies(store: SqlStateStore) -> dict[str, int]:
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(decisions.c.stage, sa.func.count())
            .where(decisions.c.outcome == DecisionOutcome.DENY)
            .group_by(decisions.c.stage)
        ).all()
    return {label(stage): int(n) for stage, n in rows}


def _waiting(store: SqlStateStore) -> int:
    with store.reading() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).where(
                deployments.c.status == DeploymentStatus.AWAITING_APPROVAL
            )
        ).scalar()
    return int(n or 0)


def _drift(store: SqlStateStore, envs: Mapping[str, Any]) -> dict[str, int]:
    """The findings of each live environment's newest completed drift scan, per type."""
    live = _live(envs)
    done = drift_scans.c.error.is_(None)
    newest = (
        sa.select(drift_scans.c.env, sa.func.max(drift_scans.c.at).label("at"))
        .where(done)
        .group_by(drift_scans.c.env)
        .subquery()
    )
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(drift_scans.c.env, drift_scans.c.findings)
            .join(
                newest,
                sa.and_(drift_scans.c.env == newest.c.env, drift_scans.c.at == newest.c.at),
            )
            .where(done)
        ).all()
    out: dict[str, int] = {}
    for env, findings in rows:
        if env not in live:
            continue
        key = label(envs[env].type)
        out[key] = out.get(key, 0) + (len(findings) if isinstance(findings, list) else 0)
    return out


def _live(envs: Mapping[str, Any]) -> set[str]:
    return {n for n, r in envs.items() if EnvironmentStatus(r.status).is_live}


def _adoption(store: SqlStateStore, envs: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    live = _live(envs)
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(instances.c.env, instances.c.component, sa.func.count()).group_by(
                instances.c.env, instances.c.component
            )
        ).all()
    out: dict[tuple[str, str], int] = {}
    for env, ref, n in rows:
        if env not in live:
            continue
        name, _, version = str(ref).rpartition("@")
        key = (label(name or ref), label(version if name else None))
        out[key] = out.get(key, 0) + int(n)
    return out


def _cost(store: SqlStateStore, envs: Mapping[str, Any]) -> dict[tuple[str, str, str], Decimal]:
    live = _live(envs)
    with store.reading() as conn:
        rows = conn.execute(
            sa.select(instances.c.env, instances.c.monthly_cost, instances.c.currency).where(
                instances.c.monthly_cost.is_not(None)
            )
        ).all()
    out: dict[tuple[str, str, str], Decimal] = {}
    for env, monthly, currency in rows:
        if env not in live:
            continue
        key = (label(envs[env].owner), label(env), label(currency or "USD"))
        out[key] = out.get(key, Decimal(0)) + Decimal(monthly)
    return out


# -- the service itself -------------------------------------------------------------------------


def _queue(store: SqlStateStore, at: float) -> tuple[dict[str, int], float, int]:
    """Jobs per status, the oldest queued one's age, and the workers seen lately."""
    seen = at - WORKER_SEEN_S
    with store.reading() as conn:
        counts = dict.fromkeys(_JOB_STATUSES, 0)
        for status, n in conn.execute(
            sa.select(_jobs.c.status, sa.func.count()).group_by(_jobs.c.status)
        ).all():
            counts[label(status)] = int(n)
        oldest = conn.execute(
            sa.select(sa.func.min(_jobs.c.created_at)).where(_jobs.c.status == "queued")
        ).scalar()
        workers = conn.execute(
            sa.select(sa.func.count(sa.distinct(_jobs.c.worker))).where(
                _jobs.c.worker.is_not(None),
                sa.or_(
                    _jobs.c.heartbeat_at >= seen,
                    _jobs.c.started_at >= seen,
                    _jobs.c.finished_at >= seen,
                ),
            )
        ).scalar()
    age = max(0.0, at - float(oldest)) if oldest is not None else 0.0
    return counts, age, int(workers or 0)


def _slo(ws: Workspace) -> tuple[Mapping[str, Any], ...]:
    """The SLO summaries of ``stackyard.ops.slo`` when it is there: ``env``, ``target``,
    ``component``, ``availability`` and ``error_budget_remaining`` (ratios)."""
    try:
        from stackyard.ops import slo  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return ()
    summaries = getattr(slo, "summaries", None)
    if summaries is None:
        return ()
    from stackyard.errors import StackyardError

    try:
        found = list(summaries(ws))
    except StackyardError:  # e.g. an SLO the scraping identity may not see: left out
        return ()
    except Exception as exc:  # the other figures are still worth a scrape
        log.warning("metrics: the SLO summaries failed: %s", type(exc).__name__)
        return ()
    out = []
    for s in found:
        doc = s.to_json() if hasattr(s, "to_json") else dict(s)
        availability = _ratio(doc, "availability", "availability_ratio")
        if availability is None:
            continue
        out.append(
            {
                "env": label(doc.get("env")),
                "target": label(doc.get("target")),
                "component": label(doc.get("component")),
                "availability_ratio": availability,
                "error_budget_remaining_ratio": _ratio(
                    doc,
                    "error_budget_remaining",
                    "error_budget_remaining_ratio",
                    "budget_remaining",
                ),
            }
        )
    return tuple(out)


def _ratio(doc: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = doc.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None
