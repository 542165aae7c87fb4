"""Component manifests: the ``component.yaml`` format (DESIGN §3) as typed, frozen values."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

import referencing.exceptions

from stackyard.diagnostics import Diagnostic, Severity, error, has_errors
from stackyard.errors import InvalidInputError
from stackyard.model.component_schema import (
    StrictValidator,
    check_structure,
    schema_error_diagnostics,
)
from stackyard.model.source import load_yaml

API_VERSION = "stackyard.dev/v1"
LIFECYCLES = ("experimental", "production", "deprecated")
DELETION_POLICIES = ("delete", "retain", "protect")


@dataclass(frozen=True, slots=True)
class ResourceTemplate:
    """One entry of ``spec.resources``: a provider resource, templated with placeholders."""

    name: str
    kind: str
    config: Mapping[str, Any]
    for_each: Any = None  # None, a list/mapping, or a placeholder string
    when: Any = None  # None, a bool, a placeholder string, or a CEL expression


@dataclass(frozen=True, slots=True)
class OutputTemplate:
    """One entry of ``spec.outputs``: plain, or ``{value, secret: true}``."""

    name: str
    value: Any
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Requirement:
    """One entry of ``spec.requires``: another resource type resolved in the environment."""

    alias: str
    type: str
    klass: str | None = None
    id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cost:
    """A component's declared monthly cost (decimal, never float)."""

    monthly: Decimal
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class ComponentManifest:
    """A parsed, schema-valid ``component.yaml``."""

    name: str
    version: str
    owner: str
    description: str
    provides: str
    lifecycle: str = "experimental"
    labels: Mapping[str, str] = field(default_factory=dict)
    sla: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    requires: Mapping[str, Requirement] = field(default_factory=dict)
    resources: Mapping[str, ResourceTemplate] = field(default_factory=dict)
    outputs: Mapping[str, OutputTemplate] = field(default_factory=dict)
    deletion: str = "delete"
    cost: Cost | None = None
    compliance: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


MANIFEST_FILE = "component.yaml"


def manifest_path(path: Path | str) -> Path:
    """The ``component.yaml`` of a component directory, or ``path`` itself when it is a file."""
    p = Path(path)
    return p / MANIFEST_FILE if p.is_dir() else p


def validate_component(
    path: Path | str,
) -> tuple[ComponentManifest | None, list[Diagnostic]]:
    """Check a component (its directory or its ``component.yaml``): structure, then lint.

    Returns the manifest whenever its structure is valid, even if lint found errors, so
    callers can still show what it is; check ``has_errors`` on the diagnostics. The
    manifest is ``None`` when the file cannot be read or its structure is invalid.
    """
    from stackyard.model.lint import lint  # lint imports this module

    file = manifest_path(path)
    name = os.fspath(file)
    if Path(path).is_dir() and not file.exists():
        return None, [
            error(
                "Component manifest not found",
                f"'{os.fspath(path)}' has no {MANIFEST_FILE}. A component directory holds "
                f"{MANIFEST_FILE}, README.md and tests/.",
                file=name,
            )
        ]
    try:
        data = load_yaml(file, what="component manifest")
    except InvalidInputError as exc:
        return None, [_explain_yaml(d) for d in exc.diagnostics]
    diags = check_structure(data, file=name)
    if has_errors(diags):
        return None, diags
    manifest = manifest_from_data(data)
    diags.extend(d.with_file(name) for d in lint(manifest))
    return manifest, diags


def load_component(path: Path | str) -> ComponentManifest:
    """Load and check a component, raising ``InvalidInputError`` with every diagnostic."""
    manifest, diags = validate_component(path)
    if manifest is None or has_errors(diags):
        count = sum(1 for d in diags if d.severity is Severity.ERROR)
        raise InvalidInputError(
            f"{os.fspath(manifest_path(path))}: invalid component ({count} error(s))",
            diags,
            hint="Run 'stackyard component validate' on it and fix each error.",
        )
    return manifest


