"""Static lint of a component: every placeholder resolves, no cycles, outputs meet the contract.

The lint needs no environment: it checks a structure-valid ``ComponentManifest`` against
itself (its inputs, requires and resources) and against the type contracts. The rules:

- a reference names a known root (``inputs``, ``context``, ``requires``, ``resources``,
  ``each``) and a known key under it, from the table expansion uses (``model.context``);
- ``for_each``, ``when`` and ``requires.*.params`` are evaluated before anything is
  applied, so they may not reference ``resources`` (nor ``each``);
- the resources' references form no cycle;
- the outputs meet the provided type's contract: every required output is present, every
  secret output is marked ``secret: true``, and literal values have the contract's type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackyard.cycles import find_cycles
from stackyard.diagnostics import Diagnostic, DiagnosticBag
from stackyard.errors import PlaceholderError
from stackyard.model.component import ComponentManifest
from stackyard.model.component_schema import StrictValidator, did_you_mean
from stackyard.model.context import CONTEXT_KEYS, EACH_KEYS, TEMPLATE_ROOTS
from stackyard.model.contracts import (
    known_types,
    output_properties,
    required_outputs,
    secret_outputs,
)
from stackyard.model.placeholders import Reference, parse, walk


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a reference may use where it stands."""

    resources: bool = True  # False where values must be known before apply
    requires: bool = True
    each: bool = False  # True only in the config of a resource with for_each
    why: str = ""  # completes "... may not reference resources here, because <why>"


def lint(manifest: ComponentManifest) -> list[Diagnostic]:
    """Every problem the template has, as diagnostics with ``spec.*`` paths (no file)."""
    bag = DiagnosticBag()
    deps: dict[str, set[str]] = {name: set() for name in manifest.resources}
    before_apply = _Scope(resources=False, why="it is evaluated before any resource exists")
    for name, res in manifest.resources.items():
        base = f"spec.resources.{name}"
        config_scope = _Scope(each=res.for_each is not None)
        for ref in _references(res.config, f"{base}.config", bag):
            _check(ref, manifest, config_scope, bag)
            _add_edge(deps, name, ref, manifest)
        for field in ("for_each", "when"):
            for ref in _references(getattr(res, field), f"{base}.{field}", bag):
                _check(ref, manifest, before_apply, bag)
                _add_edge(deps, name, ref, manifest)
    for alias, req in manifest.requires.items():
        scope = _Scope(
            resources=False,
            requires=False,
            why="requirements are resolved before this component's resources",
        )
        for ref in _references(req.params, f"spec.requires.{alias}.params", bag):
            _check(ref, manifest, scope, bag)
    for name, out in manifest.outputs.items():
        for ref in _references(out.value, _output_path(manifest, name), bag):
            _check(ref, manifest, _Scope(), bag)
    _check_cycles(deps, bag)
    _check_contract(manifest, bag)
    return bag.items


def _references(value: Any, location: str, bag: DiagnosticBag) -> list[Reference]:
    refs: list[Reference] = []
    if value is None:
        return refs
    for loc, text in walk(value, location):
        if "$" not in text:
            continue
        try:
            refs.extend(seg for seg in parse(text, location=loc) if isinstance(seg, Reference))
        except PlaceholderError as exc:
            bag.error(
                "Malformed placeholder",
                f"{exc.message}. Placeholders look like ${{inputs.name}}; write $$ for a literal $.",
                path=loc,
            )
    return refs


