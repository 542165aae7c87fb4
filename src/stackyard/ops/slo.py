"""Service level objectives from observations (DESIGN §10, issue 18 part 3).

A component's SLA availability (``spec.sla.availability: "99.9"``) becomes the objective of
each of its instances; a workload's objective is ``STACKYARD_DEFAULT_SLO`` (a percentage,
unset: none). What is measured comes from observations kept in ``slo_observations``:

    probe     the ticker step ``slo.probe`` (every ``STACKYARD_SLO_PROBE_S`` seconds, 30 by
              default) and ``stackyard slo probe`` record one observation per target of every
              live environment: a workload (``workload:<name>``) is ok when its runtime says
              ``ready`` (what ``stackyard status`` shows); a component instance (its uid) is
              ok when every resource it recorded is read through its provider and exists,
              answers and is not stopped. Reads run in parallel, each bounded by
              ``STACKYARD_SLO_PROBE_TIMEOUT`` (10 s); a failing or hung read makes that
              target's observation not ok and never stops the sweep. An instance that
              recorded no resource (an external server) has nothing to read: no observation.
    measure   ``summaries``: per target over a window, the *sample ratio* good / samples.
              Probes are evenly spaced, so it weights time evenly; a gap (no worker ran) is
              neither good nor bad, and a target without a sample in the window is unknown
              (availability None), never 100 %.
    prune     observations older than the retention (``STACKYARD_SLO_RETENTION``, 30 d, the
              longest window) are deleted by each probe.

The error budget left is ``1 - (1 - availability) / (1 - objective)``: 1 with no failure,
0 when the budget is spent, negative when overspent (it is not clamped).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from stackyard.errors import InvalidInputError
from stackyard.ops.ticker import register
from stackyard.state.tables import slo_observations

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import InstanceRecord
    from stackyard.state.api import ResourceRecord

__all__ = [
    "DEFAULT_PROBE_S",
    "DEFAULT_WINDOW_S",
    "Observation",
    "SloSummary",
    "default_objective",
    "missed",
    "objective_of",
    "observe",
    "probe_step",
    "prune",
    "record",
    "summaries",
]

log = logging.getLogger("stackyard.ops")

PROBE_ENV = "STACKYARD_SLO_PROBE_S"
TIMEOUT_ENV = "STACKYARD_SLO_PROBE_TIMEOUT"
RETENTION_ENV = "STACKYARD_SLO_RETENTION"
DEFAULT_SLO_ENV = "STACKYARD_DEFAULT_SLO"

DEFAULT_PROBE_S = 30.0
DEFAULT_TIMEOUT_S = 10.0
#: The default (and longest kept) window: 30 days.
DEFAULT_WINDOW_S = 30 * 86400.0
#: Instance reads in flight at once.
PARALLELISM = 8
#: A workload's target name: ``workload:<name>``; an instance's is its uid.
WORKLOAD_PREFIX = "workload:"

_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


@dataclass(frozen=True, slots=True)
class Observation:
    """One probe of one target: ok or not, and why (never a secret)."""

    env: str
    target: str
    component: str | None  # ``name@version`` of an instance, None for a workload
    ok: bool
    source: str  # ``runtime`` or ``provider``
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SloSummary:
    """One target's measured availability over a window against its objective.

    ``objective`` and ``availability`` are ratios (0.999 for 99.9 %); ``availability`` is
    None without a sample in the window, ``objective`` None without an SLA (or a default);
    then ``error_budget_remaining`` and ``met`` are None too.
    """

    env: str
    target: str
    component: str | None  # the component's name (no version) of an instance
    objective: float | None
    availability: float | None
    samples: int
    good: int
    error_budget_remaining: float | None
    met: bool | None

    @property
    def kind(self) -> str:
        """``workload`` or ``instance``."""
        return "workload" if self.target.startswith(WORKLOAD_PREFIX) else "instance"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "env": self.env,
            "target": self.target,
            "kind": self.kind,
            "component": self.component,
            "objective": self.objective,
            "availability": self.availability,
            "samples": self.samples,
            "good": self.good,
            "error_budget_remaining": self.error_budget_remaining,
            "met": self.met,
        }


# -- settings ------------------------------------------------------------------------------


def _seconds(name: str, default: float) -> float:
    """A positive duration from the environment variable ``name`` (``30``, ``30s``, ``7d``)."""
    from stackyard.settings import parse_ttl

    raw = os.environ.get(name, "").strip()
    return default if not raw else parse_ttl(raw, name)


def _probe_every() -> float:
    try:
        return _seconds(PROBE_ENV, DEFAULT_PROBE_S)
    except InvalidInputError:
        log.warning("%s is not a duration; the SLO probe runs every %gs", PROBE_ENV, 30)
        return DEFAULT_PROBE_S


def parse_objective(text: str, what: str) -> float:
    """``"99.9"`` (or ``"99.9%"``) → 0.999; ``InvalidInputError`` unless strictly between 0
    and 100."""
    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not 0 < value < 100:
        raise InvalidInputError(
            f"Invalid {what} {text!r}",
            hint="Give an availability percentage between 0 and 100, such as 99.9.",
        )
    return float(value / 100)  # "99.9" → 0.999 exactly as 999/1000 is, not 0.9990000000000001


def default_objective() -> float | None:
    """The objective of workloads: ``STACKYARD_DEFAULT_SLO`` (None when unset)."""
    raw = os.environ.get(DEFAULT_SLO_ENV, "").strip()
    return parse_objective(raw, DEFAULT_SLO_ENV) if raw else None


def objective_of(sla: Mapping[str, Any]) -> float | None:
    """A component's objective from its SLA: ``availability: "99.9"`` → 0.999; None when it
    states no number (``"as the server's"``)."""
    value = sla.get("availability")
    if value is None:
        return None
    try:
        return parse_objective(str(value), "availability")
    except InvalidInputError:
        return None


# -- probe ---------------------------------------------------------------------------------


def observe(ws: Workspace, env: str | None = None) -> int:
    """Probe every target of ``env`` (None: every live environment the actor may view),
    record one observation each, prune old ones; how many were recorded."""
    from stackyard.policy.rbac import Action

    if env is not None:
        ws.access.authorize(Action.VIEW, env=env)
        found = ws.environment(env)  # an unknown name is an error, not an empty sweep
        names = [env] if found.live else []
    else:
        names = [
            e.name
            for e in ws.records.environments()
            if e.live and ws.access.allowed(Action.VIEW, ws.access.target_of(e))
        ]
    return _sweep(ws, names)


def probe_step(ws: Workspace) -> int:
    """The ticker step: every live environment (the worker acts for the platform)."""
    return _sweep(ws, [e.name for e in ws.records.environments() if e.live])


def _sweep(ws: Workspace, names: Sequence[str]) -> int:
    found: list[Observation] = []
    for name in names:
        try:
            found.extend(probe_env(ws, name))
        except Exception:  # one environment never stops the sweep
            log.exception("the SLO probe of '%s' failed", name)
    count = record(ws, found)
    prune(ws)
    return count


def probe_env(ws: Workspace, env: str, *, timeout_s: float | None = None) -> list[Observation]:
    """One observation per workload and per component instance (with resources) of ``env``."""
    limit = _seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S) if timeout_s is None else timeout_s
    out = _workloads(ws, env)
    instances = ws.records.instances(env)
    by_uid: dict[str, list[ResourceRecord]] = {}
    for rec in ws.store.snapshot(env).resources.values():
        if rec.uid in instances:
            by_uid.setdefault(rec.uid, []).append(rec)
    if not by_uid:
        return out
    installation = ws.store.installation_id()
    pool = ThreadPoolExecutor(max_workers=min(PARALLELISM, len(by_uid)))
    try:
        futures: dict[str, Future[Observation]] = {
            uid: pool.submit(_instance, ws, env, instances[uid], recs, installation)
            for uid, recs in sorted(by_uid.items())
        }
        wait_all(list(futures.values()), timeout=limit)
        for uid, fut in futures.items():
            if fut.done() and fut.exception() is None:
                out.append(fut.result())
                continue
            why = (
                f"no answer within {limit:g} s"
                if not fut.done()
                else f"the read failed: {type(fut.exception()).__name__}"
            )
            out.append(Observation(env, uid, instances[uid].component, False, "provider", why))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung read ends on its own timeout
    return out


def _workloads(ws: Workspace, env: str) -> list[Observation]:
    """The runtime's own health of each recorded workload (``ready`` is ok)."""
    from stackyard.model.status import WorkloadState

    records = ws.records.workloads(env)
    if not records:
        return []
    runtime = ws.runtime(env)
    out = []
    for w in records:
        target = f"{WORKLOAD_PREFIX}{w.name}"
        try:
            st = runtime.status(w.name)
        except Exception as exc:
            out.append(Observation(env, target, None, False, "runtime", _clean(exc)))
            continue
        ok = st.state is WorkloadState.READY
        detail = str(st.state) + (f", {st.restarts} restart(s)" if st.restarts else "")
        out.append(Observation(env, target, None, ok, "runtime", detail))
    return out


