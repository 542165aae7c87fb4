"""The mysql provider against a real MariaDB: lifecycle, real logins, drift, labels, hostile
names, the sweeper, and the local server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from _mysql import admin_conn, mysql_admin_url, mysql_leaked, mysql_sweep  # noqa: F401
from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ForeignObjectError, ProviderPermanentError, ProviderTransientError
from stackyard.host import supervise
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    Provider,
    ResourceMeta,
    UpdateRequest,
    label_prefix,
    validate_config,
)
from stackyard.providers.mysql import PASSWORD_DRIFTED, Connections, make_provider
from stackyard.providers.mysql import connection as mc
from stackyard.providers.mysql.server import mariadbd_candidates
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "mysql.default#orders.db"
INSTALLATION = "0123456789"


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
        return self.provider.kind(f"mysql.{name}")

    def meta(self, kind: str, resource: str, env: str | None = None) -> ResourceMeta:
        env = env or self.env
        rule = self.kind(kind).naming
        return ResourceMeta(
            address=f"{UID}/{resource}",
            kind=f"mysql.{kind}",
            env=env,
            physical_name=physical_name(env, UID, resource, rule),
            installation=INSTALLATION,
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

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = admin_conn(self.url)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def login(self, user: str, password: str, database: str | None = None) -> Any:
        s = mc.ServerUrl.parse(self.url)
        return pymysql.connect(
            host=s.host, port=s.port, user=user, password=password, database=database
        )

    def bundle(self, password: str = "first-Pw-1") -> dict[str, Any]:
        """A user, a database and the user's grant on it (what mysql-database makes)."""
        um, dm, gm = self.meta("user", "user"), self.meta("database", "db"), self.meta("grant", "g")
        ucfg = self.config("user", password=password)
        dcfg = self.config("database")
        user = self.create("user", um, ucfg)["name"]
        db = self.create("database", dm, dcfg)["name"]
        gcfg = self.config("grant", user=user, database=db)
        self.create("grant", gm, gcfg)
        return {
            "um": um,
            "dm": dm,
            "gm": gm,
            "ucfg": ucfg,
            "dcfg": dcfg,
            "gcfg": gcfg,
            "user": user,
            "db": db,
        }

    def destroy(self, b: dict[str, Any]) -> None:
        self.delete("grant", b["gm"], b["gcfg"])
        self.delete("database", b["dm"], b["dcfg"])
        self.delete("user", b["um"], b["ucfg"])


@pytest.fixture
def my(provider: Provider, mysql_admin_url: str, sweeper: Sweeper) -> Iterator[Harness]:  # noqa: F811
    sweeper.add_check(lambda env: mysql_leaked(mysql_admin_url, env))
    h = Harness(provider, mysql_admin_url, sweeper.env)
    yield h
    if mysql_leaked(mysql_admin_url, sweeper.env):
        mysql_sweep(mysql_admin_url, sweeper.env)
        pytest.fail(f"test leaked MySQL objects labelled {sweeper.env!r}")


def _user_row(h: Harness, user: str) -> Any:
    rows = h.sql(
        "SELECT authentication_string, max_user_connections FROM mysql.user"
        " WHERE User = %s AND Host = '%%'",
        user,
    )
    return rows[0] if rows else None


