"""Test-only: the graph of one component instance, expanded from resource templates given inline.

For engine and plan tests that need a real expanded ``Graph`` but no catalog, registry or
platform: component ``thing`` provides ``thing``, and its resources are ``{name: (kind,
config)}``.
"""

from __future__ import annotations

from typing import Any

from stackyard.model.component import ComponentManifest, ResourceTemplate
from stackyard.model.ids import ResourceUid
from stackyard.providers.api import NamingRule
from stackyard.resolve.graph import Graph, Instance, expand

UID = ResourceUid("thing", "default", "app")
#: Names of 128 lower-case letters and digits: long enough that no test meets the limit.
NAMING = NamingRule(max_length=128, allowed="a-z0-9", separator="-")


def one_component_graph(
    resources: dict[str, tuple[str, dict[str, Any]]],
    *,
    env: str,
    uid: ResourceUid = UID,
    naming: NamingRule = NAMING,
) -> Graph:
    """The expanded graph of one instance ``uid`` of ``thing`` in ``env`` (no diagnostics)."""
    comp = ComponentManifest(
        name="thing",
        version="1.0.0",
        owner="t",
        description="d",
        provides="thing",
        resources={n: ResourceTemplate(n, kind, cfg) for n, (kind, cfg) in resources.items()},
    )
    graph, diags = expand(
        [Instance(uid, comp, {}, {"env": env})], env=env, naming_for=lambda _k: naming
    )
    assert not diags, diags
    return graph
