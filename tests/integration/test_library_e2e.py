"""The library components end to end through the engine, on local servers the engine starts.

apply → a client logs in with the generated credentials and may touch only its own keys →
destroy → nothing remains (no server process, no data dir, no bucket).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from _sweeper import Sweeper
from stackyard import library
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.kinds import naming_lookup
from stackyard.model.component import apply_inputs, load_component
from stackyard.model.ids import ResourceUid
from stackyard.model.values import Secret, reveal
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Instance, expand
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.integration

PG_SERVER = ResourceUid("postgres-instance", "default", "core")
REDIS_SERVER = ResourceUid("redis-instance", "default", "core")
DB = ResourceUid("postgres", "default", "shop.db")
CACHE = ResourceUid("redis", "default", "shop.cache")
VOLUME = ResourceUid("volume", "default", "shop.data")


def _instance(name: str, uid: ResourceUid, env: str, **requires: ResourceUid) -> Instance:
    comp = load_component(library.path(name))
    return Instance(
        uid=uid,
        component=comp,
        inputs=apply_inputs(comp, {}),
        context={"env": env, "env_type": "development", "workload": "shop", "uid": str(uid)},
        requires=requires,
    )


@pytest.fixture
def engine(home: Path) -> Iterator[Engine]:
    store = SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))
    try:
        yield Engine(store=store, kinds=ProviderRegistry.discover(), events=Events(_collect))
    finally:
        store.close()


EVENTS: list[Event] = []


def _collect(event: Event) -> None:
    EVENTS.append(event)


def test_library_bundle_apply_login_isolate_destroy(
    engine: Engine, home: Path, sweeper: Sweeper
) -> None:
    env = sweeper.env
    graph, diags = expand(
        [
            _instance("postgres-server", PG_SERVER, env),
            _instance("redis-server", REDIS_SERVER, env),
            _instance("postgres-database", DB, env, server=PG_SERVER),
            _instance("redis-cache", CACHE, env, server=REDIS_SERVER),
            _instance("local-volume", VOLUME, env),
        ],
        env=env,
        naming_for=naming_lookup(engine.kinds),
    )
    assert not diags, diags
    try:
        planned, result = engine.converge(env, graph)
        assert result.ok, (result.failed, result.skipped)
        assert planned.summary()["create"] == len(graph.nodes)

        db: dict[str, Any] = reveal(engine.outputs(env, graph, DB))
        assert isinstance(engine.outputs(env, graph, DB)["password"], Secret)
        with psycopg.connect(
            host=db["host"],
            port=int(db["port"]),
            dbname=db["database"],
            user=db["username"],
            password=db["password"],
            connect_timeout=5,
        ) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

        cache: dict[str, Any] = reveal(engine.outputs(env, graph, CACHE))
        client = redis.Redis(
            host=cache["host"],
            port=int(cache["port"]),
            username=cache["username"],
            password=cache["password"],
        )
        try:
            client.set(cache["prefix"] + "k", "v")
            assert client.get(cache["prefix"] + "k") == b"v"
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set("someone-else:k", "v")
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command("FLUSHALL")
        finally:
            client.close()

        volume = engine.outputs(env, graph, VOLUME)
        assert Path(volume["path"]).is_dir()

        again = engine.plan(env, graph)
        assert not again.has_changes, [
            (c.address, c.action.value, c.reason, c.changed)
            for c in again.changes
            if c.action.value != "noop"
        ]

        text = " ".join(str(e.to_json()) for e in EVENTS)
        assert db["password"] not in text and cache["password"] not in text
    finally:
        destroyed = engine.apply(engine.plan(env, None), None)
    assert destroyed.ok, destroyed.failed
    assert not engine.store.snapshot(env).resources
    leftovers = [p for p in (home / "servers", home / "buckets") if p.exists() and any(p.iterdir())]
    assert not leftovers, [list(p.iterdir()) for p in leftovers]
    for pid_file in home.rglob("*.pid"):
        pid = int(pid_file.read_text().strip() or 0)
        assert pid and not os.path.exists(f"/proc/{pid}"), f"server process {pid} still running"


def test_partial_failure_then_reapply_converges(
    engine: Engine, postgres_admin_url: str, sweeper: Sweeper
) -> None:
    """An extension that does not exist fails its node only; fixing the input converges
    without re-creating what already succeeded."""
    env = sweeper.env
    comp = load_component(library.path("postgres-database"))
    server = {"host": "127.0.0.1", "port": 5432, "admin_url": Secret(postgres_admin_url)}

    def graph_with(extensions: list[str]) -> Any:
        inst = Instance(
            uid=DB,
            component=comp,
            inputs=apply_inputs(comp, {"extensions": extensions}),
            context={"env": env, "env_type": "development", "workload": "shop", "uid": str(DB)},
            external={"server": server},
        )
        graph, diags = expand([inst], env=env, naming_for=naming_lookup(engine.kinds))
        assert not diags, diags
        return graph

    broken = graph_with(["no_such_extension_zz"])
    try:
        _, first = engine.converge(env, broken)
        assert not first.ok
        assert list(first.failed) == [f"{DB}/extension[no_such_extension_zz]"], first.failed
        created = {a: r.physical_id for a, r in engine.store.snapshot(env).resources.items()}
        assert len(created) == 4  # password, role, database, grant

        fixed = graph_with([])
        planned, second = engine.converge(env, fixed)
        assert second.ok, second.failed
        assert not planned.has_changes, planned.summary()
        after = {a: r.physical_id for a, r in engine.store.snapshot(env).resources.items()}
        assert after == created
        assert not engine.plan(env, fixed).has_changes
    finally:
        assert engine.apply(engine.plan(env, None), None).ok
