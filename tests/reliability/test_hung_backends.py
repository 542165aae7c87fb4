"""A backend that stops answering fails the provider call with a transient error, in bounded
time (issue 11, item 8).

A tiny TCP proxy on 127.0.0.1 forwards to the real PostgreSQL or Redis until it is told to
black-hole: from then on it keeps every connection open and accepts new ones, but forwards
nothing either way, as a hung server or a dropped network path would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from _sweeper import Sweeper
from stackyard.errors import ProviderTransientError
from stackyard.providers.api import CreateRequest, DeleteRequest, ObserveRequest, ResourceMeta
from stackyard.providers.postgres import make_provider as make_pg
from stackyard.providers.postgres.connection import Connections
from stackyard.providers.redis import Clients
from stackyard.providers.redis import make_provider as make_redis
from stackyard.providers.timeouts import CONNECT_ENV, OPERATION_ENV

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target`` until ``blackhole()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.holed = threading.Event()
        self.closing = threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.sockets.append(client)
            if self.holed.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self.closing.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            while self.holed.is_set() and not self.closing.is_set():
                self.closing.wait(0.2)  # hold the bytes: nothing goes through any more
            try:
                dst.sendall(data)
            except OSError:
                return

    def blackhole(self) -> None:
        self.holed.set()

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        self.thread.join(timeout=5)
        with self.lock:
            for s in self.sockets:
                s.close()


def _via(url: str, proxy: Proxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    netloc[-1] = host
    return urlunsplit(parts._replace(netloc="@".join(netloc)))


def _port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


@pytest.fixture
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECT_ENV, "2")
    monkeypatch.setenv(OPERATION_ENV, "2")


@pytest.fixture
def pg_proxy(postgres_admin_url: str) -> Iterator[Proxy]:
    proxy = Proxy(_port(postgres_admin_url, 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[Proxy]:
    proxy = Proxy(_port(redis_url, 6379))
    yield proxy
    proxy.close()


def _meta(kind: Any, env: str, uid: str, name: str) -> ResourceMeta:
    from stackyard.resolve.naming import physical_name

    return ResourceMeta(
        address=f"{uid}/{name}",
        kind=kind.name,
        env=env,
        physical_name=physical_name(env, uid, name, kind.naming),
    )


def test_postgres_blackholed_mid_session_fails_transient(
    short_limits: None, pg_proxy: Proxy, postgres_admin_url: str, sweeper: Sweeper
) -> None:
    conns = Connections()
    kind = make_pg(conns).kind("postgres.role")
    url = _via(postgres_admin_url, pg_proxy)
    meta = _meta(kind, sweeper.env, "postgres.default#hung.db", "role")
    config = {"server": url, "password": "pw"}
    try:
        assert kind.observe(ObserveRequest(meta, config)) is None  # works through the proxy
        pg_proxy.blackhole()  # the pooled connection now hangs
        with pytest.raises(ProviderTransientError) as info:
            kind.create(CreateRequest(meta, config))
        assert "did not answer" in info.value.message, info.value.message
        assert OPERATION_ENV in info.value.message
        with pytest.raises(ProviderTransientError):  # a new connection cannot even start
            kind.observe(ObserveRequest(meta, config))
    finally:
        conns.close()
        pool = Connections()
        direct = make_pg(pool).kind("postgres.role")
        direct.delete(DeleteRequest(meta, {**config, "server": postgres_admin_url}, {}))
        pool.close()


def test_postgres_blackholed_before_connect_fails_transient(
    short_limits: None, pg_proxy: Proxy, postgres_admin_url: str, sweeper: Sweeper
) -> None:
    conns = Connections()
    kind = make_pg(conns).kind("postgres.database")
    meta = _meta(kind, sweeper.env, "postgres.default#hung.db", "database")
    pg_proxy.blackhole()
    try:
        with pytest.raises(ProviderTransientError):
            kind.observe(ObserveRequest(meta, {"server": _via(postgres_admin_url, pg_proxy)}))
    finally:
        conns.close()


def test_redis_blackholed_mid_session_fails_transient(
    short_limits: None, redis_proxy: Proxy, redis_url: str, sweeper: Sweeper
) -> None:
    clients = Clients()
    kind = make_redis(clients).kind("redis.acl_user")
    meta = _meta(kind, sweeper.env, "redis.default#hung.cache", "user")
    config = {"server": _via(redis_url, redis_proxy), "password": "pw"}
    try:
        assert kind.observe(ObserveRequest(meta, config)) is None
        redis_proxy.blackhole()
        with pytest.raises(ProviderTransientError) as info:
            kind.create(CreateRequest(meta, config))
        assert OPERATION_ENV in info.value.message, info.value.message
    finally:
        clients.close()
        direct = Clients()
        make_redis(direct).kind("redis.acl_user").delete(
            DeleteRequest(meta, {**config, "server": redis_url}, {})
        )
        direct.close()


def test_redis_blackholed_before_connect_fails_transient(
    short_limits: None, redis_proxy: Proxy, redis_url: str, sweeper: Sweeper
) -> None:
    clients = Clients()
    kind = make_redis(clients).kind("redis.acl_user")
    meta = _meta(kind, sweeper.env, "redis.default#hung.cache", "user")
    redis_proxy.blackhole()
    try:
        with pytest.raises(ProviderTransientError):
            kind.observe(
                ObserveRequest(meta, {"server": _via(redis_url, redis_proxy), "password": "pw"})
            )
    finally:
        clients.close()
