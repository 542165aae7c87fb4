"""Resolve: resource requests of an environment → component instances and the component lock.

Each request's uid is matched to a binding (``resolve.bindings``), the binding's range (or a
pin from a release or from what is already deployed) selects an exact published build, the
params are checked against the component's inputs schema, and every ``requires`` alias is
resolved recursively: to a core or shared instance of this environment, to an instance of an
ancestor (used read-only, as ``external`` outputs), or to a new shared instance. Problems are
collected as diagnostics; nothing is applied here.

``resolve_target`` is the resolve step of a converge: the environment's core and every live
workload, each instance already deployed pinned to its build, and the changed workloads
checked against what resolved (runtime features, placeholders, core infrastructure).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stackyard.components.catalog import (
    SKIPPED,
    none_usable_detail,
    require_attestation,
    skipped_detail,
)
from stackyard.cycles import find_cycles
from stackyard.diagnostics import Diagnostic, Severity, error, warning
from stackyard.environments.facts import unreserved
from stackyard.environments.target import Target, chain, pins_of
from stackyard.environments.workloads import placeholder_diagnostics
from stackyard.errors import InvalidInputError, PlaceholderError, StackyardError
from stackyard.model.component import (
    ComponentManifest,
    apply_inputs,
    binding_only_inputs,
    fill_defaults,
)
from stackyard.model.ids import ResourceUid
from stackyard.model.placeholders import Reference, find_references
from stackyard.model.versions import Range, Version
from stackyard.resolve.bindings import Level, Match, match
from stackyard.resolve.facts import Facts, marked, spread
from stackyard.resolve.graph import Instance, instance_context
from stackyard.resolve.lock import Pin
from stackyard.runtime.capabilities import runtime_diagnostics

if TYPE_CHECKING:
    from stackyard.environments.catalog import Catalog
    from stackyard.environments.platform import Platform
    from stackyard.model.environment import Environment
    from stackyard.model.workload import Workload
    from stackyard.state.records import Records

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
    file: str = ""  # the Score file of a workload's request, which diagnostics name
    path: str = ""  # the request's dotted path in that file (``resources.db``)
    #: The workload's resources (name -> uid): what ``${resources.<name>.<output>}`` in
    #: params may name (another resource's outputs, see ``_links``).
    siblings: Mapping[str, ResourceUid] = field(default_factory=dict)


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
        owner: str = "",
        region: str = "",
        installation: str = "",
        facts: Facts | None = None,
    ) -> None:
        self.env, self.env_type, self.levels = env, env_type, levels
        # What the environment itself answers (``resolve.facts``): host ports,
        # other workloads' service ports, variables.
        self.facts = facts if facts is not None else Facts()
        # The rest of ${context.*} (model.context): the same for every instance here.
        self.owner, self.region, self.installation = owner, region, installation
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
        self._check_links()
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
            else set(req.params) & (binding_only_inputs(manifest) | set(marked(manifest)))
        )
        for key in sorted(reserved):
            self._diag(
                "Input reserved for the platform",
                f"{req.location or str(uid)}: params.{key} of {manifest.ref} can only be set by a platform binding, not by a workload.",
                req,
            )
        if reserved:
            return
        linked, peers = self._links(req)
        if linked is None:
            return
        params = {**copy.deepcopy(dict(binding.params)), **copy.deepcopy(dict(req.params))}
        try:
            inputs = apply_inputs(manifest, params)
        except InvalidInputError as exc:
            # a linked input is checked once known: by its kind's config model (plan, apply)
            problems = [d for d in exc.diagnostics if _param_key(d.path) not in linked]
            if not problems:
                inputs = fill_defaults(manifest.inputs, copy.deepcopy(params))
            for d in problems:
                self.result.diagnostics.append(
                    error(
                        "Invalid params",
                        f"{req.location or str(uid)}: {d.detail} (field '{d.path}', checked against the inputs schema of {manifest.ref}).",
                        file=req.file,
                        path=f"{req.path}.{d.path}" if req.path else d.path,
                    )
                )
            if problems:
                return
        inputs = {k: v for k, v in inputs.items() if k not in linked}
        inputs, problems = self.facts.fill(
            manifest, inputs, workload=req.workload, where=req.location or str(uid)
        )
        for problem in problems:
            self.result.diagnostics.append(
                dataclasses.replace(problem, file=req.file, path=req.path, subject=str(uid))
            )
        if problems:
            return
        manifest = spread(manifest, inputs)
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
            context=instance_context(
                env=self.env,
                env_type=self.env_type,
                workload=req.workload,
                uid=uid,
                owner=self.owner,
                region=self.region,
                installation=self.installation,
            ),
            requires=requires,
            external=external,
            digest=pin.digest,
            linked=linked,
            peers=peers,
        )
        self.result.lock[str(uid)] = pin
        self.result.requires[uid] = req_map
        self.result.params[uid] = params
        if req.core:
            self.result.core.add(uid)

    def _links(self, req: Request) -> tuple[dict[str, Any] | None, dict[str, ResourceUid]]:
        """The params of a workload's request that name another of its resources' outputs
        (``host: ${resources.dns.host}``): param key -> its value (a template), and the
        resources named (name -> uid). None (and diagnostics) when a reference is not one."""
        linked: dict[str, Any] = {}
        peers: dict[str, ResourceUid] = {}
        if not req.siblings:
            return linked, peers
        ok = True
        for key, value in req.params.items():
            refs = _references(value)
            if not any(r.root == "resources" for r in refs):
                continue  # no reference: passed as it is
            for ref in refs:
                problem = self._link_problem(req, ref)
                if problem:
                    self._param_diag("Invalid reference in params", problem, req, str(key))
                    ok = False
                else:
                    peers[ref.parts[1]] = req.siblings[ref.parts[1]]
            linked[str(key)] = copy.deepcopy(value)
        return (linked if ok else None), peers

    def _link_problem(self, req: Request, ref: Reference) -> str:
        names = ", ".join(sorted(req.siblings))
        if ref.root != "resources":
            return (
                f"{ref} cannot be used in a resource's params: only "
                "${resources.<name>.<output>} (another resource of this workload) can."
            )
        if len(ref.parts) < 3:
            return f"{ref} names no output: write ${{resources.<name>.<output>}}."
        if ref.parts[1] not in req.siblings:
            return (
                f"{ref} names the resource '{ref.parts[1]}', which this workload does not "
                f"declare. Its resources are: {names}."
            )
        return ""

    def _check_links(self) -> None:
        """Each linked input's outputs exist and are not secret; no loop of links."""
        deps: dict[str, set[str]] = {}
        for uid, inst in list(self.result.instances.items()):
            if not inst.linked:
                continue
            req = self._origin[uid]
            deps[str(uid)] = {str(p) for p in inst.peers.values()}
            for key, value in inst.linked.items():
                for ref in _references(value):
                    target = self.result.instances.get(inst.peers[ref.parts[1]])
                    if target is None:
                        continue  # it did not resolve: reported
                    out = target.component.outputs.get(ref.parts[2])
                    if out is None:
                        have = ", ".join(sorted(target.component.outputs)) or "none"
                        self._param_diag(
                            "Unknown output",
                            f"{ref} names output '{ref.parts[2]}' of resource '{ref.parts[1]}', but {target.component.ref} has no such output. Its outputs are: {have}.",
                            req,
                            key,
                        )
                    elif out.secret:
                        self._param_diag(
                            "Secret output in params",
                            f"{ref} names the secret output '{ref.parts[2]}' of resource '{ref.parts[1]}'. A resource's params are shown in plans: pass secrets to containers (variables, files) instead.",
                            req,
                            key,
                        )
        by_text = {str(u): u for u in self.result.instances}
        for cycle in find_cycles(deps):
            members = [by_text[u] for u in cycle]
            first, nxt = self.result.instances[members[0]], members[1 % len(members)]
            key = next(
                (
                    k
                    for k, v in first.linked.items()
                    for r in _references(v)
                    if first.peers[r.parts[1]] == nxt
                ),
                next(iter(first.linked)),
            )
            loop = " -> ".join(self._origin[m].path or str(m) for m in [*members, members[0]])
            self._param_diag(
                "Resources reference each other in a loop",
                f"The params of these resources name each other's outputs in a loop: {loop}. Remove one of the references.",
                self._origin[members[0]],
                key,
            )
            for m in members:  # nothing can resolve a loop's inputs: drop the links
                self.result.instances[m] = dataclasses.replace(
                    self.result.instances[m], linked={}, peers={}
                )

    def _param_diag(self, summary: str, detail: str, req: Request, key: str) -> None:
        where = f"{req.path}.params.{key}" if req.path else f"params.{key}"
        self.result.diagnostics.append(
            error(
                summary,
                f"{req.location or str(req.uid)}: {detail}",
                file=req.file,
                path=where,
                subject=str(req.uid),
            )
        )

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
        in_range = sorted((v for v in published if wanted.matches(v)), reverse=True)
        if not in_range:
            have = ", ".join(str(v) for v in published) or "none"
            self._diag(
                "No published version in range",
                f"'{req.uid}' is bound to {component}@{rng}, but the published versions are: {have}. Publish one in range or change the binding.",
                req,
            )
            return None
        # The highest build in range that is ours, tagged truly and (where the type requires
        # it) attested; each newer one passed over is a warning (see components.catalog).
        skipped: list[StackyardError] = []
        for best in in_range:
            try:
                manifest, digest = self.fetch(component, str(best))
            except SKIPPED as exc:
                skipped.append(exc)
                continue
            except StackyardError as exc:
                self._diag("Component unavailable", f"{component}@{best}: {exc.message}", req)
                return None
            for why in skipped:
                self.result.diagnostics.append(
                    warning(
                        "Newer build skipped",
                        skipped_detail(f"{component}@{best}", why),
                        file=req.file,
                        path=req.path,
                        subject=str(req.uid),
                    )
                )
            return manifest, Pin(component, str(best), digest)
        self._diag(
            "No usable build in range",
            none_usable_detail(component, rng, self.env_type, skipped),
            req,
        )
        return None

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
            error(summary, detail, file=req.file, path=req.path, subject=str(req.uid))
        )


