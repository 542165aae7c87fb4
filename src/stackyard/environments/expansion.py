"""Expand: a resolution's component instances → the provider resource graph, and every node's
config checked against its kind before the first provider call.

``resolve.graph.expand`` turns each instance's ``resources:`` template into nodes; what is
left is each resource's config as its kind will see it. Values only known after apply (a
generated password, an upstream's name) cannot be checked yet; everything else can, so a bad
Redis ``commands`` rule or an out-of-range ``connection_limit`` is a diagnostic (exit 2)
before anything is created, not a failed apply half-way through. Kinds that can check a fully
known config against their backend (``Checkable``: a PostgreSQL extension the server does not
have) are asked too; that is a read, never a write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from stackyard.diagnostics import Diagnostic, error
from stackyard.engine.kinds import Kinds, naming_lookup
from stackyard.environments.resolver import Resolution
from stackyard.errors import ProviderError, StackyardError
from stackyard.model.values import Unknown, is_known, reveal
from stackyard.providers.api import Checkable
from stackyard.resolve.graph import Graph, expand

INVALID = "Invalid resource config"


def expand_resolution(
    res: Resolution, *, env: str, kinds: Kinds, installation: str, max_resources: int
) -> tuple[Graph, list[Diagnostic]]:
    """The graph of ``res``'s instances in ``env``, and every problem found expanding it and
    checking its configs (nothing is raised). No provider is written to."""
    graph, diags = expand(
        list(res.instances.values()),
        env=env,
        naming_for=naming_lookup(kinds),
        installation=installation,
        max_resources=max_resources,
    )
    return graph, [*diags, *config_diagnostics(graph, kinds)]


def config_diagnostics(graph: Graph, kinds: Kinds) -> list[Diagnostic]:
    """Every node's config, as far as it is known before apply, checked with its kind's model.

    Fields whose value is only known after apply are left out, and so are the errors about
    them (and model-level errors, which may depend on them). Messages name fields, never
    values: any value may be a secret. No provider is called.
    """
    out: list[Diagnostic] = []
    for address, node in graph.nodes.items():
        try:
            kind = kinds.kind(node.kind)
            config = graph.resolve_config(address, Unknown)
        except (ProviderError, StackyardError):
            continue  # unknown kinds and bad references are reported by expand
        if not isinstance(config, Mapping):
            continue
        known = {str(k): reveal(v) for k, v in config.items() if is_known(v)}
        unknown = {str(k) for k in config} - set(known)
        try:
            kind.config_model.model_validate(known)
            problems: list[Diagnostic] = []
        except pydantic.ValidationError as exc:
            problems = _invalid(exc, unknown, address, node.kind, node.component)
        out.extend(problems)
        if not problems and isinstance(kind, Checkable):
            out.extend(_checked(kind, known, address, node.kind, node.component))
    return out


def _invalid(
    exc: pydantic.ValidationError, unknown: set[str], address: str, kind: str, component: str
) -> list[Diagnostic]:
    """The model's errors about known fields (errors about unknown ones wait for apply)."""
    out: list[Diagnostic] = []
    for problem in exc.errors():
        field = ".".join(str(p) for p in problem["loc"])
        top = str(problem["loc"][0]) if problem["loc"] else ""
        if (not top and unknown) or top in unknown:
            continue
        out.append(
            error(
                INVALID,
                f"'{address}' ({kind}, from {component}): {field or '(config)'}: {problem['msg']}.",
                subject=address,
            )
        )
    return out


def _checked(
    kind: Checkable, config: Mapping[str, Any], address: str, kind_name: str, component: str
) -> list[Diagnostic]:
    """A kind's read-only backend checks (``Checkable``), as diagnostics. A backend that cannot
    be asked is no diagnostic here: the plan observes it and reports it."""
    try:
        problems = kind.check(config)
    except (ProviderError, StackyardError):
        return []
    return [
        error(
            "Not available on the backend",
            f"'{address}' ({kind_name}, from {component}): {problem}.",
            subject=address,
        )
        for problem in problems
    ]
