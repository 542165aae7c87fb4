"""The StateStore contract, run against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stackyard.errors import (
    InvalidInputError,
    LockHeldError,
    LockLostError,
    StateError,
    StoreUnavailableError,
)
from stackyard.state import migrations
from stackyard.state.api import Intent, ResourceRecord
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.integration

CANARY = "canary-Pa55w0rd-7f3e"


# -- backends -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url(pg_databases: Callable[[], str]) -> str:
    """One throw-away database shared by the PostgreSQL half of the contract suite."""
    return pg_databases()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def key() -> str:
    return SecretBox.generate_key()


@pytest.fixture
def store(url: str, key: str) -> Iterator[SqlStateStore]:
    s = SqlStateStore(url, SecretBox(key))
    yield s
    s.close()


@pytest.fixture
def env() -> str:
    """A unique environment per test, so the PostgreSQL tests can share one database."""
    return f"env-{uuid.uuid4().hex[:10]}"


def record(address: str, **kw: object) -> ResourceRecord:
    fields: dict[str, object] = {
        "kind": "noop.thing",
        "physical_name": f"sy-{address.replace('/', '-')}",
        "physical_id": f"id-{address}",
        "config": {"size": 1},
        "outputs": {"host": "localhost"},
    }
    fields.update(kw)
    return ResourceRecord(address=address, **fields)  # type: ignore[arg-type]


def intent(env: str, address: str, op: str = "create", **kw: object) -> Intent:
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "env": env,
        "op": op,
        "address": address,
        "kind": "noop.thing",
        "physical_name": f"sy-{address.replace('/', '-')}",
        "config": {"size": 1},
    }
    fields.update(kw)
    return Intent(**fields)  # type: ignore[arg-type]


def apply_one(store: SqlStateStore, lease: object, env: str, rec: ResourceRecord) -> int:
    it = intent(env, rec.address)
    store.begin(lease, it)  # type: ignore[arg-type]
    return store.commit(lease, it.id, rec, address=rec.address)  # type: ignore[arg-type]


# -- snapshots, rows and serials ----------------------------------------------------------------


def test_snapshot_of_unknown_env_is_empty_with_a_stable_lineage(
    store: SqlStateStore, env: str
) -> None:
    first = store.snapshot(env)
    assert (first.env, first.serial, dict(first.resources)) == (env, 0, {})
    assert uuid.UUID(first.lineage)
    assert store.snapshot(env).lineage == first.lineage
    assert env not in store.environments()


def test_commit_writes_a_row_clears_the_intent_and_bumps_the_serial(
    store: SqlStateStore, env: str
) -> None:
    lineage = store.snapshot(env).lineage
    lease = store.acquire(env, holder="alice", ttl_s=30)
    rec = record("postgres.default#a.db/role", depends_on=("x/y",), uid="postgres.default#a.db")
    it = intent(env, rec.address)
    store.begin(lease, it)
    assert [i.id for i in store.intents(env)] == [it.id]
    assert store.commit(lease, it.id, rec, address=rec.address) == 1
    snap = store.snapshot(env)
    assert (snap.serial, snap.lineage) == (1, lineage)
    got = snap.resources[rec.address]
    assert got == record(rec.address, depends_on=("x/y",), uid="postgres.default#a.db", serial=1), (
        "the row round-trips, stamped with the serial that wrote it"
    )
    assert store.intents(env) == []
    assert env in store.environments()


def test_update_then_delete(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    apply_one(store, lease, env, record("a/r"))
    apply_one(store, lease, env, record("a/r", config={"size": 2}))
    assert store.snapshot(env).resources["a/r"].config == {"size": 2}
    it = intent(env, "a/r", op="delete")
    store.begin(lease, it)
    assert store.commit(lease, it.id, None, address="a/r") == 3
    snap = store.snapshot(env)
    assert (snap.serial, dict(snap.resources)) == (3, {})


def test_serial_never_resets_and_forget_bumps_it(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    for name in ("a/1", "a/2"):
        apply_one(store, lease, env, record(name))
    assert store.forget(lease, ["a/1", "a/2"]) == 3
    snap = store.snapshot(env)
    assert (snap.serial, dict(snap.resources)) == (3, {})
    assert apply_one(store, lease, env, record("a/3")) == 4


def test_secrets_are_encrypted_at_rest_and_decrypted_on_read(
    store: SqlStateStore, env: str, url: str
) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    rec = record("a/pw", secret_config={"password": CANARY}, secret_outputs={"token": CANARY})
    it = intent(env, "a/pw", secret_config={"password": CANARY})
    store.begin(lease, it)
    assert store.intents(env)[0].secret_config == {"password": CANARY}
    raw_engine = sa.create_engine(store_url(url))
    try:
        with raw_engine.connect() as conn:
            raw = conn.execute(sa.text("SELECT * FROM intents WHERE env = :e"), {"e": env}).all()
            assert raw and CANARY not in repr(raw)
            store.commit(lease, it.id, rec, address="a/pw")
            raw = conn.execute(sa.text("SELECT * FROM resources WHERE env = :e"), {"e": env}).all()
            assert raw and CANARY not in repr(raw)
    finally:
        raw_engine.dispose()
    got = store.snapshot(env).resources["a/pw"]
    assert got.full_config()["password"] == CANARY
    assert got.full_outputs()["token"] == CANARY
    assert "password" not in got.config


def store_url(url: str) -> str:
    """The URL for a raw SQLAlchemy engine (psycopg 3 for PostgreSQL)."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        return url
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def test_wrong_key_is_a_state_error_without_secrets(
    url: str, store: SqlStateStore, env: str
) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    apply_one(store, lease, env, record("a/pw", secret_outputs={"token": CANARY}))
    other = SqlStateStore(url, SecretBox(SecretBox.generate_key()))
    try:
        with pytest.raises(StateError, match="secret key does not match") as info:
            other.snapshot(env)
        assert CANARY not in str(info.value)
        assert "gAAAA" not in str(info.value)  # no Fernet token either
    finally:
        other.close()


