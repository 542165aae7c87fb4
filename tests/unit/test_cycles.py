"""One cycle search for the lint and for expansion (``stackyard.cycles``)."""

from __future__ import annotations

import pytest

from stackyard.cycles import find_cycles
from stackyard.model import lint
from stackyard.resolve import graph

pytestmark = pytest.mark.unit

CASES = [
    ("pair", {"a": {"b"}, "b": {"a"}}, [["a", "b"]], "two nodes"),
    ("self", {"a": {"a"}}, [["a"]], "a self-reference is a cycle of one"),
    ("tail", {"c": {"a"}, "a": {"b"}, "b": {"c"}, "d": {"a"}}, [["a", "b", "c"]], "d leads in"),
    ("two", {"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"x"}}, [["a", "b"], ["x", "y"]], "sorted"),
    ("chain", {"a": {"b"}, "b": {"c"}, "c": set()}, [], "a chain is no cycle"),
    ("outside", {"a": {"b", "zz"}, "b": {"a"}}, [["a", "b"]], "zz is named only as a dependency"),
    (
        "shortest",
        {"a": {"b", "c"}, "b": {"c"}, "c": {"a"}},
        [["a", "c"]],
        "the shortest loop through the least node: a -> c -> a, not a -> b -> c -> a",
    ),
    (
        "a-real-loop",
        {"a": {"c"}, "c": {"b"}, "b": {"c", "d"}, "d": {"a"}},
        [["a", "c", "b", "d"]],
        "every step is an edge, and the last one leads back to the start",
    ),
]


@pytest.mark.parametrize(
    ("deps", "cycles", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_find_cycles(deps: dict[str, set[str]], cycles: list[list[str]], reason: str) -> None:
    assert find_cycles(deps) == cycles, reason
    assert find_cycles(dict(reversed(list(deps.items())))) == cycles, "order does not matter"
    for cycle in cycles:
        for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
            assert b in deps[a], f"{a} -> {b} is not an edge"


def test_a_deep_graph_needs_no_recursion() -> None:
    n = 50_000
    deps = {f"n{i:05d}": [f"n{(i + 1) % n:05d}"] for i in range(n)}
    [cycle] = find_cycles(deps)
    assert len(cycle) == n and cycle[0] == "n00000"


def test_lint_and_expansion_use_it() -> None:
    assert lint.find_cycles is find_cycles
    assert graph.find_cycles is find_cycles
