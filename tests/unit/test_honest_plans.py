"""Honest plans: values downstream of an update or a replace are known after apply, so the
plan shows every change apply may make, and apply refuses a change its plan did not show."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from _graphs import one_component_graph
from stackyard.engine.engine import Engine
from stackyard.engine.plan import KNOWN_AFTER_APPLY, Action, Plan, plan
from stackyard.providers import noop
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
from stackyard.providers.noop import Ledger
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph
from stackyard.state.api import ResourceRecord, Snapshot
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.unit

ENV = "honest"


def _graph(resources: dict[str, tuple[str, dict[str, Any]]]) -> Graph:
    return one_component_graph(resources, env=ENV)


# -- the plan: pure ----------------------------------------------------------------------------


class _Config(KindConfig):
    size: int = config_field(1)
    zone: str = config_field("a", replace_on_change=True)
    peer: str = config_field("", replace_on_change=True)


class _Kind:
    """A pure in-test kind with a field that cannot change in place."""

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


def _record(graph: Graph, name: str, config: dict[str, Any], outputs: dict[str, Any]) -> Any:
    address = next(a for a in graph.nodes if a.endswith("/" + name))
    full = {"size": 1, "zone": "a", "peer": "", **config}
    return ResourceRecord(
        address=address,
        kind="test.thing",
        physical_name=name,
        physical_id=name,
        config=full,
        outputs=outputs,
    )


@pytest.mark.parametrize(
    ("upstream", "why"),
    [
        ({"zone": "b"}, "a replace of the upstream: its outputs are known after apply"),
        ({"size": 2}, "an in-place update of the upstream: its outputs may change too"),
    ],
    ids=["upstream-replace", "upstream-update"],
)
def test_downstream_of_a_change_is_an_update_known_after_apply(
    upstream: dict[str, Any], why: str
) -> None:
    graph = _graph(
        {
            "up": (
                "test.thing",
                {"size": upstream.get("size", 1), "zone": upstream.get("zone", "a")},
            ),
            "down": ("test.thing", {"peer": "${resources.up.zone}"}),
        }
    )
    up = _record(graph, "up", {}, {"zone": "a"})
    down = _record(graph, "down", {"peer": "a"}, {})
    planned = plan(
        env=ENV,
        graph=graph,
        snapshot=Snapshot(ENV, "lin", 3, {up.address: up, down.address: down}),
        observed={},
        kind_of=lambda _k: _Kind(),  # type: ignore[arg-type,return-value]
    )
    change = planned.change(down.address)
    # never a NOOP the apply turns into an update, and never a replace on a value not yet known
    assert change.action is Action.UPDATE, why
    assert change.reason == f"{KNOWN_AFTER_APPLY}: peer"
    assert change.changed == ("peer",)
    assert change.to_json()["after"]["peer"] == "(known after apply)"


# -- apply: with the noop provider -------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = SqlStateStore(f"sqlite:///{tmp_path}/state.db", SecretBox.from_home(tmp_path))
    try:
        yield Engine(store=store, kinds=ProviderRegistry.from_providers([noop.PROVIDER]))
    finally:
        store.close()


def _chain(ledger: Path, note: str) -> Graph:
    return _graph(
        {
            "up": ("noop.resource", {"ledger": str(ledger), "note": note}),
            "down": ("noop.resource", {"ledger": str(ledger), "peer": "${resources.up.note}"}),
        }
    )


def _address(planned: Plan, name: str) -> str:
    return next(c.address for c in planned.changes if c.address.endswith("/" + name))


def test_an_upstream_update_shows_the_downstream_update_in_the_plan(
    engine: Engine, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    assert engine.converge(ENV, _chain(ledger, "one"))[1].ok
    graph = _chain(ledger, "two")
    planned = engine.plan(ENV, graph)
    down = planned.change(_address(planned, "down"))
    assert down.action is Action.UPDATE  # today: NOOP in the plan, an UPDATE at apply
    assert down.reason == f"{KNOWN_AFTER_APPLY}: peer"
    assert planned.summary()["update"] == 2
    result = engine.apply(planned, graph)
    assert result.ok, result.failed
    assert Ledger(ledger).live()[down.physical_name]["peer"] == "two"


def test_an_unchanged_value_known_after_apply_calls_nothing(engine: Engine, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    graph = _graph(
        {
            "up": ("noop.resource", {"ledger": str(ledger), "note": "one"}),
            "down": ("noop.resource", {"ledger": str(ledger), "peer": "${resources.up.id}"}),
        }
    )
    assert engine.converge(ENV, graph)[1].ok
    graph = _graph(
        {
            "up": ("noop.resource", {"ledger": str(ledger), "note": "two"}),
            "down": ("noop.resource", {"ledger": str(ledger), "peer": "${resources.up.id}"}),
        }
    )
    planned = engine.plan(ENV, graph)
    assert planned.change(_address(planned, "down")).action is Action.UPDATE
    before = len(Ledger(ledger).path.read_text().splitlines())
    assert engine.apply(planned, graph).ok
    # an update keeps the id: only the upstream's update reached the world
    assert len(Ledger(ledger).path.read_text().splitlines()) == before + 1


def test_an_apply_that_differs_from_its_plan_is_refused(engine: Engine, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    assert engine.converge(ENV, _chain(ledger, "one"))[1].ok
    graph = _chain(ledger, "two")
    planned = engine.plan(ENV, graph)
    down = _address(planned, "down")
    # the plan as the old planner made it: the downstream shown as no change
    dishonest = dataclasses.replace(
        planned,
        changes=tuple(
            dataclasses.replace(c, action=Action.NOOP, reason="", changed=())
            if c.address == down
            else c
            for c in planned.changes
        ),
    )
    before = engine.store.snapshot(ENV).resources[down]
    result = engine.apply(dishonest, graph)
    assert not result.ok
    assert "Inconsistent final plan" in result.failed[down]
    assert "peer" in result.failed[down]
    after = engine.store.snapshot(ENV).resources[down]
    assert after.config == before.config and after.config["peer"] == "one"  # state untouched
    live = Ledger(ledger).live()[after.physical_name]
    assert live["peer"] == "one"  # and the world too
    assert not engine.store.intents(ENV)