# -- the resolve step of a converge ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sources:
    """What resolving in an environment reads: the applied ``platform`` (bindings, core), the
    ``records`` (ancestors' instances, the builds already deployed), the ``catalog``
    (published builds) and the state store's ``installation`` id (it goes into names)."""

    platform: Platform
    records: Records
    catalog: Catalog
    installation: str


def levels(platform: Platform, lineage: Sequence[Environment]) -> list[Level]:
    """Binding levels for an environment chain: each environment nearest first, then the types."""
    out = [Level(f"environment {e.name}", tuple(e.bindings)) for e in lineage]
    seen: set[str] = set()
    for e in lineage:
        if e.type in seen:
            continue
        seen.add(e.type)
        out.append(Level(f"environment type {e.type}", platform.type(e.type).bindings))
    return out


def resolver_for(
    env: Environment,
    sources: Sources,
    *,
    pins: Mapping[str, Pin] | None = None,
    strict: frozenset[str] = frozenset(),
    facts: Facts | None = None,
) -> Resolver:
    """A resolver for ``env``: its bindings, its ancestors' instances, pins and ``facts``
    (what the environment answers itself; none reserved when not given)."""
    platform, records, catalog = sources.platform, sources.records, sources.catalog
    lineage = chain(records, env)
    ancestors = []
    for anc in lineage[1:]:
        outs = {uid: rec.outputs for uid, rec in records.instances(anc.name).items()}
        ancestors.append(Ancestor(anc.name, outs))
    fetch: Fetch = catalog.manifest
    if platform.type(env.type).attestation == "required":  # the default; a type may opt out
        fetch = require_attestation(fetch, registry=catalog.registry, keyring=catalog.keyring)
    return Resolver(
        env=env.name,
        env_type=env.type,
        levels=levels(platform, lineage),
        versions=catalog.versions,
        fetch=fetch,
        ancestors=ancestors,
        pins=pins,
        strict=strict,
        owner=env.owner or "",
        installation=sources.installation,
        facts=facts if facts is not None else unreserved((), lineage),
    )