def test_lifecycle_is_idempotent_and_the_user_is_confined(my: Harness) -> None:
    b = my.bundle()
    user, db = b["user"], b["db"]
    assert user == b["um"].physical_name and db == b["dm"].physical_name
    row = _user_row(my, user)
    assert row[0] == mc.native_hash("first-Pw-1"), "the server holds the hash we computed"
    labels = my.sql(
        "SELECT kind, name, host, label FROM stackyard_meta.labels WHERE name IN (%s, %s)", user, db
    )
    assert sorted(labels) == sorted(
        [("user", user, "%", b["um"].label), ("database", db, "", b["dm"].label)]
    )

    # idempotent: a repeat writes nothing and reports the same outputs
    assert my.create("user", b["um"], b["ucfg"]) == {"name": user, "host": "%"}
    assert my.create("database", b["dm"], b["dcfg"]) == {"name": db}
    my.create("grant", b["gm"], b["gcfg"])
    assert _user_row(my, user) == row
    assert my.observe("user", b["um"], b["ucfg"]).config == {
        "name": "",
        "host": "%",
        "password": "first-Pw-1",
        "max_user_connections": 0,
    }
    assert my.observe("database", b["dm"], b["dcfg"]).config == {
        "name": "",
        "charset": "utf8mb4",
        "collation": "",
    }
    assert my.observe("grant", b["gm"], b["gcfg"]).config == {"privileges": ["ALL"]}

    # a real login: it works in its own database and sees no other
    neighbour = f"{my.env}_neighbour"
    my.sql(f"CREATE DATABASE `{neighbour}`")
    try:
        conn = my.login(user, "first-Pw-1", db)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
                cur.execute("INSERT INTO t VALUES (1)")
                cur.execute("SHOW DATABASES")
                assert {r[0] for r in cur.fetchall()} == {"information_schema", db}
                for statement in (
                    f"CREATE TABLE `{neighbour}`.t (id INT)",
                    "SELECT * FROM stackyard_meta.labels",
                    "SELECT * FROM mysql.user",
                    "CREATE DATABASE x_other",
                ):
                    with pytest.raises(pymysql.err.OperationalError) as denied:
                        cur.execute(statement)
                    assert denied.value.args[0] in (1044, 1142), statement
        finally:
            conn.close()
        with pytest.raises(pymysql.err.OperationalError):
            my.login(user, "first-Pw-1", neighbour)
    finally:
        my.sql(f"DROP DATABASE `{neighbour}`")

    # update in place: a new password and a connection limit
    changed = my.config("user", password="second-Pw-2", max_user_connections=3)
    my.update("user", b["um"], changed)
    assert _user_row(my, user) == (mc.native_hash("second-Pw-2"), 3)
    my.update("user", b["um"], changed)
    my.login(user, "second-Pw-2", db).close()
    b["ucfg"] = changed

    # delete (twice), observe nothing, re-create, delete
    my.destroy(b)
    my.destroy(b)
    for kind, meta, cfg in (
        ("user", "um", "ucfg"),
        ("database", "dm", "dcfg"),
        ("grant", "gm", "gcfg"),
    ):
        assert my.observe(kind, b[meta], b[cfg]) is None
    assert _user_row(my, user) is None
    b2 = my.bundle(password="second-Pw-2")
    assert (b2["user"], b2["db"]) == (user, db), "names are deterministic"
    conn = my.login(user, "second-Pw-2", db)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            assert cur.fetchall() == (), "the re-created database is a new, empty one"
    finally:
        conn.close()
    my.destroy(b2)


def test_delete_ends_open_sessions(my: Harness) -> None:
    b = my.bundle()
    conn = my.login(b["user"], "first-Pw-1", b["db"])
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("CREATE TABLE t (id INT)")
        my.destroy(b)
        with pytest.raises(pymysql.err.OperationalError), conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()
    assert not my.sql("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", b["db"])


def test_drift_is_found_and_fixed(my: Harness) -> None:
    b = my.bundle()
    user, db = b["user"], b["db"]
    my.sql("ALTER USER %s@'%%' IDENTIFIED BY 'changed-by-hand'", user)
    my.sql("ALTER USER %s@'%%' WITH MAX_USER_CONNECTIONS 7", user)
    my.sql(f"ALTER DATABASE `{db}` CHARACTER SET latin1")
    # the grant is on the escaped name (``_`` is a wildcard in a grant's database)
    target = mc.grant_target(db).replace("%", "%%")
    my.sql(f"REVOKE DROP, ALTER ON {target}.* FROM %s@'%%'", user)
    observed = my.observe("user", b["um"], b["ucfg"]).config
    assert observed["password"] == PASSWORD_DRIFTED and observed["max_user_connections"] == 7
    assert my.observe("database", b["dm"], b["dcfg"]).config["charset"] == "latin1"
    privileges = my.observe("grant", b["gm"], b["gcfg"]).config["privileges"]
    assert "DROP" not in privileges and "SELECT" in privileges and privileges != ["ALL"]

    my.update("user", b["um"], b["ucfg"])
    my.update("database", b["dm"], b["dcfg"])
    my.update("grant", b["gm"], b["gcfg"])
    assert my.observe("user", b["um"], b["ucfg"]).config["password"] == "first-Pw-1"
    assert my.observe("database", b["dm"], b["dcfg"]).config["charset"] == "utf8mb4"
    assert my.observe("grant", b["gm"], b["gcfg"]).config == {"privileges": ["ALL"]}
    my.login(user, "first-Pw-1", db).close()

    # narrowing a grant revokes the rest
    narrow = my.config("grant", user=user, database=db, privileges=["select", "Insert"])
    my.update("grant", b["gm"], narrow)
    assert my.observe("grant", b["gm"], narrow).config == {"privileges": ["INSERT", "SELECT"]}
    my.update("grant", b["gm"], b["gcfg"])

    # an account dropped by hand is missing, and create brings it back
    my.sql("DROP USER %s@'%%'", user)
    assert my.observe("user", b["um"], b["ucfg"]) is None
    assert my.observe("grant", b["gm"], b["gcfg"]) is None
    my.create("user", b["um"], b["ucfg"])
    my.create("grant", b["gm"], b["gcfg"])
    my.login(user, "first-Pw-1", db).close()
    my.destroy(b)


