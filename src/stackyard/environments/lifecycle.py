"""Environment lifecycle: create (deploying the core), extend, destroy and the TTL reaper.

Destroying an environment stops its workloads and destroys exactly what its own state holds:
a child never has its parent's objects in its state (it reads them as external outputs), so
a destroy on expiry removes only objects labelled as this environment's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.plan import Plan
from stackyard.environments import governed
from stackyard.environments.deploy import DeployResult, converge
from stackyard.environments.runner import env_dir
from stackyard.environments.target import Target, chain, live_workloads
from stackyard.environments.workspace import Workspace
from stackyard.errors import (
    ApplyFailedError,
    InvalidInputError,
    LockHeldError,
    PolicyDeniedError,
    StackyardError,
    StalePlanError,
)
from stackyard.model.environment import Deployment, Environment
from stackyard.model.platform import NAME, format_duration
from stackyard.model.status import AuditResult, ChangeOutcome, DeploymentStatus, EnvironmentStatus
from stackyard.policy.rbac import Action
from stackyard.state import events
from stackyard.state.locks import holder_identity

Progress = Callable[[str], None]
#: A reaper's claim older than this is taken over (the reaper died mid-destroy).
STALE_CLAIM_S = 600.0


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise InvalidInputError(
            f"Invalid environment name '{name}'",
            hint="Use 1-40 characters: lower-case letters, digits and '-', starting with a letter.",
        )


def create(
    ws: Workspace,
    name: str,
    *,
    type_name: str | None = None,
    parent: str | None = None,
    ttl_s: int | None = None,
    owner: str | None = None,
    progress: Progress | None = None,
) -> tuple[Environment, DeployResult | None, bool]:
    """Create ``name`` and deploy its core. Returns ``(env, core deploy, created)``.

    An environment declared in the platform configuration takes its type, parent and owner
    from the declaration. Creating an environment that is already ready is a no-op
    (``created`` False) when nothing asked for differs.
    """
    _check_name(name)
    platform = ws.platform()
    existing = ws.records.environment(name)
    decl = platform.environments.get(name)
    if existing is not None and existing.status.is_live:
        # what exists is shown (or said to differ) only to who may see it
        ws.access.authorize(Action.VIEW, env=name)
        asked = {"type": type_name, "parent": parent, "owner": owner}
        differs = [k for k, v in asked.items() if v is not None and getattr(existing, k) != v]
        if not differs and existing.status is EnvironmentStatus.FAILED:
            with ws.access.act(Action.ENV_CREATE, env=name, target=f"env:{name}") as audit:
                audit.update(retry=True)
                return _retry(ws, existing, progress)
        if not differs and existing.status is EnvironmentStatus.CREATING:
            with ws.access.act(Action.ENV_CREATE, env=name, target=f"env:{name}") as audit:
                audit.update(resume=True)
                return _resume(ws, existing, progress)
        if differs or existing.status is not EnvironmentStatus.READY:
            raise InvalidInputError(
                f"Environment '{name}' already exists ({existing.status})",
                hint=f"Destroy it first, or use another name. It differs in: {', '.join(differs)}."
                if differs
                else "Destroy it first, or use another name.",
            )
        return existing, None, False
    parent_env = None
    if parent is None and decl is not None:
        parent = decl.parent
    if parent is not None:
        parent_env = ws.environment(parent)
        if parent_env.status is not EnvironmentStatus.READY:
            raise InvalidInputError(
                f"Parent environment '{parent}' is {parent_env.status}",
                hint=f"Create it first: stackyard env create {parent}.",
            )
    etype_name = (
        type_name or (decl.type if decl else None) or (parent_env.type if parent_env else None)
    )
    if etype_name is None:
        raise InvalidInputError(
            "An environment needs a type", hint="Pass --type T or --from PARENT."
        )
    etype = platform.type(etype_name)
    if ttl_s is None:
        ttl_s = etype.ttl_default_s
    if ttl_s is not None and etype.ttl_max_s is not None and ttl_s > etype.ttl_max_s:
        raise InvalidInputError(
            f"TTL {format_duration(ttl_s)} is longer than environment type '{etype.name}' allows ({format_duration(etype.ttl_max_s)})",
            hint=f"Pass --ttl {format_duration(etype.ttl_max_s)} or less.",
        )
    owner = owner or (decl.owner if decl else None) or (parent_env.owner if parent_env else None)
    if owner and platform.teams and owner not in platform.teams:
        raise InvalidInputError(
            f"Unknown team '{owner}'", hint=f"Teams: {', '.join(sorted(platform.teams))}."
        )
    now = ws.store.now()  # the store's clock, never this machine's: TTLs are compared with it
    env = Environment(
        name=name,
        type=etype.name,
        status=EnvironmentStatus.CREATING,
        parent=parent,
        owner=owner,
        declared=decl is not None,
        created_at=now,
        created_by=ws.settings.actor,
        expires_at=now + ttl_s if ttl_s else None,
        variables={
            **(dict(parent_env.variables) if parent_env else {}),
            **(dict(decl.variables) if decl else {}),
        },
        labels=dict(decl.labels) if decl else {},
        bindings=decl.bindings if decl else (),
    )
    with ws.access.act(
        Action.ENV_CREATE, env=name, env_type=etype.name, target=f"env:{name}"
    ) as audit:
        governed.decide_environment(ws.governor, env, subject=f"create environment {name}")
        created = _insert_and_deploy(ws, env, parent, etype.name, progress)
        audit.update(type=etype.name, parent=parent, owner=owner, expires_at=env.expires_at)
        return created


def _insert_and_deploy(
    ws: Workspace, env: Environment, parent: str | None, etype_name: str, progress: Progress | None
) -> tuple[Environment, DeployResult | None, bool]:
    if not ws.records.insert_environment(env):
        raise InvalidInputError(
            f"Environment '{env.name}' already exists", hint="Another command created it just now."
        )
    say = progress or (lambda _m: None)
    say(
        f"creating environment '{env.name}' (type {etype_name}{', from ' + parent if parent else ''})"
    )
    return _deploy_core(ws, env.name, say)


def _retry(
    ws: Workspace, env: Environment, progress: Progress | None
) -> tuple[Environment, DeployResult | None, bool]:
    """Create again an environment whose core deploy failed (it resumes where it stopped)."""
    say = progress or (lambda _m: None)
    say(f"retrying the core of '{env.name}', which failed before")
    if not ws.records.set_status(
        env.name, EnvironmentStatus.CREATING, expect=[EnvironmentStatus.FAILED]
    ):
        raise InvalidInputError(
            f"Environment '{env.name}' changed meanwhile", hint="Run the command again."
        )
    return _deploy_core(ws, env.name, say)


def _resume(
    ws: Workspace, env: Environment, progress: Progress | None
) -> tuple[Environment, DeployResult | None, bool]:
    """Resume a create that stopped while its core was deploying (killed, say): converge the
    core again (pending work is recovered first) and mark the environment ready."""
    say = progress or (lambda _m: None)
    say(f"resuming the creation of '{env.name}', which stopped before it was ready")
    return _deploy_core(ws, env.name, say)


def _deploy_core(
    ws: Workspace, name: str, say: Progress
) -> tuple[Environment, DeployResult | None, bool]:
    """Deploy a ``creating`` environment's core; it ends ``ready``, or ``failed`` to retry."""
    try:
        result = converge(ws, Target(ws.environment(name), {}, set()), kind="create", progress=say)
    except LockHeldError:
        raise  # another command is creating it right now: it stays theirs, and 'creating'
    except BaseException:
        ws.records.set_status(name, EnvironmentStatus.FAILED, expect=[EnvironmentStatus.CREATING])
        raise
    ws.records.set_status(name, EnvironmentStatus.READY, expect=[EnvironmentStatus.CREATING])
    return ws.environment(name), result, True


