"""A writer paused past its lease, and what it may leave behind, on the real PostgreSQL and Redis.

- A writer that journaled a create and then stopped (heartbeat and all, as under SIGSTOP)
  until its lease ran out and another writer took over must not reach the backend when it
  wakes: the provider call is fenced, not only the state writes around it.
- Whatever such a writer did manage to create carries the environment's label but is in no
  record; destroying the environment finds it by its label and deletes it, and leaves alone
  what another installation labelled for an environment of the same name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from _sweeper import Sweeper
from stackyard.engine.engine import Engine
from stackyard.engine.events import Event, Events
from stackyard.engine.kinds import naming_lookup
from stackyard.errors import StalePlanError
from stackyard.model.component import ComponentManifest, ResourceTemplate
from stackyard.model.ids import ResourceUid
from stackyard.providers.api import CreateRequest, ResourceMeta, validate_config
from stackyard.providers.registry import ProviderRegistry
from stackyard.resolve.graph import Graph, Instance, expand
from stackyard.state.api import Intent, Lease
from stackyard.state.secrets import SecretBox
from stackyard.state.sql import SqlStateStore

pytestmark = pytest.mark.reliability

UID = ResourceUid("thing", "default", "app.x")
TTL_S = 1.0


class PausingStore:
    """The real store, with a pause: after journaling a create, the writer stops (its
    heartbeat too) until ``resume`` is set, like a process under SIGSTOP."""

    def __init__(self, store: SqlStateStore) -> None:
        self._store = store
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def begin(self, lease: Lease, intent: Intent) -> None:
        self._store.begin(lease, intent)
        if intent.op == "create":
            self.paused.set()
            self.resume.wait(timeout=60)

    def heartbeat(self, lease: Lease, *, ttl_s: float) -> Lease:
        if self.paused.is_set():
            self.resume.wait(timeout=60)
        return self._store.heartbeat(lease, ttl_s=ttl_s)


def _graph(env: str, kinds: Any, resources: dict[str, dict[str, Any]]) -> Graph:
    comp = ComponentManifest(
        name="thing",
        version="1.0.0",
        owner="team",
        description="d",
        provides="thing",
        resources={n: ResourceTemplate(n, r["kind"], r["config"]) for n, r in resources.items()},
        outputs={},
    )
    graph, diags = expand(
        [Instance(UID, comp, {}, {"env": env})], env=env, naming_for=naming_lookup(kinds)
    )
    assert not diags, diags
    return graph


@pytest.fixture
def store(home: Path) -> Iterator[SqlStateStore]:
    s = SqlStateStore(f"sqlite:///{home}/state.db", SecretBox.from_home(home))
    try:
        yield s
    finally:
        s.close()


def _role_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    return row is not None


def _drop_role(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_a_writer_paused_past_its_lease_cannot_create_after_a_takeover(
    store: SqlStateStore, postgres_admin_url: str, sweeper: Sweeper
) -> None:
    env = sweeper.env
    kinds = ProviderRegistry.discover()
    role = {"kind": "postgres.role", "config": {"server": postgres_admin_url, "password": "pw"}}
    graph = _graph(env, kinds, {"role": role})
    name = graph.nodes[f"{UID}/role"].physical_name
    pausing = PausingStore(store)
    writer_a = Engine(store=pausing, kinds=kinds, lock_ttl_s=TTL_S, retries=0)  # type: ignore[arg-type]
    outcome: dict[str, Any] = {}

    def run_a() -> None:
        try:
            outcome["result"] = writer_a.converge(env, graph)[1]
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run_a, daemon=True)
    thread.start()
    try:
        assert pausing.paused.wait(timeout=30), "writer A never reached its create"
        time.sleep(TTL_S * 1.5)  # A's lease runs out while it is stopped
        # Writer B takes over the expired lease: it settles A's journaled create (nothing
        # exists yet, so it is dropped) and converges the environment to nothing.
        writer_b = Engine(store=store, kinds=kinds, lock_ttl_s=30.0)
        _, done = writer_b.converge(env, None)
        assert done.ok
        assert not store.intents(env)
        pausing.resume.set()  # A wakes up and carries on where it stopped
        thread.join(timeout=30)
        assert not thread.is_alive()
        failed = outcome.get("error") or outcome["result"].failed
        assert failed, "writer A must not succeed after losing its lease"
        assert not _role_exists(postgres_admin_url, name), (
            "a writer that lost its lease created a role after another writer took over"
        )
        assert not store.snapshot(env).resources
    finally:
        pausing.resume.set()
        thread.join(timeout=30)
        _drop_role(postgres_admin_url, name)


def test_destroy_sweeps_labelled_objects_that_state_never_recorded(
    store: SqlStateStore, postgres_admin_url: str, redis_url: str, sweeper: Sweeper
) -> None:
    env = sweeper.env
    kinds = ProviderRegistry.discover()
    events: list[Event] = []
    engine = Engine(store=store, kinds=kinds, events=Events(events.append))
    graph = _graph(
        env,
        kinds,
        {
            "role": {
                "kind": "postgres.role",
                "config": {"server": postgres_admin_url, "password": "pw"},
            },
            "user": {"kind": "redis.acl_user", "config": {"server": redis_url, "password": "pw"}},
        },
    )
    _, applied = engine.converge(env, graph)
    assert applied.ok, applied.failed
    installation = store.installation_id()
    role_kind, user_kind = kinds.kind("postgres.role"), kinds.kind("redis.acl_user")
    role_cfg = validate_config(role_kind, {"server": postgres_admin_url, "password": "pw"})
    user_cfg = validate_config(user_kind, {"server": redis_url, "password": "pw"})

    def meta(kind: str, resource: str, inst: str) -> ResourceMeta:
        return ResourceMeta(f"{UID}/{resource}", kind, env, f"{env}-{resource}", inst)

    # What a paused writer left: labelled for this installation and env, recorded nowhere.
    stray_role = meta("postgres.role", "stray", installation)
    stray_user = meta("redis.acl_user", "stray", installation)
    role_kind.create(CreateRequest(stray_role, role_cfg))
    user_kind.create(CreateRequest(stray_user, user_cfg))
    # Another installation's object for an environment of the same name: never ours.
    theirs = meta("postgres.role", "theirs", "other00000")
    role_kind.create(CreateRequest(theirs, role_cfg))
    late = meta("postgres.role", "late", installation)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # The destroy's plan shows the strays (they are governed like any delete)...
        planned = engine.plan(env, None)
        assert {(x.kind, x.physical_name) for x in planned.strays} == {
            ("postgres.role", stray_role.physical_name),
            ("redis.acl_user", stray_user.physical_name),
        }
        assert "strays" in planned.to_json()
        # ...and a stray that appears after the plan was made makes it stale: nothing is
        # applied that the plan did not show.
        role_kind.create(CreateRequest(late, role_cfg))
        with pytest.raises(StalePlanError, match="appeared since the plan was made"):
            engine.apply(planned, None)
        assert store.snapshot(env).resources, "nothing was destroyed"
        planned = engine.plan(env, None)
        assert len(planned.strays) == 3
        destroyed = engine.apply(planned, None)
        assert destroyed.ok, destroyed.failed
        assert not _role_exists(postgres_admin_url, late.physical_name)
        assert not store.snapshot(env).resources
        assert not _role_exists(postgres_admin_url, stray_role.physical_name)
        assert stray_user.physical_name not in client.acl_users()
        assert _role_exists(postgres_admin_url, theirs.physical_name)
        swept = {e.address for e in events if e.type == "swept"}
        assert swept == {f"{UID}/stray", f"{UID}/late"}
    finally:
        client.close()
        _drop_role(postgres_admin_url, stray_role.physical_name)
        _drop_role(postgres_admin_url, theirs.physical_name)
        _drop_role(postgres_admin_url, late.physical_name)