def _check(ref: Reference, m: ComponentManifest, scope: _Scope, bag: DiagnosticBag) -> None:
    where, root, parts = ref.location, ref.root, ref.parts
    if root not in TEMPLATE_ROOTS:
        bag.error(
            "Unknown placeholder root",
            f"{ref} uses the root '{root}', which component templates do not have."
            f"{did_you_mean(root, TEMPLATE_ROOTS)} The roots are: {', '.join(TEMPLATE_ROOTS)}.",
            path=where,
        )
        return
    if root != "inputs" and len(parts) == 1:
        bag.error(
            "Incomplete placeholder",
            f"{ref} names no key under '{root}'; write it as ${{{root}.<key>}}.",
            path=where,
        )
        return
    if root == "inputs":
        _check_input(ref, m, bag)
    elif root == "context":
        _check_key(ref, "Unknown context key", CONTEXT_KEYS, bag, leaf=True)
    elif root == "each":
        if not scope.each:
            bag.error(
                "each outside for_each",
                f"{ref} is only defined in the config of a resource that has for_each; "
                "add for_each to this resource or reference something else.",
                path=where,
            )
            return
        _check_key(ref, "Unknown each key", EACH_KEYS, bag, leaf=parts[1] == "key")
    elif root == "requires":
        if not scope.requires:
            bag.error(
                "Reference not allowed here",
                f"{ref} cannot be used here, because {scope.why}.",
                path=where,
            )
            return
        _check_requirement(ref, m, bag)
    elif not scope.resources:
        bag.error(
            "Reference not known before apply",
            f"{ref} cannot be used here, because {scope.why}. Use inputs, context or "
            "requires instead, whose values are known before apply.",
            path=where,
        )
    elif parts[1] not in m.resources:
        bag.error(
            "Unknown resource",
            f"{ref} names the resource '{parts[1]}', which spec.resources does not define."
            f"{did_you_mean(parts[1], m.resources)} Resources: {_list(m.resources)}.",
            path=where,
        )


def _check_input(ref: Reference, m: ComponentManifest, bag: DiagnosticBag) -> None:
    if len(ref.parts) == 1:
        return
    key = ref.parts[1]
    props = m.inputs.get("properties")
    known = [str(k) for k in props] if isinstance(props, Mapping) else []
    extra = m.inputs.get("additionalProperties", False)
    if (
        key in known
        or (extra is not False and extra is not None)
        or m.inputs.get("patternProperties")
    ):
        return
    bag.error(
        "Unknown input",
        f"{ref} names the input '{key}', which spec.inputs does not declare."
        f"{did_you_mean(key, known)} Inputs: {_list(known)}. Declare it under "
        "spec.inputs.properties.",
        path=ref.location,
    )


def _check_key(
    ref: Reference, summary: str, keys: Sequence[str], bag: DiagnosticBag, *, leaf: bool
) -> None:
    root, key = ref.parts[0], ref.parts[1]
    if key not in keys:
        bag.error(
            summary,
            f"{ref} names '{root}.{key}', which does not exist.{did_you_mean(key, keys)} "
            f"'{root}' has: {', '.join(keys)}.",
            path=ref.location,
        )
    elif leaf and len(ref.parts) > 2:
        bag.error(
            summary,
            f"{ref} looks inside '{root}.{key}', which is a string and has no keys.",
            path=ref.location,
        )


def _check_requirement(ref: Reference, m: ComponentManifest, bag: DiagnosticBag) -> None:
    alias = ref.parts[1]
    req = m.requires.get(alias)
    if req is None:
        bag.error(
            "Unknown requirement",
            f"{ref} names the requirement '{alias}', which spec.requires does not define."
            f"{did_you_mean(alias, m.requires)} Requirements: {_list(m.requires)}.",
            path=ref.location,
        )
        return
    props = output_properties(req.type)
    if len(ref.parts) > 2 and props and ref.parts[2] not in props:
        key = ref.parts[2]
        bag.error(
            "Unknown contract output",
            f"{ref} reads '{key}' from '{alias}' (type '{req.type}'), whose contract has no "
            f"such output.{did_you_mean(key, props)} It has: {_list(props)}.",
            path=ref.location,
        )


def _add_edge(deps: dict[str, set[str]], name: str, ref: Reference, m: ComponentManifest) -> None:
    if ref.root == "resources" and len(ref.parts) > 1 and ref.parts[1] in m.resources:
        deps[name].add(ref.parts[1])


def _check_cycles(deps: Mapping[str, set[str]], bag: DiagnosticBag) -> None:
    for cycle in find_cycles(deps):
        shown = " -> ".join([*cycle, cycle[0]])
        bag.error(
            "Dependency cycle",
            f"The resources {shown} reference each other, so none of them can be created "
            "first. Remove one of these references.",
            path=f"spec.resources.{cycle[0]}",
        )


