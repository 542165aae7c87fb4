"""Property tests: random DAGs of noop nodes with random failure schedules, then apply,
re-apply, drift edits and destroy, checking the engine's invariants after each step."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackyard.engine.apply import ApplyResult
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.plan import Action, Plan
from stackyard.providers import noop
from stackyard.providers.noop import CONTROL_KEYS, Ledger
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore
from stackyard.testing import synthetic

pytestmark = pytest.mark.reliability

ENV = "prop"
RETRIES = 2  # the engine's retries: a transient failure repeated more often than this fails


@dataclass(frozen=True)
class Scenario:
    deps: dict[str, list[str]]
    schedules: dict[str, dict[str, Any]]  # noop control keys per node: fail, fail_transient, ...
    secrets: frozenset[str]  # nodes carrying the canary in their sensitive ``secret``
    peers: dict[str, str]  # node -> a dependency whose secret it copies (a derived secret)
    drift: dict[str, str]  # node -> "delete" | "change", done behind the engine's back
    parallelism: int

    def fails(self, node: str) -> bool:
        """Whether the first create of ``node`` fails for good (after the engine's retries)."""
        sched = self.schedules.get(node, {})
        when = sched.get("fail", {}).get("create", "never")
        if when in ("never", "transient"):  # "transient": one blip, then a retry succeeds
            return False
        if when == "always" or not sched.get("fail_transient", False):
            return True
        return int(when) > RETRIES


NEVER_WEIGHTED = ["never"] * 5


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 25))
    deps: dict[str, list[str]] = {"r0": []}
    for i in range(1, n):
        picked = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True))
        deps[f"r{i}"] = sorted(f"r{j}" for j in picked)
    schedules: dict[str, dict[str, Any]] = {}
    for node in deps:
        create = draw(st.sampled_from([*NEVER_WEIGHTED, "always", 1, 2, 3, "transient"]))
        observe = draw(st.sampled_from([*NEVER_WEIGHTED, 1]))
        if create == "never" and observe == "never":
            continue
        schedules[node] = {
            "fail": {"create": create, "observe": observe},
            "fail_transient": draw(st.booleans()),
            "fail_after_apply": draw(st.booleans()),
        }
    secrets = frozenset(n for n in deps if draw(st.booleans()))
    peers = {}
    for node, ds in deps.items():
        holders = [d for d in ds if d in secrets]
        if holders and draw(st.booleans()):
            peers[node] = draw(st.sampled_from(holders))
    drift = draw(
        st.dictionaries(st.sampled_from(sorted(deps)), st.sampled_from(["delete", "change"]))
    )
    return Scenario(deps, schedules, secrets, peers, drift, draw(st.integers(1, 8)))


# -- helpers ------------------------------------------------------------------------------


def build(s: Scenario, ledger: Path, canary: str, *, failures: bool) -> Graph:
    configs: dict[str, dict[str, Any]] = {}
    for node in s.deps:
        cfg: dict[str, Any] = {"label": f"label-{node}"}
        if node in s.secrets:
            cfg["secret"] = canary
        if node in s.peers:
            cfg["peer_secret"] = "${resources." + s.peers[node] + ".secret}"
        if failures:
            cfg.update(s.schedules.get(node, {}))
        configs[node] = cfg
    return synthetic.graph(ENV, synthetic.component(s.deps, ledger=str(ledger), configs=configs))


def ancestors(deps: Mapping[str, list[str]], node: str) -> set[str]:
    seen: set[str] = set()
    stack = list(deps[node])
    while stack:
        d = stack.pop()
        if d not in seen:
            seen.add(d)
            stack.extend(deps[d])
    return seen


class Recorder:
    """Every event, and the events of the current step."""

    def __init__(self) -> None:
        self.all: list[Event] = []
        self.step: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.all.append(event)
        self.step.append(event)

    def index(self, type_: str) -> dict[str, int]:
        """Address -> position of its (single) ``type_`` event in this step."""
        out: dict[str, int] = {}
        for i, e in enumerate(self.step):
            if e.type == type_:
                assert e.address not in out, f"two '{type_}' events for {e.address}"
                out[e.address] = i
        return out


