"""Leak sweeping: find every real object a test run labelled, and fail the test if any remain.

Each test gets a unique environment name (``t<hex>``). Everything stackyard creates for it is
labelled ``stackyard:<installation>:<env>:<address>`` and named from ``<env>...``, so after
the test:

- PostgreSQL: roles and databases whose shared description carries the label prefix, or
  whose name starts with the env, and extensions labelled so in the admin database;
- Redis: fields of ``stackyard:acl-owners`` whose label carries the prefix, and users whose
  name starts with the env;
- anything the extra checks report (``sweeper_checks``: the home-directory part hooks in
  here; each check takes the env and returns descriptions of leaked objects).

Use: ``from _sweeper import sweeper, sweeper_checks`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

__all__ = ["LeakCheck", "Sweeper", "leaked", "sweep", "sweeper", "sweeper_checks"]

LABELS_KEY = "stackyard:acl-owners"
RULES_KEY = "stackyard:acl-rules"

#: A check: (env) -> descriptions of objects left behind.
LeakCheck = Callable[[str], list[str]]

_PG_SHARED = """
SELECT 'role ' || rolname FROM pg_authid
 WHERE coalesce(shobj_description(oid, 'pg_authid'), '') LIKE %(label)s
    OR left(rolname, %(m)s) = %(env)s
UNION ALL
SELECT 'database ' || datname FROM pg_database
 WHERE coalesce(shobj_description(oid, 'pg_database'), '') LIKE %(label)s
    OR left(datname, %(m)s) = %(env)s
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
 WHERE coalesce(obj_description(oid, 'pg_extension'), '') LIKE %(label)s
"""


def _label_like(env: str) -> str:
    """A LIKE pattern for the env's labels, whatever the installation."""
    return f"stackyard:%:{env}:%"


def _has_env_label(text: str, env: str) -> bool:
    # a user being deleted keeps its label as a tombstone ``deleting:<label>`` until its keys
    # are gone (providers/redis.py): a leftover tombstone is a leak too
    text = text.removeprefix("deleting:")
    return text.startswith("stackyard:") and f":{env}:" in text


def _pg_leaked(pg_url: str, env: str) -> list[str]:
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            _PG_SHARED, {"label": _label_like(env), "m": len(env), "env": env.lower()}
        ).fetchall()
    return [f"postgres {r[0]}" for r in rows]


def _redis_leaked(redis_url: str, env: str) -> list[str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    try:
        owners: dict[str, str] = client.hgetall(LABELS_KEY)
        users: list[str] = client.acl_users()
    finally:
        client.close()
    out = [f"redis label {k}" for k, v in owners.items() if _has_env_label(v, env)]
    out += [f"redis user {u}" for u in users if u.startswith(env.lower())]
    return sorted(set(out))


def leaked(
    pg_url: str | None,
    redis_url: str | None,
    env_prefix: str,
    extra: Sequence[LeakCheck] = (),
) -> list[str]:
    """Descriptions of every object still carrying ``env_prefix``'s label (or name)."""
    out: list[str] = []
    if pg_url:
        out += _pg_leaked(pg_url, env_prefix)
    if redis_url:
        out += _redis_leaked(redis_url, env_prefix)
    for check in extra:
        out += check(env_prefix)
    return out


def sweep(pg_url: str | None, redis_url: str | None, env_prefix: str) -> None:
    """Best-effort removal of what ``leaked`` finds, so one failing test does not pollute."""
    if pg_url:
        with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as conn:
            for what in _pg_leaked(pg_url, env_prefix):
                _, kind, name = what.split(" ", 2)
                if kind == "database":
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
                elif kind == "extension":
                    conn.execute(
                        sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(name))
                    )
            for what in _pg_leaked(pg_url, env_prefix):
                _, kind, name = what.split(" ", 2)
                if kind == "role":
                    ident = sql.Identifier(name)
                    conn.execute(
                        sql.SQL(
                            "REASSIGN OWNED BY {r} TO CURRENT_USER; DROP OWNED BY {r};"
                            " DROP ROLE IF EXISTS {r}"
                        ).format(r=ident)
                    )
    if redis_url:
        client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
        try:
            for name, value in client.hgetall(LABELS_KEY).items():
                if _has_env_label(value, env_prefix):
                    client.execute_command("ACL", "DELUSER", name)
                    client.hdel(LABELS_KEY, name)
                    client.hdel(RULES_KEY, name)
            for user in client.acl_users():
                if user.startswith(env_prefix.lower()):
                    client.execute_command("ACL", "DELUSER", user)
        finally:
            client.close()


@dataclass
class Sweeper:
    """One test's environment name, and the services and checks its sweep covers."""

    env: str
    pg_url: str | None = None
    redis_url: str | None = None
    checks: list[LeakCheck] = field(default_factory=list)

    def add_check(self, check: LeakCheck) -> None:
        """Also run ``check(env)`` after the test."""
        self.checks.append(check)

    def leaked(self) -> list[str]:
        """What this test's environment still has in the world."""
        return leaked(self.pg_url, self.redis_url, self.env, self.checks)


MARKER = ".stackyard-owner"
RELOCATED_ROOT = Path("/var/lib/stackyard/servers")
#: Under root, volumes live out of the 0700 home (see providers/local/directory.py).
SHARED_BUCKETS = Path("/var/lib/stackyard/buckets")


def home_leaked(home: Path) -> LeakCheck:
    """A check for ownership markers labelled with the env under ``home`` (buckets, server
    data dirs) and under the root-relocated server directory."""

    def check(env: str) -> list[str]:
        out: list[str] = []
        shared = SHARED_BUCKETS / hashlib.sha256(str(home).encode()).hexdigest()[:16]
        for root in (home, RELOCATED_ROOT, shared):
            if not root.is_dir():
                continue
            for marker in root.rglob(MARKER):
                try:
                    text = marker.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                if f":{env}:" in text:
                    out.append(f"home {marker.parent}")
        return out

    return check


@pytest.fixture
def sweeper_checks(request: pytest.FixtureRequest) -> list[LeakCheck]:
    """Extra leak checks run for every test using ``sweeper`` (override or append to it).

    A test that uses the ``home`` fixture also has its home swept for ownership markers.
    """
    checks: list[LeakCheck] = []
    if "home" in request.fixturenames:
        checks.append(home_leaked(request.getfixturevalue("home")))
    return checks


@pytest.fixture
def sweeper(request: pytest.FixtureRequest, sweeper_checks: list[LeakCheck]) -> Iterator[Sweeper]:
    """A unique env name for the test; fails the test if objects labelled with it remain.

    Services are swept only when the test also uses their fixture (``postgres_admin_url``,
    ``redis_url``), so a Redis-only test does not need PostgreSQL.
    """
    s = Sweeper(env=f"t{secrets.token_hex(5)}", checks=list(sweeper_checks))
    yield s
    names = request.fixturenames
    if "postgres_admin_url" in names:
        s.pg_url = request.getfixturevalue("postgres_admin_url")
    if "redis_url" in names:
        s.redis_url = request.getfixturevalue("redis_url")
    left = s.leaked()
    if left:
        sweep(s.pg_url, s.redis_url, s.env)
        pytest.fail(f"test leaked {len(left)} object(s) labelled {s.env!r}: {', '.join(left)}")
