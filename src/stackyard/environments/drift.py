"""Drift: what reality holds that the records do not say, grouped by root cause, and the three
ways out of it (DESIGN §5, §10).

    scan     observe every recorded resource (bounded parallelism), compare it with its record
             (which is the desired config the last deploy applied), and group what differs: a
             stopped or missing resource is the root cause of every drifted resource that
             depends on it (``depends_on``, transitively), so a stopped server with fifty
             databases is one finding with fifty dependents, not fifty findings
    fix      repair each drifted environment through the one governed road (``repair``: plan,
             ``plan`` policies, approval where one asks, apply), then scan again
    adopt    record an object that exists but whose record was lost: only when it is at the
             address's deterministic name *and* carries this environment's ownership label
    forget   drop a record without touching the object (admin only, audited)

Every function here checks access itself (RBAC lives in the service layer). Values are shown
only for fields that are not sensitive: a password that differs is ``***`` on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.engine.engine import Engine
from stackyard.engine.events import Events
from stackyard.engine.observe import observe_all
from stackyard.engine.plan import Action as PlanAction
from stackyard.engine.plan import provider_chosen
from stackyard.environments.deploy import DeployResult, converge
from stackyard.environments.repair import repair
from stackyard.environments.target import Target
from stackyard.environments.workspace import Workspace
from stackyard.errors import (
    ForeignObjectError,
    InvalidInputError,
    PermissionDeniedError,
    ProviderError,
)
from stackyard.model.status import AuditResult, EnvironmentStatus
from stackyard.model.values import is_known, reveal
from stackyard.policy.rbac import Action, Role
from stackyard.providers.api import Observed, ObserveRequest, ResourceMeta, sensitive_fields
from stackyard.state import driftlog
from stackyard.state import events as ops_events
from stackyard.state.api import ResourceRecord, Snapshot
from stackyard.state.locks import holder_identity

__all__ = [
    "DEFAULT_PARALLELISM",
    "DriftReport",
    "EnvDrift",
    "Finding",
    "adopt",
    "fix",
    "forget",
    "scan",
    "scan_snapshot",
]

#: observations in flight per environment (each is a network round trip, or a stat)
DEFAULT_PARALLELISM = 8
MASK = "***"

#: statuses that make every drifted resource depending on them part of their finding
_ROOTS = frozenset({"stopped", "missing", "unreachable", "unmanaged"})
_ORDER = {"stopped": 0, "unreachable": 1, "missing": 2, "unmanaged": 3, "changed": 4, "degraded": 5}

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Drifted:
    """One resource that differs from its record (values masked where sensitive)."""

    address: str
    kind: str
    status: str  # stopped | unreachable | missing | unmanaged | changed | degraded
    changes: tuple[dict[str, Any], ...] = ()  # {field, recorded, observed}
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked)."""
        out: dict[str, Any] = {"address": self.address, "kind": self.kind, "status": self.status}
        if self.changes:
            out["changes"] = [dict(c) for c in self.changes]
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    """A root cause and every drifted resource it explains."""

    env: str
    root: Drifted
    why: str
    dependents: tuple[Drifted, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked)."""
        return {
            "env": self.env,
            **self.root.to_json(),
            "why": self.why,
            "dependents": [d.to_json() for d in self.dependents],
        }


@dataclass(frozen=True, slots=True)
class EnvDrift:
    """One environment's scan."""

    env: str
    serial: int
    resources: int
    findings: tuple[Finding, ...]

    @property
    def drifted(self) -> int:
        """How many resources drifted (roots and dependents)."""
        return sum(1 + len(f.dependents) for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked)."""
        return {
            "env": self.env,
            "serial": self.serial,
            "resources": self.resources,
            "drifted": self.drifted,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class DriftReport:
    """What a scan (and a fix) found and did."""

    environments: list[EnvDrift]
    fixed: dict[str, DeployResult] = field(default_factory=dict)
    before: list[EnvDrift] = field(default_factory=list)  # the findings a fix started from

    @property
    def drift(self) -> bool:
        """True when any environment still has a finding."""
        return any(e.findings for e in self.environments)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked)."""
        out: dict[str, Any] = {
            "drift": self.drift,
            "findings": sum(len(e.findings) for e in self.environments),
            "environments": [e.to_json() for e in self.environments],
        }
        if self.before:
            out["fixed"] = {
                env: {
                    "deployment": r.deployment.id,
                    "status": str(r.deployment.status),
                    "changed": r.changed,
                }
                for env, r in sorted(self.fixed.items())
            }
            out["before"] = [e.to_json() for e in self.before]
        return out


# -- scan ------------------------------------------------------------------------------------


