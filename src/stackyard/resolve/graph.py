"""Expansion: component instances → provider resource nodes, with edges from placeholders.

An *instance* is a component plus validated inputs, a context and the targets of its
``requires`` aliases. ``expand`` turns every instance's ``resources:`` template into
``Node`` values addressed ``<uid>/<name>`` (``<uid>/<name>[<key>]`` for ``for_each``), applies
``when``, draws an edge for every ``${resources...}`` and ``${requires...}`` reference, and
reports cycles as diagnostics.

Configs stay *templates* until apply: ``Graph.resolve_config`` substitutes them lazily with the
outputs known at that moment, so values produced by a create are ``Unknown`` at plan time
and real at apply time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackyard.cycles import find_cycles
from stackyard.diagnostics import Diagnostic, error
from stackyard.errors import PlaceholderError
from stackyard.model.component import ComponentManifest
from stackyard.model.context import STATIC_ROOTS, TEMPLATE_ROOTS, Context, each_scope
from stackyard.model.ids import ResourceUid
from stackyard.model.placeholders import Reference, find_references, lookup, substitute, walk
from stackyard.model.values import Secret, Unknown
from stackyard.providers.api import NamingRule
from stackyard.resolve import conditions
from stackyard.resolve.naming import instance_name, physical_name

FOR_EACH_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

# outputs_of(address) -> the outputs known for that node now, or Unknown (known after apply).
OutputsOf = Callable[[str], "Mapping[str, Any] | Unknown"]


@dataclass(frozen=True, slots=True)
class Instance:
    """A component instance: what to expand, and where its requirements point.

    ``requires`` maps an alias to the uid of another instance in the same graph;
    ``external`` maps an alias to outputs already known (for example a parent environment's
    core server, used read-only).

    ``linked`` holds the inputs a workload set to another of its resources' outputs
    (``host: ${resources.dns.host}``): input key -> that template, substituted like a
    ``requires`` reference (known at plan time when recorded, else after apply; a node using
    ``${inputs.<key>}`` depends on the nodes behind the output). ``peers`` maps each workload
    resource name the templates use to its instance's uid. Linked keys are not in ``inputs``.
    """

    uid: ResourceUid
    component: ComponentManifest
    inputs: Mapping[str, Any]
    context: Mapping[str, Any]
    requires: Mapping[str, ResourceUid] = field(default_factory=dict)
    external: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    digest: str = ""
    linked: Mapping[str, Any] = field(default_factory=dict)
    peers: Mapping[str, ResourceUid] = field(default_factory=dict)


def instance_context(
    *,
    env: str,
    env_type: str,
    workload: str,
    uid: ResourceUid,
    owner: str = "",
    region: str = "",
    installation: str = "",
) -> dict[str, str]:
    """An instance's ``context``: every key of ``model.context.Context``, ``name`` derived.

    ``installation`` (the state store's ``installation_id``) goes into ``name`` as it goes
    into physical names, so two installations sharing a server never pick the same name.
    """
    return Context(
        env=env,
        env_type=env_type,
        workload=workload,
        uid=str(uid),
        name=instance_name(env, str(uid), installation=installation),
        region=region,
        owner=owner,
    ).as_mapping()


@dataclass(frozen=True, slots=True)
class Node:
    """One provider resource to converge."""

    address: str
    kind: str
    uid: ResourceUid
    name: str
    key: str | None
    template: Any
    each: Mapping[str, Any] | None
    depends_on: tuple[str, ...]
    physical_name: str
    deletion: str
    component: str
    templated: bool = True  # False when the config holds no placeholder at all


@dataclass
class Graph:
    """The expanded resource graph of one environment's desired state."""

    env: str
    nodes: dict[str, Node]
    instances: dict[ResourceUid, Instance]
    _members: dict[tuple[ResourceUid, str], dict[str | None, str]] = field(default_factory=dict)

    def resolve_config(self, address: str, outputs_of: OutputsOf) -> Any:
        """The node's config with every placeholder substituted from what is known now."""
        node = self.nodes[address]
        if not node.templated:
            return node.template  # nothing to substitute (callers never mutate configs)
        scope = _Scope(self, node.uid, node.each, outputs_of)
        return substitute(node.template, scope.resolve, location=f"{address}.config")

    def instance_outputs(self, uid: ResourceUid, outputs_of: OutputsOf) -> dict[str, Any]:
        """An instance's component outputs (secrets wrapped in ``Secret``)."""
        return _Scope(self, uid, None, outputs_of).instance_outputs(uid)

    def topological(self) -> list[str]:
        """Addresses in dependency order (ties broken by address, so the order is stable)."""
        return topological_order({a: n.depends_on for a, n in self.nodes.items()})


def expand(
    instances: Sequence[Instance],
    *,
    env: str,
    naming_for: Callable[[str], NamingRule | None],
    installation: str = "",
    max_resources: int | None = None,
) -> tuple[Graph, list[Diagnostic]]:
    """Expand instances into a graph. ``naming_for(kind)`` is None for an unknown kind.

    ``installation`` (the state store's ``installation_id``) goes into every physical name.
    More than ``max_resources`` nodes is refused as soon as the count passes it, before any
    node is built (an empty graph and one error), so a hostile Score costs little.
    """
    diags: list[Diagnostic] = []
    graph = Graph(env=env, nodes={}, instances={i.uid: i for i in instances})
    pending: list[tuple[Instance, str, str | None, Mapping[str, Any] | None]] = []
    for inst in sorted(instances, key=lambda i: str(i.uid)):
        for missing in sorted(
            set(inst.component.requires) - set(inst.requires) - set(inst.external)
        ):
            diags.append(
                error(
                    "Unresolved requirement",
                    f"Component {inst.component.ref} for '{inst.uid}' requires '{missing}', "
                    "which nothing in the environment provides.",
                    subject=str(inst.uid),
                )
            )
        for tmpl in inst.component.resources.values():
            entries = _entries(inst, tmpl.name, tmpl.for_each, diags)
            members: dict[str | None, str] = {}
            for key, each in entries:
                if not _when(inst, tmpl.name, tmpl.when, each, diags):
                    continue
                address = f"{inst.uid}/{tmpl.name}" + (f"[{key}]" if key is not None else "")
                members[key] = address
                pending.append((inst, tmpl.name, key, each))
            graph._members[(inst.uid, tmpl.name)] = members
            if max_resources is not None and len(pending) > max_resources:
                return Graph(env=env, nodes={}, instances=graph.instances), [
                    _too_many(env, inst.uid, max_resources)
                ]
    for inst, name, key, each in pending:
        tmpl = inst.component.resources[name]
        address = graph._members[(inst.uid, name)][key]
        rule = naming_for(tmpl.kind)
        if rule is None:
            diags.append(
                error(
                    "Unknown resource kind",
                    f"Component {inst.component.ref} uses kind '{tmpl.kind}' in resource '{name}', "
                    "which no installed provider offers. Run 'stackyard providers list'.",
                    subject=address,
                )
            )
            rule = NamingRule()
        pname = physical_name(
            env,
            str(inst.uid),
            name + (f"-{key}" if key is not None else ""),
            rule,
            installation=installation,
        )
        graph.nodes[address] = Node(
            address=address,
            kind=tmpl.kind,
            uid=inst.uid,
            name=name,
            key=key,
            template=tmpl.config,
            each=each,
            depends_on=(),
            physical_name=pname,
            deletion=inst.component.deletion,
            component=inst.component.ref,
        )
    for address, node in list(graph.nodes.items()):
        try:
            deps = _dependencies(graph, node.uid, node.template, f"{address}.config")
        except PlaceholderError as exc:
            diags.append(error("Invalid reference", exc.message, subject=address))
            deps = set()
        deps.discard(address)
        graph.nodes[address] = _replace_deps(node, tuple(sorted(deps)), _templated(node.template))
    for cycle in find_cycles({a: n.depends_on for a, n in graph.nodes.items()}):
        diags.append(
            error(
                "Dependency cycle",
                "These resources depend on each other in a loop: "
                + " -> ".join([*cycle, cycle[0]])
                + ". Remove one of the references.",
                subject=cycle[0],
            )
        )
    graph.nodes = {a: graph.nodes[a] for a in sorted(graph.nodes)}
    return graph, diags


def _too_many(env: str, uid: ResourceUid, limit: int) -> Diagnostic:
    return error(
        "Too many resources",
        f"The desired state of environment '{env}' expands to more than {limit} provider "
        f"resources (the limit was passed at '{uid}'). Split the workloads, or raise the "
        "limit with 'max_resources' in config.yaml or STACKYARD_MAX_RESOURCES if this many "
        "is intended.",
        subject=str(uid),
    )


def _templated(template: Any) -> bool:
    return any("$" in text for _, text in walk(template))


def _replace_deps(node: Node, deps: tuple[str, ...], templated: bool) -> Node:
    return Node(
        address=node.address,
        kind=node.kind,
        uid=node.uid,
        name=node.name,
        key=node.key,
        template=node.template,
        each=node.each,
        depends_on=deps,
        physical_name=node.physical_name,
        deletion=node.deletion,
        component=node.component,
        templated=templated,
    )


def _static_scope(inst: Instance, each: Mapping[str, Any] | None) -> dict[str, Any]:
    inputs: Mapping[str, Any] = inst.inputs
    if inst.linked:  # another instance's outputs: not known while expanding
        inputs = {**inst.inputs, **{k: Unknown(f"{inst.uid}.inputs.{k}") for k in inst.linked}}
    scope: dict[str, Any] = {"inputs": inputs, "context": inst.context}
    if each is not None:
        scope["each"] = each
    if inst.external:
        scope["requires"] = dict(inst.external)
    return scope


def _entries(
    inst: Instance, name: str, for_each: Any, diags: list[Diagnostic]
) -> list[tuple[str | None, Mapping[str, Any] | None]]:
    if for_each is None:
        return [(None, None)]
    where = f"{inst.uid}/{name}"
    try:
        value = substitute(
            for_each,
            lambda ref: lookup(_static_scope(inst, None), ref, roots=STATIC_ROOTS),
            location=f"{where}.for_each",
        )
    except PlaceholderError as exc:
        diags.append(error("Invalid for_each", exc.message, subject=where))
        return []
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, Unknown):
        diags.append(
            error(
                "for_each is not known before apply",
                f"'{where}' iterates over a value that only exists after apply. "
                "Iterate over inputs or context instead.",
                subject=where,
            )
        )
        return []
    items: list[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            items = [(v, v) for v in value]
        else:
            items = [(str(i), v) for i, v in enumerate(value)]
    else:
        diags.append(
            error(
                "Invalid for_each",
                f"'{where}' for_each must be a list or a mapping, not {type(value).__name__}.",
                subject=where,
            )
        )
        return []
    out: list[tuple[str | None, Mapping[str, Any] | None]] = []
    seen: set[str] = set()
    for key, val in items:
        if not FOR_EACH_KEY.match(key):
            diags.append(
                error(
                    "Invalid for_each key",
                    f"'{where}' has the key '{key[:80]}'; keys must be 1-64 letters, digits, "
                    "'_', '.', ':' or '-'.",
                    subject=where,
                )
            )
            continue
        if key in seen:
            diags.append(
                error("Duplicate for_each key", f"'{where}' has '{key}' twice.", subject=where)
            )
            continue
        seen.add(key)
        out.append((key, each_scope(key, val)))
    return out


def _when(
    inst: Instance, name: str, when: Any, each: Mapping[str, Any] | None, diags: list[Diagnostic]
) -> bool:
    if when is None or when is True:
        return True
    if when is False:
        return False
    where = f"{inst.uid}/{name}"
    try:
        return conditions.evaluate(when, _static_scope(inst, each), location=f"{where}.when")
    except PlaceholderError as exc:
        diags.append(error("Invalid when condition", exc.message, subject=where))
        return False


def _dependencies(graph: Graph, uid: ResourceUid, template: Any, location: str) -> set[str]:
    deps: set[str] = set()
    for ref in find_references(template, location=location):
        deps |= _ref_targets(graph, uid, ref, set())
    return deps


def _ref_targets(
    graph: Graph, uid: ResourceUid, ref: Reference, visiting: set[tuple[str, str]]
) -> set[str]:
    """The node addresses a reference made inside instance ``uid`` depends on."""
    inst = graph.instances[uid]
    if ref.root == "resources" and len(ref.parts) >= 2:
        members = graph._members.get((uid, ref.parts[1]), {})
        if ref.parts[1] not in inst.component.resources:
            raise PlaceholderError(
                f"Unknown resource '{ref.parts[1]}' in {ref} at '{ref.location}'",
                path=ref.location,
                expression=ref.expression,
            )
        if len(ref.parts) >= 3 and ref.parts[2] in {k for k in members if k is not None}:
            return {members[ref.parts[2]]}
        return set(members.values())
    if ref.root == "requires" and len(ref.parts) >= 2:
        alias = ref.parts[1]
        target = inst.requires.get(alias)
        if target is None or target not in graph.instances:
            return set()  # external outputs, or an unresolved requirement reported elsewhere
        return _output_targets(
            graph, target, ref.parts[2] if len(ref.parts) >= 3 else None, visiting
        )
    if ref.root == "inputs" and len(ref.parts) >= 2 and ref.parts[1] in inst.linked:
        deps: set[str] = set()
        key = ref.parts[1]
        for inner in find_references(inst.linked[key], location=f"{uid}.inputs.{key}"):
            peer = inst.peers.get(inner.parts[1]) if len(inner.parts) >= 2 else None
            if inner.root != "resources" or peer is None or peer not in graph.instances:
                continue  # checked by the resolver
            out = inner.parts[2] if len(inner.parts) >= 3 else None
            deps |= _output_targets(graph, peer, out, visiting)
        return deps
    return set()


def _output_targets(
    graph: Graph, target: ResourceUid, output: str | None, visiting: set[tuple[str, str]]
) -> set[str]:
    """The node addresses behind instance ``target``'s output (every output when None)."""
    outputs = graph.instances[target].component.outputs
    keys = [output] if output is not None and output in outputs else list(outputs)
    deps: set[str] = set()
    for key in keys:
        mark = (str(target), key)
        if mark in visiting:
            continue
        visiting.add(mark)
        for inner in find_references(outputs[key].value, location=f"{target}.outputs.{key}"):
            deps |= _ref_targets(graph, target, inner, visiting)
    return deps


class _Scope:
    """Resolves references for one node (or one instance's outputs) against known outputs."""

    def __init__(
        self, graph: Graph, uid: ResourceUid, each: Mapping[str, Any] | None, outputs_of: OutputsOf
    ) -> None:
        self.graph = graph
        self.uid = uid
        self.each = each
        self.outputs_of = outputs_of

    def resolve(self, ref: Reference) -> Any:
        inst = self.graph.instances[self.uid]
        data: dict[str, Any] = {"inputs": inst.inputs, "context": inst.context}
        if ref.root == "inputs" and inst.linked:
            data["inputs"] = _LazyMap(
                [*inst.inputs, *(k for k in inst.linked if k not in inst.inputs)],
                lambda key: self._input(inst, key),
            )
        if self.each is not None:
            data["each"] = self.each
        if ref.root == "resources":
            data["resources"] = _LazyMap(
                inst.component.resources.keys(), lambda name: self._resource_value(inst, name)
            )
        elif ref.root == "requires":
            aliases = sorted({*inst.requires, *inst.external})
            data["requires"] = _LazyMap(aliases, lambda alias: self._required(inst, alias))
        return lookup(data, ref, roots=TEMPLATE_ROOTS)

    def _resource_value(self, inst: Instance, name: str) -> Any:
        members = self.graph._members.get((inst.uid, name), {})
        if None in members:
            return self.outputs_of(members[None])
        return {key: self.outputs_of(addr) for key, addr in members.items() if key is not None}

    def _input(self, inst: Instance, key: str) -> Any:
        if key not in inst.linked:
            return inst.inputs[key]
        peers = _LazyMap(
            inst.peers.keys(),
            lambda name: _Scope(
                self.graph, inst.peers[name], None, self.outputs_of
            ).instance_outputs(inst.peers[name]),
        )
        return substitute(
            inst.linked[key],
            lambda ref: lookup({"resources": peers}, ref, roots=("resources",)),
            location=f"{inst.uid}.inputs.{key}",
        )

    def _required(self, inst: Instance, alias: str) -> Any:
        if alias in inst.external:
            return inst.external[alias]
        target = inst.requires[alias]
        return _Scope(self.graph, target, None, self.outputs_of).instance_outputs(target)

    def instance_outputs(self, uid: ResourceUid) -> dict[str, Any]:
        inst = self.graph.instances[uid]
        out: dict[str, Any] = {}
        for name, tmpl in inst.component.outputs.items():
            value = substitute(tmpl.value, self.resolve, location=f"{uid}.outputs.{name}")
            if tmpl.secret and not isinstance(value, Secret):
                value = Secret(value)
            out[name] = value
        return out


class _LazyMap(Mapping[str, Any]):
    """A mapping whose values are computed on first access (keys are known up front)."""

    def __init__(self, keys: Collection[str], compute: Callable[[str], Any]) -> None:
        self._keys = keys  # not copied: resolving one node must not cost O(all resources)
        self._compute = compute
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        if key not in self._cache:
            self._cache[key] = self._compute(key)
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm with a sorted ready set: O((N + E) log N), deterministic."""
    import heapq

    indegree = {a: 0 for a in deps}
    dependents: dict[str, list[str]] = {a: [] for a in deps}
    for a, ds in deps.items():
        for d in ds:
            if d in indegree:
                indegree[a] += 1
                dependents[d].append(a)
    ready = [a for a, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        a = heapq.heappop(ready)
        order.append(a)
        for b in dependents[a]:
            indegree[b] -= 1
            if indegree[b] == 0:
                heapq.heappush(ready, b)
    return order
