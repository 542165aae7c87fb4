"""Inputs marked ``x-binding-only`` are set by platform bindings, never by workload params."""

from __future__ import annotations

import pytest

from stackyard import library
from stackyard.environments.resolver import Request, Resolver
from stackyard.model.component import binding_only_inputs, load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.platform import Binding
from stackyard.resolve.bindings import Level

pytestmark = pytest.mark.unit

MANIFESTS = {name: load_component(library.path(name)) for name in library.names()}
CACHE = ResourceUid.parse("redis.default#app.cache")


def _resolve(binding_params: dict, workload_params: dict):  # type: ignore[no-untyped-def]
    levels = [
        Level(
            "environment type development",
            (
                Binding("redis", "redis-cache", "^1", params=binding_params),
                Binding("redis-instance", "redis-server", "^1"),
            ),
        )
    ]
    resolver = Resolver(
        env="dev",
        env_type="development",
        levels=levels,
        versions=lambda name: ["1.0.0"] if name in MANIFESTS else [],
        fetch=lambda name, version: (MANIFESTS[name], f"sha256:{name}"),
    )
    return resolver.resolve([Request(CACHE, workload_params, "app", "app: resources.cache")])


def test_redis_cache_marks_platform_commands() -> None:
    assert binding_only_inputs(MANIFESTS["redis-cache"]) == {"platform_commands"}


def test_a_binding_may_set_a_binding_only_input() -> None:
    res = _resolve({"platform_commands": "+config|get"}, {"commands": "+@read"})
    assert not res.diagnostics
    assert res.instances[CACHE].inputs["platform_commands"] == "+config|get"
    assert res.instances[CACHE].inputs["commands"] == "+@read"


def test_a_workload_may_not_set_a_binding_only_input() -> None:
    res = _resolve({}, {"platform_commands": "+@all"})
    assert [d.summary for d in res.diagnostics] == ["Input reserved for the platform"]
    assert "platform_commands" in res.diagnostics[0].detail
    assert CACHE not in res.instances
