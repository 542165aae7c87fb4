"""Locks: one writer per environment across processes; a dead holder's lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from stackyard.engine.engine import Engine
from stackyard.errors import LockHeldError
from stackyard.providers.noop import Ledger

pytestmark = pytest.mark.reliability

ENV = "shared"
WRITERS = 20
NODES = 20


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Popen handles that are all killed and reaped at the end, whatever happens."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.communicate()


def start(script: Path, home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), "--home", str(home), "--env", ENV, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    """Read the worker's progress lines up to one starting with ``prefix`` (or its exit)."""
    assert proc.stdout is not None
    lines: list[str] = []
    for raw in proc.stdout:
        lines.append(raw.strip())
        if lines[-1].startswith(prefix):
            break
    return lines


def assert_intact(worker: ModuleType, home: Path, graph_nodes: int) -> None:
    """One converge's worth of resources, recorded exactly as the ledger has them."""
    ledger = Ledger(worker.ledger_path(home))
    store = worker.open_store(home)
    try:
        names = worker.recorded_names(store, ENV)
        assert len(names) == graph_nodes
        assert set(ledger.live()) == names
        assert ledger.duplicates() == []
        assert store.intents(ENV) == []
        assert store.lock_info(ENV) is None
    finally:
        store.close()


def test_twenty_writers_exactly_one_proceeds(
    worker: ModuleType, worker_script: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    go = tmp_path / "go"
    # The environment exists already (as it would in use): workers do not race to create it.
    store = worker.open_store(home)
    store.snapshot(ENV)
    store.close()
    # The holder's apply lasts ~10 rounds of 300 ms, far longer than the others need to collide.
    args = ("--nodes", str(NODES), "--latency-ms", "300", "--parallelism", "2", "--seed", "7")
    with processes() as procs:
        for _ in range(WRITERS):
            procs.append(start(worker_script, home, *args, "--go-file", str(go)))
        for p in procs:
            assert read_until(p, "WAITING")[-1:] == ["WAITING"], p.communicate()
        go.touch()
        exits: list[subprocess.Popen[str]] = []
        while len(exits) < WRITERS:
            exits.extend(p for p in procs if p not in exits and p.poll() is not None)
            time.sleep(0.01)
        outputs = {p.pid: p.communicate() for p in procs}

    codes = sorted(p.returncode for p in procs)
    assert codes == [0] + [4] * (WRITERS - 1), {p.pid: outputs[p.pid][1] for p in procs}
    (winner,) = (p for p in procs if p.returncode == 0)
    assert exits[-1] is winner, "every other writer failed fast, while the holder still applied"
    for p in procs:
        if p is winner:
            continue
        err = outputs[p.pid][1]
        assert f"Environment '{ENV}' is locked by" in err
        assert f"(pid {winner.pid})" in err, err
        assert "READY" not in outputs[p.pid][0]
    assert_intact(worker, home, NODES)


def test_killed_holder_lease_expires_and_next_apply_recovers(
    worker: ModuleType, worker_script: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    ttl = 1.5
    args = ("--nodes", str(NODES), "--latency-ms", "100", "--parallelism", "2", "--seed", "3")
    with processes() as procs:
        holder = start(worker_script, home, *args, "--lock-ttl", str(ttl))
        procs.append(holder)
        lines = read_until(holder, "READY")
        assert lines[-1:] == ["READY"], holder.communicate()
        assert read_until(holder, "finished ")[-1].startswith("finished "), "mid-apply"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()

    graph = worker.build_graph(home, ENV, nodes=NODES, latency_ms=100, seed=3)
    ledger = Ledger(worker.ledger_path(home))
    store = worker.open_store(home)
    try:
        engine = Engine(
            store=store, kinds=worker.registry(), holder="second-writer", lock_ttl_s=ttl
        )
        with pytest.raises(LockHeldError) as held:
            engine.converge(ENV, graph)
        assert f"locked by {held.value.holder}" in held.value.message
        assert f"(pid {holder.pid})" in held.value.holder

        info = store.lock_info(ENV)
        assert info is not None
        deadline = time.monotonic() + 60
        while time.time() <= info.expires_at and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the dead holder's lease to run out, not timing it

        _, result = engine.converge(ENV, graph)
        assert result.ok, result.to_json()
        assert not engine.plan(ENV, graph).has_changes
        names = worker.recorded_names(store, ENV)
        assert ledger.duplicates() == []
        assert set(ledger.live()) == names
        assert len(names) == NODES
        assert store.intents(ENV) == []
        assert store.lock_info(ENV) is None
    finally:
        store.close()