def scan(
    ws: Workspace,
    envs: Sequence[str] | None = None,
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    events: Events | None = None,
) -> DriftReport:
    """Scan ``envs`` (None: every environment the actor may view); ``view`` on each named one."""
    if envs is None:
        names = [
            e.name
            for e in ws.records.environments()
            if e.status is not EnvironmentStatus.DECLARED
            and ws.access.allowed(Action.VIEW, ws.access.target_of(e))
        ]
    else:
        names = list(envs)
        for name in names:
            ws.access.authorize(Action.VIEW, env=name)
            ws.environment(name)  # an unknown name is an error, not an empty scan
    installation = ws.store.installation_id()
    emitted = events or Events()
    out = [
        scan_snapshot(
            ws.store.snapshot(name),
            ws.kinds,
            installation=installation,
            parallelism=parallelism,
            events=emitted,
        )
        for name in names
    ]
    for found in out:
        remember(ws, found, trigger="manual", actor=ws.access.actor)
        announce(ws, found)
    return DriftReport(out)


def remember(ws: Workspace, found: EnvDrift, *, trigger: str, actor: str) -> driftlog.Scan:
    """Keep ``found`` in the environment's scan history (``state.driftlog``)."""
    return driftlog.record(
        ws.store,
        env=found.env,
        trigger=trigger,
        actor=actor,
        resources=found.resources,
        drifted=found.drifted,
        findings=[f.to_json() for f in found.findings],
    )


def history(ws: Workspace, env: str, *, limit: int = 20) -> list[driftlog.Scan]:
    """``env``'s scans, newest first (``view`` on it)."""
    ws.environment(env)
    ws.access.authorize(Action.VIEW, env=env)
    return driftlog.history(ws.store, env, limit=limit)


def announce(ws: Workspace, found: EnvDrift, *, actor: str | None = None) -> None:
    """Publish ``drift.found`` for a scan that found drift: the root causes' addresses,
    kinds, statuses and changed fields (never a value). ``actor``: who scanned (the
    workspace's actor by default; the schedule for a scheduled scan)."""
    env = ws.records.environment(found.env) if found.findings else None
    if env is None:
        return
    roots = [
        {
            "address": f.root.address,
            "kind": f.root.kind,
            "status": f.root.status,
            "fields": [str(c.get("field")) for c in f.root.changes],
            "dependents": len(f.dependents),
        }
        for f in found.findings[:20]
    ]
    ops_events.notify(
        ws.store,
        "drift.found",
        f"environment {found.env}",
        **ops_events.about(env),
        data={
            "findings": len(found.findings),
            "drifted": found.drifted,
            "serial": found.serial,
            "roots": roots,
            "actor": actor or ws.access.actor,
        },
    )


def scan_snapshot(
    snap: Snapshot,
    kinds: Any,
    *,
    installation: str,
    parallelism: int = DEFAULT_PARALLELISM,
    events: Events | None = None,
) -> EnvDrift:
    """Observe every resource of ``snap`` and group what drifted by root cause (no access
    check: the callers check it)."""
    records = snap.resources
    observed, diags = observe_all(
        snap.env, records.values(), kinds, parallelism=parallelism, installation=installation
    )
    failed = {
        d.subject: d.detail.removesuffix("; it is assumed to be as recorded.")
        for d in diags
        if d.subject
    }
    items: dict[str, Drifted] = {}
    for address, record in records.items():
        item = _compare(kinds, record, address, observed, failed)
        if item is not None:
            items[address] = item
    findings = _group(snap.env, records, items)
    if events is not None:
        for f in findings:
            events.emit(
                "drift",
                f.root.address,
                message=f"{f.root.status}"
                + (f": {', '.join(c['field'] for c in f.root.changes)}" if f.root.changes else "")
                + (f" ({len(f.dependents)} dependent(s))" if f.dependents else ""),
            )
    return EnvDrift(snap.env, snap.serial, len(records), tuple(findings))


def _compare(
    kinds: Any,
    record: ResourceRecord,
    address: str,
    observed: Mapping[str, Observed | None],
    failed: Mapping[str, str],
) -> Drifted | None:
    if address not in observed:
        why = failed.get(address, "it could not be read")
        return Drifted(address, record.kind, "unreachable", detail=why)
    obs = observed[address]
    if obs is None:
        return Drifted(address, record.kind, "missing")
    if not obs.managed:
        return Drifted(address, record.kind, "unmanaged", detail=obs.detail)
    recorded = record.full_config()
    try:
        kind = kinds.kind(record.kind)
        chosen = provider_chosen(kind, recorded)
        secret = sensitive_fields(kind.config_model) | frozenset(record.secret_config)
    except ProviderError:
        chosen, secret = frozenset(), frozenset(record.secret_config)
    changes = tuple(
        {
            "field": k,
            "recorded": MASK if k in secret else recorded[k],
            "observed": MASK if k in secret else v,
            **({"sensitive": True} if k in secret else {}),
        }
        for k, v in sorted(obs.config.items())
        if k in recorded and k not in chosen and recorded[k] != v
    )
    if changes:
        return Drifted(address, record.kind, "changed", changes, obs.detail)
    if obs.health in ("stopped", "degraded"):
        return Drifted(address, record.kind, obs.health, detail=obs.detail)
    return None


