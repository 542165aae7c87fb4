"""Deploy: resolve → expand → plan → confirm → apply → outputs → run, recorded as a deployment.

The desired state of an environment is its core (when it owns one) plus every live workload:
deploying one workload re-resolves its own requests and keeps every other instance pinned
to the build it was deployed with, so a deploy never upgrades a neighbour by surprise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stackyard.diagnostics import Diagnostic, Severity, has_errors
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.kinds import naming_lookup
from stackyard.engine.lease import HeldLock
from stackyard.engine.plan import Plan
from stackyard.environments import governed
from stackyard.environments.preflight import config_diagnostics
from stackyard.environments.resolver import Ancestor, Request, Resolution, Resolver
from stackyard.environments.workloads import (
    parse_spec,
    placeholder_diagnostics,
    render,
    runtime_diagnostics,
)
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, LockHeldError, StackyardError
from stackyard.model.environment import (
    Deployment,
    DeploymentEvent,
    Environment,
    InstanceRecord,
    WorkloadRecord,
)
from stackyard.model.ids import ResourceUid
from stackyard.model.values import Secret, reveal
from stackyard.model.workload import Workload
from stackyard.policy.decision import Decision
from stackyard.policy.rbac import Action
from stackyard.resolve.bindings import Level
from stackyard.resolve.graph import Graph, expand
from stackyard.resolve.lock import Pin
from stackyard.runtime.spec import WorkloadStatus
from stackyard.state.api import Lease
from stackyard.state.locks import holder_identity

Progress = Callable[[str], None]
Confirm = Callable[[Plan], bool]


@dataclass
class DeployResult:
    """What a deploy did."""

    deployment: Deployment
    plan: Plan | None
    lock: dict[str, Pin] = field(default_factory=dict)
    workloads: dict[str, WorkloadStatus] = field(default_factory=dict)
    changed: bool = False
    diagnostics: list[Diagnostic] = field(default_factory=list)
    decision: Decision | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked)."""
        return {
            "deployment": self.deployment.to_json(),
            "plan": self.plan.to_json() if self.plan else None,
            "lock": {uid: p.to_json() for uid, p in sorted(self.lock.items())},
            "workloads": {n: s.to_json() for n, s in self.workloads.items()},
            "changed": self.changed,
            "warnings": [d.to_json() for d in self.diagnostics if d.severity is Severity.WARNING],
            "decision": self.decision.to_json() if self.decision else None,
        }


def levels(ws: Workspace, chain: Sequence[Environment]) -> list[Level]:
    """Binding levels for an environment chain: each environment nearest first, then the types."""
    platform = ws.platform()
    out = [Level(f"environment {e.name}", tuple(e.bindings)) for e in chain]
    seen: set[str] = set()
    for e in chain:
        if e.type in seen:
            continue
        seen.add(e.type)
        out.append(Level(f"environment type {e.type}", platform.type(e.type).bindings))
    return out


def resolver_for(
    ws: Workspace,
    env: Environment,
    *,
    pins: Mapping[str, Pin] | None = None,
    strict: frozenset[str] = frozenset(),
) -> Resolver:
    """A resolver for ``env``: its bindings, its ancestors' instances, and pins."""
    chain = ws.chain(env)
    ancestors = []
    for anc in chain[1:]:
        outs = {uid: rec.outputs for uid, rec in ws.records.instances(anc.name).items()}
        ancestors.append(Ancestor(anc.name, outs))
    return Resolver(
        env=env.name,
        env_type=env.type,
        levels=levels(ws, chain),
        versions=ws.versions,
        fetch=ws.manifest,
        ancestors=ancestors,
        pins=pins,
        strict=strict,
    )


def core_requests(ws: Workspace, env: Environment) -> list[Request]:
    """The core of ``env``: its type's core list when it has no parent (a child uses its parent's)."""
    if env.parent:
        return []
    etype = ws.platform().type(env.type)
    return [
        Request(
            ResourceUid(c.type, c.klass, c.id),
            dict(c.params),
            "",
            f"core of environment type '{etype.name}'",
            core=True,
        )
        for c in etype.core
    ]


def workload_requests(workload: Workload) -> list[Request]:
    """A workload's resource requests."""
    return [
        Request(r.uid, dict(r.params), workload.name, f"{workload.name}: resources.{r.name}")
        for r in workload.resources.values()
    ]