class World:
    """One example's home: store, engine, ledger and the address of each synthetic node."""

    def __init__(self, home: Path, s: Scenario) -> None:
        self.ledger = Ledger(home / "ledger.jsonl")
        self.store = SqlStateStore(
            f"sqlite:///{home}/state.db", SecretBox.from_home(home), sqlite_synchronous="NORMAL"
        )
        self.events = Recorder()
        self.engine = Engine(
            store=self.store,
            kinds=ProviderRegistry.from_providers([noop.PROVIDER]),
            events=Events(self.events),
            parallelism=s.parallelism,
            retries=RETRIES,
            retry_delay_s=0.001,
        )
        self.plans: list[Plan] = []
        self.results: list[ApplyResult] = []

    def address(self, graph: Graph) -> dict[str, str]:
        """Node name (``r3``) -> address."""
        return {a.rsplit("/", 1)[-1]: a for a in graph.nodes}

    def plan(self, graph: Graph | None) -> Plan:
        self.events.step = []
        planned = self.engine.plan(ENV, graph)
        self.plans.append(planned)
        return planned

    def apply(self, planned: Plan, graph: Graph | None) -> ApplyResult:
        self.events.step = []
        result = self.engine.apply(planned, graph)
        self.results.append(result)
        return result

    def assert_state_is_ledger(self, *, pending_ok: bool = False) -> None:
        """Every recorded resource is live with the recorded config, and nothing else is."""
        records = {r.physical_name: r for r in self.store.snapshot(ENV).resources.values()}
        live = self.ledger.live()
        pending = {i.physical_name for i in self.store.intents(ENV)}
        assert self.ledger.duplicates() == []
        if pending_ok:  # a create whose recovery could not observe yet is still pending
            assert set(records) <= set(live) <= set(records) | pending
        else:
            assert pending == set()
            assert set(live) == set(records)
        for name, record in records.items():
            echoed = {k: v for k, v in record.full_config().items() if k not in CONTROL_KEYS}
            assert live[name] == echoed, name


def assert_dependency_order(
    world: World, deps_of: Mapping[str, tuple[str, ...]], result: ApplyResult
) -> None:
    """No node started before each of its dependencies succeeded (and finished, if it ran)."""
    started, finished = world.events.index("started"), world.events.index("finished")
    succeeded = set(result.succeeded)
    for address, at in started.items():
        for dep in deps_of[address]:
            assert dep in succeeded, f"{address} started though {dep} did not succeed"
            if dep in started:
                assert finished.get(dep, len(world.events.step)) < at, (address, dep)
    for address in result.skipped:
        assert address not in started, f"skipped {address} was started"
    for address in result.failed:
        assert address not in finished, f"failed {address} finished"


def assert_no_canary(world: World, canary: str, home: Path) -> None:
    for planned in world.plans:
        assert canary not in json.dumps(planned.to_json())
    for event in world.events.all:
        assert canary not in json.dumps(event.to_json())
    for result in world.results:
        assert canary not in json.dumps(result.to_json())
    for db in home.glob("state.db*"):  # encrypted at rest, including the WAL
        assert canary.encode() not in db.read_bytes(), db.name


# -- the property -------------------------------------------------------------------------


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(s=scenarios())
def test_apply_reapply_drift_destroy(s: Scenario) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="stackyard-prop-") as tmp:
        home = Path(tmp)
        world = World(home, s)
        try:
            run_scenario(world, s, home, canary)
        finally:
            world.store.close()


