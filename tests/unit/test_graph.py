from __future__ import annotations

from typing import Any

import pytest

from stackyard.model.component import (
    ComponentManifest,
    OutputTemplate,
    Requirement,
    ResourceTemplate,
)
from stackyard.model.ids import ResourceUid
from stackyard.model.values import Secret, Unknown
from stackyard.providers.api import NamingRule
from stackyard.resolve.graph import Instance, expand, find_cycles, topological_order

pytestmark = pytest.mark.unit

RULE = NamingRule(63, "a-z0-9", "_")


def component(
    resources: dict[str, dict[str, Any]], outputs: dict[str, Any] | None = None, **kw: Any
) -> ComponentManifest:
    return ComponentManifest(
        name=kw.pop("name", "thing"),
        version="1.0.0",
        owner="team",
        description="d",
        provides=kw.pop("provides", "thing"),
        resources={
            n: ResourceTemplate(n, r["kind"], r.get("config", {}), r.get("for_each"), r.get("when"))
            for n, r in resources.items()
        },
        outputs={
            k: OutputTemplate(k, v, secret=k == "password") for k, v in (outputs or {}).items()
        },
        **kw,
    )


def inst(comp: ComponentManifest, uid: str = "thing.default#app.x", **kw: Any) -> Instance:
    return Instance(
        uid=ResourceUid.parse(uid),
        component=comp,
        inputs=kw.pop("inputs", {}),
        context={"env": "dev", "name": "dev_app_x"},
        **kw,
    )


def test_addresses_edges_and_for_each() -> None:
    comp = component(
        {
            "password": {"kind": "noop.resource", "config": {"length": 8}},
            "role": {"kind": "noop.resource", "config": {"pw": "${resources.password.value}"}},
            "ext": {
                "kind": "noop.resource",
                "for_each": "${inputs.exts}",
                "config": {"name": "${each.value}", "role": "${resources.role.id}"},
            },
        }
    )
    graph, diags = expand(
        [inst(comp, inputs={"exts": ["pgcrypto", "citext"]})], env="dev", naming_for=lambda k: RULE
    )
    assert not diags
    base = "thing.default#app.x"
    assert set(graph.nodes) == {
        f"{base}/password",
        f"{base}/role",
        f"{base}/ext[pgcrypto]",
        f"{base}/ext[citext]",
    }
    assert graph.nodes[f"{base}/role"].depends_on == (f"{base}/password",)
    assert graph.nodes[f"{base}/ext[citext]"].depends_on == (f"{base}/role",)
    order = graph.topological()
    assert (
        order.index(f"{base}/password")
        < order.index(f"{base}/role")
        < order.index(f"{base}/ext[citext]")
    )


def test_resolve_config_unknown_then_known_and_secret_propagates() -> None:
    comp = component(
        {
            "password": {"kind": "noop.resource"},
            "role": {
                "kind": "noop.resource",
                "config": {"url": "pg://u:${resources.password.value}@h"},
            },
        }
    )
    graph, _ = expand([inst(comp)], env="dev", naming_for=lambda k: RULE)
    role = "thing.default#app.x/role"
    unknown = graph.resolve_config(role, lambda a: Unknown(a))
    assert isinstance(unknown["url"], Unknown)
    known = graph.resolve_config(role, lambda a: {"value": Secret("s3cret")})
    assert isinstance(known["url"], Secret) and known["url"].value == "pg://u:s3cret@h"


def test_requires_edges_cross_instances() -> None:
    server = component(
        {"server": {"kind": "noop.resource"}},
        {"admin_url": "${resources.server.url}"},
        name="server",
        provides="pg-instance",
    )
    db = component(
        {"db": {"kind": "noop.resource", "config": {"server": "${requires.server.admin_url}"}}},
        requires={"server": Requirement("server", "pg-instance")},
    )
    s_uid = ResourceUid.parse("pg-instance.default#core")
    graph, diags = expand(
        [inst(server, str(s_uid)), inst(db, requires={"server": s_uid})],
        env="dev",
        naming_for=lambda k: RULE,
    )
    assert not diags
    assert graph.nodes["thing.default#app.x/db"].depends_on == ("pg-instance.default#core/server",)
    cfg = graph.resolve_config("thing.default#app.x/db", lambda a: {"url": "pg://core"})
    assert cfg == {"server": "pg://core"}


def test_when_false_and_cel_condition() -> None:
    comp = component(
        {
            "a": {"kind": "noop.resource", "when": "${inputs.enabled}"},
            "b": {"kind": "noop.resource", "when": "size(inputs.items) > 1"},
        }
    )
    graph, diags = expand(
        [inst(comp, inputs={"enabled": False, "items": [1, 2]})],
        env="dev",
        naming_for=lambda k: RULE,
    )
    assert not diags
    assert set(graph.nodes) == {"thing.default#app.x/b"}


@pytest.mark.parametrize(
    ("resources", "summary"),
    [
        pytest.param(
            {
                "a": {"kind": "noop.resource", "config": {"x": "${resources.b.id}"}},
                "b": {"kind": "noop.resource", "config": {"x": "${resources.a.id}"}},
            },
            "Dependency cycle",
            id="cycle",
        ),
        pytest.param({"a": {"kind": "nope.kind"}}, "Unknown resource kind", id="unknown-kind"),
        pytest.param(
            {"a": {"kind": "noop.resource", "for_each": "${inputs.n}"}},
            "Invalid for_each",
            id="for-each-scalar",
        ),
        pytest.param(
            {"a": {"kind": "noop.resource", "for_each": ["a b"]}},
            "Invalid for_each key",
            id="bad-key",
        ),
        pytest.param(
            {"a": {"kind": "noop.resource", "when": "inputs.n +"}},
            "Invalid when condition",
            id="bad-cel",
        ),
    ],
)
def test_expansion_diagnostics(resources: dict[str, Any], summary: str) -> None:
    _graph, diags = expand(
        [inst(component(resources), inputs={"n": 3})],
        env="dev",
        naming_for=lambda k: RULE if k.startswith("noop.") else None,
    )
    assert summary in [d.summary for d in diags]


def test_cycle_is_named() -> None:
    cycles = find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})
    assert cycles == [["a", "b", "c"]]


def test_topological_order_is_linear_time_shape() -> None:
    deps = {f"n{i:05d}": ([f"n{i - 1:05d}"] if i else []) for i in range(20000)}
    order = topological_order(deps)
    assert order[0] == "n00000" and order[-1] == "n19999"
