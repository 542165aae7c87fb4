from __future__ import annotations

import threading
import time

import pytest

from stackyard.engine.walk import STOPPED, walk

pytestmark = pytest.mark.unit


def test_runs_dependencies_first_and_bounds_parallelism() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    started: list[str] = []
    finished: set[str] = set()
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def run(n: str) -> None:
        with lock:
            assert all(d in finished for d in deps[n]), f"{n} started before its dependencies"
            started.append(n)
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.01)
        with lock:
            active["now"] -= 1
            finished.add(n)

    res = walk(list(deps), deps, run, parallelism=2)
    assert res.ok
    assert started[0] == "a" and started[-1] == "d"
    assert active["max"] <= 2


def test_failure_skips_dependents_and_reports_root_cause_only() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "x": []}

    def run(n: str) -> None:
        if n == "a":
            raise RuntimeError("boom")

    res = walk(list(deps), deps, run, parallelism=4)
    assert list(res.failed) == ["a"]
    assert res.skipped == {"b": "a", "c": "a"}
    assert res.succeeded == ["x"]


def test_stop_skips_everything_not_started() -> None:
    deps = {f"n{i}": [] for i in range(5)}
    res = walk(list(deps), deps, lambda n: None, parallelism=1, should_stop=lambda: True)
    assert set(res.skipped.values()) == {STOPPED}
    assert not res.succeeded


def test_ready_order_is_deterministic() -> None:
    deps: dict[str, list[str]] = {n: [] for n in ["c", "a", "b"]}
    order: list[str] = []
    walk(list(deps), deps, order.append, parallelism=1)
    assert order == ["a", "b", "c"]