def manifest_from_data(data: Mapping[str, Any]) -> ComponentManifest:
    """Build the typed manifest from a structure-valid ``component.yaml`` mapping."""
    meta: Mapping[str, Any] = data["metadata"]
    spec: Mapping[str, Any] = data["spec"]
    cost = spec.get("cost")
    return ComponentManifest(
        name=meta["name"],
        version=meta["version"],
        owner=meta["owner"],
        description=meta.get("description", ""),
        provides=spec["provides"]["type"],
        lifecycle=meta.get("lifecycle", "experimental"),
        labels=dict(meta.get("labels") or {}),
        sla=dict(spec.get("sla") or {}),
        inputs=dict(spec.get("inputs") or {"type": "object"}),
        requires={
            alias: Requirement(
                alias=alias,
                type=req["type"],
                klass=req.get("class"),
                id=req.get("id"),
                params=dict(req.get("params") or {}),
            )
            for alias, req in (spec.get("requires") or {}).items()
        },
        resources={
            name: ResourceTemplate(
                name=name,
                kind=res["kind"],
                config=dict(res.get("config") or {}),
                for_each=res.get("for_each"),
                when=res.get("when"),
            )
            for name, res in (spec.get("resources") or {}).items()
        },
        outputs={name: _output(name, out) for name, out in (spec.get("outputs") or {}).items()},
        deletion=spec.get("deletion", "delete"),
        cost=_cost(cost) if cost is not None else None,
        compliance=tuple(spec.get("compliance") or ()),
        raw=data,
    )


def apply_inputs(manifest: ComponentManifest, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``params`` against ``spec.inputs`` and return them with defaults filled in.

    Defaults are filled first (recursively through nested object properties and list
    items), then the result is validated, so a required input with a default is satisfied.
    Raises ``InvalidInputError`` whose diagnostics name each field (``params.x[0]``).
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        diag = error(
            "Wrong type",
            f"The params of {manifest.ref} must be a mapping, not {type(params).__name__}.",
            path="params",
            subject=manifest.ref,
        )
        raise InvalidInputError(f"Invalid params for {manifest.ref}", [diag])
    filled = fill_defaults(manifest.inputs, copy.deepcopy(dict(params)))
    try:
        diags = schema_error_diagnostics(StrictValidator(manifest.inputs), filled, prefix="params")
    except (RecursionError, referencing.exceptions.Unresolvable) as exc:
        diags = [
            error(
                "Invalid inputs schema",
                f"The inputs schema of {manifest.ref} cannot be used: {type(exc).__name__}.",
                path="spec.inputs",
            )
        ]
    if diags:
        diags = [replace(d, subject=manifest.ref) for d in diags]
        raise InvalidInputError(
            f"Invalid params for {manifest.ref}",
            diags,
            hint=f"Run 'stackyard component show {manifest.ref}' to see its inputs.",
        )
    return cast(dict[str, Any], filled)


#: An inputs property flagged so is set by platform bindings only, never by a workload's params.
BINDING_ONLY = "x-binding-only"


def binding_only_inputs(manifest: ComponentManifest) -> frozenset[str]:
    """The names of the inputs a workload's params may not set (``x-binding-only: true``)."""
    props = manifest.inputs.get("properties")
    if not isinstance(props, Mapping):
        return frozenset()
    return frozenset(
        name for name, spec in props.items() if isinstance(spec, Mapping) and spec.get(BINDING_ONLY)
    )


def fill_defaults(schema: Any, value: Any) -> Any:
    """Fill JSON Schema ``default``s into ``value`` in place (and return it).

    A missing property with a ``default`` gets a copy of it; then present properties and
    list items are filled from their own subschemas. Nothing else is inferred.
    """
    if not isinstance(schema, Mapping):
        return value
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, Mapping):
        for key, sub in props.items():
            if key not in value and isinstance(sub, Mapping) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = fill_defaults(sub, value[key])
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, Mapping):
        for i, item in enumerate(value):
            value[i] = fill_defaults(items, item)
    return value


def _output(name: str, raw: Any) -> OutputTemplate:
    if isinstance(raw, Mapping) and "value" in raw:
        return OutputTemplate(name=name, value=raw["value"], secret=bool(raw.get("secret")))
    return OutputTemplate(name=name, value=raw)


def _cost(raw: Mapping[str, Any]) -> Cost:
    # ``check_structure`` refuses a bad cost first; a manifest read from a registry that was
    # not published by stackyard may still carry one, and it is that publisher's input.
    monthly: Decimal | None
    try:
        monthly = Decimal(str(raw.get("monthly")))
    except InvalidOperation:
        monthly = None
    if monthly is None or not monthly.is_finite() or monthly < 0:
        detail = f"The cost {raw.get('monthly')!r} is not a finite, non-negative decimal."
        raise InvalidInputError(
            "Invalid component cost", [error("Invalid cost", detail, path="spec.cost.monthly")]
        )
    return Cost(monthly=monthly, currency=str(raw.get("currency", "USD")))


def _explain_yaml(diag: Diagnostic) -> Diagnostic:
    # The commonest YAML slip in component files: an unquoted ${...} inside a {flow: map}.
    if diag.summary == "Malformed YAML" and "got '{'" in diag.detail:
        return replace(
            diag,
            detail=diag.detail + " Inside a {flow: mapping} quote placeholders: "
            '{server: "${requires.server.admin_url}"}.',
        )
    return diag