def test_grant_wildcards_are_escaped(my: Harness) -> None:
    um = my.meta("user", "user")
    ucfg = my.config("user", password="pw-Wild-1")
    user = my.create("user", um, ucfg)["name"]
    dm = my.meta("database", "db")
    target, lookalike = f"{my.env}_a_b", f"{my.env}_aXb"
    dcfg = my.config("database", name=target)
    my.create("database", dm, dcfg)
    my.sql(f"CREATE DATABASE `{lookalike}`")
    gm = my.meta("grant", "g")
    gcfg = my.config("grant", user=user, database=target)
    try:
        my.create("grant", gm, gcfg)
        my.login(user, "pw-Wild-1", target).close()
        with pytest.raises(pymysql.err.OperationalError) as denied:
            my.login(user, "pw-Wild-1", lookalike)
        assert denied.value.args[0] == 1044
    finally:
        my.sql(f"DROP DATABASE `{lookalike}`")
        my.delete("grant", gm, gcfg)
        my.delete("database", dm, dcfg)
        my.delete("user", um, ucfg)


def test_foreign_and_unlabelled_objects_are_never_touched(my: Harness) -> None:
    um, dm = my.meta("user", "user"), my.meta("database", "db")
    ucfg, dcfg = my.config("user", password="pw-F-1"), my.config("database")
    user, db = um.physical_name, dm.physical_name
    my.sql("CREATE USER %s@'%%' IDENTIFIED BY 'by-hand'", user)
    my.sql(f"CREATE DATABASE `{db}`")
    try:
        for kind, meta, cfg in (("user", um, ucfg), ("database", dm, dcfg)):
            observed = my.observe(kind, meta, cfg)
            assert observed is not None and observed.managed is False
            assert "without a stackyard label" in observed.detail
            for op in (my.create, my.update, my.delete):
                with pytest.raises(ForeignObjectError):
                    op(kind, meta, cfg)
        my.login(user, "by-hand").close()
        assert my.sql("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", db)
    finally:
        my.sql("DROP USER %s@'%%'", user)
        my.sql(f"DROP DATABASE `{db}`")

    # an object labelled by another environment (same explicit name) is foreign too
    other = my.meta("user", "user", env=my.env + "x")
    named = my.config("user", name=f"{my.env}_named", password="pw-F-2")
    my.create("user", other, named)
    try:
        observed = my.observe("user", um, named)
        assert observed.managed is False and "labelled" in observed.detail
        with pytest.raises(ForeignObjectError):
            my.delete("user", um, named)
        with pytest.raises(ForeignObjectError):
            my.create("user", um, named)
    finally:
        my.delete("user", other, named)


def test_a_create_stopped_after_its_label_converges(my: Harness) -> None:
    """Label first, then the object: a crash in between leaves a label and no object."""
    um, ucfg = my.meta("user", "user"), my.config("user", password="pw-C-1")
    user = um.physical_name
    conn = admin_conn(my.url)
    try:
        Connections().ensure_meta(my.url, conn)
        mc.write_label(conn, ("user", user, "%"), um.label)
    finally:
        conn.close()
    assert my.observe("user", um, ucfg) is None, "a label without an account is missing"
    my.create("user", um, ucfg)
    assert my.observe("user", um, ucfg).managed
    my.delete("user", um, ucfg)

    # and a delete stopped after DROP USER (label left) is finished by a repeat
    my.create("user", um, ucfg)
    my.sql("DROP USER %s@'%%'", user)
    my.delete("user", um, ucfg)
    assert not my.sql("SELECT 1 FROM stackyard_meta.labels WHERE name = %s", user)