def _instance(
    ws: Workspace,
    env: str,
    inst: InstanceRecord,
    records: Iterable[ResourceRecord],
    installation: str,
) -> Observation:
    """Read each of the instance's resources through its provider: ok when all exist and
    answer and none is stopped."""
    from stackyard.providers.api import ObserveRequest, ResourceMeta

    problems: list[str] = []
    for rec in sorted(records, key=lambda r: r.address):
        try:
            kind = ws.kinds.kind(rec.kind)
            meta = ResourceMeta(rec.address, rec.kind, env, rec.physical_name, installation)
            obs = kind.observe(ObserveRequest(meta, rec.full_config(), rec.full_outputs()))
        except Exception as exc:  # ProviderError, or a provider's bug: not ok either way
            problems.append(f"{rec.address}: unreadable ({_clean(exc)})")
            continue
        if obs is None:
            problems.append(f"{rec.address}: missing")
        elif not obs.managed:
            problems.append(f"{rec.address}: not ours")
        elif obs.health == "stopped":
            problems.append(f"{rec.address}: stopped")
    detail = "; ".join(problems) if problems else "ok"
    return Observation(env, inst.uid, inst.component, not problems, "provider", detail[:2000])


def _clean(exc: BaseException) -> str:
    """An error in words, without credentials a URL may carry."""
    text = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    return _CREDENTIALS.sub(r"\1***@", text)[:500]


