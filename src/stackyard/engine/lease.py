"""Holding an environment lock: acquire, heartbeat in the background, release."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from stackyard.engine.events import Events
from stackyard.errors import LockLostError, StateError
from stackyard.state.api import Lease, StateStore


class HeldLock:
    """A lease kept alive by a heartbeat thread. ``lost`` turns true if the lease is lost."""

    def __init__(self, store: StateStore, lease: Lease, ttl_s: float, events: Events) -> None:
        self._store = store
        self._lease = lease
        self._ttl = ttl_s
        self._events = events
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self.lost = False
        self._thread = threading.Thread(
            target=self._beat, name=f"stackyard-lease-{lease.env}", daemon=True
        )

    @property
    def lease(self) -> Lease:
        """The current lease (its expiry moves with each heartbeat)."""
        with self._mutex:
            return self._lease

    def start(self) -> None:
        """Start the heartbeat."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        self._thread.join(timeout=self._ttl)

    def _beat(self) -> None:
        interval = max(self._ttl / 3.0, 0.05)
        while not self._stop.wait(interval):
            try:
                renewed = self._store.heartbeat(self.lease, ttl_s=self._ttl)
            except LockLostError as exc:
                self.lost = True
                self._events.emit("lock-lost", message=exc.message)
                return
            except StateError as exc:  # store unreachable: keep trying until the lease runs out
                self._events.emit("lock-heartbeat-failed", message=exc.message)
                continue
            with self._mutex:
                self._lease = renewed


@contextmanager
def hold(
    store: StateStore, env: str, *, holder: str, ttl_s: float, events: Events
) -> Iterator[HeldLock]:
    """Acquire ``env``'s lock (failing fast if held), keep it alive, and release it at the end."""
    lease = store.acquire(env, holder=holder, ttl_s=ttl_s)
    events.emit("locked", message=f"lock {lease.lock_id} (token {lease.token})")
    held = HeldLock(store, lease, ttl_s, events)
    held.start()
    try:
        yield held
    finally:
        held.stop()
        try:
            store.release(held.lease)
        finally:
            events.emit("unlocked", message=f"lock {lease.lock_id}")
