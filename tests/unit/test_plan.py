"""Plan is pure: table tests of (desired, recorded, observed) → action, with a reason per row."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from _graphs import one_component_graph
from stackyard.engine.plan import Action, Plan, plan
from stackyard.model.ids import ResourceUid
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    NamingRule,
    Observed,
    ObserveRequest,
    UpdateRequest,
    config_field,
)
from stackyard.resolve.graph import Graph
from stackyard.state.api import ResourceRecord, Snapshot

pytestmark = pytest.mark.unit

ADDR = "thing.default#app.x/r"


class _Config(KindConfig):
    size: int = config_field(1)
    zone: str = config_field("a", replace_on_change=True)
    token: str = config_field("", sensitive=True)


class _Kind:
    """A pure in-test kind: the plan never calls its methods."""

    name: ClassVar[str] = "test.thing"
    config_model: ClassVar[type[KindConfig]] = _Config
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NamingRule()

    def observe(self, req: ObserveRequest) -> Observed | None:
        raise AssertionError("plan must not observe")

    def create(self, req: CreateRequest) -> Applied:
        raise AssertionError

    def update(self, req: UpdateRequest) -> Applied:
        raise AssertionError

    def delete(self, req: DeleteRequest) -> None:
        raise AssertionError


def _graph(config: dict[str, Any]) -> Graph:
    return one_component_graph(
        {"r": ("test.thing", config)},
        env="dev",
        uid=ResourceUid.parse("thing.default#app.x"),
        naming=NamingRule(),
    )


def _record(**config: Any) -> ResourceRecord:
    full = {"size": 1, "zone": "a", "token": "", **config}
    return ResourceRecord(
        address=ADDR,
        kind="test.thing",
        physical_name="p",
        physical_id="p",
        config={k: v for k, v in full.items() if k != "token"},
        outputs={},
        secret_config={"token": full["token"]},
    )


def _snap(*records: ResourceRecord) -> Snapshot:
    return Snapshot("dev", "lin", 7, {r.address: r for r in records})


CASES = [
    ("create", {"size": 2}, None, {}, Action.CREATE, "nothing recorded: create"),
    ("noop", {"size": 1}, _record(), {}, Action.NOOP, "desired equals recorded"),
    ("update", {"size": 3}, _record(), {}, Action.UPDATE, "an in-place field changed"),
    ("replace", {"zone": "b"}, _record(), {}, Action.REPLACE, "a replace_on_change field changed"),
    ("missing", {"size": 1}, _record(), {ADDR: None}, Action.CREATE, "observed missing: re-create"),
    (
        "drift",
        {"size": 1},
        _record(),
        {ADDR: Observed(config={"size": 5})},
        Action.UPDATE,
        "observed differs from desired: update",
    ),
    (
        "stopped",
        {"size": 1},
        _record(),
        {ADDR: Observed(config={"size": 1}, health="stopped")},
        Action.UPDATE,
        "a stopped object is started again",
    ),
]


@pytest.mark.parametrize(
    ("desired", "record", "observed", "action", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_actions(
    desired: dict[str, Any],
    record: ResourceRecord | None,
    observed: dict[str, Any],
    action: Action,
    reason: str,
) -> None:
    snap = _snap(record) if record else _snap()
    p = plan(
        env="dev",
        graph=_graph(desired),
        snapshot=snap,
        observed=observed,
        kind_of=lambda k: _Kind(),
    )
    assert p.change(ADDR).action is action, reason
    assert p.serial == 7 and p.lineage == "lin"


def test_deletes_recorded_resources_no_longer_desired_in_reverse_order() -> None:
    a = ResourceRecord("x/a", "test.thing", "a", "a", {"size": 1, "zone": "a"}, {})
    b = ResourceRecord(
        "x/b", "test.thing", "b", "b", {"size": 1, "zone": "a"}, {}, depends_on=("x/a",)
    )
    p = plan(env="dev", graph=None, snapshot=_snap(a, b), observed={}, kind_of=lambda k: _Kind())
    assert [(c.address, c.action) for c in p.changes] == [
        ("x/b", Action.DELETE),
        ("x/a", Action.DELETE),
    ]
    assert p.destroy


def test_protected_resource_delete_is_an_error_and_retain_only_forgets() -> None:
    prot = ResourceRecord("x/p", "test.thing", "p", "p", {}, {}, deletion="protect")
    keep = ResourceRecord("x/k", "test.thing", "k", "k", {}, {}, deletion="retain")
    p = plan(
        env="dev", graph=None, snapshot=_snap(prot, keep), observed={}, kind_of=lambda k: _Kind()
    )
    assert not p.ok
    assert [d.summary for d in p.diagnostics] == ["Protected resource"]
    assert p.change("x/k").retain


def test_secrets_are_masked_in_every_rendering() -> None:
    canary = "canary-5f1e-secret"
    p = plan(
        env="dev",
        graph=_graph({"token": canary}),
        snapshot=_snap(_record(token="old-" + canary)),
        observed={},
        kind_of=lambda k: _Kind(),
    )
    text = json.dumps(p.to_json())
    assert canary not in text
    assert "(sensitive)" in text
    assert canary not in repr(p.changes)
    again = Plan.from_json(json.loads(text))
    assert again.id == p.id and again.serial == p.serial


# Only a bad placeholder is the user's mistake in a resource's config; anything else raised
# while resolving it is a bug, and must not be disguised as an "Invalid reference".


def test_a_bad_placeholder_is_a_diagnostic_on_its_address() -> None:
    p = plan(
        env="dev",
        graph=_graph({"size": "${inputs.nope}"}),
        snapshot=_snap(),
        observed={},
        kind_of=lambda k: _Kind(),
    )
    assert [(d.summary, d.subject) for d in p.diagnostics] == [("Invalid reference", ADDR)]


def test_any_other_error_while_resolving_is_not_disguised(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _graph({"size": 1})

    def broken(self: Graph, address: str, outputs_of: Any) -> Any:
        raise KeyError("a bug in the resolver")

    monkeypatch.setattr(Graph, "resolve_config", broken)
    with pytest.raises(KeyError, match="a bug in the resolver"):
        plan(env="dev", graph=graph, snapshot=_snap(), observed={}, kind_of=lambda k: _Kind())
