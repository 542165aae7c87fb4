"""Adoption of component versions: which environments and workloads run each published build,
how far each is behind (the latest compatible, the latest major), and who a deprecation hits.

The recorded instances of every live environment are the source (each records the build it
was applied with, ``name@version`` and digest); the catalog says what is published and which
builds carry a deprecation notice. A workload uses an instance it requests, and every instance
that one requires, transitively (a database's server, an ancestor's core), so deprecating a
server's build names every workload whose database runs on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from stackyard.components.catalog import deprecation
from stackyard.components.oci import NotAComponentError, NotFoundError, TagMismatchError
from stackyard.diagnostics import Diagnostic, warning
from stackyard.errors import StackyardError
from stackyard.model.versions import Version
from stackyard.policy.rbac import Action

if TYPE_CHECKING:
    from stackyard.environments.catalog import Catalog
    from stackyard.environments.workspace import Workspace
    from stackyard.model.environment import Environment, InstanceRecord
    from stackyard.resolve.lock import Pin


class Standing(StrEnum):
    """How a version stands against the newest published ones (deprecated builds and
    pre-releases are never the target of an upgrade)."""

    LATEST = "latest"  # nothing newer to move to
    BEHIND_COMPATIBLE = "behind-compatible"  # a newer minor or patch of the same major
    BEHIND_MAJOR = "behind-major"  # the newest of its major, but a newer major exists
    UNPUBLISHED = "unpublished"  # recorded in an environment, no longer in the registry


@dataclass(frozen=True, slots=True)
class Use:
    """One instance of a build in one environment, and the workloads that use it
    (``env/workload`` for a workload of a child environment reading an ancestor's instance)."""

    env: str
    env_type: str
    owner: str | None  # the team that owns the environment
    uid: str
    digest: str
    core: bool
    workloads: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "env": self.env,
            "env_type": self.env_type,
            "owner": self.owner,
            "uid": self.uid,
            "digest": self.digest,
            "core": self.core,
            "workloads": list(self.workloads),
        }


@dataclass(frozen=True, slots=True)
class VersionAdoption:
    """One version of a component: where it runs and how it stands."""

    component: str
    version: str
    published: bool
    deprecated: bool
    reason: str | None  # the deprecation notice's reason
    latest_compatible: str | None  # the newest usable build of the same major
    latest: str | None  # the newest usable build of any major
    uses: tuple[Use, ...]

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.component}@{self.version}"

    @property
    def behind_compatible(self) -> bool:
        """A newer minor or patch of the same major is published (and not deprecated)."""
        return _newer(self.latest_compatible, self.version)

    @property
    def behind_major(self) -> bool:
        """A newer major is published (and not deprecated)."""
        if self.latest is None:
            return False
        return Version.parse(self.latest).major > Version.parse(self.version).major

    @property
    def standing(self) -> Standing:
        """Where this version stands (see ``Standing``)."""
        if not self.published:
            return Standing.UNPUBLISHED
        if self.behind_compatible:
            return Standing.BEHIND_COMPATIBLE
        if self.behind_major:
            return Standing.BEHIND_MAJOR
        return Standing.LATEST

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "component": self.component,
            "version": self.version,
            "published": self.published,
            "deprecated": self.deprecated,
            "deprecation": self.reason,
            "latest_compatible": self.latest_compatible,
            "latest": self.latest,
            "behind_compatible": self.behind_compatible,
            "behind_major": self.behind_major,
            "standing": self.standing.value,
            "uses": [u.to_json() for u in self.uses],
        }


@dataclass(frozen=True, slots=True)
class ComponentAdoption:
    """Every version of one component that is published or in use, lowest first."""

    name: str
    latest: str | None
    versions: tuple[VersionAdoption, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "latest": self.latest,
            "versions": [v.to_json() for v in self.versions],
        }


@dataclass(frozen=True, slots=True)
class Adoption:
    """The adoption report: per component and version, and the deprecated builds in use."""

    components: tuple[ComponentAdoption, ...]

    @property
    def deprecated_in_use(self) -> list[VersionAdoption]:
        """Deprecated versions some environment still runs."""
        return [v for c in self.components for v in c.versions if v.deprecated and v.uses]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "components": [c.to_json() for c in self.components],
            "deprecated_in_use": [
                {
                    "component": v.component,
                    "version": v.version,
                    "deprecation": v.reason,
                    "owners": sorted({u.owner for u in v.uses if u.owner}),
                    "uses": [u.to_json() for u in v.uses],
                }
                for v in self.deprecated_in_use
            ],
        }


def adoption(ws: Workspace, name: str | None = None) -> Adoption:
    """Who runs which version of ``name`` (of every component when None), across the live
    environments the actor may ``view``. ``NotFoundError`` for a name neither published nor
    in use."""
    ws.access.authorize(Action.VIEW)
    uses = recorded_uses(ws)
    names = {c for c, _ in uses}
    if name is not None:
        if name not in names and name not in ws.registry.names():
            raise NotFoundError(
                f"No published component '{name}' in {ws.registry.location}",
                component=name,
                registry=ws.registry.location,
                hint="Run 'stackyard component list' to see the published components.",
            )
        names = {name}
    else:
        names |= set(ws.registry.names())
    return Adoption(tuple(_component(ws, n, uses) for n in sorted(names)))


def affected(ws: Workspace, name: str, version: str) -> tuple[Use, ...]:
    """The instances of ``name@version`` in the live environments the actor may ``view``
    (what deprecating it would hit)."""
    return tuple(recorded_uses(ws).get((name, version), ()))