def extend(ws: Workspace, name: str, *, ttl_s: int) -> Environment:
    """Set the expiry to now + ``ttl_s``, capped by the type's maximum (refused beyond it)."""
    env = ws.environment(name)
    with ws.access.act(Action.ENV_EXTEND, env=name, detail={"ttl_s": ttl_s}):
        return _extend(ws, env, ttl_s)


def _extend(ws: Workspace, env: Environment, ttl_s: int) -> Environment:
    name = env.name
    etype = ws.platform().type(env.type)
    if env.expires_at is None and etype.ttl_max_s is None:
        raise InvalidInputError(
            f"Environment '{name}' has no TTL",
            hint="Only environments with an expiry can be extended.",
        )
    if etype.ttl_max_s is not None and ttl_s > etype.ttl_max_s:
        raise InvalidInputError(
            f"TTL {format_duration(ttl_s)} is longer than environment type '{etype.name}' allows ({format_duration(etype.ttl_max_s)})",
            hint=f"Pass at most {format_duration(etype.ttl_max_s)}.",
        )
    expires = ws.store.now() + ttl_s
    governed.decide_environment(
        ws.governor, replace(env, expires_at=expires), subject=f"extend environment {name}"
    )
    if not ws.records.set_status(
        name, EnvironmentStatus.READY, expect=[EnvironmentStatus.READY], expires_at=expires
    ):
        raise InvalidInputError(
            f"Environment '{name}' is {env.status}",
            hint="Only a ready environment can be extended.",
        )
    return ws.environment(name)


