"""Two installations on one PostgreSQL and Redis: same environment name, same app, no crosstalk.

Two homes (each its own ``stackyard init``, so its own installation id) create an environment
of the same name on the machine's servers and deploy the same Score. Names differ, labels
name the installation, neither adopts nor resets the other's objects, and destroying one
leaves the other's database, role and ACL user (and their passwords) exactly as they were.
An unlabelled object found at a deterministic name is refused, never adopted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import conninfo, sql

from _platform import EXAMPLES, Stage
from stackyard.engine.plan import Plan
from stackyard.errors import ProviderPermanentError, StackyardError
from stackyard.providers.api import CreateRequest, ObserveRequest, ResourceMeta, validate_config
from stackyard.providers.redis import LABELS_KEY, make_provider

pytestmark = pytest.mark.reliability

HELLO = EXAMPLES / "hello" / "score.yaml"


@contextmanager
def _pointing_at(home: Path) -> Iterator[None]:
    """``STACKYARD_HOME`` pointing at ``home`` for the block (local objects live under it)."""
    previous = os.environ.get("STACKYARD_HOME")
    os.environ["STACKYARD_HOME"] = str(home)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("STACKYARD_HOME", None)
        else:
            os.environ["STACKYARD_HOME"] = previous


@contextmanager
def _home(home: Path) -> Iterator[Any]:
    """A workspace on ``home``, with ``STACKYARD_HOME`` pointing at it while it is open."""
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    with _pointing_at(home), Workspace.open(Settings.load(home=home)) as ws:
        yield ws


@pytest.fixture
def second_home(stage: Stage, tmp_path: Path) -> Iterator[Path]:
    """A second, separately initialised home with the same platform (same env names)."""
    from stackyard.environments import lifecycle
    from stackyard.environments.platform import apply_dir
    from stackyard.service import init_home
    from stackyard.settings import Settings

    home = tmp_path / "home2"
    with _pointing_at(home):
        init_home(Settings.load(home=home))
    with _home(home) as ws:
        apply_dir(ws.platform, ws.access, stage.platform_dir, confirm=lambda _q: True)
        lifecycle.create(ws, stage.name("dev"))
    try:
        yield home
    finally:
        with _home(home) as ws:
            env = ws.records.environment(stage.name("dev"))
            if env is not None and env.status not in ("declared", "destroyed"):
                lifecycle.destroy(ws, stage.name("dev"))


def _resources(ws: Any, env: str) -> dict[str, Any]:
    return dict(ws.store.snapshot(env).resources)


def _of_kind(resources: dict[str, Any], kind: str) -> Any:
    found = [r for r in resources.values() if r.kind == kind and "hello" in r.address]
    assert len(found) == 1, (kind, list(resources))
    return found[0]


def _pg_fingerprint(admin_url: str, role: str, database: str) -> tuple[Any, ...]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        r = conn.execute(
            "SELECT rolpassword, shobj_description(oid, 'pg_authid') FROM pg_authid"
            " WHERE rolname = %s",
            (role,),
        ).fetchone()
        d = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return (r, d)


def _redis_fingerprint(redis_url: str, user: str) -> tuple[Any, ...]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        acl = client.execute_command("ACL", "GETUSER", user)
        return (acl, client.hget(LABELS_KEY, user))
    finally:
        client.close()


def test_two_installations_with_one_env_name_never_touch_each_other(
    stage: Stage, second_home: Path, postgres_admin_url: str, redis_url: str
) -> None:
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    dev = stage.name("dev")
    with _home(stage.home) as ws1:
        first = deploy_files(ws1, [HELLO], dev, confirm=lambda _p: True)
        assert first.deployment.status == "succeeded"
        one = _resources(ws1, dev)
        inst1 = ws1.store.installation_id()
    role1 = _of_kind(one, "postgres.role")
    db1 = _of_kind(one, "postgres.database")
    user1 = _of_kind(one, "redis.acl_user")
    pg_before = _pg_fingerprint(postgres_admin_url, role1.outputs["name"], db1.outputs["name"])
    redis_before = _redis_fingerprint(redis_url, user1.outputs["username"])
    assert pg_before[0][1] == f"stackyard:{inst1}:{dev}:{role1.address}"

    with _home(second_home) as ws2:
        inst2 = ws2.store.installation_id()
        assert inst2 != inst1
        second = deploy_files(ws2, [HELLO], dev, confirm=lambda _p: True)
        assert second.deployment.status == "succeeded"
        two = _resources(ws2, dev)
        # Same env, same app, same addresses: every physical name differs.
        assert set(one) == set(two)
        for address in one:
            assert one[address].physical_name != two[address].physical_name, address
        # Home 1's objects were neither adopted nor changed (passwords, labels).
        assert _pg_fingerprint(postgres_admin_url, role1.outputs["name"], db1.outputs["name"]) == (
            pg_before
        )
        assert _redis_fingerprint(redis_url, user1.outputs["username"]) == redis_before
        done = lifecycle.destroy(ws2, dev)
        assert done.deployment is None or done.deployment.status == "succeeded"
        assert not ws2.store.snapshot(dev).resources

    # Destroying in home 2 left home 1's database, role and ACL user exactly as they were.
    assert _pg_fingerprint(postgres_admin_url, role1.outputs["name"], db1.outputs["name"]) == (
        pg_before
    )
    assert _redis_fingerprint(redis_url, user1.outputs["username"]) == redis_before
    login = conninfo.make_conninfo(
        postgres_admin_url,
        user=role1.outputs["name"],
        password=role1.full_config()["password"],
        dbname=db1.outputs["name"],
    )
    with psycopg.connect(login) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_unlabelled_object_at_the_deterministic_name_is_refused(
    stage: Stage, postgres_admin_url: str
) -> None:
    from stackyard.environments.deploy import deploy_files

    dev = stage.name("dev")
    seen: list[Plan] = []

    def look(plan: Plan) -> bool:
        seen.append(plan)
        return False  # plan only: learn the names, create nothing

    with _home(stage.home) as ws:
        deploy_files(ws, [HELLO], dev, confirm=look)
        (role,) = [c for c in seen[0].changes if c.kind == "postgres.role"]
        ident = sql.Identifier(role.physical_name)
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'handmade'").format(ident))
        try:
            with pytest.raises(StackyardError, match="without a stackyard label") as err:
                deploy_files(ws, [HELLO], dev, confirm=lambda _p: True)
            assert role.physical_name in err.value.message
            with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT shobj_description(oid, 'pg_authid') FROM pg_authid WHERE rolname = %s",
                    (role.physical_name,),
                ).fetchone()
            assert row == (None,)  # not labelled, not adopted
            login = conninfo.make_conninfo(
                postgres_admin_url, user=role.physical_name, password="handmade"
            )
            with psycopg.connect(login):
                pass  # its password was not reset
        finally:
            with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def test_an_unlabelled_redis_user_at_the_deterministic_name_is_refused(
    redis_url: str, sweeper: Any
) -> None:
    kind = make_provider().kind("redis.acl_user")
    meta = ResourceMeta(
        "redis.default#app.cache/user", kind.name, sweeper.env, sweeper.env, "inst1"
    )
    config = validate_config(kind, {"server": redis_url, "password": "pw"})
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.execute_command("ACL", "SETUSER", meta.physical_name, "off")
    try:
        observed = kind.observe(ObserveRequest(meta, config))
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError, match="without a stackyard label") as err:
            kind.create(CreateRequest(meta, config))
        assert "stackyard adopt" in (err.value.hint or "")
        assert client.hget(LABELS_KEY, meta.physical_name) is None
        assert "off" in client.acl_getuser(meta.physical_name)["flags"]  # untouched
    finally:
        client.execute_command("ACL", "DELUSER", meta.physical_name)
        client.close()