def test_sweeper_finds_labelled_objects(my: Harness) -> None:
    b = my.bundle()
    prefix = label_prefix(INSTALLATION, my.env)
    for kind, meta, name in (("user", "um", b["user"]), ("database", "dm", b["db"])):
        k = my.kind(kind)
        found = k.labelled(b["ucfg" if kind == "user" else "dcfg"], prefix, limit=100)  # type: ignore[attr-defined]
        assert [f.physical_name for f in found] == [name]
        assert found[0].label == b[meta].label
        assert k.sweep_scope(b["dcfg"]) == my.url  # type: ignore[attr-defined]
    # the engine deletes each stray with its listed config
    my.delete("grant", b["gm"], b["gcfg"])
    for kind in ("database", "user"):
        k = my.kind(kind)
        for obj in k.labelled({"server": my.url}, prefix, limit=100):  # type: ignore[attr-defined]
            meta = ResourceMeta(
                obj.label[len(prefix) :], k.name, my.env, obj.physical_name, INSTALLATION
            )
            k.delete(DeleteRequest(meta, obj.config, {}))
    assert mysql_leaked(my.url, my.env) == []


def test_errors_are_mapped_and_never_show_secrets(my: Harness) -> None:
    s = mc.ServerUrl.parse(my.url)
    bad = f"mysql://{s.user}:Wr0ng-Secret@{s.host}:{s.port}/"
    meta = my.meta("user", "user")
    with pytest.raises(ProviderPermanentError) as refused:
        my.kind("user").observe(ObserveRequest(meta, {"server": bad, "password": "pw-E-1"}))
    assert "Wr0ng-Secret" not in str(refused.value) and "1045" in str(refused.value)
    assert refused.value.__cause__ is None or "Wr0ng-Secret" not in str(refused.value.__cause__)
    closed = "mysql://root:Wr0ng-Secret@127.0.0.1:9/"
    with pytest.raises(ProviderTransientError) as down:
        my.kind("database").observe(ObserveRequest(meta, {"server": closed}))
    assert "Wr0ng-Secret" not in str(down.value)
    with pytest.raises(ProviderPermanentError, match="not a valid MySQL URL"):
        my.kind("database").observe(ObserveRequest(meta, {"server": "postgres://x:Wr0ng@h/"}))
    with pytest.raises(ProviderPermanentError, match="reserved"):
        my.create("database", meta, my.config("database", name="mysql"))


# -- hostile names ------------------------------------------------------------------------

from test_hostile_names import HOSTILE  # noqa: E402  (the shared corpus)

IDS = [reason for _, reason in HOSTILE]


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=IDS)
def test_derived_names_are_plain_identifiers(text: str, reason: str) -> None:
    uid = f"mysql.default#{text}.{text}"
    for kind in ("user", "database"):
        rule = make_provider(Connections()).kind(f"mysql.{kind}").naming
        name = physical_name(text, uid, text, rule)
        assert name == physical_name(text, uid, text, rule)
        assert len(name) <= rule.max_length
        assert name.replace("_", "").isalnum() and name.isascii() and name == name.lower(), reason


def _snapshot(h: Harness) -> set[str]:
    users = {f"user:{u}@{host}" for u, host in h.sql("SELECT User, Host FROM mysql.user")}
    dbs = {f"db:{d}" for (d,) in h.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}
    return users | dbs