def test_intents_are_listed_oldest_first_and_abandon_clears_them(
    store: SqlStateStore, env: str
) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    first, second = intent(env, "a/1"), intent(env, "a/2", op="delete", depends_on=("a/1",))
    store.begin(lease, first)
    store.begin(lease, second)
    listed = store.intents(env)
    assert [(i.id, i.op, i.depends_on) for i in listed] == [
        (first.id, "create", ()),
        (second.id, "delete", ("a/1",)),
    ]
    assert listed[0].created_at <= listed[1].created_at
    store.abandon(lease, first.id)
    assert [i.id for i in store.intents(env)] == [second.id]
    assert store.snapshot(env).serial == 0, "abandon records nothing"


# -- the lock -----------------------------------------------------------------------------------


def test_a_second_writer_fails_fast_naming_the_holder(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice@laptop (pid 1)", ttl_s=30)
    with pytest.raises(LockHeldError, match=r"locked by alice@laptop \(pid 1\)") as info:
        store.acquire(env, holder="bob", ttl_s=30)
    assert (info.value.holder, info.value.lock_id) == (lease.holder, lease.lock_id)
    shown = store.lock_info(env)
    assert shown is not None
    assert (shown.holder, shown.lock_id, shown.token) == (lease.holder, lease.lock_id, lease.token)


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    store: SqlStateStore, env: str
) -> None:
    old = store.acquire(env, holder="alice", ttl_s=0.3)
    it = intent(env, "a/1")
    store.begin(old, it)
    time.sleep(0.4)
    new = store.acquire(env, holder="bob", ttl_s=30)
    assert new.token > old.token
    for write in (
        lambda: store.commit(old, it.id, record("a/1"), address="a/1"),
        lambda: store.begin(old, intent(env, "a/2")),
        lambda: store.abandon(old, it.id),
        lambda: store.forget(old, ["a/1"]),
        lambda: store.mark_applied(old, "plan-1"),
        lambda: store.heartbeat(old, ttl_s=30),
    ):
        with pytest.raises(LockLostError, match="now held by bob"):
            write()
    store.release(old)  # not ours any more: a no-op
    assert store.lock_info(env) is not None
    assert store.commit(new, it.id, record("a/1"), address="a/1") == 1, "the new holder goes on"


