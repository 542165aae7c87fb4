"""Holding an environment lock: acquire (waiting if asked), heartbeat while the writer makes
progress, release."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stackyard.engine.events import Event, Events
from stackyard.errors import LockHeldError, LockLostError, StateError
from stackyard.state.api import Lease, StateStore

#: How long a writer may go without progress before its heartbeat stops renewing the lease.
DEFAULT_STALL_S = 120.0


class HeldLock:
    """A lease kept alive by a heartbeat thread. ``lost`` turns true if the lease is lost.

    The heartbeat renews the lease only while the writer makes progress: every engine event
    (and every ``touch``) counts. A writer stuck for longer than ``stall_s`` (a hung backend
    call, a paused process) stops renewing, so its lease runs out and another writer can
    take over; the fencing token then refuses the stuck writer's late writes.
    """

    def __init__(
        self,
        store: StateStore,
        lease: Lease,
        ttl_s: float,
        events: Events,
        *,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        self._store = store
        self._lease = lease
        self._ttl = ttl_s
        self._events = events
        self._stall = stall_s
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._progress = time.monotonic()
        self._busy = 0
        self.lost = False
        self.stalled = False
        self._thread = threading.Thread(
            target=self._beat, name=f"stackyard-lease-{lease.env}", daemon=True
        )

    @property
    def env(self) -> str:
        """The environment this lock is on."""
        return self._lease.env

    @property
    def lease(self) -> Lease:
        """The current lease (its expiry moves with each heartbeat)."""
        with self._mutex:
            return self._lease

    def touch(self) -> None:
        """Record that the writer made progress (keeps the heartbeat renewing)."""
        self._progress = time.monotonic()

    @contextmanager
    def busy(self) -> Iterator[None]:
        """A wait the writer makes on purpose (a confirmation prompt, a readiness wait): the
        heartbeat keeps renewing while it lasts, however long (the wait itself is bounded by
        its caller)."""
        with self._mutex:
            self._busy += 1
        try:
            yield
        finally:
            with self._mutex:
                self._busy -= 1
            self.touch()

    def on_event(self, event: Event) -> None:
        """An events hook: every engine event is progress, except the lock's own."""
        if not event.type.startswith(("lock", "unlock")):
            self.touch()

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
            idle = time.monotonic() - self._progress
            if idle > self._stall and not self._busy:
                if not self.stalled:
                    self.stalled = True
                    self._events.emit(
                        "lock-stalled",
                        message=f"no progress for {idle:.0f} s: the lease is no longer renewed",
                    )
                continue
            self.stalled = False
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


def acquire(
    store: StateStore, env: str, *, holder: str, ttl_s: float, events: Events, wait_s: float = 0.0
) -> Lease:
    """Take ``env``'s lock; while another writer holds it, wait up to ``wait_s`` seconds.

    ``wait_s`` 0 fails at once with ``LockHeldError`` (naming the holder). While waiting, a
    ``lock-waiting`` event names the holder each time the holder changes. Polls with a
    jittered backoff (50 ms up to 1 s), so waiters do not stampede when the lock is released.
    """
    deadline = time.monotonic() + max(wait_s, 0.0)
    delay = 0.05
    told: str | None = None
    while True:
        try:
            return store.acquire(env, holder=holder, ttl_s=ttl_s)
        except LockHeldError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait_s > 0:
                    raise LockHeldError(
                        env,
                        holder=exc.holder,
                        lock_id=exc.lock_id,
                        expires_at=exc.expires_at,
                        waited_s=wait_s,
                    ) from None
                raise
            if exc.lock_id != told:
                told = exc.lock_id
                events.emit(
                    "lock-waiting",
                    message=f"'{env}' is locked by {exc.holder} (lock {exc.lock_id}); waiting up to {left:.0f} s",
                )
            time.sleep(min(left, delay * random.uniform(0.5, 1.5)))  # noqa: S311 (jitter, not crypto)
            delay = min(delay * 2, 1.0)


@contextmanager
def hold(
    store: StateStore,
    env: str,
    *,
    holder: str,
    ttl_s: float,
    events: Events,
    wait_s: float = 0.0,
    stall_s: float = DEFAULT_STALL_S,
) -> Iterator[HeldLock]:
    """Acquire ``env``'s lock (waiting up to ``wait_s``), keep it alive while the writer makes
    progress, and release it at the end."""
    lease = acquire(store, env, holder=holder, ttl_s=ttl_s, events=events, wait_s=wait_s)
    events.emit("locked", message=f"lock {lease.lock_id} (token {lease.token})")
    held = HeldLock(store, lease, ttl_s, events, stall_s=stall_s)
    events.add(held.on_event)
    held.start()
    try:
        yield held
    except BaseException:
        # The block's error is what the caller must see: a release that fails too (the
        # store is gone) leaves the lease to expire, and never hides that error.
        held.stop()
        try:
            store.release(held.lease)
        except StateError as exc:
            events.emit(
                "lock-release-failed",
                message=f"lock {lease.lock_id} not released ({exc.message}); it expires "
                f"in {ttl_s:.0f} s",
            )
        else:
            events.emit("unlocked", message=f"lock {lease.lock_id}")
        raise
    held.stop()
    try:
        store.release(held.lease)
    finally:
        events.emit("unlocked", message=f"lock {lease.lock_id}")