def test_hostile_corpus_leaves_the_server_untouched(my: Harness) -> None:
    before = _snapshot(my)
    outcomes: dict[str, list[str]] = {}
    user_kind, db_kind = my.kind("user"), my.kind("database")
    for i, (text, reason) in enumerate(HOSTILE):
        uid = f"mysql.default#{text}.{text}"
        # derived names from a hostile identity: always created, exactly, and deleted
        for kind, extra in ((user_kind, {"password": f"pw-{i}"}), (db_kind, {})):
            name = physical_name(text, uid, text, kind.naming)
            meta = ResourceMeta(f"{uid}/{text}", kind.name, my.env, name, INSTALLATION)
            cfg = {"server": my.url, **extra}
            kind.create(CreateRequest(meta, cfg))
            assert kind.observe(ObserveRequest(meta, cfg)).managed, reason
            kind.delete(DeleteRequest(meta, cfg, {}))
            assert kind.observe(ObserveRequest(meta, cfg)) is None
        # the raw text as the name of a user and of a database
        for kind, extra in ((user_kind, {"password": f"pw-{i}"}), (db_kind, {})):
            meta = ResourceMeta(
                f"mysql.default#w.r/raw{i}", kind.name, my.env, "unused", INSTALLATION
            )
            cfg = {"server": my.url, "name": text, **extra}
            try:
                kind.create(CreateRequest(meta, cfg))
            except ProviderPermanentError as exc:
                assert "\x00" not in exc.message
                outcomes.setdefault(f"{kind.name} refused", []).append(reason)
                with pytest.raises(ProviderPermanentError):  # refused before any SQL
                    kind.observe(ObserveRequest(meta, cfg))
                continue
            observed = kind.observe(ObserveRequest(meta, cfg))
            assert observed is not None and observed.managed, reason
            assert observed.outputs["name"] == text, reason
            kind.delete(DeleteRequest(meta, cfg, {}))
            assert kind.observe(ObserveRequest(meta, cfg)) is None, reason
            outcomes.setdefault(f"{kind.name} created exactly", []).append(reason)
    after = _snapshot(my)
    assert before - after <= {k for k in before if my.env not in k}, "nothing of ours remains"
    assert {
        k for k in before - after if k.startswith(("user:root", "db:mysql", "db:test"))
    } == set()
    assert "user:root@localhost" in after and "db:mysql" in after
    for kind in ("mysql.user", "mysql.database"):
        assert outcomes.get(f"{kind} refused") and outcomes.get(f"{kind} created exactly"), kind


# -- mysql.local_server -------------------------------------------------------------------


@pytest.fixture
def server(home: Path) -> Iterator[Any]:
    if not mariadbd_candidates():
        pytest.skip("no MariaDB server binaries on this machine (Debian's mariadb-server)")
    kind = make_provider(Connections()).kind("mysql.local_server")
    meta = ResourceMeta("test#mysql/server", kind.name, "it", "it-mysql", INSTALLATION)
    config: dict[str, Any] = {"home": str(home), "password": "first-Secret-1"}
    yield kind, meta, config
    try:
        kind.delete(DeleteRequest(meta, config, {}))
    finally:
        proc = supervise.read_pidfile(home / "servers" / "it-mysql" / "server.pid")
        if proc is not None:
            supervise.reap_group(proc)


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 15
    while supervise.alive(supervise.Process(pid, 0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not supervise.alive(supervise.Process(pid, 0))


def test_local_server_lifecycle(server: Any, home: Path) -> None:
    kind, meta, config = server
    assert kind.observe(ObserveRequest(meta, config)) is None
    out = dict(kind.create(CreateRequest(meta, config)).outputs)
    assert out["host"] == "127.0.0.1" and out["username"] == "root"
    assert kind.sensitive_outputs == {"admin_url", "password"}
    admin = admin_conn(out["admin_url"])
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT User, Host FROM mysql.user WHERE User <> 'mariadb.sys'")
            assert sorted(cur.fetchall()) == [("root", "127.0.0.1"), ("root", "localhost")]
            cur.execute("SELECT @@bind_address, @@skip_name_resolve, @@character_set_server")
            assert cur.fetchone() == ("127.0.0.1", 1, "utf8mb4")
    finally:
        admin.close()
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=out["port"], user="root", password="")
    assert kind.observe(ObserveRequest(meta, config)).health == "ok"
    pid = supervise.read_pidfile(home / "servers" / "it-mysql" / "server.pid").pid
    if os.geteuid() == 0:
        status = Path(f"/proc/{pid}/status").read_text()
        uid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Uid:"))
        assert uid != 0, "under root the server runs as an unprivileged user"

    # the provider's kinds work on it
    h = Harness(make_provider(Connections()), out["admin_url"], "tlocal")
    b = h.bundle()
    h.login(b["user"], "first-Pw-1", b["db"]).close()
    h.destroy(b)

    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    assert kind.observe(ObserveRequest(meta, config)).health == "stopped"
    again = dict(kind.update(UpdateRequest(meta, config, config, out, frozenset())).outputs)
    assert again == out, "a restarted server keeps its port and password"

    changed = {**config, "password": "second-Secret-2"}
    out2 = dict(
        kind.update(UpdateRequest(meta, changed, config, out, frozenset({"password"}))).outputs
    )
    admin_conn(out2["admin_url"]).close()
    config.update(changed)

    pid = supervise.read_pidfile(home / "servers" / "it-mysql" / "server.pid").pid
    kind.delete(DeleteRequest(meta, config, {}))
    _wait_dead(pid)
    assert kind.observe(ObserveRequest(meta, config)) is None
    assert not (home / "servers" / "it-mysql").exists()