@dataclass
class DestroyResult:
    """What a destroy removed."""

    env: str
    stopped: list[str] = field(default_factory=list)
    destroyed: int = 0
    deployment: Deployment | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "env": self.env,
            "stopped_workloads": self.stopped,
            "destroyed_resources": self.destroyed,
            "deployment": self.deployment.id if self.deployment else None,
            "status": self.deployment.status if self.deployment else DeploymentStatus.SUCCEEDED,
        }


def destroy(
    ws: Workspace, name: str, *, claimed: bool = False, progress: Progress | None = None
) -> DestroyResult:
    """Stop the workloads and destroy every resource in ``name``'s own state.

    Refused while the environment has live children. ``claimed`` is set by the reaper, which
    has already moved the environment to ``destroying``.
    """
    say = progress or (lambda _m: None)
    env = destroyable(ws, name)
    if claimed:  # the reaper authorized env.reap once, and audits each environment itself
        return _destroy(ws, env, claimed=True, say=say)
    with ws.access.act(Action.ENV_DESTROY, env=name) as audit:
        out = _destroy(ws, env, claimed=False, say=say)
        audit.update(
            resources=out.destroyed, **(out.deployment.audit_detail() if out.deployment else {})
        )
        return out


def destroyable(ws: Workspace, name: str) -> Environment:
    """``name``, or ``InvalidInputError`` when it cannot be destroyed: it has live children
    (they use its resources), or it is only declared (there is nothing to destroy)."""
    env = ws.environment(name)
    refuse_children(ws, name)
    if env.status is EnvironmentStatus.DECLARED:
        raise InvalidInputError(
            f"Environment '{name}' is only declared", hint="There is nothing to destroy."
        )
    return env


def refuse_children(ws: Workspace, name: str) -> None:
    """The has-children rule: a child uses its parent's resources, so an environment with
    live children is never destroyed."""
    children = ws.records.children(name)
    if children:
        raise InvalidInputError(
            f"Environment '{name}' has children: {', '.join(sorted(children))}",
            hint="Destroy the children first; they use this environment's resources.",
        )


def _destroy(ws: Workspace, env: Environment, *, claimed: bool, say: Progress) -> DestroyResult:
    dep = Deployment.start(env=env.name, kind="destroy", actor=ws.access.actor)
    return _governed_destroy(ws, env, dep, approved=None, claimed=claimed, say=say)


