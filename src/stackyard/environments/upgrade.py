"""Fleet-wide upgrades: every instance of one component moved to the newest build in a range,
environment by environment in promotion-path order, each through the governed road.

An upgrade is a release-free re-pin. Each environment is converged like a deploy (one lease,
``plan`` policies, approval, apply, outputs, run) with the live workloads unchanged and the
instances of the component pinned to the new build (strictly: a binding that does not allow
it is an error, never a silent other pick). Every other instance keeps its build; the
workloads that reach a moved instance (directly or through requirements) are re-rendered, so
a replaced password reaches them. The environment's lock (its recorded instances) then names
the new build and digest, and ``stackyard approve`` resumes a parked step with the same pins.

The campaign plans every environment first (``--plan-only`` stops there), then applies in
order and stops at the first step that fails or parks for approval, reporting what was done
and what was not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from stackyard.components.catalog import SKIPPED, deprecation
from stackyard.diagnostics import Diagnostic, Severity
from stackyard.environments import governed
from stackyard.environments.deploy import DeployResult, converge
from stackyard.environments.target import Target, live_workloads, pins_of
from stackyard.errors import InvalidInputError, StackyardError
from stackyard.model.status import DeploymentStatus, EnvironmentStatus
from stackyard.model.versions import Range, Version
from stackyard.policy.rbac import Action
from stackyard.resolve.lock import Pin

if TYPE_CHECKING:
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import Environment, InstanceRecord, WorkloadRecord

Progress = Callable[[str], None]
KIND = "upgrade"  # the deployments' kind


class StepStatus(StrEnum):
    """Where one environment's step stands. A campaign moves each step once, from
    ``planned`` (or ``blocked``, whose plan failed) to one of the others; the steps after the
    one that ``failed`` or is ``awaiting-approval`` stay ``not-run``."""

    PLANNED = "planned"
    BLOCKED = "blocked"
    SUCCEEDED = "succeeded"
    AWAITING_APPROVAL = "awaiting-approval"
    FAILED = "failed"
    NOT_RUN = "not-run"


@dataclass(frozen=True, slots=True)
class Move:
    """One instance moving from the build it runs to the target build."""

    uid: str
    before: Pin
    after: Pin

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"uid": self.uid, "from": self.before.to_json(), "to": self.after.to_json()}


@dataclass
class Step:
    """One environment of the campaign: what moves, the plan, and what happened."""

    env: str
    env_type: str
    moves: tuple[Move, ...]
    status: StepStatus = StepStatus.PLANNED
    changes: list[dict[str, Any]] = field(default_factory=list)  # non-noop plan changes
    approvals: list[str] = field(default_factory=list)  # why the step waits (or would)
    deployment: str | None = None
    error: str | None = None
    hint: str | None = None
    exit_code: int = 0
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def replacements(self) -> list[str]:
        """The addresses the plan replaces (the old object is destroyed first)."""
        return [c["address"] for c in self.changes if c["action"] == "replace"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (masked: plan changes carry no values)."""
        return {
            "env": self.env,
            "env_type": self.env_type,
            "status": self.status.value,
            "moves": [m.to_json() for m in self.moves],
            "changes": self.changes,
            "replacements": self.replacements,
            "approvals": self.approvals,
            "deployment": self.deployment,
            "error": self.error,
            "hint": self.hint,
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }


