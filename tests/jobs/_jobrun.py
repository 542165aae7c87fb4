"""Helpers of the jobs tests: a worker in a thread, and waiting for jobs to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: How long a test waits for its jobs (a bound against hanging, never a timing assertion).
PATIENCE_S = 60.0


@contextmanager
def worker_thread(settings: Any, **kw: Any) -> Iterator[Any]:
    """A ``Worker`` running in a thread for the block; stopped (and joined) after it."""
    from stackyard.jobs import Worker

    worker = Worker(settings, **kw)
    stop = threading.Event()
    failed: list[BaseException] = []

    def main() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced after the block
            failed.append(exc)

    thread = threading.Thread(target=main, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=PATIENCE_S)
    assert not thread.is_alive(), "the worker did not stop"
    if failed:
        raise failed[0]


def wait_final(jobs: Any, job_ids: list[str], *, patience_s: float = PATIENCE_S) -> list[Any]:
    """The jobs once every one of them is final (or an assertion error naming the others)."""
    deadline = time.monotonic() + patience_s
    while True:
        found = [jobs.get(j) for j in job_ids]
        if all(j is not None and j.status.is_final for j in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                "jobs not finished: " + ", ".join(f"{j.id} {j.status}" for j in found if j)
            )
        time.sleep(0.1)