def _core_requests_by_workloads(ws: Workspace, target: Target, res: Resolution) -> list[Diagnostic]:
    """A workload that names a core instance (its own environment's, or a parent's) would get
    the server's superuser credentials in its variables, and print them to logs a developer
    reads: only platform roles (``outputs.reveal-admin``) may deploy such a workload."""
    env = target.env
    out: list[Diagnostic] = []
    allowed: bool | None = None
    for name in sorted(target.changed):
        for r in target.workloads[name].resources.values():
            owner = res.external.get(r.uid)
            if owner is not None:
                rec = ws.records.instances(owner).get(str(r.uid))
                core = rec is not None and rec.core
            else:
                core = r.uid in res.core
            if not core:
                continue
            if allowed is None:
                allowed = ws.allowed(Action.OUTPUTS_REVEAL_ADMIN, ws.target(env.name))
            if allowed:
                continue
            out.append(
                Diagnostic(
                    Severity.ERROR,
                    "Core infrastructure requested by a workload",
                    f"The workload '{name}' requests '{r.uid}' (resources.{r.name}), which is "
                    f"core infrastructure of '{owner or env.name}': it would receive the "
                    "server's superuser credentials. Request a resource the server provides "
                    "instead (for example type 'postgres' for a database), or ask a platform "
                    "engineer to deploy it.",
                    path=f"resources.{r.name}",
                    subject=str(r.uid),
                )
            )
    return out


@dataclass
class Target:
    """The desired state of an environment for one converge."""

    env: Environment
    workloads: dict[str, Workload]  # every workload that will be live after the deploy
    changed: set[str]  # the workloads this deploy (re)deploys
    release_id: str | None = None
    release_pins: Mapping[str, Pin] = field(default_factory=dict)
    strict_pins: bool = False
    removed: str | None = None  # a workload this converge takes out of the environment
    #: re-converge every workload live *when the lock is taken*, pinned to the builds it runs
    #: then (``env repair``): read under the lock, so a repair that waited never undoes the
    #: deploys and removals that landed meanwhile
    repair: bool = False


def pins_of(instances: Mapping[str, InstanceRecord]) -> dict[str, Pin]:
    """The build each recorded instance runs (``name@version`` and digest), by uid."""
    out = {}
    for uid, rec in instances.items():
        name, _, version = rec.component.partition("@")
        out[uid] = Pin(name, version or name, rec.digest)
    return out


def prepare(ws: Workspace, target: Target) -> tuple[Resolution, Graph, list[Diagnostic]]:
    """Resolve and expand the target; raises ``InvalidInputError`` with every problem."""
    env = target.env
    current = ws.records.instances(env.name)
    changed_uids = {
        str(r.uid) for name in target.changed for r in target.workloads[name].resources.values()
    }
    pins = {uid: pin for uid, pin in pins_of(current).items() if uid not in changed_uids}
    pins.update(target.release_pins)
    strict = frozenset(target.release_pins) if target.strict_pins else frozenset()
    resolver = resolver_for(ws, env, pins=pins, strict=strict)
    requests = core_requests(ws, env)
    for name in sorted(target.workloads):
        requests.extend(workload_requests(target.workloads[name]))
    res = resolver.resolve(requests)
    diags = list(res.diagnostics)
    for name in sorted(target.changed):
        wl = target.workloads[name]
        diags.extend(runtime_diagnostics(wl))
        comps = {
            r.name: res.instances[r.uid].component
            for r in wl.resources.values()
            if r.uid in res.instances
        }
        diags.extend(placeholder_diagnostics(wl, comps))
    diags.extend(_core_requests_by_workloads(ws, target, res))
    graph, expand_diags = expand(
        list(res.instances.values()),
        env=env.name,
        naming_for=naming_lookup(ws.kinds),
        installation=ws.store.installation_id(),
        max_resources=ws.settings.max_resources,
    )
    diags.extend(expand_diags)
    diags.extend(config_diagnostics(graph, ws.kinds))
    if has_errors(diags):
        raise InvalidInputError(f"Cannot deploy to '{env.name}'", [d for d in diags])
    return res, graph, diags