def _check_contract(m: ComponentManifest, bag: DiagnosticBag) -> None:
    type_ = m.provides
    props = output_properties(type_)
    if not props:
        bag.warning(
            "No contract for type",
            f"{m.name} provides '{type_}', which has no output contract, so its outputs "
            f"are not checked.{did_you_mean(type_, known_types())} Types with a contract: "
            f"{', '.join(known_types())}.",
            path="spec.provides.type",
        )
        return
    for name in required_outputs(type_):
        if name not in m.outputs:
            bag.error(
                "Missing contract output",
                f"Type '{type_}' promises its consumers the output '{name}', but spec.outputs "
                f"has no '{name}'. Add it.",
                path=f"spec.outputs.{name}",
            )
    for name in secret_outputs(type_):
        out = m.outputs.get(name)
        if out is not None and not out.secret:
            bag.error(
                "Secret output not marked secret",
                f"The '{name}' output of type '{type_}' is a secret. Write it as "
                f"'{name}: {{value: ..., secret: true}}' so it is encrypted and masked.",
                path=f"spec.outputs.{name}",
            )
    for name, out in m.outputs.items():
        if name in props:
            _check_output_type(m, name, out.value, props[name], bag)
        if not out.secret:
            _check_secret_source(m, name, out.value, bag)


def _check_output_type(
    m: ComponentManifest, name: str, value: Any, schema: Mapping[str, Any], bag: DiagnosticBag
) -> None:
    path = _output_path(m, name)
    probe = _literal_shape(value)
    if probe is _DYNAMIC:
        return
    if probe is _STRING:
        allowed = schema.get("type")
        kinds = allowed if isinstance(allowed, list) else [allowed]
        if allowed is None or "string" in kinds:
            return
        problem = "it is a string with placeholders in it"
    else:
        errors = list(StrictValidator(dict(schema)).iter_errors(value))
        if not errors:
            return
        problem = errors[0].message
    bag.error(
        "Output has the wrong type",
        f"The '{name}' output does not meet the '{m.provides}' contract: {problem}. "
        f"The contract expects: {schema.get('description', schema.get('type'))}",
        path=path,
    )


def _check_secret_source(m: ComponentManifest, name: str, value: Any, bag: DiagnosticBag) -> None:
    for ref in _references(value, _output_path(m, name), DiagnosticBag()):
        req = (
            m.requires.get(ref.parts[1]) if ref.root == "requires" and len(ref.parts) > 2 else None
        )
        if req is not None and ref.parts[2] in secret_outputs(req.type):
            bag.warning(
                "Secret value in plain output",
                f"The '{name}' output copies {ref}, a secret of type '{req.type}', but is not "
                "marked secret: true, so it would be stored and shown in clear.",
                path=ref.location,
            )


_DYNAMIC = object()  # one placeholder: its type is only known after resolution
_STRING = object()  # a string with embedded placeholders: always a string
_LITERAL = object()  # no placeholders: check it as it is


def _literal_shape(value: Any) -> object:
    if isinstance(value, str):
        try:
            segments = parse(value)
        except PlaceholderError:
            return _DYNAMIC  # already reported as malformed
        if not any(isinstance(s, Reference) for s in segments):
            return _LITERAL
        return _DYNAMIC if len(segments) == 1 else _STRING
    return _DYNAMIC if any("${" in text for _, text in walk(value)) else _LITERAL


def _output_path(m: ComponentManifest, name: str) -> str:
    spec = m.raw.get("spec") if isinstance(m.raw, Mapping) else None
    outputs = spec.get("outputs") if isinstance(spec, Mapping) else None
    raw = outputs.get(name) if isinstance(outputs, Mapping) else None
    base = f"spec.outputs.{name}"
    return f"{base}.value" if isinstance(raw, Mapping) and "value" in raw else base


def _list(names: Any) -> str:
    return ", ".join(sorted(str(n) for n in names)) or "(none)"
