"""Issue 11 item 7: status observes real health, ``env repair`` heals, Redis ACL users persist.

An environment of the ``development`` type runs its own local PostgreSQL and Redis, and a
workload with a database and a cache on them. After ``kill -9`` of both servers, ``status``
reports them stopped (it said ``ok`` before); ``env repair`` starts them again and the
workload's objects are all there. A local Redis keeps its ACL users (and their labels)
across a kill and a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from _local_env import (
    apply_types,
    environments,
    kill9,
    needs_local_servers,
    server_pids,
    wait_for_line,
    write_score,
    written_out,
)

pytestmark = pytest.mark.integration

APP = """\
import time
print("DONE", flush=True)
time.sleep(3600)
"""

SERVER_KINDS = ("local.postgres_server", "local.redis_server")


def _ws() -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    return Workspace.open(Settings.load())


def _health(ws: Any, env: str) -> dict[str, str]:
    from stackyard.environments.inspect import status

    return {r["address"]: (r["kind"], r["health"]) for r in status(ws, env)["resources"]}


def _acl_user(ws: Any, env: str) -> tuple[str, str]:
    """The workload's Redis user and the core Redis admin URL."""
    from stackyard.environments.inspect import outputs

    shown = outputs(ws, env, reveal=True)
    admin = shown["redis-instance.default#core"]["outputs"]["admin_url"]
    user = next(v["outputs"]["username"] for k, v in shown.items() if k.startswith("redis."))
    return user, admin


def test_status_sees_killed_servers_and_repair_heals_them(
    library_home: Path, tmp_path: Path, sweeper: Any
) -> None:
    needs_local_servers()
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    env = sweeper.env
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-checkout")
        score = write_score(
            tmp_path / "app", "app", APP, resources={"db": "postgres", "cache": "redis"}
        )
        deploy_files(ws, [score], env, confirm=lambda _p: True)
        wait_for_line(ws, env, "app", "DONE")
        before = _health(ws, env)
        assert {h for _, h in before.values()} == {"ok"}, before
        user, admin = _acl_user(ws, env)

        written_out(ws, env)  # a SIGKILL loses what the dev server had not written yet
        for pid in server_pids(library_home).values():
            kill9(pid)
        after = _health(ws, env)
        servers = {a: h for a, (k, h) in after.items() if k in SERVER_KINDS}
        assert len(servers) == 2 and set(servers.values()) == {"stopped"}, after

        # A destroy cannot delete the objects on the dead servers: its error says which
        # environment to repair first.
        from stackyard.environments.lifecycle import _destroy_hint

        assert f"stackyard env repair {env}" in _destroy_hint(ws, ws.environment(env))

        # The CLI heals it, without Score files.
        proc = subprocess.run(
            [sys.executable, "-m", "stackyard.cli", "env", "repair", env, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["deployment"]["kind"] == "repair"
        assert result["changed"] is True, "the first pass restarted the servers"
        assert result["workloads"]["app"]["state"] == "ready"
        assert {h for _, h in _health(ws, env).values()} == {"ok"}

        client = redis.Redis.from_url(admin, decode_responses=True)
        try:
            assert client.acl_getuser(user) is not None, "the workload's Redis user is back"
        finally:
            client.close()

        # Nothing left to heal: a second repair changes nothing.
        from stackyard.environments.repair import repair

        again = repair(ws, env)
        assert again.plan is not None and not again.plan.has_changes


def test_local_redis_keeps_its_acl_users_across_a_kill(
    library_home: Path, tmp_path: Path, sweeper: Any
) -> None:
    needs_local_servers()
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.providers.api import ResourceMeta, UpdateRequest

    env = sweeper.env
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-checkout")
        score = write_score(tmp_path / "app", "app", APP, resources={"cache": "redis"})
        deploy_files(ws, [score], env, confirm=lambda _p: True)
        user, admin = _acl_user(ws, env)

        rec = next(
            r for r in ws.store.snapshot(env).resources.values() if r.kind == "local.redis_server"
        )
        pid = next(p for name, p in server_pids(library_home).items() if name in rec.physical_id)
        kill9(pid)
        # Restart the server alone (what a deploy or a repair does first), then look.
        kind = ws.kinds.kind(rec.kind)
        meta = ResourceMeta(
            rec.address, rec.kind, env, rec.physical_name, ws.store.installation_id()
        )
        config = rec.full_config()
        kind.update(UpdateRequest(meta, config, config, rec.full_outputs(), frozenset()))

        client = redis.Redis.from_url(admin, decode_responses=True)
        try:
            assert client.acl_getuser(user) is not None, "ACL users survive a restart"
            assert client.hget("stackyard:acl-owners", user), "and so do their labels"
        finally:
            client.close()