def _references(value: Any) -> list[Reference]:
    """The references in a param's value; none when it does not parse (passed as it is)."""
    try:
        return find_references(value)
    except PlaceholderError:
        return []


def _param_key(path: str) -> str:
    """``params.host[0].x`` -> ``host`` (the top-level param a diagnostic is about)."""
    rest = path.removeprefix("params.")
    return rest.split(".", 1)[0].split("[", 1)[0]


def core_requests(platform: Platform, env: Environment) -> list[Request]:
    """The core of ``env``: its type's core list when it has no parent (a child uses its parent's)."""
    if env.parent:
        return []
    etype = platform.type(env.type)
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
    siblings = {r.name: r.uid for r in workload.resources.values()}
    return [
        Request(
            r.uid,
            dict(r.params),
            workload.name,
            f"{workload.name}: resources.{r.name}",
            file=workload.file,
            path=f"resources.{r.name}",
            siblings=siblings,
        )
        for r in workload.resources.values()
    ]


def resolve_workloads(
    env: Environment, workloads: Sequence[Workload], sources: Sources
) -> tuple[list[Request], Resolution]:
    """``workloads`` resolved afresh in ``env`` (nothing pinned) with the environment's core:
    the requests made, and what they resolved to (``explain``, ``release create``)."""
    requests = core_requests(sources.platform, env)
    for w in workloads:
        requests.extend(workload_requests(w))
    facts = unreserved(workloads, chain(sources.records, env))
    return requests, resolver_for(env, sources, facts=facts).resolve(requests)