def record(ws: Workspace, found: Sequence[Observation], *, at: float | None = None) -> int:
    """Store ``found`` (stamped with the store's clock unless ``at``); how many."""
    if not found:
        return 0
    when = ws.store.now() if at is None else at
    rows = [
        {
            "env": o.env,
            "target": o.target,
            "component": o.component,
            "at": when,
            "ok": o.ok,
            "source": o.source,
            "detail": _CREDENTIALS.sub(r"\1***@", o.detail),
        }
        for o in found
    ]
    with ws.store.writing() as conn:
        conn.execute(sa.insert(slo_observations), rows)
    return len(rows)


def prune(ws: Workspace, *, older_than_s: float | None = None) -> int:
    """Delete observations older than the retention (the longest window); how many."""
    keep = _seconds(RETENTION_ENV, DEFAULT_WINDOW_S) if older_than_s is None else older_than_s
    cutoff = ws.store.now() - keep
    with ws.store.writing() as conn:
        return int(
            conn.execute(sa.delete(slo_observations).where(slo_observations.c.at < cutoff)).rowcount
            or 0
        )


# -- measure -------------------------------------------------------------------------------


def summaries(
    ws: Workspace,
    *,
    env: str | None = None,
    component: str | None = None,
    window_s: float = 30 * 86400,
) -> list[SloSummary]:
    """Each target's availability over the last ``window_s`` seconds, against its objective.

    Targets are those of the live environments the actor may view (``env``: that one, which
    needs ``view``): every current workload and instance with resources, and any other target
    observed in the window. ``component`` keeps the instances of that component (by name).
    """
    return _measure(ws, env=env, component=component, window_s=window_s, workloads=True)