def converge(
    ws: Workspace,
    target: Target,
    *,
    kind: str = "deploy",
    plan_only: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
    ready_timeout: float = 60.0,
    resume: Deployment | None = None,
    earlier: Decision | None = None,
) -> DeployResult:
    """Deploy ``target``: plan, govern, confirm, apply, record outputs and run the workloads.

    Everything from reading the live workloads to recording the result happens under one
    lease on the environment's lock (waiting up to the workspace's lock timeout for it), so
    two deploys of different workloads never plan against each other's stale view: the
    second one sees the first one's workloads and keeps them.

    The ``plan`` stage's policies decide on the plan: a deny stops it (``PolicyDeniedError``),
    an approval parks it as ``awaiting-approval`` (nothing applied; ``stackyard approve``
    resumes it). ``resume`` is the approved deployment: it is re-planned and re-evaluated,
    and applied only when the fresh plan makes the same changes as the approved one.
    ``earlier`` is a decision taken before planning (``promote``): its approvals count too.
    """
    say = progress or (lambda _m: None)
    log = _EventLog(say)
    engine = Engine(
        store=ws.store,
        kinds=ws.kinds,
        events=Events(log.hook),
        holder=holder_identity(ws.actor),
        lock_wait_s=ws.lock_wait_s,
    )
    with engine.locked(target.env.name) as held:

        def said(message: str) -> None:
            held.touch()
            say(message)

        log.say = said  # progress lines keep the lease; the lock's own events must not
        target = _under_lock(ws, target, kind)
        interrupted = ws.records.interrupt_running(
            target.env.name, keep=resume.id if resume else None
        )
        for dep_id in interrupted:
            said(f"deployment {dep_id} was interrupted (its writer is gone): marked interrupted")
        return _converge(
            ws,
            target,
            engine,
            log,
            kind=kind,
            plan_only=plan_only,
            confirm=confirm,
            say=said,
            ready_timeout=ready_timeout,
            resume=resume,
            earlier=earlier,
        )


def settle_interrupted(ws: Workspace, env: str) -> list[str]:
    """Mark ``env``'s ``running`` deployments ``interrupted`` when no writer holds its lock.

    Every deployment runs under the environment's lock, so one still ``running`` while the
    lock is free (or its lease ran out) lost its writer: killed by a signal, or stuck past its
    lease. Takes the lock briefly (never waiting) to be sure; returns the ids it marked.
    """
    if not any(d.status == "running" for d in ws.records.deployments(env, limit=20)):
        return []
    engine = Engine(store=ws.store, kinds=ws.kinds, holder=holder_identity(ws.actor))
    try:
        with engine.locked(env):
            return ws.records.interrupt_running(env)
    except LockHeldError:
        return []  # a writer is at work: its deployment is really running


def _under_lock(ws: Workspace, target: Target, kind: str) -> Target:
    """The target as of now, read under the lock: the environment's current record, and the
    workloads live *now* with this converge's own changes (and removal) on top."""
    env = ws.environment(target.env.name)
    if kind != "create" and env.status != "ready":
        raise InvalidInputError(
            f"Environment '{env.name}' is {env.status}",
            hint="Deploy to a ready environment; 'stackyard env show' tells its state.",
        )
    workloads = live_workloads(ws, env.name)
    if target.repair:
        pins = pins_of(ws.records.instances(env.name))
        return replace(
            target, env=env, workloads=workloads, changed=set(workloads), release_pins=pins
        )
    workloads.update({name: target.workloads[name] for name in target.changed})
    if target.removed:
        workloads.pop(target.removed, None)
    return replace(target, env=env, workloads=workloads)