def test_an_expired_lease_cannot_write_even_before_takeover(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=0.2)
    time.sleep(0.3)
    with pytest.raises(LockLostError, match="expired"):
        store.begin(lease, intent(env, "a/1"))
    revived = store.heartbeat(lease, ttl_s=30)  # nobody took it: still ours
    store.begin(revived, intent(env, "a/1"))


def test_heartbeat_extends_the_lease(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=0.5)
    later = store.heartbeat(lease, ttl_s=60)
    assert later.expires_at > lease.expires_at
    assert (later.lock_id, later.token) == (lease.lock_id, lease.token)
    info = store.lock_info(env)
    assert info is not None and info.expires_at == pytest.approx(later.expires_at)
    time.sleep(0.6)
    with pytest.raises(LockHeldError):
        store.acquire(env, holder="bob", ttl_s=30)


def test_force_unlock_needs_the_lock_id(store: SqlStateStore, env: str) -> None:
    with pytest.raises(InvalidInputError, match="not locked"):
        store.force_unlock(env, "nope")
    lease = store.acquire(env, holder="alice", ttl_s=30)
    with pytest.raises(InvalidInputError, match="does not match"):
        store.force_unlock(env, "not-the-id")
    assert store.lock_info(env) is not None
    store.force_unlock(env, lease.lock_id)
    assert store.lock_info(env) is None
    with pytest.raises(LockLostError, match="released or broken"):
        store.begin(lease, intent(env, "a/1"))


def test_tokens_only_grow_across_releases(store: SqlStateStore, env: str) -> None:
    tokens = []
    for _ in range(3):
        lease = store.acquire(env, holder="alice", ttl_s=30)
        tokens.append(lease.token)
        store.release(lease)
    assert store.lock_info(env) is None
    assert tokens == sorted(set(tokens))


def test_applied_plans_are_remembered(store: SqlStateStore, env: str) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=30)
    assert not store.was_applied(env, "plan-1")
    store.mark_applied(lease, "plan-1")
    store.mark_applied(lease, "plan-1")
    assert store.was_applied(env, "plan-1")
    assert not store.was_applied(env, "plan-2")
    assert not store.was_applied("other-" + env, "plan-1")


