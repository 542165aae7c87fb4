"""Regression: a plan applies at most once, and only to the state it was made against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from stackyard.engine.engine import Engine
from stackyard.engine.plan import Plan
from stackyard.errors import StalePlanError
from stackyard.providers.noop import Ledger
from stackyard.resolve.graph import Graph
from stackyard.state.sql import SqlStateStore
from stackyard.testing import synthetic

pytestmark = pytest.mark.reliability

ENV = "stale"
CANARY = "canary-stale-4f1d"


@pytest.fixture
def store(worker: ModuleType, tmp_path: Path) -> Iterator[SqlStateStore]:
    s = worker.open_store(tmp_path / "home")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def engine(worker: ModuleType, store: SqlStateStore) -> Engine:
    return Engine(store=store, kinds=worker.registry(), parallelism=4)


@pytest.fixture
def ledger(worker: ModuleType, tmp_path: Path) -> Ledger:
    return Ledger(worker.ledger_path(tmp_path / "home"))


def make_graph(ledger: Ledger, *, nodes: int = 6, extra: str = "") -> Graph:
    configs = {"r0": {"secret": CANARY}, **({"r1": {"note": extra}} if extra else {})}
    comp = synthetic.component(
        synthetic.dag(nodes, edges_per_node=2, seed=5), ledger=str(ledger.path), configs=configs
    )
    return synthetic.graph(ENV, comp)


def test_the_same_plan_cannot_be_applied_twice(engine: Engine, ledger: Ledger) -> None:
    graph = make_graph(ledger)
    planned = engine.plan(ENV, graph)
    assert engine.apply(planned, graph).ok
    with pytest.raises(StalePlanError, match="already been applied"):
        engine.apply(planned, graph)
    assert ledger.duplicates() == []
    assert len(ledger.live()) == 6


def test_a_plan_is_stale_once_another_apply_changed_the_state(
    engine: Engine, ledger: Ledger
) -> None:
    graph = make_graph(ledger)
    first = engine.plan(ENV, graph)
    _, other = engine.converge(ENV, graph)  # someone else applied in between
    assert other.ok
    with pytest.raises(StalePlanError, match="changed since the plan was made"):
        engine.apply(first, graph)
    assert ledger.duplicates() == []
    assert not engine.plan(ENV, graph).has_changes


def test_a_plan_for_another_desired_state_is_refused(engine: Engine, ledger: Ledger) -> None:
    planned = engine.plan(ENV, make_graph(ledger))
    with pytest.raises(StalePlanError, match="different desired state"):
        engine.apply(planned, make_graph(ledger, extra="changed"))
    assert ledger.live() == {}


def test_a_saved_plan_applies_once(engine: Engine, ledger: Ledger) -> None:
    graph = make_graph(ledger)
    saved = json.dumps(engine.plan(ENV, graph).to_json())
    assert CANARY not in saved
    loaded = Plan.from_json(json.loads(saved))
    result = engine.apply(loaded, graph)
    assert result.ok, result.to_json()
    # The saved plan holds masks only; apply re-resolved the real value from the graph.
    assert any(cfg.get("secret") == CANARY for cfg in ledger.live().values())
    with pytest.raises(StalePlanError, match="already been applied"):
        engine.apply(Plan.from_json(json.loads(saved)), graph)
    assert ledger.duplicates() == []
    assert not engine.plan(ENV, graph).has_changes
