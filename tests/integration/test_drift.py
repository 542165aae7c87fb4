"""Issue 17 item 1: drift found, grouped by root cause, fixed through the governed road;
adopt and forget.

A ``development`` environment runs its own local PostgreSQL and Redis (its core), and a
workload with a database, a cache and a volume on them. Each drift is made by hand on the
real backends, found by ``stackyard drift`` (exit 11, the right finding and grouping) and
repaired by ``--fix`` (exit 0 afterwards). A role stripped of its label and forgotten is never
adopted; a labelled one whose record was forgotten is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from _local_env import (
    apply_types,
    environments,
    kill9,
    needs_local_servers,
    server_pids,
    write_score,
    written_out,
)

pytestmark = pytest.mark.integration

APP = """\
import time
print("DONE", flush=True)
time.sleep(3600)
"""


def _ws() -> Any:
    from stackyard.environments.workspace import Workspace
    from stackyard.settings import Settings

    return Workspace.open(Settings.load())


def _cli(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "stackyard.cli", *args, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"exit {proc.returncode}: {proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, doc


def _events(doc: Any) -> list[dict[str, Any]]:
    return list(doc["events"] if isinstance(doc, dict) else doc)


def _findings(env: str) -> tuple[int, list[dict[str, Any]]]:
    code, doc = _cli("drift", "--env", env)
    (scanned,) = doc["environments"]
    return code, scanned["findings"]


def _record(ws: Any, env: str, kind: str) -> Any:
    (rec,) = [r for r in ws.store.snapshot(env).resources.values() if r.kind == kind]
    return rec


def _admin_urls(ws: Any, env: str) -> tuple[str, str]:
    from stackyard.environments.inspect import outputs

    shown = outputs(ws, env, reveal=True)
    return (
        shown["postgres-instance.default#core"]["outputs"]["admin_url"],
        shown["redis-instance.default#core"]["outputs"]["admin_url"],
    )


def _fixed(env: str) -> dict[str, Any]:
    code, doc = _cli("drift", "--env", env, "--fix")
    assert code == 0, doc
    assert doc["drift"] is False and doc["before"][0]["findings"], doc
    assert doc["fixed"][env]["status"] == "succeeded", doc
    again, findings = _findings(env)
    assert again == 0 and findings == []
    return doc


def test_drift_found_grouped_and_fixed(library_home: Path, tmp_path: Path, sweeper: Any) -> None:
    needs_local_servers()
    from stackyard.environments import lifecycle
    from stackyard.environments.deploy import deploy_files

    env = sweeper.env
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-checkout")
        score = write_score(
            tmp_path / "app",
            "app",
            APP,
            resources={"db": "postgres", "cache": "redis", "data": "volume"},
        )
        deploy_files(ws, [score], env, confirm=lambda _p: True)
        pg_url, redis_url = _admin_urls(ws, env)
        code, findings = _findings(env)
        assert (code, findings) == (0, []), findings

        # 1. a role dropped (its grant goes with it): one finding, the role, grant under it
        role = _record(ws, env, "postgres.role")
        database = _record(ws, env, "postgres.database")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{role.physical_name}" TO postgres')
            conn.execute(f'DROP OWNED BY "{role.physical_name}"')
            conn.execute(f'DROP ROLE "{role.physical_name}"')
        code, findings = _findings(env)
        assert code == 11
        roots = {f["address"]: f for f in findings}
        assert roots[role.address]["status"] == "missing", findings
        assert role.address in roots and len(findings) <= 2, findings
        _fixed(env)

        # 2. a password changed: 'changed', the value masked on both sides
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE \"{role.physical_name}\" PASSWORD 'hand-made-secret'")
        code, findings = _findings(env)
        assert code == 11
        (finding,) = findings
        assert finding["address"] == role.address and finding["status"] == "changed"
        assert finding["changes"] == [
            {"field": "password", "recorded": "***", "observed": "***", "sensitive": True}
        ]
        assert "connections are refused" in finding["why"]
        assert "hand-made-secret" not in json.dumps(findings)
        _fixed(env)

        # 3. an ACL user edited: every command allowed
        user = _record(ws, env, "redis.acl_user")
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            client.execute_command("ACL", "SETUSER", user.physical_name, "+@all")
        finally:
            client.close()
        code, findings = _findings(env)
        assert code == 11
        (finding,) = findings
        assert finding["address"] == user.address and finding["status"] == "changed", findings
        assert [c["field"] for c in finding["changes"]] == ["commands"], finding
        _fixed(env)

        # 4. a database renamed: missing at its name, its grant grouped under it
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                f'ALTER DATABASE "{database.physical_name}" RENAME TO "{database.physical_name}_x"'
            )
        code, findings = _findings(env)
        assert code == 11
        (finding,) = findings
        assert finding["address"] == database.address and finding["status"] == "missing"
        assert [d["kind"] for d in finding["dependents"]] == ["postgres.grant"], finding
        _fixed(env)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database.physical_name}_x"')

        # 5. a directory deleted
        directory = _record(ws, env, "local.directory")
        shutil.rmtree(directory.physical_id)
        code, findings = _findings(env)
        assert code == 11
        (finding,) = findings
        assert finding["address"] == directory.address and finding["status"] == "missing"
        _fixed(env)
        assert Path(directory.physical_id).is_dir()

        # 6. the core PostgreSQL stopped: ONE finding, every resource on it a dependent
        server = _record(ws, env, "local.postgres_server")
        pid = next(p for name, p in server_pids(library_home).items() if name in server.physical_id)
        written_out(ws, env)  # a SIGKILL loses what the dev server had not written yet
        kill9(pid)
        code, findings = _findings(env)
        assert code == 11
        assert len(findings) == 1, findings
        (finding,) = findings
        assert finding["address"] == server.address and finding["status"] == "stopped"
        dependents = {d["kind"] for d in finding["dependents"]}
        assert {"postgres.role", "postgres.database", "postgres.grant"} <= dependents, finding
        assert all(d["status"] == "unreachable" for d in finding["dependents"]), finding
        _fixed(env)


def test_adopt_and_forget(library_home: Path, tmp_path: Path, sweeper: Any) -> None:
    needs_local_servers()
    from stackyard.environments import drift, lifecycle
    from stackyard.environments.deploy import deploy_files
    from stackyard.errors import ForeignObjectError, InvalidInputError

    env = sweeper.env
    with _ws() as ws:
        apply_types(ws, tmp_path / "platform")
    with environments(_ws, env), _ws() as ws:
        lifecycle.create(ws, env, type_name="development", owner="team-checkout")
        score = write_score(tmp_path / "app", "app", APP, resources={"db": "postgres"})
        deploy_files(ws, [score], env, confirm=lambda _p: True)
        pg_url, _ = _admin_urls(ws, env)
        role = _record(ws, env, "postgres.role")

        # forget is for admins only: anyone else is refused (exit 6), and it is audited
        from _as_user import cli as as_user

        denied = as_user(library_home, "forget", env, role.address, "--yes", user="mallory")
        assert denied.returncode == 6, denied.stderr
        assert role.address in ws.store.snapshot(env).resources

        # forget drops the record only: the role is still there, labelled
        code, doc = _cli("forget", env, role.address, "--yes")
        assert code == 0, doc
        assert role.address not in ws.store.snapshot(env).resources
        with psycopg.connect(pg_url, autocommit=True) as conn:
            label = conn.execute(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                (role.physical_name,),
            ).fetchone()
        assert label is not None and label[0], "the object was not touched"
        with pytest.raises(InvalidInputError):
            drift.forget(ws, env, ["postgres.role.nothing-here"])
        code, audit = _cli("audit", "--since", "1h")
        forgets = [e for e in _events(audit) if e["action"] == "state.forget"]
        assert [e["result"] for e in forgets] == ["denied", "ok", "failed"], forgets

        # adopt takes it back (deterministic name + our label)
        code, doc = _cli("adopt", env, role.address)
        assert code == 0, doc
        assert doc["physical_name"] == role.physical_name
        assert ws.store.snapshot(env).resources[role.address].physical_name == role.physical_name

        # a look-alike with a stackyard name but no label is never adopted
        drift.forget(ws, env, [role.address])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'COMMENT ON ROLE "{role.physical_name}" IS NULL')
        with pytest.raises(ForeignObjectError):
            drift.adopt(ws, env, role.address)
        assert role.address not in ws.store.snapshot(env).resources
        code, doc = _cli("adopt", env, role.address)
        assert code == 7 and "never adopted" in doc["error"]["message"], doc
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
                (role.physical_name,),
            ).fetchone()
        assert row is not None and row[0] is None, "the unlabelled role was left alone"
        # the destroy at teardown leaves an unlabelled role alone: drop it by hand
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{role.physical_name}" TO postgres')
            conn.execute(f'DROP OWNED BY "{role.physical_name}"')
            conn.execute(f'DROP ROLE "{role.physical_name}"')