@dataclass
class Campaign:
    """An upgrade campaign: the target build, the steps in order, and what was skipped."""

    component: str
    range: str
    target: Pin
    plan_only: bool
    steps: list[Step]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {env, uid, version, why}

    @property
    def stopped_at(self) -> Step | None:
        """The step the campaign stopped at (failed, or parked for approval)."""
        stops = (StepStatus.FAILED, StepStatus.AWAITING_APPROVAL)
        return next((s for s in self.steps if s.status in stops), None)

    @property
    def complete(self) -> bool:
        """Every step succeeded."""
        return all(s.status is StepStatus.SUCCEEDED for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        stop = self.stopped_at
        return {
            "component": self.component,
            "range": self.range,
            "target": self.target.to_json(),
            "plan_only": self.plan_only,
            "complete": self.complete,
            "stopped_at": stop.env if stop else None,
            "steps": [s.to_json() for s in self.steps],
            "skipped": self.skipped,
        }


def upgrade(
    ws: Workspace,
    component: str,
    to: str,
    *,
    envs: Sequence[str] = (),
    env_types: Sequence[str] = (),
    plan_only: bool = False,
    confirm: Callable[[Campaign], bool] | None = None,
    progress: Progress | None = None,
) -> Campaign:
    """Plan the move of every instance of ``component`` to the newest usable build in ``to``
    in the selected environments (``envs``, or those of ``env_types``, or every live one),
    then (unless ``plan_only``, and once ``confirm`` agrees) apply step by step.

    The actor needs ``deploy`` on each environment that has something to move: checked for
    all of them before anything is planned. Returns the campaign; a failure is reported in
    its step (``status`` failed, ``error``, ``exit_code``), never raised.
    """
    say = progress or (lambda _m: None)
    if envs and env_types:
        raise InvalidInputError(
            "Give --env or --env-type, not both",
            hint="stackyard upgrade NAME --to RANGE --env-type production",
        )
    target = newest(ws, component, to)
    steps, skipped = _select(ws, component, target, envs=envs, env_types=env_types)
    for step in steps:  # every refusal before anything is planned
        ws.access.authorize(Action.DEPLOY, env=step.env, audit=True)
    campaign = Campaign(component, to, target, plan_only, steps, skipped)
    for step in steps:
        say(f"planning {target.ref} in '{step.env}'")
        _plan(ws, step, target, say)
    if plan_only or not steps:
        return campaign
    if confirm is not None and not confirm(campaign):
        from stackyard.errors import CancelledError

        raise CancelledError("Cancelled: nothing was changed")
    for i, step in enumerate(steps):
        say(f"upgrading '{step.env}' to {target.ref}")
        _apply(ws, step, target, say)
        if step.status is not StepStatus.SUCCEEDED:
            for rest in steps[i + 1 :]:
                rest.status = StepStatus.NOT_RUN
            break
    return campaign


def newest(ws: Workspace, component: str, to: str) -> Pin:
    """The newest published build of ``component`` in range ``to`` that is ours, tagged truly
    and not deprecated (pre-releases only when the range names one)."""
    try:
        wanted = Range.parse(to)
    except ValueError as exc:
        raise InvalidInputError(
            f"Invalid version range '{to}'", hint=f"{exc}. Use e.g. ^1.1, ~1.1 or 1.1.0."
        ) from None
    published = ws.catalog.versions(component)
    if not published:
        raise InvalidInputError(
            f"No published component '{component}'",
            hint="Run 'stackyard component list' to see the published components.",
        )
    in_range = sorted((Version.parse(v) for v in published if _in(wanted, v)), reverse=True)
    passed: list[str] = []
    for version in in_range:
        try:
            _, digest = ws.catalog.manifest(component, str(version))
        except SKIPPED as exc:
            passed.append(f"{version} ({exc.message})")
            continue
        if deprecation(ws.catalog.registry, component, str(version), digest=digest) is not None:
            passed.append(f"{version} (deprecated)")
            continue
        return Pin(component, str(version), digest)
    raise InvalidInputError(
        f"No usable build of {component} in '{to}'",
        hint=f"Published: {', '.join(published)}"
        + (f"; passed over: {', '.join(passed)}" if passed else "")
        + ". Publish one in range, or give another range.",
    )


def _in(wanted: Range, text: str) -> bool:
    try:
        return wanted.matches(Version.parse(text))
    except ValueError:
        return False


def _select(
    ws: Workspace,
    component: str,
    target: Pin,
    *,
    envs: Sequence[str],
    env_types: Sequence[str],
) -> tuple[list[Step], list[dict[str, str]]]:
    """The steps (environments with an instance to move), in promotion-path order, and the
    instances left alone with why."""
    platform = ws.platform()
    unknown = sorted(set(env_types) - set(platform.types))
    if unknown:
        raise InvalidInputError(
            f"Unknown environment type(s): {', '.join(unknown)}",
            hint=f"Types: {', '.join(sorted(platform.types)) or 'none'}.",
        )
    if envs:
        chosen = [ws.environment(name) for name in dict.fromkeys(envs)]
    else:
        chosen = [e for e in ws.records.environments() if e.live]
        if env_types:
            chosen = [e for e in chosen if e.type in env_types]
    steps: dict[str, Step] = {}
    skipped: list[dict[str, str]] = []
    for env in chosen:
        moves, kept = _moves(ws.records.instances(env.name), component, target)
        for uid, version, why in kept:
            skipped.append({"env": env.name, "uid": uid, "version": version, "why": why})
        if not moves:
            continue
        if env.status is not EnvironmentStatus.READY:
            skipped.extend(
                {"env": env.name, "uid": m.uid, "version": m.before.version, "why": env.status}
                for m in moves
            )
            continue
        steps[env.name] = Step(env.name, env.type, moves)
    ordered = order(platform.paths.values(), steps)
    return [steps[name] for name in ordered], skipped


def order(paths: Iterable[Any], names: Iterable[str]) -> list[str]:
    """``names`` in promotion-path order (paths by name, stages in order), then the
    environments on no path, by name."""
    wanted = set(names)
    out: list[str] = []
    for path in sorted(paths, key=lambda p: p.name):
        out.extend(s for s in path.stages if s in wanted and s not in out)
    return out + sorted(wanted - set(out))


def _moves(
    instances: Mapping[str, InstanceRecord], component: str, target: Pin
) -> tuple[tuple[Move, ...], list[tuple[str, str, str]]]:
    moves, kept = [], []
    for uid, pin in sorted(pins_of(instances).items()):
        if pin.component != component or pin.version == target.version:
            continue
        try:
            newer = Version.parse(pin.version) > Version.parse(target.version)
        except ValueError:
            newer = False
        if newer:
            kept.append((uid, pin.version, f"runs a newer build than {target.version}"))
            continue
        moves.append(Move(uid, pin, target))
    return tuple(moves), kept


def _users(
    workloads: Sequence[WorkloadRecord], instances: Mapping[str, InstanceRecord], moved: set[str]
) -> set[str]:
    """The workloads that reach a moved instance, directly or through requirements."""
    out = set()
    for w in workloads:
        stack, seen = list(w.uids), set()
        while stack:
            uid = stack.pop()
            if uid in seen:
                continue
            seen.add(uid)
            if uid in moved:
                out.add(w.name)
                break
            rec = instances.get(uid)
            if rec is not None:
                stack.extend(rec.requires.values())
    return out


def _target(ws: Workspace, env: Environment, moves: Sequence[Move]) -> Target:
    """The converge target: the live workloads, those reaching a moved instance re-rendered,
    their own instances pinned to the builds they run, the moved ones to the target."""
    instances = ws.records.instances(env.name)
    moved = {m.uid for m in moves}
    users = _users(ws.records.workloads(env.name), instances, moved)
    workloads = live_workloads(ws.records, env.name)
    current = pins_of(instances)
    pins = {
        str(r.uid): current[str(r.uid)]
        for name in users
        for r in workloads[name].resources.values()
        if str(r.uid) in current
    }
    pins.update({m.uid: m.after for m in moves})
    return Target(env, workloads, users, release_pins=pins, strict_pins=True)


def _plan(ws: Workspace, step: Step, target: Pin, say: Progress) -> None:
    env = ws.environment(step.env)
    try:
        with ws.access.act(Action.DEPLOY, env=env.name, detail=_detail(target, True)) as audit:
            result = converge(ws, _target(ws, env, step.moves), kind=KIND, plan_only=True)
            audit.update(result.deployment.audit_detail())
    except StackyardError as exc:
        _failed(step, exc, StepStatus.BLOCKED)
        say(f"'{step.env}' cannot be upgraded: {exc.message}")
        return
    _read(step, result)


def _apply(ws: Workspace, step: Step, target: Pin, say: Progress) -> None:
    try:
        env = ws.environment(step.env)
        # Read again now: an earlier step, or someone else, may have moved things meanwhile.
        moves, _ = _moves(ws.records.instances(env.name), target.component, target)
        step.moves = moves or step.moves
        with ws.access.act(Action.DEPLOY, env=env.name, detail=_detail(target, False)) as audit:
            result = converge(ws, _target(ws, env, moves), kind=KIND, progress=say)
            audit.update(result.deployment.audit_detail())
    except StackyardError as exc:
        _failed(step, exc, StepStatus.FAILED)
        say(f"'{step.env}' failed: {exc.message}")
        return
    _read(step, result)
    dep = result.deployment
    if dep.status is DeploymentStatus.AWAITING_APPROVAL:
        step.status = StepStatus.AWAITING_APPROVAL
        step.hint = (
            f"An approver runs: stackyard approve {dep.id}; then upgrade again for the rest."
        )
    elif dep.status is DeploymentStatus.SUCCEEDED:
        step.status = StepStatus.SUCCEEDED
    else:
        step.status, step.error = StepStatus.FAILED, f"deployment {dep.id} is {dep.status}"
        step.exit_code = 1


def _read(step: Step, result: DeployResult) -> None:
    """The plan's changes, the approvals asked for, and the deployment of ``result``."""
    step.deployment = result.deployment.id
    if result.plan is not None:
        step.changes = [
            {k: c[k] for k in ("address", "kind", "action", "reason")}
            for c in result.plan.to_json()["changes"]
            if c["action"] != "noop"
        ]
    step.approvals = governed.approvals_asked(result.decision)
    step.diagnostics = [
        d
        for d in result.diagnostics
        if d.severity is Severity.WARNING and d.summary != "Approval required"  # in approvals
    ]


def _failed(step: Step, exc: StackyardError, status: StepStatus) -> None:
    step.status = status
    step.error = exc.message
    step.hint = exc.hint
    step.exit_code = exc.exit_code
    step.diagnostics = list(getattr(exc, "diagnostics", ()) or ())


def _detail(target: Pin, plan_only: bool) -> dict[str, Any]:
    return {"upgrade": target.ref, "digest": target.digest, "plan_only": plan_only}
