"""Cycles in a dependency graph: one loop per strongly connected component (Tarjan).

Used by the component lint (resources that reference each other) and by expansion (provider
nodes that depend on each other), so both name a cycle the same way. Iterative, so a graph of
tens of thousands of nodes does not reach Python's recursion limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence

__all__ = ["find_cycles"]


def find_cycles(deps: Mapping[str, Collection[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, sorted.

    ``deps`` maps a node to the nodes it depends on; a node named only as a dependency has
    none. Each cycle is a loop ``[a, b, c]`` (read ``a -> b -> c -> a``) starting at its
    component's least node: the shortest such loop, ties broken by name. A self-reference is
    a cycle of one. Deterministic: the order of ``deps`` does not matter.
    """
    successors = {node: sorted(set(edges)) for node, edges in deps.items()}

    def succ(node: str) -> Sequence[str]:
        return successors.get(node, ())

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(successors):
        if root in index:
            continue
        enter(root)
        work = [(root, iter(succ(root)))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    enter(nxt)
                    work.append((nxt, iter(succ(nxt))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:  # every edge of ``node`` is done
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    members = _pop_component(node, stack, on_stack)
                    start = min(members)
                    if len(members) > 1 or start in succ(start):
                        cycles.append(_loop(start, members, succ))
    return sorted(cycles)


def _pop_component(node: str, stack: list[str], on_stack: set[str]) -> set[str]:
    members = set()
    while True:
        member = stack.pop()
        on_stack.discard(member)
        members.add(member)
        if member == node:
            return members


def _loop(start: str, members: set[str], succ: Callable[[str], Sequence[str]]) -> list[str]:
    """The shortest path ``start -> ... -> start`` inside one component (breadth first)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in succ(node):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if nxt in members and nxt != start and nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return [start]  # not reached: every member of a component with a cycle reaches itself
