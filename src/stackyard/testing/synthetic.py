"""Synthetic graphs of ``noop.resource`` nodes, shared by the reliability tests and ``bench/``."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from stackyard.model.component import ComponentManifest, ResourceTemplate
from stackyard.model.ids import ResourceUid
from stackyard.providers.api import NamingRule
from stackyard.resolve.graph import Graph, Instance, expand

UID = ResourceUid("synthetic", "default", "bench")


def dag(n: int, *, edges_per_node: int = 0, seed: int = 0) -> dict[str, list[str]]:
    """A random DAG over ``r0..r{n-1}``: each node depends on up to ``edges_per_node`` earlier ones."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test graphs, not secrets
    deps: dict[str, list[str]] = {}
    for i in range(n):
        k = min(i, edges_per_node)
        deps[f"r{i}"] = sorted({f"r{j}" for j in rng.sample(range(i), k)}) if k else []
    return deps


def component(
    deps: Mapping[str, Sequence[str]],
    *,
    ledger: str,
    latency_ms: float = 0.0,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ComponentManifest:
    """A component with one ``noop.resource`` per node; each dependency is a ``${resources...}``."""
    resources: dict[str, ResourceTemplate] = {}
    for name, ds in deps.items():
        config: dict[str, Any] = {"ledger": ledger, "latency_ms": latency_ms}
        config.update((configs or {}).get(name, {}))
        for d in ds:
            config[f"dep_{d}"] = "${resources." + d + ".id}"
        resources[name] = ResourceTemplate(name, "noop.resource", config)
    return ComponentManifest(
        name="synthetic",
        version="1.0.0",
        owner="bench",
        description="A synthetic graph of noop resources.",
        provides="synthetic",
        resources=resources,
    )


def graph(env: str, comp: ComponentManifest, *, naming: NamingRule | None = None) -> Graph:
    """Expand the synthetic component in ``env``; raises if expansion reports anything."""
    rule = naming or NamingRule(max_length=128, allowed="a-z0-9", separator="-")
    g, diags = expand(
        [Instance(UID, comp, {}, {"env": env, "name": env})], env=env, naming_for=lambda _k: rule
    )
    if diags:
        raise ValueError("; ".join(d.detail or d.summary for d in diags))
    return g