def recorded_uses(ws: Workspace) -> dict[tuple[str, str], list[Use]]:
    """``(component, version)`` → its instances in the live environments the actor may
    ``view``, each with the workloads that use it directly or through requirements."""
    envs = {e.name: e for e in ws.records.environments() if e.live}
    instances = ws.records.instances_of(sorted(envs))  # one query; no secret decrypted
    users = _users(ws, envs, instances)
    out: dict[tuple[str, str], list[Use]] = {}
    for env_name in sorted(envs):
        env = envs[env_name]
        if not ws.access.allowed(Action.VIEW, ws.access.target_of(env)):
            continue
        for uid, rec in sorted(instances[env_name].items()):
            component, _, version = rec.component.rpartition("@")
            use = Use(
                env=env_name,
                env_type=env.type,
                owner=env.owner,
                uid=uid,
                digest=rec.digest,
                core=rec.core,
                workloads=tuple(sorted(users.get((env_name, uid), ()))),
            )
            out.setdefault((component, version), []).append(use)
    return out


def _users(
    ws: Workspace,
    envs: Mapping[str, Environment],
    instances: Mapping[str, Mapping[str, InstanceRecord]],
) -> dict[tuple[str, str], set[str]]:
    """``(env, uid)`` → the workloads that reach the instance, following ``requires`` into
    the environment's ancestors (where a child reads its parent's core)."""

    def holder(env: str, uid: str) -> str | None:
        seen: set[str] = set()
        current: str | None = env
        while current is not None and current in envs and current not in seen:
            if uid in instances[current]:
                return current
            seen.add(current)
            current = envs[current].parent
        return None

    users: dict[tuple[str, str], set[str]] = {}
    for env_name, live in ws.records.workloads_of(sorted(envs)).items():
        for w in live:
            stack = [(env_name, uid) for uid in w.uids]
            visited: set[tuple[str, str]] = set()
            while stack:
                key = stack.pop()
                if key in visited:
                    continue
                visited.add(key)
                where = holder(*key)
                if where is None:
                    continue
                label = w.name if where == env_name else f"{env_name}/{w.name}"
                users.setdefault((where, key[1]), set()).add(label)
                rec = instances[where][key[1]]
                stack.extend((where, target) for target in rec.requires.values())
    return users


def _component(
    ws: Workspace, name: str, uses: Mapping[tuple[str, str], list[Use]]
) -> ComponentAdoption:
    published = _published(ws.catalog, name)
    usable = [Version.parse(v) for v, reason in published.items() if reason is None and _release(v)]
    latest = max(usable, default=None)
    seen = set(published) | {v for c, v in uses if c == name}
    rows = []
    for text in sorted(seen, key=_order):
        parsed = _parse(text)
        compatible = (
            max((v for v in usable if v.major == parsed.major), default=None) if parsed else None
        )
        rows.append(
            VersionAdoption(
                component=name,
                version=text,
                published=text in published,
                deprecated=published.get(text) is not None,
                reason=published.get(text),
                latest_compatible=str(compatible) if compatible else None,
                latest=str(latest) if latest else None,
                uses=tuple(uses.get((name, text), ())),
            )
        )
    return ComponentAdoption(name, str(latest) if latest else None, tuple(rows))


def _published(catalog: Catalog, name: str) -> dict[str, str | None]:
    """The usable published versions of ``name`` → the deprecation reason (None when not
    deprecated); tags that are not our builds, or lie about their version, are left out."""
    out: dict[str, str | None] = {}
    for version in catalog.versions(name):
        try:
            _, digest = catalog.manifest(name, version)
        except (NotAComponentError, TagMismatchError):
            continue
        notice = deprecation(catalog.registry, name, version, digest=digest)
        out[version] = None if notice is None else str(notice.get("reason") or "deprecated")
    return out


def deprecated_builds(catalog: Catalog, lock: Mapping[str, Pin], *, env: str) -> list[Diagnostic]:
    """A warning for each deprecated build a resolution of ``env`` picked (``lock``: uid →
    pin), naming the instances that would run it. A notice that cannot be read is no warning:
    a deploy never fails on it."""
    by_build: dict[tuple[str, str, str], list[str]] = {}
    for uid, pin in lock.items():
        by_build.setdefault((pin.component, pin.version, pin.digest), []).append(uid)
    out = []
    for (component, version, digest), uids in sorted(by_build.items()):
        try:
            notice = deprecation(catalog.registry, component, version, digest=digest or None)
        except StackyardError:  # an unreadable registry is the deploy's own problem to report
            continue
        if notice is None:
            continue
        reason = str(notice.get("reason") or "no reason given")
        out.append(
            warning(
                "Deprecated component version",
                f"{component}@{version} is deprecated ({reason}), and '{env}' would run it "
                f"for {_listed(sorted(uids))}. Bind a version that is not deprecated, and see "
                f"who else runs it with 'stackyard catalog adoption {component}'.",
                subject=sorted(uids)[0],
            )
        )
    return out


def _listed(items: Iterable[str]) -> str:
    return ", ".join(f"'{i}'" for i in items)


def _newer(candidate: str | None, version: str) -> bool:
    if candidate is None:
        return False
    mine = _parse(version)
    return mine is not None and Version.parse(candidate) > mine


def _parse(text: str) -> Version | None:
    try:
        return Version.parse(text)
    except ValueError:
        return None


def _release(text: str) -> bool:
    parsed = _parse(text)
    return parsed is not None and not parsed.pre


def _order(text: str) -> tuple[int, Version | str]:
    parsed = _parse(text)
    return (0, parsed) if parsed is not None else (1, text)
