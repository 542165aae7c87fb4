"""The graph walk: run nodes on a bounded thread pool as soon as their dependencies succeed.

Ready nodes are started in address order (deterministic). A failed node's dependents are
skipped, each naming its root cause, so a summary reports only the failures that matter.
Cost is O(N + E): each node and edge is touched once, and completions arrive on a queue.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

STOPPED = "(stopped)"


@dataclass
class WalkResult:
    """What happened to each node."""

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # address -> root cause address

    @property
    def ok(self) -> bool:
        """True when every node succeeded."""
        return not self.failed and not self.skipped


def walk(
    nodes: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    run: Callable[[str], None],
    *,
    parallelism: int = 10,
    should_stop: Callable[[], bool] = lambda: False,
    on_skip: Callable[[str, str], None] | None = None,
    limiter: Callable[[str], threading.Semaphore | None] | None = None,
) -> WalkResult:
    """Run ``run(node)`` for every node once all of ``deps[node]`` (within ``nodes``) succeeded.

    ``limiter(node)`` may return a semaphore capping concurrency for that node's provider.
    ``should_stop()`` is checked before each start; once true, nothing new starts and the
    rest are skipped with root cause ``STOPPED``.
    """
    members = set(nodes)
    indegree: dict[str, int] = dict.fromkeys(nodes, 0)
    dependents: dict[str, list[str]] = {n: [] for n in nodes}
    for n in nodes:
        for d in deps.get(n, ()):
            if d in members and d != n:
                indegree[n] += 1
                dependents[d].append(n)
    ready = [n for n, k in indegree.items() if k == 0]
    heapq.heapify(ready)
    result = WalkResult()
    done: queue.SimpleQueue[tuple[str, BaseException | None]] = queue.SimpleQueue()
    in_flight = 0

    def task(node: str) -> None:
        sem = limiter(node) if limiter else None
        try:
            if sem is not None:
                with sem:
                    run(node)
            else:
                run(node)
        except BaseException as exc:  # reported through the queue, never lost
            done.put((node, exc))
        else:
            done.put((node, None))

    def skip_dependents(root: str, cause: str) -> None:
        stack = list(dependents[root])
        while stack:
            n = stack.pop()
            if n in result.skipped or n in result.failed:
                continue
            result.skipped[n] = cause
            if on_skip:
                on_skip(n, cause)
            stack.extend(dependents[n])

    with ThreadPoolExecutor(
        max_workers=max(1, parallelism), thread_name_prefix="stackyard-walk"
    ) as pool:
        while ready or in_flight:
            while ready and in_flight < parallelism:
                node = heapq.heappop(ready)
                if node in result.skipped:
                    continue
                if should_stop():
                    result.skipped[node] = STOPPED
                    if on_skip:
                        on_skip(node, STOPPED)
                    continue
                pool.submit(task, node)
                in_flight += 1
            if not in_flight:
                break
            node, exc = done.get()
            in_flight -= 1
            if exc is None:
                result.succeeded.append(node)
                for n in dependents[node]:
                    indegree[n] -= 1
                    if indegree[n] == 0 and n not in result.skipped:
                        heapq.heappush(ready, n)
            else:
                result.failed[node] = exc
                skip_dependents(node, node)
    finished = set(result.succeeded)
    for n in nodes:  # anything never reached (its dependency was skipped before it was queued)
        if n not in result.skipped and n not in result.failed and n not in finished:
            result.skipped[n] = STOPPED
    return result