def _converge(
    ws: Workspace,
    target: Target,
    engine: Engine,
    log: _EventLog,
    *,
    kind: str,
    plan_only: bool,
    confirm: Confirm | None,
    say: Progress,
    ready_timeout: float,
    resume: Deployment | None,
    earlier: Decision | None,
) -> DeployResult:
    env = target.env
    held = engine.held
    assert held is not None  # converge holds the lock
    dep = resume or Deployment.start(
        env=env.name,
        kind=kind,
        actor=ws.actor,
        release_id=target.release_id,
        workloads=tuple(sorted(target.changed)),
    )
    say(f"resolving {len(target.workloads)} workload(s) in '{env.name}'")
    res, graph, diags = prepare(ws, target)
    planned = engine.plan(env.name, graph)
    if not planned.ok:
        raise InvalidInputError(f"The plan for '{env.name}' has errors", list(planned.diagnostics))
    cost = governed.costs(ws, res, env.name)
    summary = {**planned.summary(), "resources": len(planned.changes), "cost": cost}
    decision = None
    if kind != "create":  # creating an environment is decided at the 'environment' stage
        gated = governed.gate(
            ws,
            env,
            dep,
            planned,
            stage="plan",
            what=f"Deployment {dep.id} to '{env.name}'",
            res=res,
            workloads={n: target.workloads[n] for n in target.changed},
            cost=cost,
            summary=summary,
            request=request_of(target, kind),
            approved=resume.plan if resume is not None else None,
            earlier=earlier,
            enforce=not plan_only,
            say=say,
        )
        decision, dep, diags = gated.decision, gated.deployment, [*diags, *gated.diagnostics]
        if gated.parked:
            return DeployResult(dep, planned, dict(res.lock), diagnostics=diags, decision=decision)
    if plan_only:
        dep = _finish(dep, "planned", summary, planned)
        ws.records.put_deployment(dep)
        return DeployResult(dep, planned, dict(res.lock), diagnostics=diags, decision=decision)
    if planned.has_changes and confirm is not None and not _confirmed(confirm, planned, held):
        dep = _finish(dep, "cancelled", summary, planned)
        ws.records.put_deployment(dep)
        return DeployResult(dep, planned, dict(res.lock), diagnostics=diags, decision=decision)
    dep = replace(dep, status="running", summary=summary, plan=planned.to_json())
    ws.records.put_deployment(dep)
    result = None
    try:
        if target.removed:
            ws.runtime(env.name).stop(target.removed)
        if planned.has_changes:
            say(f"applying {sum(v for k, v in planned.summary().items() if k != 'noop')} change(s)")
            result = engine.apply(planned, graph)
            if not result.ok:
                failed = "; ".join(f"{a}: {w}" for a, w in sorted(result.failed.items()))
                raise StackyardError(
                    f"Apply failed in '{env.name}': {failed}",
                    hint=f"Fix the cause and deploy again; 'stackyard deployments {env.name}' shows the events.",
                )
        outputs = _instance_outputs(ws, engine, env.name, graph, res)
        _record(ws, env, target, dep, res, outputs, lease=held.lease)
        statuses: dict[str, WorkloadStatus] = {}
        changed_run = False
        runtime = ws.runtime(env.name)
        for name in sorted(target.changed):
            wl = target.workloads[name]
            by_name = {
                r.name: outputs.get(str(r.uid)) or _external(ws, res, r.uid)
                for r in wl.resources.values()
            }
            spec = render(wl, env=env.name, outputs=by_name)
            _, did = runtime.start(spec)
            changed_run = changed_run or did
            say(f"{'started' if did else 'unchanged'} workload '{name}'")
            with held.busy():  # bounded by ready_timeout
                statuses[name] = runtime.wait_ready(name, timeout=ready_timeout)
            say(f"workload '{name}' is {statuses[name].state}")
        dep = _finish(dep, "succeeded", summary, planned)
        return DeployResult(
            dep,
            planned,
            dict(res.lock),
            statuses,
            planned.has_changes or changed_run,
            diags,
            decision,
        )
    except BaseException as exc:
        dep = _finish(
            dep,
            "failed",
            summary,
            planned,
            error=getattr(exc, "message", None) or type(exc).__name__,
        )
        raise
    finally:
        ws.records.put_deployment(dep)
        ws.records.add_events(dep.id, log.events)


def request_of(target: Target, kind: str) -> dict[str, Any]:
    """What an approval needs to re-plan the deployment later."""
    return {
        "kind": kind,
        "workloads": {name: dict(target.workloads[name].raw) for name in sorted(target.changed)},
        "changed": sorted(target.changed),
        "release_id": target.release_id,
        "release_pins": {uid: p.to_json() for uid, p in target.release_pins.items()},
        "strict_pins": target.strict_pins,
        "removed": target.removed,
    }


def target_of(ws: Workspace, env: Environment, request: Mapping[str, Any]) -> Target:
    """The inverse of ``request_of``, against the environment as it is *now*: the workloads
    live at approval time, with this deployment's own workloads (and removal) applied on top,
    so deploys that landed while it waited are kept, never undone."""
    changed = set(request.get("changed", []))
    workloads = live_workloads(ws, env.name)
    for name, spec in request.get("workloads", {}).items():
        if name in changed:
            workloads[name] = parse_spec(spec, file=name)
    removed = request.get("removed")
    if removed:
        workloads.pop(removed, None)
    return Target(
        env,
        workloads,
        changed,
        release_id=request.get("release_id"),
        release_pins={uid: Pin.from_json(p) for uid, p in request.get("release_pins", {}).items()},
        strict_pins=bool(request.get("strict_pins")),
        removed=request.get("removed"),
    )


def _confirmed(confirm: Confirm, planned: Plan, held: HeldLock) -> bool:
    """Ask (a person may take their time): the lease is kept while the question is open, and
    other writers wait for the answer (their ``--lock-timeout``)."""
    with held.busy():
        return confirm(planned)


def _finish(
    dep: Deployment,
    status: str,
    summary: Mapping[str, Any],
    planned: Plan | None,
    *,
    error: str | None = None,
) -> Deployment:
    return dep.finished(
        status, summary=dict(summary), plan=planned.to_json() if planned else None, error=error
    )


