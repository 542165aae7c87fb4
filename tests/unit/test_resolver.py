"""Resolve without I/O: the library's real manifests served from memory."""

from __future__ import annotations

import pytest

from stackyard import library
from stackyard.environments.resolver import Ancestor, Request, Resolver
from stackyard.model.component import load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.platform import Binding
from stackyard.resolve.bindings import Level
from stackyard.resolve.lock import Pin

pytestmark = pytest.mark.unit

MANIFESTS = {name: load_component(library.path(name)) for name in library.names()}
LEVELS = [
    Level(
        "environment type development",
        (
            Binding("postgres", "postgres-database", "^1"),
            Binding("postgres-instance", "postgres-server", "^1"),
            Binding("redis", "redis-cache", "^1"),
        ),
    )
]


def _resolver(**kw) -> Resolver:  # type: ignore[no-untyped-def]
    return Resolver(
        env="dev",
        env_type="development",
        levels=kw.pop("levels", LEVELS),
        versions=lambda name: ["1.0.0"] if name in MANIFESTS else [],
        fetch=lambda name, version: (MANIFESTS[name], f"sha256:{name}"),
        **kw,
    )


def _req(uid: str, params: dict | None = None, workload: str = "app") -> Request:
    return Request(ResourceUid.parse(uid), params or {}, workload, f"{workload}: {uid}")


def test_requirements_resolve_to_a_shared_core_instance() -> None:
    res = _resolver().resolve(
        [_req("postgres.default#app.db"), _req("postgres.default#other.db", workload="other")]
    )
    assert not res.diagnostics
    core = ResourceUid.parse("postgres-instance.default#core")
    assert core in res.instances
    assert res.instances[ResourceUid.parse("postgres.default#app.db")].requires == {"server": core}
    assert res.lock["postgres.default#app.db"] == Pin(
        "postgres-database", "1.0.0", "sha256:postgres-database"
    )


def test_requirements_use_an_ancestor_read_only() -> None:
    parent = Ancestor(
        "dev",
        {"postgres-instance.default#core": {"host": "h", "port": 1, "admin_url": "postgresql://x"}},
    )
    res = _resolver(ancestors=[parent]).resolve([_req("postgres.default#app.db")])
    assert not res.diagnostics
    assert ResourceUid.parse("postgres-instance.default#core") not in res.instances
    assert res.external == {ResourceUid.parse("postgres-instance.default#core"): "dev"}
    inst = res.instances[ResourceUid.parse("postgres.default#app.db")]
    assert inst.external["server"]["host"] == "h"


def test_a_shared_uid_with_conflicting_params_is_a_diagnostic() -> None:
    res = _resolver().resolve(
        [
            _req("postgres.default#orders", {"connection_limit": 5}),
            _req("postgres.default#orders", {"connection_limit": 6}, "b"),
        ]
    )
    assert [d.summary for d in res.diagnostics] == ["Conflicting params for a shared resource"]


def test_release_pins_outside_the_binding_are_refused_and_others_re_resolve() -> None:
    pins = {"postgres.default#app.db": Pin("postgres-database", "2.0.0", "sha256:x")}
    strict = _resolver(pins=pins, strict=frozenset(pins)).resolve([_req("postgres.default#app.db")])
    assert [d.summary for d in strict.diagnostics] == ["Pinned version not allowed"]
    loose = _resolver(pins=pins).resolve([_req("postgres.default#app.db")])
    assert not loose.diagnostics and loose.lock["postgres.default#app.db"].version == "1.0.0"


def test_a_changed_build_under_a_pinned_version_is_refused() -> None:
    pins = {"postgres.default#app.db": Pin("postgres-database", "1.0.0", "sha256:old")}
    res = _resolver(pins=pins).resolve([_req("postgres.default#app.db")])
    assert [d.summary for d in res.diagnostics] == ["Pinned build changed"]


def test_nothing_in_range_and_the_wrong_type_are_diagnostics() -> None:
    levels = [
        Level(
            "env",
            (
                Binding("postgres", "postgres-database", "^3"),
                Binding("redis", "postgres-database", "^1"),
            ),
        )
    ]
    res = _resolver(levels=levels).resolve(
        [_req("postgres.default#a.db"), _req("redis.default#a.c")]
    )
    assert sorted(d.summary for d in res.diagnostics) == [
        "Binding serves the wrong type",
        "No published version in range",
    ]