def _group(
    env: str, records: Mapping[str, ResourceRecord], items: Mapping[str, Drifted]
) -> list[Finding]:
    """Each drifted resource under the top-most drifted root it depends on (transitively)."""
    memo: dict[str, str | None] = {}

    def root_of(address: str, seen: frozenset[str] = frozenset()) -> str | None:
        """The top-most root-cause ancestor of ``address`` (itself excluded), if any."""
        if address in memo:
            return memo[address]
        found: str | None = None
        rec = records.get(address)
        for dep in sorted(rec.depends_on if rec is not None else ()):
            if dep in seen:
                continue
            above = root_of(dep, seen | {address})
            if above is not None:
                found = above
                break
            if dep in items and items[dep].status in _ROOTS:
                found = dep
                break
        memo[address] = found
        return found

    grouped: dict[str, list[Drifted]] = {}
    for address in sorted(items):
        root = root_of(address)
        if root is None:
            grouped.setdefault(address, [])
        else:
            grouped.setdefault(root, []).append(items[address])
    findings = [
        Finding(env, items[root], _why(items[root], deps), tuple(deps))
        for root, deps in grouped.items()
    ]
    findings.sort(key=lambda f: (_ORDER.get(f.root.status, 9), -len(f.dependents), f.root.address))
    return findings


def _why(item: Drifted, dependents: Sequence[Drifted]) -> str:
    """Why a finding matters, in a sentence."""
    after = f"; {len(dependents)} resource(s) on it are affected" if dependents else ""
    if item.status == "stopped":
        return (
            "the server is not running: everything on it is unreachable and the workloads "
            f"using it fail{after}"
        )
    if item.status == "unreachable":
        return f"it cannot be read ({item.detail}): its state is unknown{after}"
    if item.status == "missing":
        return (
            "it no longer exists: workloads that use it fail, and anything made on it is gone"
            + after
        )
    if item.status == "unmanaged":
        return (
            "the object at its name is not labelled for this environment: stackyard will not "
            f"change it, and deploys here fail until a person decides{after}"
        )
    if item.status == "degraded":
        return f"it is half made ({item.detail or 'degraded'}); the next deploy converges it"
    sensitive = [c["field"] for c in item.changes if c.get("sensitive")]
    if sensitive:
        return (
            f"{', '.join(sensitive)} differs from what the workloads were given: their "
            "connections are refused"
        )
    fields = ", ".join(c["field"] for c in item.changes)
    return (
        f"{fields} differs from the record: workloads may see other behaviour, and the next "
        "deploy changes it back"
    )


# -- fix -------------------------------------------------------------------------------------


def fix(
    ws: Workspace,
    envs: Sequence[str] | None = None,
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    progress: Progress | None = None,
) -> DriftReport:
    """Scan, repair every environment with a finding through the governed road, scan again.

    Each repair is an ordinary deploy (``deploy`` permission, ``plan`` policies, approval
    where a policy asks: a parked repair is reported, not forced). An environment whose
    findings include an unlabelled or foreign object is not repaired: a person decides
    (``adopt`` or remove the object), since a deploy never takes it over.
    """
    say = progress or (lambda _m: None)
    first = scan(ws, envs, parallelism=parallelism)
    fixed: dict[str, DeployResult] = {}
    for env in first.environments:
        if not env.findings:
            continue
        if any(d.status == "unmanaged" for f in env.findings for d in (f.root, *f.dependents)):
            say(f"'{env.env}' holds an object stackyard does not own: not repaired")
            continue
        status = ws.environment(env.env).status
        if status is not EnvironmentStatus.READY:
            say(f"'{env.env}' is {status}: not repaired")
            continue
        say(f"repairing '{env.env}': {len(env.findings)} finding(s)")
        fixed[env.env] = repair(ws, env.env, progress=progress)
    after = scan(ws, [e.env for e in first.environments], parallelism=parallelism)
    return DriftReport(after.environments, fixed, first.environments)


# -- adopt and forget ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Adopted:
    """What ``adopt`` recorded."""

    env: str
    address: str
    kind: str
    physical_name: str
    deployment: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "env": self.env,
            "address": self.address,
            "kind": self.kind,
            "physical_name": self.physical_name,
            "deployment": self.deployment,
        }