def run_scenario(world: World, s: Scenario, home: Path, canary: str) -> None:
    ledger = home / "ledger.jsonl"
    graph = build(s, ledger, canary, failures=True)
    addr = world.address(graph)
    name_of = {a: n for n, a in addr.items()}
    deps_of = {a: tuple(addr[d] for d in s.deps[n]) for n, a in addr.items()}

    # 1. Apply with failures: failures are root causes, their dependents are skipped.
    result = world.apply(world.plan(graph), graph)
    expected_failed: set[str] = set()
    expected_skipped: set[str] = set()
    for node in s.deps:  # r0..rN is a topological order
        if any(addr[d] in expected_failed | expected_skipped for d in s.deps[node]):
            expected_skipped.add(addr[node])
        elif s.fails(node):
            expected_failed.add(addr[node])
    assert set(result.failed) == expected_failed
    assert set(result.skipped) == expected_skipped
    for address, cause in result.skipped.items():
        assert cause in result.failed, (address, cause)
        assert name_of[cause] in ancestors(s.deps, name_of[address]), (address, cause)
    assert set(result.succeeded) == set(addr.values()) - expected_failed - expected_skipped
    assert_dependency_order(world, deps_of, result)
    world.assert_state_is_ledger(pending_ok=True)

    # 2. Without the failures, a re-apply converges, and a further plan changes nothing.
    graph = build(s, ledger, canary, failures=False)
    result = world.apply(world.plan(graph), graph)
    assert result.ok, result.to_json()
    assert_dependency_order(world, deps_of, result)
    assert not world.plan(graph).has_changes
    world.assert_state_is_ledger()

    # 3. Drift behind the engine's back: the plan re-creates exactly the deleted objects and
    #    updates exactly the changed ones and the dependents of re-created or updated ones
    #    (what those output is known after apply), transitively.
    names = {r.address: r.physical_name for r in world.store.snapshot(ENV).resources.values()}
    for node, edit in s.drift.items():
        if edit == "delete":
            world.ledger.drift_delete(names[addr[node]])
        else:
            world.ledger.drift_change(names[addr[node]], label="drifted")
    deleted = {addr[n] for n, e in s.drift.items() if e == "delete"}
    changed = {addr[n] for n, e in s.drift.items() if e == "change"}
    reported = {item.address: item.status for item in world.engine.drift(ENV)}
    assert reported == {**dict.fromkeys(deleted, "missing"), **dict.fromkeys(changed, "changed")}
    planned = world.plan(graph)
    creates = {c.address for c in planned.changes if c.action is Action.CREATE}
    updates = {c.address for c in planned.changes if c.action is Action.UPDATE}
    touched = deleted | changed
    for node in s.deps:  # r0..rN is a topological order
        if set(deps_of[addr[node]]) & touched:
            touched.add(addr[node])
    assert creates == deleted
    assert updates == touched - deleted
    assert planned.summary()["noop"] == len(addr) - len(creates) - len(updates)
    result = world.apply(planned, graph)
    assert result.ok, result.to_json()
    assert_dependency_order(world, deps_of, result)
    assert not world.plan(graph).has_changes
    world.assert_state_is_ledger()
    live = world.ledger.live()
    for node, address in addr.items():
        assert live[names[address]]["label"] == f"label-{node}"
        for dep in s.deps[node]:  # every reference holds the dependency's current id
            obj = world.ledger.get(names[addr[dep]])
            assert obj is not None and live[names[address]][f"dep_{dep}"] == obj.id

    # 4. Destroy in reverse dependency order: a node is gone before its dependencies go.
    planned = world.plan(None)
    assert planned.summary()["delete"] == len(addr)
    result = world.apply(planned, None)
    assert result.ok, result.to_json()
    started, finished = world.events.index("started"), world.events.index("finished")
    assert set(started) == set(addr.values())
    for address, ds in deps_of.items():
        for dep in ds:
            assert finished[address] < started[dep], f"{dep} deleted before its dependent"
    assert world.ledger.live() == {}
    assert world.store.snapshot(ENV).resources == {}
    assert world.store.intents(ENV) == []

    assert_no_canary(world, canary, home)
