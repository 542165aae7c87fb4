"""Resolve: resource requests of an environment → component instances and the component lock.

Each request's uid is matched to a binding (``resolve.bindings``), the binding's range (or a
pin from a release or from what is already deployed) selects an exact published build, the
params are checked against the component's inputs schema, and every ``requires`` alias is
resolved recursively: to a core or shared instance of this environment, to an instance of an
ancestor (used read-only, as ``external`` outputs), or to a new shared instance. Problems are
collected as diagnostics; nothing is applied here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.diagnostics import Diagnostic, error
from stackyard.errors import InvalidInputError, StackyardError
from stackyard.model.component import ComponentManifest, apply_inputs, binding_only_inputs
from stackyard.model.ids import ResourceUid
from stackyard.resolve.bindings import Level, Match, match
from stackyard.resolve.graph import Instance
from stackyard.resolve.lock import Pin
from stackyard.resolve.versions import Range, Version

#: (name) -> published versions; (name, version) -> (manifest, digest)
Versions = Callable[[str], Sequence[str]]
Fetch = Callable[[str, str], tuple[ComponentManifest, str]]


@dataclass(frozen=True, slots=True)
class Request:
    """A resource request: from a workload (``workload`` set), the core, or a requirement."""

    uid: ResourceUid
    params: Mapping[str, Any]
    workload: str = ""
    location: str = ""  # where it came from, for diagnostics (``checkout: resources.db``)
    core: bool = False
    #: A component's own requirement: its params are the component author's, not a workload's.
    requirement: bool = False


@dataclass
class Resolution:
    """What resolve produced."""

    instances: dict[ResourceUid, Instance] = field(default_factory=dict)
    lock: dict[str, Pin] = field(default_factory=dict)
    matches: dict[ResourceUid, Match] = field(default_factory=dict)
    external: dict[ResourceUid, str] = field(default_factory=dict)  # uid -> ancestor env
    core: set[ResourceUid] = field(default_factory=set)
    requires: dict[ResourceUid, dict[str, str]] = field(default_factory=dict)
    params: dict[ResourceUid, dict[str, Any]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ancestor:
    """An ancestor environment's instances, usable read-only: uid → outputs."""

    env: str
    outputs: Mapping[str, Mapping[str, Any]]