def _instance_outputs(
    ws: Workspace, engine: Engine, env: str, graph: Graph, res: Resolution
) -> dict[str, dict[str, Any]]:
    from stackyard.engine.plan import recorded_outputs
    from stackyard.model.values import Unknown

    live = {a: recorded_outputs(r) for a, r in ws.store.snapshot(env).resources.items()}
    return {
        str(uid): graph.instance_outputs(uid, lambda a: live.get(a, Unknown(a)))
        for uid in res.instances
    }


def _external(ws: Workspace, res: Resolution, uid: ResourceUid) -> dict[str, Any]:
    owner = res.external.get(uid)
    if owner is None:
        return {}
    rec = ws.records.instances(owner).get(str(uid))
    return dict(rec.outputs) if rec else {}


def _record(
    ws: Workspace,
    env: Environment,
    target: Target,
    dep: Deployment,
    res: Resolution,
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    lease: Lease,
) -> None:
    existing = ws.records.instances(env.name)
    put_instances = []
    for uid, inst in res.instances.items():
        outs = outputs.get(str(uid), {})
        secret_keys = tuple(sorted(k for k, v in outs.items() if isinstance(v, Secret)))
        put_instances.append(
            InstanceRecord(
                env=env.name,
                uid=str(uid),
                component=inst.component.ref,
                digest=inst.digest,
                core=uid in res.core,
                params=res.params.get(uid, {}),
                requires=res.requires.get(uid, {}),
                outputs={k: reveal(v) for k, v in outs.items()},
                secret_keys=secret_keys,
                monthly_cost=str(inst.component.cost.monthly) if inst.component.cost else None,
                currency=inst.component.cost.currency if inst.component.cost else None,
            )
        )
    wanted = {str(u) for u in res.instances}
    drop = [uid for uid in existing if uid not in wanted]
    put_workloads = [
        WorkloadRecord(
            env.name,
            name,
            dep.id,
            dict(target.workloads[name].raw),
            tuple(str(r.uid) for r in target.workloads[name].resources.values()),
            target.release_id,
        )
        for name in sorted(target.changed)
    ]
    ws.records.record_deploy(
        env.name,
        put_workloads=put_workloads,
        put_instances=put_instances,
        drop_instances=drop,
        drop_workloads=[target.removed] if target.removed else [],
        lease=lease,
    )


def live_workloads(ws: Workspace, env: str) -> dict[str, Workload]:
    """The workloads live in ``env``, parsed from their stored specs."""
    return {w.name: parse_spec(w.spec, file=w.name) for w in ws.records.workloads(env)}


class _EventLog:
    """Collects engine events as deployment events, and reports progress."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.plain = say  # for the lock's own events: never counted as progress
        self.events: list[DeploymentEvent] = []

    def hook(self, event: Event) -> None:
        if event.type == "planned":
            return
        if event.type in ("lock-waiting", "lock-stalled", "lock-lost"):
            self.plain(event.message)
        message = event.message or event.action
        self.events.append(
            DeploymentEvent(len(self.events), event.ts, event.type, event.address, message)
        )
        if event.type in ("finished", "failed", "retrying", "recovered"):
            self.say(
                f"{event.type:9} {event.action:8} {event.address}"
                + (f": {event.message}" if event.type == "failed" and event.message else "")
            )


def deploy_files(
    ws: Workspace,
    paths: Sequence[Any],
    env_name: str,
    *,
    plan_only: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy Score files to ``env_name``: their workloads join (or replace) the live ones."""
    env = ws.environment(env_name)
    with ws.act(Action.DEPLOY, env=env_name, detail={"scores": [str(p) for p in paths]}) as audit:
        if env.status != "ready":
            raise InvalidInputError(
                f"Environment '{env_name}' is {env.status}",
                hint=f"Create it first: stackyard env create {env_name}.",
            )
        result = _deploy_files(
            ws, env, paths, plan_only=plan_only, confirm=confirm, progress=progress
        )
        audit.update(result.deployment.audit_detail())
        return result


def _deploy_files(
    ws: Workspace,
    env: Environment,
    paths: Sequence[Any],
    *,
    plan_only: bool,
    confirm: Confirm | None,
    progress: Progress | None,
) -> DeployResult:
    from stackyard.environments.workloads import load_score

    env_name = env.name
    mine: dict[str, Workload] = {}
    for p in paths:
        wl = parse_spec(load_score(p), file=str(p))
        if wl.name in mine:
            raise InvalidInputError(
                f"Two Score files define workload '{wl.name}'",
                hint="Each workload name must be unique.",
            )
        mine[wl.name] = wl
    workloads = live_workloads(ws, env_name)
    workloads.update(mine)
    return converge(
        ws,
        Target(env, workloads, set(mine)),
        plan_only=plan_only,
        confirm=confirm,
        progress=progress,
    )
