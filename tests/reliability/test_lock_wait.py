"""Waiting for a busy environment, and leases that only a progressing writer renews
(issue 11: "Waiting for a busy environment" and item 8's lease rule)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.errors import LockHeldError, LockLostError

pytestmark = pytest.mark.reliability

ENV = "busy"


def test_a_second_writer_waits_for_the_lock_names_the_holder_and_then_plans_fresh(
    worker: ModuleType, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    store = worker.open_store(home)
    try:
        graph = worker.build_graph(home, ENV, nodes=5, latency_ms=0, seed=1)
        holder = Engine(store=store, kinds=worker.registry(), holder="first-writer", lock_ttl_s=2)
        seen: list[Event] = []
        waiter = Engine(
            store=store,
            kinds=worker.registry(),
            events=Events(seen.append),
            holder="second-writer",
            lock_ttl_s=2,
            lock_wait_s=30,
        )
        got: dict[str, object] = {}

        def second() -> None:
            with waiter.locked(ENV):
                got["serial_seen"] = store.snapshot(ENV).serial
                got["plan"] = waiter.plan(ENV, graph)

        with holder.locked(ENV):
            t = threading.Thread(target=second)
            t.start()
            deadline = time.monotonic() + 20
            while not any(e.type == "lock-waiting" for e in seen) and time.monotonic() < deadline:
                time.sleep(0.02)
            # the waiter told who holds the lock, and has not got it
            waiting = [e for e in seen if e.type == "lock-waiting"]
            assert waiting and "first-writer" in waiting[0].message
            assert "plan" not in got
            planned = holder.plan(ENV, graph)
            result = holder.apply(planned, graph)  # re-entrant: the same lease
            assert result.ok
        t.join(timeout=30)
        assert not t.is_alive()
        # it planned against the state as it was once it held the lock: nothing left to do
        assert got["serial_seen"] == store.snapshot(ENV).serial
        assert not got["plan"].has_changes  # type: ignore[attr-defined]
    finally:
        store.close()


def test_lock_timeout_zero_fails_at_once_and_a_timeout_says_how_long_it_waited(
    worker: ModuleType, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    store = worker.open_store(home)
    try:
        holder = Engine(store=store, kinds=worker.registry(), holder="first-writer", lock_ttl_s=5)
        now = Engine(store=store, kinds=worker.registry(), holder="impatient", lock_wait_s=0)
        later = Engine(store=store, kinds=worker.registry(), holder="patient", lock_wait_s=0.3)
        with holder.locked(ENV):
            with pytest.raises(LockHeldError) as at_once, now.locked(ENV):
                pass
            assert "first-writer" in at_once.value.message
            assert "after waiting" not in at_once.value.message
            with pytest.raises(LockHeldError) as waited, later.locked(ENV):
                pass
            assert "after waiting 0.3 s" in waited.value.message
    finally:
        store.close()


def test_a_writer_that_makes_no_progress_stops_renewing_and_loses_its_lease(
    worker: ModuleType, tmp_path: Path
) -> None:
    """A hung writer (here: one that simply stops emitting progress) keeps the lock only until
    its lease runs out; another writer then takes over and the stuck one's writes are fenced."""
    home = tmp_path / "home"
    store = worker.open_store(home)
    try:
        graph = worker.build_graph(home, ENV, nodes=3, latency_ms=0, seed=2)
        stuck = Engine(
            store=store, kinds=worker.registry(), holder="stuck", lock_ttl_s=0.6, stall_s=0.3
        )
        other = Engine(
            store=store, kinds=worker.registry(), holder="other", lock_ttl_s=5, lock_wait_s=30
        )
        with stuck.locked(ENV) as held:
            planned = stuck.plan(ENV, graph)
            deadline = time.monotonic() + 20
            while not held.stalled and time.monotonic() < deadline:
                time.sleep(0.05)  # no progress: the heartbeat stops renewing
            assert held.stalled
            with other.locked(ENV):  # takes over once the stuck lease has run out
                pass
            with pytest.raises(LockLostError):
                stuck.apply(planned, graph)
        assert worker.recorded_names(store, ENV) == set()
    finally:
        store.close()


def test_a_stuck_deploy_loses_its_lease_even_though_it_reports_the_stall(
    worker: ModuleType, tmp_path: Path
) -> None:
    """The deploy's event log prints the lock's own events; they must not count as progress
    (the "no progress" warning used to renew the lease it warned about)."""
    from stackyard.environments.deploy import _EventLog

    home = tmp_path / "home"
    store = worker.open_store(home)
    try:
        lines: list[str] = []
        log = _EventLog(lines.append)
        engine = Engine(
            store=store,
            kinds=worker.registry(),
            events=Events(log.hook),
            holder="stuck-deploy",
            lock_ttl_s=0.6,
            stall_s=0.3,
        )
        with engine.locked(ENV) as held:

            def said(message: str) -> None:  # as converge wires it
                held.touch()
                lines.append(message)

            log.say = said
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.1)
                info = store.lock_info(ENV)
                if info is not None and info.expires_at < time.time():
                    break
            assert any("no progress" in line for line in lines)
            with pytest.raises(LockLostError):
                store.check_fence(held.lease)

    finally:
        store.close()


def test_an_intended_wait_keeps_the_lease(worker: ModuleType, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = worker.open_store(home)
    try:
        engine = Engine(
            store=store, kinds=worker.registry(), holder="asking", lock_ttl_s=0.6, stall_s=0.3
        )
        with engine.locked(ENV) as held, held.busy():
            time.sleep(2.0)  # a person reading the plan: far past stall and ttl
            store.check_fence(held.lease)
    finally:
        store.close()