def _measure(
    ws: Workspace,
    *,
    env: str | None,
    component: str | None,
    window_s: float,
    workloads: bool,
) -> list[SloSummary]:
    from stackyard.policy.rbac import Action

    if not window_s > 0:
        raise InvalidInputError("The SLO window must be positive", hint="Give one such as 7d.")
    if env is not None:
        ws.access.authorize(Action.VIEW, env=env)
        found = ws.environment(env)
        names = [env] if found.live else []
    else:
        names = [
            e.name
            for e in ws.records.environments()
            if e.live and ws.access.allowed(Action.VIEW, ws.access.target_of(e))
        ]
    if not names:
        return []
    since = ws.store.now() - window_s
    counts: dict[tuple[str, str], list[int]] = {}
    latest: dict[tuple[str, str], tuple[float, str | None]] = {}
    query = (
        sa.select(
            slo_observations.c.env,
            slo_observations.c.target,
            slo_observations.c.component,
            sa.func.count().label("samples"),
            sa.func.sum(sa.case((slo_observations.c.ok, 1), else_=0)).label("good"),
            sa.func.max(slo_observations.c.at).label("last"),
        )
        .where(slo_observations.c.at >= since, slo_observations.c.env.in_(names))
        .group_by(slo_observations.c.env, slo_observations.c.target, slo_observations.c.component)
    )
    with ws.store.reading() as conn:
        rows = conn.execute(query).all()
    for r in rows:
        key = (str(r.env), str(r.target))
        tally = counts.setdefault(key, [0, 0])
        tally[0] += int(r.samples)
        tally[1] += int(r.good or 0)
        if key not in latest or float(r.last) > latest[key][0]:
            latest[key] = (float(r.last), r.component)
    # the current targets: a target without a sample is reported too (unknown)
    current: dict[tuple[str, str], str | None] = {}
    with ws.store.read_session():  # a query per table for every environment at once
        for name, live in ws.records.workloads_of(names).items():
            for w in live:
                current[(name, f"{WORKLOAD_PREFIX}{w.name}")] = None
        instances = ws.records.instances_of(names)
        owned = _instances_with_resources(ws, names)
    for name in names:
        for uid, inst in instances[name].items():
            if (name, uid) in owned:
                current[(name, uid)] = inst.component
    keys = set(counts) | set(current)
    workload_objective = default_objective() if workloads and component is None else None
    objectives: dict[str, float | None] = {}
    out = []
    for key in sorted(keys):
        ref = current[key] if key in current else latest[key][1]
        comp = ref.rpartition("@")[0] if ref else None
        if (component is not None and comp != component) or (ref is None and not workloads):
            continue
        if ref is None:
            objective = workload_objective
        else:
            if ref not in objectives:
                objectives[ref] = _component_objective(ws, ref)
            objective = objectives[ref]
        samples, good = counts.get(key, [0, 0])
        out.append(_summary(key[0], key[1], comp, objective, samples, good))
    return out


def _instances_with_resources(ws: Workspace, names: Sequence[str]) -> set[tuple[str, str]]:
    """``(env, uid)`` of every component instance that has recorded resources (one query)."""
    from stackyard.state.tables import resources

    found: set[tuple[str, str]] = set()
    with ws.store.reading() as conn:
        for i in range(0, len(names), 500):
            query = (
                sa.select(resources.c.env, resources.c.uid)
                .distinct()
                .where(resources.c.env.in_(list(names[i : i + 500])))
            )
            found.update((str(r.env), str(r.uid)) for r in conn.execute(query))
    return found


def _component_objective(ws: Workspace, ref: str) -> float | None:
    """The objective of ``name@version`` from its published manifest (None if unreadable)."""
    from stackyard.errors import StackyardError

    name, _, version = ref.rpartition("@")
    try:
        manifest, _ = ws.catalog.manifest(name, version)
    except StackyardError:
        return None
    return objective_of(manifest.sla)


def _summary(
    env: str, target: str, component: str | None, objective: float | None, samples: int, good: int
) -> SloSummary:
    availability = good / samples if samples else None
    budget: float | None = None
    met: bool | None = None
    if availability is not None and objective is not None:
        budget = 1 - (1 - availability) / (1 - objective)
        met = availability >= objective
    return SloSummary(env, target, component, objective, availability, samples, good, budget, met)


def missed(ws: Workspace, *, window_s: float = DEFAULT_WINDOW_S) -> dict[str, list[SloSummary]]:
    """Component name → the instances that missed its objective over the window (what the
    catalog flags)."""
    out: dict[str, list[SloSummary]] = {}
    for s in _measure(ws, env=None, component=None, window_s=window_s, workloads=False):
        if s.component is not None and s.met is False:
            out.setdefault(s.component, []).append(s)
    return out


def flag_adoption(ws: Workspace, report: Mapping[str, Any]) -> dict[str, Any]:
    """The adoption report (``Adoption.to_json()``) with each version's ``slo``: the
    environments where an instance of it missed its objective over the default window."""
    misses = missed(ws)
    data = dict(report)
    components = []
    for comp in data.get("components", []):
        versions = []
        for v in comp["versions"]:
            hit = {(s.env, s.target) for s in misses.get(comp["name"], [])}
            uses = [{**u, "slo_missed": (u["env"], u["uid"]) in hit} for u in v.get("uses", [])]
            envs = sorted({u["env"] for u in uses if u["slo_missed"]})
            versions.append({**v, "uses": uses, "slo": {"missed_in": envs}})
        components.append({**comp, "versions": versions})
    data["components"] = components
    return data


register("slo.probe", _probe_every(), probe_step)