def adopt(
    ws: Workspace, env_name: str, address: str, *, progress: Progress | None = None
) -> Adopted:
    """Record the object at ``address``'s deterministic name, when it carries our label.

    The desired graph of the environment (a plan-only repair, checked by the ``plan``
    policies) says which kind, name and config ``address`` has; the object there is observed:
    none is an error (a deploy makes it), one without this environment's ownership label is
    never adopted (``ForeignObjectError``). A labelled one is taken through the governed road:
    the repair's create converges on the existing object and records it.
    """
    env = ws.environment(env_name)
    ws.access.authorize(Action.DEPLOY, env=env_name)
    if address in ws.store.snapshot(env_name).resources:
        raise InvalidInputError(
            f"'{address}' is already recorded in '{env_name}'",
            hint=f"Nothing to adopt; 'stackyard drift --env {env_name}' compares it with reality.",
        )
    planned = converge(ws, Target(env, {}, set(), repair=True), kind="repair", plan_only=True)
    changes = planned.plan.changes if planned.plan is not None else ()
    change = next((c for c in changes if c.address == address), None)
    if change is None or change.action is not PlanAction.CREATE:
        raise InvalidInputError(
            f"'{address}' is not a resource of '{env_name}'",
            hint=f"'stackyard status {env_name}' lists its resources; an address of a workload "
            "that is no longer deployed cannot be adopted.",
        )
    if not is_known(change.after):
        raise InvalidInputError(
            f"'{address}' depends on resources that are not recorded either",
            hint="Adopt what it depends on first.",
        )
    kind = ws.kinds.kind(change.kind)
    meta = ResourceMeta(
        address, change.kind, env_name, change.physical_name, ws.store.installation_id()
    )
    obs = kind.observe(ObserveRequest(meta, reveal(change.after), {}))
    if obs is None:
        raise InvalidInputError(
            f"No object named '{change.physical_name}' exists for '{address}'",
            hint=f"Nothing to adopt: 'stackyard env repair {env_name}' creates it.",
        )
    if not obs.managed:
        with ws.access.act(
            Action.DEPLOY, env=env_name, detail={"adopt": address, "refused": obs.detail}
        ) as audit:
            audit["result"] = AuditResult.DENIED
        raise ForeignObjectError(
            f"'{change.physical_name}' is not labelled for '{env_name}': it is never adopted",
            address=address,
            hint=f"{obs.detail or 'It carries no stackyard label.'} Rename or remove it by "
            "hand if stackyard should make its own.",
        )
    result = repair(ws, env_name, progress=progress)
    rec = ws.store.snapshot(env_name).resources.get(address)
    if rec is None:  # parked for approval, say: nothing recorded yet
        raise InvalidInputError(
            f"'{address}' was not recorded: the repair {result.deployment.id} is "
            f"{result.deployment.status}",
            hint="Approve the parked deployment ('stackyard approvals'), then check again.",
        )
    ws.access.audit(
        "state.adopt",
        f"env:{env_name}",
        AuditResult.OK,
        {"address": address, "physical_name": rec.physical_name},
    )
    return Adopted(env_name, address, rec.kind, rec.physical_name, result.deployment.id)


def forget(ws: Workspace, env_name: str, addresses: Iterable[str]) -> int:
    """Drop ``addresses``' records without touching the objects; admin only, audited.

    Returns the state's new serial. The objects stay where they are, labelled: ``adopt``
    (or the next deploy) records them again.
    """
    wanted = sorted(set(addresses))
    target = ws.access.target(env_name)
    detail: dict[str, Any] = {"addresses": wanted}
    if not any(role is Role.ADMIN for role, _ in ws.access.roles(target)):
        ws.access.audit(
            "state.forget",
            f"env:{env_name}",
            AuditResult.DENIED,
            {**detail, "reason": "admin only"},
        )
        raise PermissionDeniedError(
            f"{ws.access.actor} may not forget records in environment '{env_name}'",
            action="state.forget",
            hint="Only an admin drops records ('stackyard access list' shows the grants).",
        )
    ws.environment(env_name)
    engine = Engine(store=ws.store, kinds=ws.kinds, holder=holder_identity(ws.access.actor))
    try:
        with engine.locked(env_name) as held:
            known = ws.store.snapshot(env_name).resources
            unknown = [a for a in wanted if a not in known]
            if unknown:
                raise InvalidInputError(
                    f"Not recorded in '{env_name}': {', '.join(unknown)}",
                    hint=f"'stackyard state resources {env_name}' lists the recorded addresses.",
                )
            serial = ws.store.forget(held.lease, wanted)
    except BaseException as exc:
        detail["error"] = getattr(exc, "message", type(exc).__name__)
        ws.access.audit("state.forget", f"env:{env_name}", AuditResult.FAILED, detail)
        raise
    ws.access.audit("state.forget", f"env:{env_name}", AuditResult.OK, {**detail, "serial": serial})
    return serial