def resolve_target(
    target: Target,
    sources: Sources,
    *,
    core_allowed: Callable[[], bool],
    facts: Facts | None = None,
) -> tuple[Resolution, list[Diagnostic]]:
    """Resolve ``target``: its core and every workload, each instance already deployed pinned
    to its build (unless a changed workload requests it), the release's pins on top.

    Returns the resolution and every problem found (nothing is raised): the resolver's, and
    the changed workloads' checks against what resolved. ``core_allowed`` says whether the
    actor may deploy a workload that names core infrastructure (asked only when one does).
    ``facts`` are the environment's reserved host ports and variables
    (``environments.facts.reserve``); workloads waiting for each other are an error.
    """
    env, records = target.env, sources.records
    changed_uids = {
        str(r.uid) for name in target.changed for r in target.workloads[name].resources.values()
    }
    current = pins_of(records.instances(env.name))
    pins = {uid: pin for uid, pin in current.items() if uid not in changed_uids}
    pins.update(target.release_pins)
    strict = frozenset(target.release_pins) if target.strict_pins else frozenset()
    resolver = resolver_for(env, sources, pins=pins, strict=strict, facts=facts)
    requests = core_requests(sources.platform, env)
    for name in sorted(target.workloads):
        requests.extend(workload_requests(target.workloads[name]))
    res = resolver.resolve(requests)
    diags = [*res.diagnostics, *resolver.facts.cycles()]
    env_type = sources.platform.types.get(env.type)
    runtime = env_type.runtime if env_type is not None else "local"
    for name in sorted(target.changed):
        wl = target.workloads[name]
        diags.extend(runtime_diagnostics(wl, runtime))
        comps = {
            r.name: res.instances[r.uid].component
            for r in wl.resources.values()
            if r.uid in res.instances
        }
        diags.extend(placeholder_diagnostics(wl, comps))
    diags.extend(_core_requests_by_workloads(records, target, res, core_allowed))
    return res, diags


def _core_requests_by_workloads(
    records: Records, target: Target, res: Resolution, core_allowed: Callable[[], bool]
) -> list[Diagnostic]:
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
                rec = records.instances(owner).get(str(r.uid))
                core = rec is not None and rec.core
            else:
                core = r.uid in res.core
            if not core:
                continue
            if allowed is None:
                allowed = core_allowed()
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