def test_concurrent_writers_in_threads_are_each_one_transaction(
    store: SqlStateStore, env: str
) -> None:
    lease = store.acquire(env, holder="alice", ttl_s=60)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                apply_one(store, lease, env, record(f"t{n}/r{i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    snap = store.snapshot(env)
    assert snap.serial == 200
    assert len(snap.resources) == 200
    assert sorted(r.serial for r in snap.resources.values()) == list(range(1, 201))


def test_migrations_are_idempotent(url: str, key: str) -> None:
    for _ in range(2):
        SqlStateStore(url, SecretBox(key)).close()
    engine = sa.create_engine(store_url(url))
    try:
        with engine.connect() as conn:
            assert migrations.current(conn) == migrations.head() == "0008"
    finally:
        engine.dispose()


# -- failing closed -----------------------------------------------------------------------------


def test_an_unreachable_postgresql_fails_closed_with_the_password_masked(key: str) -> None:
    with pytest.raises(StoreUnavailableError, match="unavailable") as info:
        SqlStateStore("postgresql://stack:hunter2secret@127.0.0.1:1/state", SecretBox(key))
    assert "hunter2secret" not in str(info.value)
    assert "***" in str(info.value)


def test_an_unwritable_sqlite_path_fails_closed(tmp_path: Path, key: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        SqlStateStore(f"sqlite:///{blocker / 'state.db'}", SecretBox(key))


def test_a_store_that_goes_away_fails_closed(tmp_path: Path, key: str) -> None:
    folder = tmp_path / "dir"
    store = SqlStateStore(f"sqlite:///{folder / 'state.db'}", SecretBox(key))
    try:
        store.close()  # drop pooled connections, then make the database unreachable
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        folder.write_text("no longer a directory")
        with pytest.raises(StoreUnavailableError, match="unavailable"):
            store.acquire("dev", holder="alice", ttl_s=30)
    finally:
        store.close()


# -- many processes -----------------------------------------------------------------------------

CHILD = """
import json, os, sys, time
from stackyard.errors import LockHeldError
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

url, env, go, key, ttl, mode = sys.argv[1:]
store = SqlStateStore(url, SecretBox(key))
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
t0 = time.monotonic()
try:
    lease = store.acquire(env, holder=f"proc-{os.getpid()}", ttl_s=float(ttl))
    out = {"won": True, "holder": lease.holder, "token": lease.token}
except LockHeldError as exc:
    out = {"won": False, "holder": exc.holder, "message": exc.message}
out["seconds"] = time.monotonic() - t0
print(json.dumps(out), flush=True)
if mode == "hold":
    time.sleep(600)
store.close()
"""


def _spawn(tmp_path: Path, url: str, env: str, key: str, *, ttl: float, mode: str, n: int):  # type: ignore[no-untyped-def]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    go = tmp_path / f"go-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", str(script), url, env, str(go), key, str(ttl), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(n)
    ]
    return procs, go


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"child {proc.pid} exited early with {proc.poll()}"
    return line.strip()


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema yet, so concurrent openers also race the migration."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'state.db'}"
    return str(request.getfixturevalue("pg_databases")())


def test_twenty_processes_acquire_at_once_exactly_one_wins(
    tmp_path: Path, fresh_url: str, key: str
) -> None:
    env = "race"
    procs, go = _spawn(tmp_path, fresh_url, env, key, ttl=60, mode="hold", n=20)
    try:
        assert [_read_line(p) for p in procs] == ["ready"] * 20
        go.touch()
        results = [json.loads(_read_line(p)) for p in procs]
    finally:
        _reap(procs)
    winners = [r for r in results if r["won"]]
    assert len(winners) == 1, results
    holder = winners[0]["holder"]
    losers = [r for r in results if not r["won"]]
    assert all(r["holder"] == holder and holder in r["message"] for r in losers), losers
    # Fail fast: no loser waits for the busy timeout (5 s) or anything like it.
    assert max(r["seconds"] for r in losers) < 5.0, results


def test_a_killed_holder_s_lease_expires_and_is_taken_over(
    tmp_path: Path, url: str, key: str, env: str
) -> None:
    procs, go = _spawn(tmp_path, url, env, key, ttl=1.0, mode="hold", n=1)
    try:
        assert _read_line(procs[0]) == "ready"
        go.touch()
        result = json.loads(_read_line(procs[0]))
        assert result["won"]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
    finally:
        _reap(procs)
    store = SqlStateStore(url, SecretBox(key))
    try:
        with pytest.raises(LockHeldError, match=result["holder"]):
            store.acquire(env, holder="rescuer", ttl_s=30)
        info = store.lock_info(env)
        assert info is not None
        time.sleep(max(0.0, info.expires_at - time.time()) + 0.05)
        lease = store.acquire(env, holder="rescuer", ttl_s=30)
        assert lease.token > result["token"]
    finally:
        store.close()


# -- the CLI ------------------------------------------------------------------------------------


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKYARD_HOME": str(home)}
    env.pop("STACKYARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stackyard.cli", "state", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_cli_shows_the_lock_and_force_unlock_needs_yes_off_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    from stackyard.settings import Settings
    from stackyard.state import open_store

    with open_store(Settings.load(home=home)) as store:
        lease = store.acquire("dev", holder="alice@laptop (pid 7)", ttl_s=60)
        apply_one(store, lease, "dev", record("a/pw", secret_outputs={"token": CANARY}))
    shown = _cli(home, "lock", "dev", "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["holder"] == "alice@laptop (pid 7)"
    listed = _cli(home, "list", "dev", "-o", "json")
    assert json.loads(listed.stdout)["resources"][0]["address"] == "a/pw"
    assert CANARY not in listed.stdout
    refused = _cli(home, "force-unlock", "dev", lease.lock_id)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    wrong = _cli(home, "force-unlock", "dev", "not-the-id", "--yes")
    assert wrong.returncode == 2 and "does not match" in wrong.stderr
    done = _cli(home, "force-unlock", "dev", lease.lock_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(_cli(home, "lock", "dev", "-o", "json").stdout) is None
