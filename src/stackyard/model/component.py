"""Component manifests: the ``component.yaml`` format (DESIGN §3) as typed, frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