class Resolver:
    """Resolves the requests of one environment."""

    def __init__(
        self,
        *,
        env: str,
        env_type: str,
        levels: Sequence[Level],
        versions: Versions,
        fetch: Fetch,
        ancestors: Sequence[Ancestor] = (),
        pins: Mapping[str, Pin] | None = None,
        strict: frozenset[str] = frozenset(),
    ) -> None:
        self.env, self.env_type, self.levels = env, env_type, levels
        self.versions, self.fetch = versions, fetch
        self.ancestors = ancestors
        self.pins = dict(pins or {})
        self.strict = strict  # uids pinned by a release: a pin outside the binding is an error
        self.result = Resolution()
        self._origin: dict[ResourceUid, Request] = {}

    def resolve(self, requests: Sequence[Request]) -> Resolution:
        """Resolve every request (shared uids once); returns the resolution with diagnostics."""
        for req in requests:
            self._request(req, depth=0)
        return self.result

    def explain(self, uid: ResourceUid) -> Match:
        """The binding match for ``uid`` (no side effects)."""
        return match(uid, self.levels)

    def _request(self, req: Request, *, depth: int) -> None:
        uid = req.uid
        if uid in self.result.instances:
            first = self._origin[uid]
            if dict(first.params) != dict(req.params) and req.params:
                self._diag(
                    "Conflicting params for a shared resource",
                    f"'{uid}' is requested by {first.location or 'the environment'} and by {req.location} with different params. Shared resources take one set of params: make them equal, or use different ids.",
                    req,
                )
            if req.core:
                self.result.core.add(uid)
            return
        if depth > 20:
            self._diag(
                "Requirement chain too deep",
                f"Resolving '{uid}' went 20 requirements deep; there is probably a loop between components.",
                req,
            )
            return
        found = match(uid, self.levels)
        self.result.matches[uid] = found
        if found.winner is None:
            self._unbound(req, found)
            return
        binding = found.winner.binding
        picked = self._pick(req, binding.component, binding.range)
        if picked is None:
            return
        manifest, pin = picked
        if manifest.provides != uid.type:
            self._diag(
                "Binding serves the wrong type",
                f"The binding '{binding.selector}' from {found.winner.source} picks {manifest.ref}, which provides '{manifest.provides}', not '{uid.type}'.",
                req,
            )
            return
        reserved = (
            set()
            if req.core or req.requirement
            else set(req.params) & binding_only_inputs(manifest)
        )
        for key in sorted(reserved):
            self._diag(
                "Input reserved for the platform",
                f"{req.location or str(uid)}: params.{key} of {manifest.ref} can only be set by a platform binding, not by a workload.",
                req,
            )
        if reserved:
            return
        params = {**copy.deepcopy(dict(binding.params)), **copy.deepcopy(dict(req.params))}
        try:
            inputs = apply_inputs(manifest, params)
        except InvalidInputError as exc:
            for d in exc.diagnostics:
                self.result.diagnostics.append(
                    error(
                        "Invalid params",
                        f"{req.location or str(uid)}: {d.detail} (field '{d.path}', checked against the inputs schema of {manifest.ref}).",
                        file=req.workload,
                        path=d.path,
                    )
                )
            return
        self._origin[uid] = req
        requires: dict[str, ResourceUid] = {}
        external: dict[str, Mapping[str, Any]] = {}
        req_map: dict[str, str] = {}
        for alias, need in manifest.requires.items():
            target = ResourceUid(need.type, need.klass or "default", need.id or "core")
            req_map[alias] = str(target)
            ancestor = self._from_ancestor(target)
            if target not in self.result.instances and ancestor is not None:
                external[alias] = ancestor.outputs[str(target)]
                self.result.external[target] = ancestor.env
                continue
            self._request(
                Request(
                    target,
                    dict(need.params or {}),
                    req.workload,
                    f"{manifest.ref} requires.{alias}",
                    requirement=True,
                ),
                depth=depth + 1,
            )
            if target in self.result.instances:
                requires[alias] = target
        if set(manifest.requires) - set(requires) - set(external):
            return  # an unresolved requirement was reported
        self.result.instances[uid] = Instance(
            uid=uid,
            component=manifest,
            inputs=inputs,
            context={
                "env": self.env,
                "env_type": self.env_type,
                "workload": req.workload,
                "uid": str(uid),
            },
            requires=requires,
            external=external,
            digest=pin.digest,
        )
        self.result.lock[str(uid)] = pin
        self.result.requires[uid] = req_map
        self.result.params[uid] = params
        if req.core:
            self.result.core.add(uid)

    def _from_ancestor(self, uid: ResourceUid) -> Ancestor | None:
        for anc in self.ancestors:
            if str(uid) in anc.outputs:
                return anc
        return None

    def _pick(self, req: Request, component: str, rng: str) -> tuple[ComponentManifest, Pin] | None:
        wanted = Range.parse(rng)
        pin = self.pins.get(str(req.uid))
        try:
            if (
                pin is not None
                and pin.component == component
                and wanted.matches(Version.parse(pin.version))
            ):
                manifest, digest = self.fetch(pin.component, pin.version)
                if pin.digest and digest != pin.digest:
                    self._diag(
                        "Pinned build changed",
                        f"{pin.ref} is pinned to {pin.digest}, but the registry now serves {digest} under that version. Published builds must not change; republish under a new version.",
                        req,
                    )
                    return None
                return manifest, pin
            if pin is not None and str(req.uid) in self.strict:
                self._diag(
                    "Pinned version not allowed",
                    f"'{req.uid}' is pinned to {pin.ref}, but this environment binds it to {component}@{rng}. Promote only to an environment whose bindings allow the pinned builds.",
                    req,
                )
                return None
            published = [Version.parse(v) for v in self.versions(component)]
        except StackyardError as exc:
            self._diag("Component unavailable", f"{component}: {exc.message}", req)
            return None
        best = wanted.best(published)
        if best is None:
            have = ", ".join(str(v) for v in published) or "none"
            self._diag(
                "No published version in range",
                f"'{req.uid}' is bound to {component}@{rng}, but the published versions are: {have}. Publish one in range or change the binding.",
                req,
            )
            return None
        try:
            manifest, digest = self.fetch(component, str(best))
        except StackyardError as exc:
            self._diag("Component unavailable", f"{component}@{best}: {exc.message}", req)
            return None
        return manifest, Pin(component, str(best), digest)

    def _unbound(self, req: Request, found: Match) -> None:
        uid = req.uid
        if found.candidates:
            tried = "; ".join(f"{c.binding.selector} ({c.reason})" for c in found.candidates)
            self._diag(
                "No binding matches",
                f"{req.location or 'The environment'} requests '{uid}', and no binding of environment '{self.env}' matches it: {tried}. Run 'stackyard explain' for details.",
                req,
            )
            return
        hint = found.suggestion(self.levels)
        mean = f" Did you mean '{hint}'?" if hint else ""
        known = ", ".join(sorted({b.type for lvl in self.levels for b in lvl.bindings}))
        self._diag(
            "Unknown resource type",
            f"{req.location or 'The environment'} requests type '{uid.type}', which no binding in environment '{self.env}' provides.{mean} Types bound here: {known or 'none'}.",
            req,
        )

    def _diag(self, summary: str, detail: str, req: Request) -> None:
        self.result.diagnostics.append(
            error(summary, detail, file=req.workload, subject=str(req.uid))
        )
