"""The state store's read path (issue 14): reads are not pinged, a lost PostgreSQL connection
is replaced transparently, reads stay read-only, and a ``read_session`` shares one read
transaction between a request's reads.

On SQLite and on fresh databases of the machine's PostgreSQL; backends are terminated with
``pg_terminate_backend`` from an admin connection, as a server restart or an operator would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stackyard.errors import StateError
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{home / 'state.db'}"
    make: Callable[[], str] = request.getfixturevalue("pg_databases")
    return make()


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    return pg_databases()


@pytest.fixture
def store(url: str) -> Iterator[SqlStateStore]:
    s = SqlStateStore(url, SecretBox(SecretBox.generate_key()), pool_size=2)
    yield s
    s.close()


def _terminate_backends(url: str) -> int:
    """Terminate every backend connected to ``url``'s database; how many there were."""
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (u.database,),
        ).fetchall()
    return len(rows)


def test_a_read_after_its_backend_was_terminated_succeeds(pg_url: str) -> None:
    with SqlStateStore(pg_url, SecretBox(SecretBox.generate_key()), pool_size=2) as s:
        s.acquire("e1", holder="h", ttl_s=60)
        assert s.lock_info("e1") is not None  # pooled connections exist now
        assert _terminate_backends(pg_url) >= 1
        info = s.lock_info("e1")  # the dead pooled connection is replaced, not reported
        assert info is not None and info.holder == "h"
        # through ``reading`` (records, tokens, jobs) and in a read session too
        assert _terminate_backends(pg_url) >= 1
        with s.reading() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        assert _terminate_backends(pg_url) >= 1
        with s.read_session():
            assert s.lock_info("e1") is not None
            assert s.now() > 0
        # writes still ping their connection first
        assert _terminate_backends(pg_url) >= 1
        s.force_unlock("e1", info.lock_id)
        assert s.lock_info("e1") is None


def test_a_read_failing_for_another_reason_is_not_retried(pg_url: str) -> None:
    with SqlStateStore(pg_url, SecretBox(SecretBox.generate_key()), pool_size=1) as s:
        with pytest.raises(StateError, match="failed"), s.reading() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        assert s.lock_info("e1") is None  # the connection went back clean


def test_reads_are_read_only_and_writes_stay_transactional(pg_url: str) -> None:
    with SqlStateStore(pg_url, SecretBox(SecretBox.generate_key()), pool_size=1) as s:
        insert = sa.text(
            "INSERT INTO environments_state (env, lineage, serial, created_at) "
            "VALUES ('ro', 'l', 1, 0)"
        )
        with pytest.raises(StateError, match="read-only"), s.reading() as conn:
            conn.execute(insert)
        for _ in range(3):  # every pooled connection has served a read by now
            with s.reading() as conn:
                conn.execute(sa.text("SELECT 1"))
        # a write that fails half-way leaves nothing (its connection is not in autocommit)
        with pytest.raises(RuntimeError), s.writing() as conn:
            conn.execute(insert)
            raise RuntimeError("half-way")
        assert "ro" not in s.environments()
        with s.reading() as conn:
            found = conn.execute(
                sa.text("SELECT count(*) FROM environments_state WHERE env = 'ro'")
            ).scalar_one()
        assert found == 0


def test_a_read_session_sees_one_snapshot(url: str, store: SqlStateStore) -> None:
    with SqlStateStore(url, SecretBox(SecretBox.generate_key()), pool_size=1) as other:
        with store.read_session():
            assert store.lock_info("e1") is None
            other.acquire("e1", holder="other", ttl_s=60)  # another process's write
            assert store.lock_info("e1") is None  # the session's snapshot predates it
        assert store.lock_info("e1") is not None  # a new read sees it


def test_a_write_within_a_read_session_is_seen_by_its_later_reads(store: SqlStateStore) -> None:
    with store.read_session():
        assert store.lock_info("e2") is None
        lease = store.acquire("e2", holder="me", ttl_s=60)
        info = store.lock_info("e2")
        assert info is not None and info.lock_id == lease.lock_id
        snap = store.snapshot("new-env")  # its row is written on the first snapshot
        assert snap.serial == 0 and snap.lineage
        store.release(lease)
        assert store.lock_info("e2") is None


def test_a_failed_read_ends_the_session_transaction(store: SqlStateStore) -> None:
    with store.read_session():
        with pytest.raises(StateError), store.reading() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        assert store.lock_info("e3") is None  # a new transaction, not an aborted one
    assert store.lock_info("e3") is None
