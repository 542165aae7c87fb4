"""The ``local`` provider against real processes: directories, PostgreSQL and Redis servers."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stackyard.errors import ProviderError, ProviderPermanentError
from stackyard.host import supervise
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
)
from stackyard.providers.local import PROVIDER, binaries
from stackyard.providers.local.directory import SHARED_BUCKETS
from stackyard.providers.local.layout import MARKER

pytestmark = pytest.mark.integration


def _meta(kind: str, name: str, env: str = "it") -> ResourceMeta:
    return ResourceMeta(address=f"test#{name}/res", kind=kind, env=env, physical_name=name)


class Harness:
    """One kind, one config, and a finalizer that deletes whatever was created."""

    def __init__(self, kind_name: str, home: Path, name: str) -> None:
        self.kind: Kind = PROVIDER.kind(kind_name)
        self.meta = _meta(kind_name, name)
        self.config: dict[str, Any] = {"home": str(home)}

    def create(self) -> dict[str, Any]:
        return dict(self.kind.create(CreateRequest(meta=self.meta, config=self.config)).outputs)

    def update(self, outputs: dict[str, Any]) -> dict[str, Any]:
        req = UpdateRequest(
            meta=self.meta,
            config=self.config,
            prior_config=self.config,
            prior_outputs=outputs,
            changed=frozenset(),
        )
        return dict(self.kind.update(req).outputs)

    def observe(self) -> Any:
        return self.kind.observe(ObserveRequest(meta=self.meta, config=self.config))

    def delete(self) -> None:
        self.kind.delete(DeleteRequest(meta=self.meta, config=self.config, outputs={}))

    @property
    def server_dir(self) -> Path:
        return Path(self.config["home"]) / "servers" / self.meta.physical_name

    def pid(self) -> int:
        proc = supervise.read_pidfile(self.server_dir / "server.pid")
        assert proc is not None
        return proc.pid


@pytest.fixture
def harness(home: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(kind_name: str, name: str) -> Harness:
        h = Harness(kind_name, home, name)
        made.append(h)
        return h

    yield make
    for h in made:
        with contextlib.suppress(ProviderError):
            h.delete()
        # Whatever happened in the test, no process may survive it.
        proc = supervise.read_pidfile(h.server_dir / "server.pid")
        if proc is not None:
            supervise.reap_group(proc)


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while supervise.alive(supervise.Process(pid, 0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not supervise.alive(supervise.Process(pid, 0))


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


# -- local.directory ----------------------------------------------------------------------


def test_directory_lifecycle(harness: Any, home: Path) -> None:
    d = harness("local.directory", "it-bucket")
    assert d.observe() is None
    out = d.create()
    path = Path(out["path"])
    if os.geteuid() == 0:  # out of the 0700 home, given to the env's workload account
        assert path.parent.parent == SHARED_BUCKETS and path.name == "it-bucket"
        assert path.stat().st_uid != 0 and stat.S_IMODE(path.stat().st_mode) == 0o700
    else:
        assert path == home / "buckets" / "it-bucket"
    assert out["source"] == out["path"]
    assert (path / MARKER).read_text().strip() == d.meta.label
    assert d.create() == out, "create converges on our own directory"
    observed = d.observe()
    assert observed.managed and observed.outputs == out
    (path / "data.txt").write_text("x")
    d.delete()
    assert not path.exists()
    assert not path.parent.exists() or path.parent == home / "buckets"
    assert d.observe() is None
    d.delete()  # deleting a missing directory succeeds


def test_directory_custom_root(harness: Any, tmp_path: Path) -> None:
    d = harness("local.directory", "it-rooted")
    d.config["root"] = str(tmp_path / "elsewhere")
    out = d.create()
    assert out["path"] == str(tmp_path / "elsewhere" / "it-rooted")


def test_directory_refuses_foreign_label(harness: Any, home: Path) -> None:
    d = harness("local.directory", "it-foreign")
    path = home / "buckets" / "it-foreign"
    path.mkdir(parents=True)
    (path / MARKER).write_text("stackyard:other-env:someone/else\n")
    observed = d.observe()
    assert observed is not None and observed.managed is False
    with pytest.raises(ProviderPermanentError, match="not owned"):
        d.create()
    with pytest.raises(ProviderPermanentError, match="Refusing"):
        d.delete()
    assert path.exists()


def test_directory_without_marker_is_not_ours(harness: Any, home: Path) -> None:
    d = harness("local.directory", "it-plain")
    (home / "buckets" / "it-plain").mkdir(parents=True)
    assert d.observe().managed is False
    with pytest.raises(ProviderPermanentError):
        d.create()


# -- local.postgres_server ----------------------------------------------------------------


@pytest.fixture
def postgres(harness: Any) -> Any:
    if binaries.find_postgres() is None:
        pytest.skip("no PostgreSQL binaries on this machine (system or stackyard[local])")
    return harness("local.postgres_server", "it-pg")


def test_postgres_server_lifecycle(postgres: Any) -> None:
    assert postgres.observe() is None
    started = time.monotonic()
    out = postgres.create()
    cold_start = time.monotonic() - started
    print(f"local.postgres_server cold start: {cold_start:.2f}s")
    assert out["host"] == "127.0.0.1"
    assert set(PROVIDER.kind("local.postgres_server").sensitive_outputs) == {"admin_url"}

    with psycopg.connect(out["admin_url"]) as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=out["host"], port=out["port"], user="postgres", password="wrong", dbname="postgres"
        )

    observed = postgres.observe()
    assert observed.health == "ok" and observed.managed
    assert observed.outputs["admin_url"] == out["admin_url"]

    pid = postgres.pid()
    if os.geteuid() == 0:
        assert _uid(pid) != 0, "under root the server runs as an unprivileged user"

    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    assert postgres.observe().health == "stopped"

    again = postgres.update(out)
    assert again == out, "a restarted server keeps its port and password"
    assert postgres.observe().health == "ok"
    with psycopg.connect(out["admin_url"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)

    os.kill(postgres.pid(), signal.SIGKILL)
    _wait_dead(postgres.pid())
    assert postgres.create() == out, "create converges on a stopped server too"

    pid = postgres.pid()
    data_dir = Path(out["data_dir"])
    postgres.delete()
    _wait_dead(pid)
    assert not postgres.server_dir.exists()
    assert not data_dir.exists()
    assert postgres.observe() is None


def test_postgres_server_password_change(postgres: Any) -> None:
    postgres.config["password"] = "first-Secret-1"
    out = postgres.create()
    assert "first-Secret-1" in out["admin_url"]
    postgres.config["password"] = "second-Secret-2"
    out2 = postgres.update(out)
    with psycopg.connect(out2["admin_url"]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert out2["port"] == out["port"]


def test_postgres_server_refuses_foreign_dir(postgres: Any) -> None:
    postgres.server_dir.mkdir(parents=True)
    (postgres.server_dir / MARKER).write_text("stackyard:elsewhere:x/y\n")
    assert postgres.observe().managed is False
    with pytest.raises(ProviderPermanentError):
        postgres.create()
    with pytest.raises(ProviderPermanentError):
        postgres.delete()
    assert postgres.server_dir.exists()


# -- local.redis_server -------------------------------------------------------------------


@pytest.fixture
def redis_server(harness: Any) -> Any:
    if binaries.find_redis_server() is None:
        pytest.skip("no redis-server on this machine (system or stackyard[local])")
    return harness("local.redis_server", "it-redis")


def test_redis_server_lifecycle(redis_server: Any) -> None:
    assert redis_server.observe() is None
    out = redis_server.create()
    assert out["username"] == "default"
    client = redis.Redis.from_url(out["admin_url"])
    try:
        assert client.ping() is True
        assert client.acl_whoami() == "default"
    finally:
        client.close()

    # RESP2, so the first command is PING itself (RESP3 would open with HELLO).
    anonymous = redis.Redis(
        host=out["host"], port=out["port"], protocol=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(redis.AuthenticationError, match=r"(?i)authentication required"):
            anonymous.ping()
    finally:
        anonymous.close()

    assert redis_server.observe().health == "ok"
    pid = redis_server.pid()
    if os.geteuid() == 0:
        assert _uid(pid) != 0
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    assert redis_server.observe().health == "stopped"
    assert redis_server.update(out) == out
    assert redis_server.observe().health == "ok"

    pid = redis_server.pid()
    redis_server.delete()
    _wait_dead(pid)
    assert not redis_server.server_dir.exists()
    assert redis_server.observe() is None


def test_redis_server_password_change(redis_server: Any) -> None:
    redis_server.config["password"] = "first-Secret-1"
    out = redis_server.create()
    redis_server.config["password"] = "second-Secret-2"
    out2 = redis_server.update(out)
    assert out2["password"] == "second-Secret-2"
    client = redis.Redis.from_url(out2["admin_url"])
    try:
        assert client.ping() is True
    finally:
        client.close()
    # The new password survives a restart (the ACL file is rewritten from the secret).
    os.kill(redis_server.pid(), signal.SIGKILL)
    _wait_dead(redis_server.pid())
    assert redis_server.update(out2) == out2
    client = redis.Redis.from_url(out2["admin_url"])
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="shared buckets are used only under root")
def test_directory_shared_root_made_when_missing(
    harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine that never ran a workload has no /var/lib/stackyard: the first bucket makes it
    (``stackyard init`` as root failed with FileNotFoundError there)."""
    from stackyard.providers.local import directory

    shared = tmp_path / "var-lib-stackyard" / "buckets"
    monkeypatch.setattr(directory, "SHARED_BUCKETS", shared)
    d = harness("local.directory", "it-fresh-machine")
    path = Path(d.create()["path"])
    assert path.parent.parent == shared and path.is_dir()
    d.delete()