def resume_destroy(
    ws: Workspace, dep: Deployment, *, progress: Progress | None = None
) -> DestroyResult:
    """Carry out an approved environment destroy: re-plan, re-evaluate, apply if unchanged."""
    say = progress or (lambda _m: None)
    env = ws.environment(dep.env)
    refuse_children(ws, env.name)  # a child may have been created while it awaited approval
    return _governed_destroy(ws, env, dep, approved=dep.plan, claimed=False, say=say)


def _destroy_engine(ws: Workspace, say: Progress) -> Engine:
    def show(e: Event) -> None:
        if e.type in (ChangeOutcome.FINISHED, ChangeOutcome.FAILED):
            say(f"{e.type:9} {e.action:8} {e.address}")

    return Engine(
        store=ws.store,
        kinds=ws.kinds,
        events=Events(show),
        holder=holder_identity(ws.access.actor),
        lock_wait_s=ws.lock_wait_s,
    )


#: How often a destroy plans again when the state moves between its decision and its apply.
REPLANS = 3


def _governed_destroy(
    ws: Workspace,
    env: Environment,
    dep: Deployment,
    *,
    approved: Mapping[str, Any] | None,
    claimed: bool,
    say: Progress,
) -> DestroyResult:
    """Plan the destroy, pass it through the gate (``destroy`` stage), and apply it.

    When the state moves between the decision and the apply (the engine refuses the stale
    plan), the destroy is planned again and the new plan goes through the gate again: every
    plan that is applied has its own decision. A deny raises and a park returns; either way
    the environment goes back to the status it had (a reaper's claim is given back).
    """
    engine = _destroy_engine(ws, say)
    planned = engine.plan(env.name, None)
    dep, parked = _gate_destroy(ws, env, dep, planned, approved=approved, claimed=claimed, say=say)
    if parked:
        return DestroyResult(env.name, deployment=dep)
    if not claimed and not ws.records.set_status(
        env.name,
        EnvironmentStatus.DESTROYING,
        expect=[s for s in EnvironmentStatus if s.is_live],
        claimed_at=ws.store.now(),
    ):
        raise InvalidInputError(
            f"Environment '{env.name}' cannot be destroyed now", hint="Try again."
        )
    out = DestroyResult(env.name)
    out.stopped = ws.runtime(env.name).stop_all()
    for w in out.stopped:
        say(f"stopped workload '{w}'")
    for attempt in range(REPLANS + 1):
        say(f"destroying {_deletes(planned)} resource(s) of '{env.name}'")
        try:
            return _apply_destroy(ws, env, engine, planned, dep, out)
        except StalePlanError:
            if attempt == REPLANS:
                _fail_destroy(ws, env.name, dep, "the state kept changing")
                raise
        say(f"the state of '{env.name}' changed since the decision: planning the destroy again")
        planned = engine.plan(env.name, None)
        # a reaper claimed a ready environment
        before = EnvironmentStatus.READY if claimed else env.status
        dep, parked = _gate_destroy(
            ws, env, dep, planned, approved=approved, claimed=True, say=say, status=before
        )
        if parked:
            return DestroyResult(env.name, out.stopped, deployment=dep)
    raise AssertionError("unreachable")  # pragma: no cover


def _gate_destroy(
    ws: Workspace,
    env: Environment,
    dep: Deployment,
    planned: Plan,
    *,
    approved: Mapping[str, Any] | None,
    claimed: bool,
    say: Progress,
    status: EnvironmentStatus = EnvironmentStatus.READY,
) -> tuple[Deployment, bool]:
    """The gate for one destroy plan; gives the environment back (``status``) when it claimed
    it (``claimed``) and the gate stops the destroy."""
    try:
        gated = governed.gate(
            ws.governor,
            env,
            dep,
            planned,
            stage="destroy",
            what=f"Destroy of '{env.name}'",
            request={"kind": "destroy"},
            approved=approved,
            say=say,
        )
    except PolicyDeniedError:
        if claimed:
            ws.records.set_status(
                env.name, status, expect=[EnvironmentStatus.DESTROYING], claimed_at=None
            )
        raise
    if gated.parked and claimed:
        ws.records.set_status(
            env.name, status, expect=[EnvironmentStatus.DESTROYING], claimed_at=None
        )
    return replace(gated.deployment, summary=planned.summary(), plan=planned.to_json()), (
        gated.parked
    )


