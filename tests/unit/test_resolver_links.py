"""A workload resource's params naming another resource's outputs (``${resources.dns.host}``):
resolved without I/O from the library's real ``dns`` and ``route`` manifests, then expanded
and substituted the way plan and apply do (recorded outputs known, new ones after apply)."""

from __future__ import annotations

from typing import Any

import pytest

from stackyard import library
from stackyard.environments.resolver import Request, Resolution, Resolver
from stackyard.model.component import load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.platform import Binding
from stackyard.model.values import Unknown
from stackyard.providers.api import NamingRule
from stackyard.resolve.bindings import Level
from stackyard.resolve.graph import expand

pytestmark = pytest.mark.unit

MANIFESTS = {name: load_component(library.path(name)) for name in library.names()}
LEVELS = [
    Level(
        "environment type development",
        (
            Binding("dns", "dns-localhost", "^1"),
            Binding("route", "route-proxy", "^1"),
            Binding("proxy-instance", "proxy-server", "^1"),
            Binding("postgres", "postgres-database", "^1"),
            Binding("postgres-instance", "postgres-server", "^1"),
        ),
    )
]
DNS = ResourceUid.parse("dns.default#web.dns")
ROUTE = ResourceUid.parse("route.default#web.route")


def _resolve(resources: dict[str, dict[str, Any]]) -> Resolution:
    """``resources`` (name -> {type, params}) of the workload ``web``, resolved in ``dev``."""
    uids = {n: ResourceUid.parse(f"{r['type']}.default#web.{n}") for n, r in resources.items()}
    requests = [
        Request(
            uids[n],
            r.get("params", {}),
            "web",
            f"web: resources.{n}",
            file="score.yaml",
            path=f"resources.{n}",
            siblings=uids,
        )
        for n, r in resources.items()
    ]
    return Resolver(
        env="dev",
        env_type="development",
        levels=LEVELS,
        versions=lambda name: [str(MANIFESTS[name].version)] if name in MANIFESTS else [],
        fetch=lambda name, version: (MANIFESTS[name], f"sha256:{name}"),
    ).resolve(requests)


def _route(host: Any = "${resources.dns.host}") -> dict[str, dict[str, Any]]:
    return {
        "dns": {"type": "dns"},
        "route": {"type": "route", "params": {"host": host, "path": "/", "port": 80}},
    }


def _graph(res: Resolution):  # type: ignore[no-untyped-def]
    graph, diags = expand(
        list(res.instances.values()), env="dev", naming_for=lambda _k: NamingRule()
    )
    assert not diags
    return graph


def test_a_param_naming_another_resources_output_is_a_dependency_known_after_apply() -> None:
    res = _resolve(_route())
    assert not res.diagnostics
    route = res.instances[ROUTE]
    assert route.linked == {"host": "${resources.dns.host}"}
    assert route.peers == {"dns": DNS}
    assert "host" not in route.inputs and route.inputs["port"] == 80
    graph = _graph(res)
    # the route's node waits for the dns host name, and for the proxy it requires
    assert f"{DNS}/host" in graph.nodes[f"{ROUTE}/route"].depends_on
    order = graph.topological()
    assert order.index(f"{DNS}/host") < order.index(f"{ROUTE}/route")
    # at plan time of a first deploy the host is not known yet ...
    planned = graph.resolve_config(f"{ROUTE}/route", Unknown)
    assert isinstance(planned["host"], Unknown) and planned["path"] == "/"
    # ... and once the dns node has outputs (recorded, or just applied) it is the value
    live = {f"{DNS}/host": {"host": "web-dev.localhost"}}
    applied = graph.resolve_config(f"{ROUTE}/route", lambda a: live.get(a, Unknown(a)))
    assert applied["host"] == "web-dev.localhost"


def test_a_reference_embedded_in_a_longer_string_is_rendered() -> None:
    res = _resolve(_route("api.${resources.dns.host}"))
    assert not res.diagnostics
    graph = _graph(res)
    live = {f"{DNS}/host": {"host": "web-dev.localhost"}}
    config = graph.resolve_config(f"{ROUTE}/route", lambda a: live.get(a, Unknown(a)))
    assert config["host"] == "api.web-dev.localhost"


def test_params_without_references_are_unchanged() -> None:
    res = _resolve(_route("shop.localhost"))
    assert not res.diagnostics
    route = res.instances[ROUTE]
    assert route.linked == {} and route.inputs["host"] == "shop.localhost"


@pytest.mark.parametrize(
    ("host", "summary", "says"),
    [
        ("${resources.nope.host}", "Invalid reference in params", "does not declare"),
        ("${resources.dns}", "Invalid reference in params", "names no output"),
        ("${resources.dns.host}-${metadata.name}", "Invalid reference in params", "only"),
        ("${resources.dns.hostname}", "Unknown output", "Its outputs are: host"),
    ],
)
def test_unknown_names_and_outputs_point_at_the_param(host: str, summary: str, says: str) -> None:
    res = _resolve(_route(host))
    assert [d.summary for d in res.diagnostics] == [summary]
    d = res.diagnostics[0]
    assert d.path == "resources.route.params.host" and d.file == "score.yaml"
    assert says in d.detail


def test_a_secret_output_is_refused() -> None:
    res = _resolve(
        {
            "db": {"type": "postgres"},
            "route": {"type": "route", "params": {"host": "${resources.db.password}", "port": 80}},
        }
    )
    assert [d.summary for d in res.diagnostics] == ["Secret output in params"]
    assert res.diagnostics[0].path == "resources.route.params.host"


def test_a_loop_of_references_is_a_diagnostic() -> None:
    res = _resolve(
        {
            "a": {"type": "route", "params": {"host": "${resources.b.host}", "port": 80}},
            "b": {"type": "route", "params": {"host": "${resources.a.host}", "port": 81}},
        }
    )
    assert [d.summary for d in res.diagnostics] == ["Resources reference each other in a loop"]
    d = res.diagnostics[0]
    assert d.path == "resources.a.params.host"
    assert "resources.a -> resources.b -> resources.a" in d.detail
    assert all(not i.linked for i in res.instances.values())  # nothing left to recurse on


def test_a_resource_naming_itself_is_a_loop() -> None:
    res = _resolve(
        {"route": {"type": "route", "params": {"host": "${resources.route.host}", "port": 80}}}
    )
    assert [d.summary for d in res.diagnostics] == ["Resources reference each other in a loop"]
    assert res.diagnostics[0].path == "resources.route.params.host"
