"""The state store goes away in the middle of an apply (PostgreSQL refusing connections, its
backends terminated, as a failover or an operator would): the apply stops with
``StoreUnavailableError`` (transient: a job is retried), never as a plain failed apply, and
once the store is back the next run recovers the pending intents and finishes, with no object
made twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from stackyard.engine.engine import Engine
from stackyard.errors import StoreUnavailableError
from stackyard.jobs.handlers import _classify
from stackyard.providers.noop import Ledger
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore
from stackyard.testing import synthetic

pytestmark = pytest.mark.reliability

ENV = "lost"


def _admin(url: str) -> tuple[str, str]:
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), str(u.database)


def _connections(url: str, *, allowed: bool) -> None:
    dsn, name = _admin(url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def test_an_apply_that_loses_its_store_stops_transiently_and_resumes(
    worker: ModuleType, pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    url = pg_databases()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    # a chain: each change waits for the one before, 150 ms each
    deps = {f"r{i}": ([f"r{i - 1}"] if i else []) for i in range(12)}
    comp = synthetic.component(deps, ledger=str(ledger.path), latency_ms=150)
    graph = synthetic.graph(ENV, comp)
    key = SecretBox.generate_key()
    store = SqlStateStore(url, SecretBox(key), pool_size=2)
    # a short lease: the lock it cannot release while the store is gone expires soon
    engine = Engine(store=store, kinds=worker.registry(), parallelism=4, lock_ttl_s=3)
    planned = engine.plan(ENV, graph)

    def cut() -> None:
        while len(ledger.live()) < 3:  # some changes made and recorded first
            time.sleep(0.02)
        _connections(url, allowed=False)

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        with pytest.raises(StoreUnavailableError, match="became unavailable during apply") as err:
            engine.apply(planned, graph)
    finally:
        cutter.join()
        _connections(url, allowed=True)
        store.close()
    assert "Run the deployment again" in (err.value.hint or "")
    # a job running this apply is retried, not failed
    assert _classify(err.value, set()).transient
    made = len(ledger.live())
    assert 3 <= made < 12

    # the store is back: a new run (once the lease ran out) recovers what was pending and
    # finishes the rest
    with SqlStateStore(url, SecretBox(key), pool_size=2) as again:
        resumed = Engine(store=again, kinds=worker.registry(), parallelism=4, lock_wait_s=30)
        _, applied = resumed.converge(ENV, graph)
        assert applied.ok, applied
        assert len(again.snapshot(ENV).resources) == 12
    assert ledger.duplicates() == []
    assert len(ledger.live()) == 12
