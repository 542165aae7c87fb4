"""Hostile names: injection, confusables, control characters and ACL fragments stay inert.

Each name is used as environment, workload and resource name to derive physical names, and is
also passed raw as ``name``. Either the provider refuses it cleanly or the object is created
with exactly that name and deleted; nothing else on the server changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    Provider,
    ResourceMeta,
)
from stackyard.providers.postgres import Connections
from stackyard.providers.postgres import make_provider as make_postgres
from stackyard.providers.redis import LABELS_KEY, NAME_PATTERN, Clients
from stackyard.providers.redis import make_provider as make_redis
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

HOSTILE: list[tuple[str, str]] = [
    ('x"; DROP ROLE postgres; --', "identifier injection"),
    ("'; DROP TABLE x; --", "literal injection"),
    ("Robert'); DROP TABLE students;--", "classic"),
    ('"', "a lone double quote"),
    ("'", "a lone single quote"),
    ('""', "an escaped double quote"),
    ("\\", "a backslash"),
    ("a\\'b", "backslash-escaped quote"),
    ("x\x00y", "NUL inside"),
    ("\x00", "only NUL"),
    ("line1\nline2", "newline"),
    ("tab\there", "tab"),
    ("\r\n", "CRLF"),
    ("\x1b[31mred", "ANSI escape"),
    ("аdmin", "Cyrillic a"),
    ("ｐｏｓｔｇｒｅｓ", "fullwidth postgres"),
    ("abc\u202edcba", "RTL override"),
    ("a\u200db", "zero-width joiner"),
    ("x" * 200, "200 characters"),
    ("é" * 40, "80 bytes in 40 characters"),
    ("on >pw ~* +@all", "ACL rules"),
    ("nopass", "ACL flag"),
    ("allkeys", "ACL flag"),
    ("+@all", "ACL category"),
    ("~*", "ACL key pattern"),
    ("&*", "ACL channel pattern"),
    ("#" + "a" * 64, "ACL password hash rule"),
    (">", "ACL password prefix"),
    ("..", "dot dot"),
    ("/", "slash"),
    ("../../etc/passwd", "path traversal"),
    ("🔥💥", "emoji"),
    ("$${x}", "escaped placeholder"),
    ("${resources.db.password}", "placeholder"),
    ("%s", "format parameter"),
    ("%(name)s", "named format parameter"),
    ("{}", "str.format field"),
    ("NULL", "SQL NULL"),
    (" ", "a space"),
    ("-", "a dash"),
    ("*", "a glob"),
    ("postgres", "the bootstrap superuser"),
    ("default", "the default Redis user"),
    ("pg_signal_backend", "a reserved predefined role"),
    ("public", "a reserved role name"),
    ("CURRENT_USER", "a role keyword"),
]
IDS = [reason for _, reason in HOSTILE]

PG_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
REDIS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[Provider, Provider]]:
    conns, clients = Connections(), Clients()
    yield make_postgres(conns), make_redis(clients)
    conns.close()
    clients.close()


def _pg_snapshot(url: str) -> dict[str, str | None]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 'role:' || rolname, shobj_description(oid, 'pg_authid') FROM pg_authid"
            " UNION ALL"
            " SELECT 'database:' || datname, shobj_description(oid, 'pg_database')"
            " FROM pg_database"
        ).fetchall()
    return dict(rows)


def _redis_snapshot(client: redis.Redis) -> dict[str, str | None]:
    owners: dict[str, str] = client.hgetall(LABELS_KEY)
    users: list[str] = client.acl_users()
    return {f"user:{u}": owners.get(u) for u in users}


#: The name of an object another test made for its environment (``_sweeper``'s env names).
_OTHER_TEST = re.compile(r"t[0-9a-f]{10}")


def _assert_untouched(
    before: dict[str, str | None], after: dict[str, str | None], ours: set[str]
) -> None:
    """Nothing of ours remains, and nothing that existed before is gone.

    Other engineers' test runs may add or remove their own labelled objects meanwhile, so
    objects that carried a ``stackyard:`` label before may come and go; so may the objects of
    the tests that run beside this one (pytest-xdist workers), named after their environments
    (``t`` and 10 hex digits: ``_sweeper``), which can be caught before they are labelled.
    """
    appeared = set(after) - set(before)
    assert not {k for k in appeared if k.split(":", 1)[1] in ours}, appeared
    vanished = {
        k
        for k in set(before) - set(after)
        if not (before[k] or "").startswith("stackyard:")
        and not _OTHER_TEST.match(k.split(":", 1)[1])
    }
    assert not vanished, f"objects disappeared: {vanished}"
    for key in before.keys() & after.keys():
        if not (before[key] or "").startswith("stackyard:"):
            assert after[key] == before[key], f"label of {key} changed"


def _roundtrip(kind: Kind, meta: ResourceMeta, config: dict[str, Any]) -> str:
    out = kind.create(CreateRequest(meta, config))
    observed = kind.observe(ObserveRequest(meta, config, out.outputs))
    assert observed is not None and observed.managed
    kind.delete(DeleteRequest(meta, config, out.outputs))
    assert kind.observe(ObserveRequest(meta, config)) is None
    return out.physical_id


def test_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=IDS)
def test_derived_names_are_safe_and_deterministic(text: str, reason: str) -> None:
    pg_kind = make_postgres(Connections()).kind("postgres.role")
    redis_kind = make_redis(Clients()).kind("redis.acl_user")
    uid = f"postgres.default#{text}.{text}"
    for kind, pattern in ((pg_kind, PG_NAME), (redis_kind, REDIS_NAME)):
        name = physical_name(text, uid, text, kind.naming)
        assert pattern.fullmatch(name), (reason, name)
        assert name == physical_name(text, uid, text, kind.naming)
        assert len(name.encode()) <= kind.naming.max_length
    assert NAME_PATTERN.fullmatch(physical_name(text, uid, text, redis_kind.naming))


def test_hostile_corpus_leaves_the_servers_untouched(
    providers: tuple[Provider, Provider],
    postgres_admin_url: str,
    redis_url: str,
    sweeper: Sweeper,  # noqa: F811
) -> None:
    pg, rd = providers
    role, acl_user = pg.kind("postgres.role"), rd.kind("redis.acl_user")
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    pg_before, redis_before = _pg_snapshot(postgres_admin_url), _redis_snapshot(admin)
    default_before = admin.execute_command("ACL", "GETUSER", "default")
    ours: set[str] = set()
    outcomes: dict[str, list[str]] = {}
    try:
        for i, (text, reason) in enumerate(HOSTILE):
            uid = f"postgres.default#{text}.{text}"
            address = f"{uid}/{text}"
            # Derived names: the env/workload/resource are hostile, the label env is the run's.
            for kind, server in ((role, postgres_admin_url), (acl_user, redis_url)):
                name = physical_name(text, uid, text, kind.naming)
                ours.add(name)
                meta = ResourceMeta(address, kind.name, sweeper.env, name)
                config = {"server": server, "password": f"pw-{i}"}
                if "\x00" in address and kind is role:
                    # A label cannot hold NUL in PostgreSQL: a clean refusal, nothing created.
                    with pytest.raises(ProviderPermanentError):
                        kind.create(CreateRequest(meta, config))
                    assert kind.observe(ObserveRequest(meta, config)) is None
                    continue
                assert _roundtrip(kind, meta, config) == name, reason

            # The raw text as the object's name.
            ours.add(text)
            meta = ResourceMeta(f"postgres.default#w.r/raw{i}", role.name, sweeper.env, "unused")
            config = {"server": postgres_admin_url, "name": text, "password": f"pw-{i}"}
            try:
                created = _roundtrip(role, meta, config)
            except ProviderPermanentError as exc:
                assert "\x00" not in exc.message
                outcomes.setdefault("postgres refused", []).append(reason)
            else:
                assert created == text, reason
                outcomes.setdefault("postgres created exactly", []).append(reason)

            meta = ResourceMeta(f"redis.default#w.r/raw{i}", acl_user.name, sweeper.env, "unused")
            config = {"server": redis_url, "name": text, "password": f"pw-{i}"}
            if NAME_PATTERN.fullmatch(text) and text != "default":
                assert _roundtrip(acl_user, meta, config) == text, reason
                outcomes.setdefault("redis created exactly", []).append(reason)
            else:
                with pytest.raises(ProviderPermanentError):
                    acl_user.create(CreateRequest(meta, config))
                outcomes.setdefault("redis refused", []).append(reason)

        # Objects that must survive any of this.
        after = _pg_snapshot(postgres_admin_url)
        for key in (
            "role:postgres",
            "database:postgres",
            "database:template0",
            "database:template1",
        ):
            assert key in after, key
        assert "user:default" in _redis_snapshot(admin)
        assert admin.execute_command("ACL", "GETUSER", "default") == default_before
    finally:
        pg_after, redis_after = _pg_snapshot(postgres_admin_url), _redis_snapshot(admin)
        admin.close()
    _assert_untouched(pg_before, pg_after, ours)
    _assert_untouched(redis_before, redis_after, ours)
    # The corpus exercised both outcomes on both servers.
    assert outcomes.get("postgres refused") and outcomes.get("postgres created exactly")
    assert outcomes.get("redis refused") and outcomes.get("redis created exactly")
