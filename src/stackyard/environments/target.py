"""The target of a converge: the environment as recorded, the workloads that will be live in it
after the deploy, and the builds they are pinned to; read again under the environment's lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stackyard.environments.workloads import parse_spec
from stackyard.errors import InvalidInputError
from stackyard.model.environment import Environment, InstanceRecord
from stackyard.model.status import EnvironmentStatus
from stackyard.model.workload import Workload
from stackyard.resolve.lock import Pin

if TYPE_CHECKING:
    from stackyard.state.records import Records


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


def environment(records: Records, name: str) -> Environment:
    """A live (or declared) environment, or ``InvalidInputError`` with the known names."""
    env = records.environment(name)
    if env is None or env.status is EnvironmentStatus.DESTROYED:
        names = [e.name for e in records.environments()]
        raise InvalidInputError(
            f"No environment '{name}'",
            hint=f"Known environments: {', '.join(names) or 'none'}. Create one with 'stackyard env create'.",
        )
    return env


def chain(records: Records, env: Environment) -> list[Environment]:
    """``env`` and its ancestors, nearest first."""
    out = [env]
    seen = {env.name}
    while out[-1].parent:
        parent = records.environment(out[-1].parent)
        if parent is None or parent.name in seen:
            break
        seen.add(parent.name)
        out.append(parent)
    return out


def live_workloads(records: Records, env: str) -> dict[str, Workload]:
    """The workloads live in ``env``, parsed from their stored specs."""
    return {w.name: parse_spec(w.spec, file=w.name) for w in records.workloads(env)}


def pins_of(instances: Mapping[str, InstanceRecord]) -> dict[str, Pin]:
    """The build each recorded instance runs (``name@version`` and digest), by uid."""
    out = {}
    for uid, rec in instances.items():
        name, _, version = rec.component.partition("@")
        out[uid] = Pin(name, version or name, rec.digest)
    return out


def under_lock(records: Records, target: Target, kind: str) -> Target:
    """The target as of now, read under the lock: the environment's current record, and the
    workloads live *now* with this converge's own changes (and removal) on top."""
    env = environment(records, target.env.name)
    if kind != "create" and env.status is not EnvironmentStatus.READY:
        raise InvalidInputError(
            f"Environment '{env.name}' is {env.status}",
            hint="Deploy to a ready environment; 'stackyard env show' tells its state.",
        )
    workloads = live_workloads(records, env.name)
    if target.repair:
        pins = pins_of(records.instances(env.name))
        return replace(
            target, env=env, workloads=workloads, changed=set(workloads), release_pins=pins
        )
    workloads.update({name: target.workloads[name] for name in target.changed})
    if target.removed:
        workloads.pop(target.removed, None)
    return replace(target, env=env, workloads=workloads)


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


def target_of(records: Records, env: Environment, request: Mapping[str, Any]) -> Target:
    """The inverse of ``request_of``, against the environment as it is *now*: the workloads
    live at approval time, with this deployment's own workloads (and removal) applied on top,
    so deploys that landed while it waited are kept, never undone."""
    changed = set(request.get("changed", []))
    workloads = live_workloads(records, env.name)
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
