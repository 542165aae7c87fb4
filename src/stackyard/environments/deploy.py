"""Deploy: the road of DESIGN §2, read top to bottom in ``_converge``, under one lease on the
environment's lock, and recorded as a deployment.

    reserve   facts.reserve              (the runtime's host ports, the variables)
    resolve   resolver.resolve_target    (Sources: platform, records, catalog; facts)
    expand    expansion.expand_resolution (kinds)
    plan      Engine.plan
    govern    governed.gate               (governor)
    apply     Engine.apply
    outputs   outputs.instance_outputs, outputs.record (engine, records)
    run       runner.run                  (the environment's runtime; facts.order)

Each step receives the parts it needs, never the workspace. The desired state of an
environment is its core (when it owns one) plus every live workload: deploying one workload
re-resolves its own requests and keeps every other instance pinned to the build it was
deployed with, so a deploy never upgrades a neighbour by surprise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stackyard.diagnostics import Diagnostic, Severity, has_errors
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.lease import HeldLock
from stackyard.engine.plan import Plan
from stackyard.environments import governed
from stackyard.environments.adoption import deprecated_builds
from stackyard.environments.expansion import expand_resolution
from stackyard.environments.facts import reserve
from stackyard.environments.outputs import instance_outputs, record, workload_outputs
from stackyard.environments.resolver import Sources, resolve_target
from stackyard.environments.runner import run, runtime_kind
from stackyard.environments.target import (
    Target,
    chain,
    live_workloads,
    request_of,
    under_lock,
)
from stackyard.environments.workloads import parse_spec
from stackyard.environments.workspace import Workspace
from stackyard.errors import ApplyFailedError, InvalidInputError, LockHeldError, StackyardError
from stackyard.model.environment import Deployment, DeploymentEvent, Environment
from stackyard.model.status import ChangeOutcome, DeploymentStatus, EnvironmentStatus
from stackyard.model.workload import Workload
from stackyard.policy.decision import Decision
from stackyard.policy.rbac import Action
from stackyard.resolve.lock import Pin
from stackyard.runtime.spec import WorkloadStatus
from stackyard.state import events
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
    if kind != "create":
        # The policy worker the gate asks starts now: its start-up (tens of milliseconds)
        # overlaps the lock, resolve and plan instead of being waited for at the gate.
        ws.governor.warm("plan", env=target.env.name, env_type=target.env.type)
    engine = Engine(
        store=ws.store,
        kinds=ws.kinds,
        events=Events(log.hook),
        holder=holder_identity(ws.access.actor),
        lock_wait_s=ws.lock_wait_s,
    )
    with engine.locked(target.env.name) as held:

        def said(message: str) -> None:
            held.touch()
            say(message)

        log.say = said  # progress lines keep the lease; the lock's own events must not
        target = under_lock(ws.records, target, kind)
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
    """The road, step by step, under the lease ``engine`` holds: each step is handed the
    parts of the workspace it needs."""
    env = target.env
    held = engine.held
    assert held is not None  # converge holds the lock
    dep = resume or Deployment.start(
        env=env.name,
        kind=kind,
        actor=ws.access.actor,
        release_id=target.release_id,
        workloads=tuple(sorted(target.changed)),
    )
    say(f"resolving {len(target.workloads)} workload(s) in '{env.name}'")
    sources = Sources(ws.platform(), ws.records, ws.catalog, ws.store.installation_id())
    runtime = ws.runtime(env.name)
    # Host ports are reserved before resolve: routes and service-ports name them.
    fresh = set(target.workloads) - set(runtime.names())
    facts = reserve(
        runtime,
        target,
        runtime_kind=runtime_kind(sources.platform, env),
        lineage=chain(ws.records, env),
    )
    kept = False  # whether the reservations of workloads new here outlive this call
    try:
        res, resolve_diags = resolve_target(
            target,
            sources,
            core_allowed=lambda: ws.access.allowed(
                Action.OUTPUTS_REVEAL_ADMIN, ws.access.target(env.name)
            ),
            facts=facts,
        )
        graph, expand_diags = expand_resolution(
            res,
            env=env.name,
            kinds=ws.kinds,
            installation=sources.installation,
            max_resources=ws.settings.max_resources,
        )
        diags = [*resolve_diags, *expand_diags]
        if has_errors(diags):
            raise InvalidInputError(f"Cannot deploy to '{env.name}'", diags)
        diags.extend(deprecated_builds(ws.catalog, res.lock, env=env.name))
        planned = engine.plan(env.name, graph)
        if not planned.ok:
            raise InvalidInputError(
                f"The plan for '{env.name}' has errors", list(planned.diagnostics)
            )
        cost = governed.costs(ws.records, res, env.name)
        summary = {**planned.summary(), "resources": len(planned.changes), "cost": cost}
        decision = None
        if kind != "create":  # creating an environment is decided at the 'environment' stage
            gated = governed.gate(
                ws.governor,
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
            if gated.parked:  # its host ports stay reserved for the approved apply
                kept = True
                return DeployResult(
                    dep, planned, dict(res.lock), diagnostics=diags, decision=decision
                )
        if plan_only:
            dep = _finish(dep, DeploymentStatus.PLANNED, summary, planned)
            ws.records.put_deployment(dep)
            return DeployResult(dep, planned, dict(res.lock), diagnostics=diags, decision=decision)
        if planned.has_changes and confirm is not None:
            try:
                confirmed = _confirmed(confirm, planned, held)
            except StackyardError:  # no terminal to ask on, or end of input: nothing was changed
                ws.records.put_deployment(
                    _finish(dep, DeploymentStatus.CANCELLED, summary, planned)
                )
                raise
            if not confirmed:
                dep = _finish(dep, DeploymentStatus.CANCELLED, summary, planned)
                ws.records.put_deployment(dep)
                return DeployResult(
                    dep, planned, dict(res.lock), diagnostics=diags, decision=decision
                )
        kept = True
    finally:
        if not kept:  # refused, planned only or cancelled: nothing stays written
            for name in sorted(fresh):
                runtime.unreserve(name)
    dep = replace(dep, status=DeploymentStatus.RUNNING, summary=summary, plan=planned.to_json())
    ws.records.put_deployment(dep)
    events.notify_deployment(ws.store, "deployment.started", env, dep)
    # The supervisors of workloads that will start get their interpreters going now, while
    # the changes are applied (``LocalRuntime.prepare``); the unused ones exit at the end.
    runtime.prepare(sorted(target.workloads))
    try:
        if target.removed:
            runtime.stop(target.removed)
        if planned.has_changes:
            say(f"applying {sum(v for k, v in planned.summary().items() if k != 'noop')} change(s)")
            applied = engine.apply(planned, graph)
            if not applied.ok:
                raise ApplyFailedError(
                    f"Apply failed in '{env.name}'",
                    env=env.name,
                    failed=applied.failed,
                    hint=f"Fix the cause and deploy again; 'stackyard deployments {env.name}' shows the events.",
                )
        outputs = instance_outputs(engine, env.name, graph, res)
        record(ws.records, target, dep, res, outputs, lease=held.lease)
        found = workload_outputs(target, res, outputs, ws.records)
        # A workload that reaches another through service-port starts after it is ready.
        by_workload = {name: found[name] for name in facts.order(list(found))}
        statuses, started = run(
            runtime, target, by_workload, held=held, ready_timeout=ready_timeout, say=say
        )
        dep = _finish(dep, DeploymentStatus.SUCCEEDED, summary, planned)
        return DeployResult(
            dep,
            planned,
            dict(res.lock),
            statuses,
            planned.has_changes or started,
            diags,
            decision,
        )
    except BaseException as exc:
        dep = _finish(
            dep,
            DeploymentStatus.FAILED,
            summary,
            planned,
            error=getattr(exc, "message", None) or type(exc).__name__,
        )
        raise
    finally:
        runtime.release_spares()
        if engine.events.lost:  # a hook failed: the event log below is missing some events
            dep = replace(dep, summary={**dep.summary, "events_lost": engine.events.lost})
        ws.records.put_deployment(dep)
        ws.records.add_events(dep.id, log.events)
        if dep.status in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED):
            events.notify_deployment(ws.store, f"deployment.{dep.status}", env, dep)


def settle_interrupted(ws: Workspace, env: str) -> list[str]:
    """Mark ``env``'s ``running`` deployments ``interrupted`` when no writer holds its lock.

    Every deployment runs under the environment's lock, so one still ``running`` while the
    lock is free (or its lease ran out) lost its writer: killed by a signal, or stuck past its
    lease. Takes the lock briefly (never waiting) to be sure; returns the ids it marked.
    """
    if not any(d.status is DeploymentStatus.RUNNING for d in ws.records.deployments(env, limit=20)):
        return []
    engine = Engine(store=ws.store, kinds=ws.kinds, holder=holder_identity(ws.access.actor))
    try:
        with engine.locked(env):
            return ws.records.interrupt_running(env)
    except LockHeldError:
        return []  # a writer is at work: its deployment is really running


def _confirmed(confirm: Confirm, planned: Plan, held: HeldLock) -> bool:
    """Ask (a person may take their time): the lease is kept while the question is open, and
    other writers wait for the answer (their ``--lock-timeout``)."""
    with held.busy():
        return confirm(planned)


def _finish(
    dep: Deployment,
    status: DeploymentStatus,
    summary: Mapping[str, Any],
    planned: Plan | None,
    *,
    error: str | None = None,
) -> Deployment:
    return dep.finished(
        status, summary=dict(summary), plan=planned.to_json() if planned else None, error=error
    )


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
        if event.type in (
            ChangeOutcome.FINISHED,
            ChangeOutcome.FAILED,
            ChangeOutcome.RETRYING,
            "recovered",
        ):
            self.say(
                f"{event.type:9} {event.action:8} {event.address}"
                + (
                    f": {event.message}"
                    if event.type == ChangeOutcome.FAILED and event.message
                    else ""
                )
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
    # The policy worker starts now, and loads the gate's policies, while the Score files are
    # read and the lock taken (``converge`` asks again: a no-op by then).
    ws.governor.warm("plan", env=env.name, env_type=env.type)
    with ws.access.act(
        Action.DEPLOY, env=env_name, detail={"scores": [str(p) for p in paths]}
    ) as audit:
        if env.status is not EnvironmentStatus.READY:
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

    mine: dict[str, Workload] = {}
    for p in paths:
        wl = parse_spec(load_score(p), file=str(p))
        if wl.name in mine:
            raise InvalidInputError(
                f"Two Score files define workload '{wl.name}'",
                hint="Each workload name must be unique.",
            )
        mine[wl.name] = wl
    workloads = live_workloads(ws.records, env.name)
    workloads.update(mine)
    return converge(
        ws,
        Target(env, workloads, set(mine)),
        plan_only=plan_only,
        confirm=confirm,
        progress=progress,
    )