def _deletes(planned: Plan) -> int:
    return sum(1 for c in planned.changes if c.action.value == "delete") + len(planned.strays)


def _fail_destroy(ws: Workspace, name: str, dep: Deployment, error: str) -> None:
    ws.records.put_deployment(dep.finished(DeploymentStatus.FAILED, error=error))
    ws.records.set_status(name, EnvironmentStatus.FAILED, expect=[EnvironmentStatus.DESTROYING])


def _destroy_hint(ws: Workspace, env: Environment) -> str:
    """What to do after a failed destroy: when a server of the environment or of its parents
    is not running (killed, say), the objects on it cannot be deleted until it runs again."""
    from stackyard.environments.inspect import status

    down = []
    for owner in chain(ws.records, env):
        try:
            found = status(ws, owner.name)["resources"]
        except StackyardError:
            continue
        if any(r["health"] == "stopped" and r.get("kind", "").startswith("local.") for r in found):
            down.append(owner.name)
    if down:
        where = ", ".join(f"'{n}'" for n in down)
        first = down[-1]
        return (
            f"A server of {where} is not running, so the objects on it cannot be deleted: "
            f"run 'stackyard env repair {first}' (it restarts stopped servers), then the "
            "destroy again; it resumes where it stopped."
        )
    return "Fix the cause and run the destroy again; it resumes where it stopped."


def _apply_destroy(
    ws: Workspace,
    env: Environment,
    engine: Engine,
    planned: Plan,
    dep: Deployment,
    out: DestroyResult,
) -> DestroyResult:
    """Apply a decided destroy plan exactly; ``StalePlanError`` (nothing done) when the state
    moved since it was made."""
    name = env.name
    out.destroyed = _deletes(planned)
    try:
        with engine.locked(name):
            # Under the lock: a deploy that was already past its status check when this
            # destroy began may have started a workload since the first stop; stop it again
            # before deleting what it uses (the apply below reuses this lease).
            again = ws.runtime(name).stop_all()
            out.stopped = sorted({*out.stopped, *again})
            result = engine.apply(planned, None)
        if not result.ok:
            raise ApplyFailedError(
                f"Destroy of '{name}' failed",
                env=name,
                failed=result.failed,
                hint=_destroy_hint(ws, env),
            )
    except StalePlanError:
        raise
    except BaseException as exc:
        _fail_destroy(ws, name, dep, getattr(exc, "message", type(exc).__name__))
        raise
    ws.records.forget_environment(name)
    shutil.rmtree(env_dir(ws.settings.home, name), ignore_errors=True)
    dep = dep.finished(
        DeploymentStatus.SUCCEEDED, summary=planned.summary(), plan=planned.to_json()
    )
    ws.records.put_deployment(dep)
    out.deployment = dep
    env_now = ws.records.environment(name)
    if env_now is not None and env_now.declared:
        ws.records.set_status(
            name, EnvironmentStatus.DECLARED, created_at=None, expires_at=None, claimed_at=None
        )
    else:
        ws.records.set_status(name, EnvironmentStatus.DESTROYED, expires_at=None, claimed_at=None)
    events.notify(
        ws.store,
        "environment.destroyed",
        f"environment {name}",
        **events.about(env),
        data={"deployment": dep.id, "actor": dep.actor, "resources": out.destroyed},
    )
    return out


