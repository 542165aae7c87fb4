"""The postgres provider against a real PostgreSQL: lifecycle, idempotency, drift and labels."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ProviderPermanentError, ProviderTransientError
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    Provider,
    ResourceMeta,
    UpdateRequest,
    validate_config,
)
from stackyard.providers.postgres import PASSWORD_DRIFTED, Connections, make_provider
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "postgres.default#checkout.db"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    conns = Connections()
    yield make_provider(conns)
    conns.close()


class Harness:
    """One test's view: its env, the admin URL and the provider's kinds."""

    def __init__(self, provider: Provider, url: str, env: str) -> None:
        self.provider = provider
        self.url = url
        self.env = env

    def kind(self, name: str) -> Kind:
        return self.provider.kind(f"postgres.{name}")

    def meta(self, kind: str, resource: str) -> ResourceMeta:
        rule = self.kind(kind).naming
        return ResourceMeta(
            address=f"{UID}/{resource}",
            kind=f"postgres.{kind}",
            env=self.env,
            physical_name=physical_name(self.env, UID, resource, rule),
        )

    def config(self, kind: str, **values: Any) -> dict[str, Any]:
        return validate_config(self.kind(kind), {"server": self.url, **values})

    def create(self, kind: str, meta: ResourceMeta, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self.kind(kind).create(CreateRequest(meta, config)).outputs)

    def update(self, kind: str, meta: ResourceMeta, config: dict[str, Any]) -> dict[str, Any]:
        req = UpdateRequest(meta, config, config, {}, frozenset(config))
        return dict(self.kind(kind).update(req).outputs)

    def observe(self, kind: str, meta: ResourceMeta, config: dict[str, Any]) -> Any:
        return self.kind(kind).observe(ObserveRequest(meta, config))

    def delete(self, kind: str, meta: ResourceMeta, config: dict[str, Any]) -> None:
        self.kind(kind).delete(DeleteRequest(meta, config, {}))

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def one(self, query: str, *params: Any, dbname: str | None = None) -> Any:
        info = conninfo.make_conninfo(self.url, **({"dbname": dbname} if dbname else {}))
        with psycopg.connect(info, autocommit=True) as conn:
            return conn.execute(query, params).fetchone()

    def role_row(self, name: str) -> Any:
        return self.one(
            "SELECT rolcanlogin, rolconnlimit, rolpassword, shobj_description(oid, 'pg_authid')"
            " FROM pg_authid WHERE rolname = %s",
            name,
        )

    def login_url(self, user: str, password: str, dbname: str) -> str:
        return conninfo.make_conninfo(self.url, user=user, password=password, dbname=dbname)


@pytest.fixture
def pg(provider: Provider, postgres_admin_url: str, sweeper: Sweeper) -> Harness:  # noqa: F811
    return Harness(provider, postgres_admin_url, sweeper.env)


def test_role_lifecycle_is_idempotent_and_labelled(pg: Harness) -> None:
    meta = pg.meta("role", "role")
    cfg = pg.config("role", password="first pässword")
    name = pg.create("role", meta, cfg)["name"]
    assert name == meta.physical_name
    row = pg.role_row(name)
    assert row[0] is True and row[1] == -1
    assert row[2].startswith("SCRAM-SHA-256$4096:")
    assert row[3] == meta.label

    assert pg.create("role", meta, cfg) == {"name": name}
    assert pg.role_row(name) == row, "a repeated create rewrote the role (e.g. a new salt)"
    observed = pg.observe("role", meta, cfg)
    assert observed.managed
    assert observed.config == {
        "name": "",
        "password": "first pässword",
        "login": True,
        "connection_limit": -1,
    }

    with psycopg.connect(pg.login_url(name, "first pässword", "postgres")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)

    changed = pg.config("role", password="second", connection_limit=5)
    pg.update("role", meta, changed)
    row2 = pg.role_row(name)
    assert row2[1] == 5 and row2[2] != row[2]
    pg.update("role", meta, changed)
    assert pg.role_row(name) == row2
    assert pg.observe("role", meta, changed).config["password"] == "second"

    pg.delete("role", meta, changed)
    pg.delete("role", meta, changed)
    assert pg.observe("role", meta, changed) is None
    assert pg.role_row(name) is None

    pg.create("role", meta, changed)
    assert pg.role_row(name)[3] == meta.label
    pg.delete("role", meta, changed)


def test_role_drift_is_seen_and_fixed(pg: Harness) -> None:
    meta = pg.meta("role", "role")
    cfg = pg.config("role", password="right")
    name = pg.create("role", meta, cfg)["name"]
    with pg.admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD 'wrong'").format(sql.Identifier(name)))
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))
    observed = pg.observe("role", meta, cfg)
    assert observed.config["password"] == PASSWORD_DRIFTED
    assert observed.config["login"] is False
    pg.update("role", meta, cfg)
    assert pg.observe("role", meta, cfg).config == {
        "name": "",
        "password": "right",
        "login": True,
        "connection_limit": -1,
    }

    with pg.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    assert pg.observe("role", meta, cfg) is None
    pg.create("role", meta, cfg)
    with psycopg.connect(pg.login_url(name, "right", "postgres")):
        pass
    pg.delete("role", meta, cfg)


def test_foreign_objects_are_never_adopted(pg: Harness) -> None:
    meta = pg.meta("role", "role")
    cfg = pg.config("role", password="pw")
    ident = sql.Identifier(meta.physical_name)
    with pg.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(ident))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                ident, sql.Literal(f"stackyard:other-{pg.env}:{meta.address}")
            )
        )
    try:
        observed = pg.observe("role", meta, cfg)
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            pg.create("role", meta, cfg)
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            pg.delete("role", meta, cfg)
        assert pg.role_row(meta.physical_name) is not None
    finally:
        with pg.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))

    # An explicitly named object without any label may be anybody's.
    explicit = f"{pg.env}_handmade"
    with pg.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(explicit)))
    try:
        named = pg.config("role", name=explicit)
        observed = pg.observe("role", meta, named)
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError):
            pg.create("role", meta, named)
    finally:
        with pg.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(explicit)))


def test_unlabelled_object_under_the_deterministic_name_is_refused_unless_resuming(
    pg: Harness,
) -> None:
    # An unlabelled object at the deterministic name is someone else's: never adopted. Only
    # the engine's own journal (``resuming``) may claim one: what a crash between CREATE
    # DATABASE and its COMMENT leaves behind.
    meta = pg.meta("database", "database")
    cfg = pg.config("database")
    ident = sql.Identifier(meta.physical_name)
    with pg.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        observed = pg.observe("database", meta, cfg)
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError, match="without a stackyard label") as err:
            pg.create("database", meta, cfg)
        assert "stackyard adopt" in (err.value.hint or "")
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            pg.delete("database", meta, cfg)
        query = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
        assert pg.one(query, meta.physical_name) == (None,)
        pg.create("database", replace(meta, resuming=True), cfg)
        assert pg.one(query, meta.physical_name) == (meta.label,)
        pg.delete("database", meta, cfg)
    finally:
        with pg.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))


def test_database_lifecycle_and_drop_with_open_connections(pg: Harness) -> None:
    role_meta = pg.meta("role", "role")
    role_cfg = pg.config("role", password="pw")
    owner = pg.create("role", role_meta, role_cfg)["name"]
    meta = pg.meta("database", "database")
    cfg = pg.config("database", owner=owner)
    out = pg.create("database", meta, cfg)
    name = out["name"]
    assert out == {"name": name, "owner": owner}
    query = (
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding),"
        " shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
    )
    row = pg.one(query, name)
    assert row == (owner, "UTF8", meta.label)
    assert pg.create("database", meta, cfg) == out
    assert pg.one(query, name) == row
    observed = pg.observe("database", meta, cfg)
    assert observed.managed
    assert observed.config == {"name": "", "owner": owner, "encoding": "UTF8"}

    # The owner drifts, and update puts it back.
    with pg.admin() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(name))
        )
    assert pg.observe("database", meta, cfg).config["owner"] != owner
    pg.update("database", meta, cfg)
    assert pg.one(query, name) == row

    # A client is connected (and idle in a transaction) while the database is dropped.
    client = psycopg.connect(pg.login_url(owner, "pw", name))
    client.execute("CREATE TABLE t (x int)")
    try:
        pg.delete("database", meta, cfg)
        pg.delete("database", meta, cfg)
        assert pg.one("SELECT 1 FROM pg_database WHERE datname = %s", name) is None
        assert pg.observe("database", meta, cfg) is None
    finally:
        client.close()

    pg.create("database", meta, cfg)
    pg.delete("database", meta, cfg)
    pg.delete("role", role_meta, role_cfg)


def test_role_drop_reassigns_and_drops_what_it_owns(pg: Harness) -> None:
    role_meta = pg.meta("role", "role")
    role_cfg = pg.config("role", password="pw")
    owner = pg.create("role", role_meta, role_cfg)["name"]
    db_meta = pg.meta("database", "database")
    db_cfg = pg.config("database", owner=owner)
    dbname = pg.create("database", db_meta, db_cfg)["name"]
    with psycopg.connect(pg.login_url(owner, "pw", dbname), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.orders (id int)")
    # It also owns something in the admin database.
    with pg.admin() as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner)))
    with psycopg.connect(pg.login_url(owner, "pw", "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE public.{} (x int)").format(sql.Identifier(owner)))

    pg.delete("role", role_meta, role_cfg)
    assert pg.role_row(owner) is None
    # Its objects were reassigned to the admin (kept, not lost), in every database.
    table_owner = "SELECT tableowner = current_user FROM pg_tables WHERE tablename = %s"
    assert pg.one(table_owner, owner) == (True,)
    assert pg.one(table_owner, "orders", dbname=dbname) == (True,)
    with pg.admin() as conn:
        conn.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(owner)))
    assert pg.one(
        "SELECT pg_get_userbyid(datdba) = current_user FROM pg_database WHERE datname = %s",
        dbname,
    ) == (True,)
    pg.delete("database", db_meta, db_cfg)


def test_extension_lifecycle(pg: Harness) -> None:
    db_meta = pg.meta("database", "database")
    db_cfg = pg.config("database")
    dbname = pg.create("database", db_meta, db_cfg)["name"]
    meta = pg.meta("extension", "pgcrypto")
    cfg = pg.config("extension", database=dbname, name="pgcrypto")
    out = pg.create("extension", meta, cfg)
    assert out["name"] == "pgcrypto" and out["schema"] == "public" and out["version"]
    query = "SELECT extversion, obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = %s"
    row = pg.one(query, "pgcrypto", dbname=dbname)
    assert row == (out["version"], meta.label)
    assert pg.create("extension", meta, cfg) == out
    assert pg.one(query, "pgcrypto", dbname=dbname) == row
    observed = pg.observe("extension", meta, cfg)
    assert observed.managed
    assert observed.config == {"database": dbname, "name": "pgcrypto", "schema": "", "version": ""}

    # plpgsql is there from the template, with its own comment: not ours.
    plpgsql = pg.config("extension", database=dbname, name="plpgsql")
    assert not pg.observe("extension", pg.meta("extension", "plpgsql"), plpgsql).managed
    with pytest.raises(ProviderPermanentError, match="not managed"):
        pg.create("extension", pg.meta("extension", "plpgsql"), plpgsql)

    with pytest.raises(ProviderPermanentError):
        pg.create("extension", meta, pg.config("extension", database=dbname, name="no_such_ext"))

    pg.delete("extension", meta, cfg)
    pg.delete("extension", meta, cfg)
    assert pg.observe("extension", meta, cfg) is None
    pg.create("extension", meta, cfg)
    pg.delete("database", db_meta, db_cfg)
    # The database (and so the extension) is gone: observe and delete still answer.
    assert pg.observe("extension", meta, cfg) is None
    pg.delete("extension", meta, cfg)


def test_grants_on_database_and_schema(pg: Harness) -> None:
    role_meta = pg.meta("role", "role")
    role = pg.create("role", role_meta, pg.config("role", password="pw"))["name"]
    db_meta = pg.meta("database", "database")
    dbname = pg.create("database", db_meta, pg.config("database"))["name"]
    meta = pg.meta("grant", "grant")
    cfg = pg.config("grant", role=role, database=dbname, privileges=["connect", "temp"])
    acl_query = (
        "SELECT array_agg(a.privilege_type ORDER BY a.privilege_type), datacl::text FROM pg_database d,"
        " aclexplode(d.datacl) a WHERE d.datname = %s"
        " AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)"
        " GROUP BY datacl::text"
    )

    out = pg.create("grant", meta, cfg)
    assert out == {"id": f"{dbname}:{role}"}
    acl = pg.one(acl_query, dbname, role)
    assert acl[0] == ["CONNECT", "TEMPORARY"]
    pg.create("grant", meta, cfg)
    assert pg.one(acl_query, dbname, role) == acl
    observed = pg.observe("grant", meta, cfg)
    assert observed.config["privileges"] == ["CONNECT", "TEMPORARY"]

    narrower = pg.config("grant", role=role, database=dbname, privileges=["CONNECT"])
    pg.update("grant", meta, narrower)
    assert pg.observe("grant", meta, narrower).config["privileges"] == ["CONNECT"]

    with pg.admin() as conn:
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(dbname), sql.Identifier(role)
            )
        )
    assert pg.observe("grant", meta, narrower) is None
    pg.create("grant", meta, narrower)
    assert pg.observe("grant", meta, narrower) is not None

    schema_meta = pg.meta("grant", "schema-grant")
    on_schema = pg.config(
        "grant", role=role, database=dbname, schema="public", privileges=["USAGE", "CREATE"]
    )
    assert pg.create("grant", schema_meta, on_schema) == {"id": f"{dbname}/public:{role}"}
    assert pg.observe("grant", schema_meta, on_schema).config["privileges"] == ["CREATE", "USAGE"]
    with psycopg.connect(pg.login_url(role, "pw", dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.mine (x int); DROP TABLE public.mine")
    pg.delete("grant", schema_meta, on_schema)
    pg.delete("grant", schema_meta, on_schema)
    assert pg.observe("grant", schema_meta, on_schema) is None

    pg.delete("grant", meta, narrower)
    assert pg.observe("grant", meta, narrower) is None
    pg.delete("database", db_meta, pg.config("database"))
    pg.delete("role", role_meta, pg.config("role", password="pw"))


def test_concurrent_calls_share_the_pool_safely(pg: Harness) -> None:
    metas = [pg.meta("role", f"role{i}") for i in range(12)]
    cfg = pg.config("role", password="pw")
    with ThreadPoolExecutor(max_workers=10) as pool:
        names = list(pool.map(lambda m: pg.create("role", m, cfg)["name"], metas))
        assert all(pool.map(lambda m: pg.observe("role", m, cfg).managed, metas))
        list(pool.map(lambda m: pg.delete("role", m, cfg), metas))
    assert len(set(names)) == len(metas)
    assert all(pg.role_row(n) is None for n in names)


def test_bad_privileges_are_refused() -> None:
    from stackyard.providers.postgres import PROVIDER

    kind = PROVIDER.kind("postgres.grant")
    base = {"server": "postgresql://x@127.0.0.1/x", "role": "r", "database": "d"}
    with pytest.raises(ProviderPermanentError):
        validate_config(kind, {**base, "privileges": ["SELECT; DROP ROLE postgres"]})
    with pytest.raises(ProviderPermanentError):
        validate_config(kind, {**base, "schema": "public", "privileges": ["CONNECT"]})


def test_errors_are_mapped_and_never_show_secrets(pg: Harness) -> None:
    secret = "hunter2-very-secret"
    url = f"postgresql://postgres:{secret}@127.0.0.1:1/postgres"
    meta = pg.meta("role", "role")
    cfg = pg.config("role", password=secret)
    cfg["server"] = url
    with pytest.raises(ProviderTransientError) as info:
        pg.observe("role", meta, cfg)
    assert secret not in str(info.value) and info.value.address == meta.address

    # A permanent failure from the server: an unknown template.
    db_meta = pg.meta("database", "database")
    bad = pg.config("database", template=f"{pg.env}_no_such_template")
    with pytest.raises(ProviderPermanentError) as perm:
        pg.create("database", db_meta, bad)
    assert "postgres:" not in str(perm.value).split("PostgreSQL:", 1)[0]
    assert pg.observe("database", db_meta, bad) is None