def test_claim_never_leaves_an_unmarked_directory(tmp_path: Path) -> None:
    """A create killed inside ``claim`` used to leave an empty, unmarked directory that every
    later create refused as foreign (seen in tests/reliability/test_create_resume.py); now
    the directory appears with its marker or not at all, and an older half-made one (only
    the marker being written) is finished."""
    from stackyard.providers.local import layout

    label = "stackyard:inst:dev:postgres.default#core/server"
    path = tmp_path / "servers" / "dev-core-server"
    layout.claim(path, label, address="a", mode=0o711)
    assert layout.ownership(path, label) is layout.Ownership.OURS
    assert stat.S_IMODE(path.stat().st_mode) == 0o711
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no staging dir left"
    layout.claim(path, label, address="a")  # converges on its own directory

    half = tmp_path / "servers" / "half"
    half.mkdir()
    (half / (layout.MARKER + ".tmp")).write_text(label + "\n")
    layout.claim(half, label, address="a")
    assert layout.ownership(half, label) is layout.Ownership.OURS

    other = tmp_path / "servers" / "other"
    other.mkdir()
    (other / (layout.MARKER + ".tmp")).write_text("stackyard:someone-else\n")
    with pytest.raises(ProviderPermanentError):
        layout.claim(other, label, address="a")