def remove_workload(
    ws: Workspace, name: str, workload: str, *, progress: Progress | None = None
) -> DeployResult:
    """Take one workload out of ``name``: stop it and destroy what only it used."""
    env = ws.environment(name)
    with ws.access.act(Action.DEPLOY, env=name, detail={"remove": workload}) as audit:
        live = live_workloads(ws.records, name)
        if workload not in live:
            raise InvalidInputError(
                f"No workload '{workload}' in '{name}'",
                hint=f"Workloads: {', '.join(sorted(live)) or 'none'}.",
            )
        del live[workload]
        result = converge(
            ws, Target(env, live, set(), removed=workload), kind="remove", progress=progress
        )
        audit.update(result.deployment.audit_detail())
        return result


def destroy_resource(
    ws: Workspace, name: str, uid: str, *, progress: Progress | None = None
) -> DeployResult:
    """Destroy one resource instance of ``name`` that no live workload references (an orphan
    left by a failed removal, say). Refused, naming them, while live workloads still use it,
    and for core infrastructure (destroyed with the environment)."""
    env = ws.environment(name)
    with ws.access.act(Action.DEPLOY, env=name, detail={"destroy_resource": uid}) as audit:
        users = sorted(w.name for w in ws.records.workloads(name) if uid in w.uids)
        inst = ws.records.instances(name).get(uid)
        if inst is None:
            raise InvalidInputError(
                f"No resource '{uid}' in '{name}'",
                hint=f"'stackyard outputs {name}' lists the resources.",
            )
        if users:
            raise InvalidInputError(
                f"Resource '{uid}' is still used by live workload(s): {', '.join(users)}",
                hint="Remove those workloads first ('stackyard remove'); a shared resource is destroyed with its last user.",
            )
        if inst.core:
            raise InvalidInputError(
                f"Resource '{uid}' is core infrastructure of '{name}'",
                hint="It is destroyed with the environment.",
            )
        # The desired state is the live workloads' resources: converging to it drops the orphan.
        result = converge(
            ws,
            Target(env, live_workloads(ws.records, name), set()),
            kind="remove",
            progress=progress,
        )
        audit.update(result.deployment.audit_detail())
        return result


def reap(
    ws: Workspace, *, now: float | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Destroy every expired environment this call manages to claim; safe to run concurrently."""
    say = progress or (lambda _m: None)
    ws.access.authorize(Action.ENV_REAP, audit=True)
    now = ws.store.now() if now is None else now
    claimed = ws.records.claim_expired(now, stale_after=STALE_CLAIM_S)
    done, failed, skipped = [], {}, []
    for name in claimed:
        if ws.records.children(name):
            skipped.append(name)
            ws.records.set_status(
                name,
                EnvironmentStatus.READY,
                expect=[EnvironmentStatus.DESTROYING],
                claimed_at=None,
            )
            say(f"skipped '{name}': it has live children")
            continue
        expired = ws.records.environment(name)
        if expired is not None:
            events.announce_expired(ws.store, expired)
        say(f"reaping '{name}' (expired)")
        try:
            result = destroy(ws, name, claimed=True, progress=say)
        except StackyardError as exc:
            failed[name] = exc.message
            ws.access.audit(
                Action.ENV_REAP.value,
                f"env:{name}",
                AuditResult.DENIED if isinstance(exc, PolicyDeniedError) else AuditResult.FAILED,
                {"error": exc.message},
            )
            continue
        if (
            result.deployment is not None
            and result.deployment.status is DeploymentStatus.AWAITING_APPROVAL
        ):
            skipped.append(name)
            ws.access.audit(
                Action.ENV_REAP.value,
                f"env:{name}",
                AuditResult.AWAITING_APPROVAL,
                {"deployment": result.deployment.id},
            )
            continue
        done.append(name)
        ws.access.audit(
            Action.ENV_REAP.value,
            f"env:{name}",
            AuditResult.OK,
            {"resources": result.destroyed, "expired": True},
        )
    return {"reaped": done, "failed": failed, "skipped": skipped}
