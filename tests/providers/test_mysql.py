"""Table tests of the mysql provider's decisions: observed + desired -> change, pure."""

from __future__ import annotations

from typing import Any

import pytest

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import replace_fields, sensitive_fields, validate_config
from stackyard.providers.mysql import PROVIDER
from stackyard.providers.mysql.connection import (
    ServerUrl,
    grant_target,
    identifier,
    name_problem,
    native_hash,
    url_secrets,
)
from stackyard.providers.mysql.database import DatabaseConfig, database_changes
from stackyard.providers.mysql.grant import (
    ALL,
    COLUMNS,
    grant_changes,
    held_privileges,
    normalise,
)
from stackyard.providers.mysql.user import NATIVE_PLUGIN, UserConfig, user_changes

pytestmark = pytest.mark.providers

URL = "mysql://root@127.0.0.1:3306/"
PW_HASH = native_hash("pw")

USER_CASES = [
    # (observed plugin, hash, limit), desired, expected clauses, reason
    ((NATIVE_PLUGIN, PW_HASH, 0), {"password": "pw"}, [], "same hash, same limit: nothing"),
    ((NATIVE_PLUGIN, native_hash("x"), 0), {"password": "pw"}, ["password"], "changed by hand"),
    (("ed25519", "abc", 0), {"password": "pw"}, ["password"], "another plugin is drift"),
    ((NATIVE_PLUGIN, "", 0), {"password": "pw"}, ["password"], "no password at all"),
    ((NATIVE_PLUGIN, PW_HASH, 5), {"password": "pw"}, ["limit"], "a limit set by hand"),
    (
        (NATIVE_PLUGIN, PW_HASH, None),
        {"password": "pw", "max_user_connections": 3},
        ["limit"],
        "a new limit",
    ),
]


@pytest.mark.parametrize(
    ("row", "desired", "expected", "reason"), USER_CASES, ids=[c[3] for c in USER_CASES]
)
def test_user_changes(row: Any, desired: dict[str, Any], expected: list[str], reason: str) -> None:
    cfg = UserConfig.model_validate({"server": URL, **desired})
    assert user_changes(row, cfg) == expected, reason


DATABASE_CASES = [
    (("utf8mb4", "utf8mb4_general_ci"), {}, [], "the default charset, any collation"),
    (("UTF8MB4", "x"), {}, [], "charsets compare case-insensitively"),
    (("latin1", "latin1_swedish_ci"), {}, ["CHARACTER SET utf8mb4"], "charset changed by hand"),
    (
        ("utf8mb4", "utf8mb4_general_ci"),
        {"collation": "utf8mb4_bin"},
        ["CHARACTER SET utf8mb4", "COLLATE utf8mb4_bin"],
        "a configured collation is compared",
    ),
    (("", ""), {}, ["CHARACTER SET utf8mb4"], "create: the full option list"),
]


@pytest.mark.parametrize(
    ("row", "desired", "expected", "reason"), DATABASE_CASES, ids=[c[3] for c in DATABASE_CASES]
)
def test_database_changes(
    row: tuple[str, str], desired: dict[str, Any], expected: list[str], reason: str
) -> None:
    cfg = DatabaseConfig.model_validate({"server": URL, **desired})
    assert database_changes(row, cfg) == expected, reason


def _row(*privileges: str, grant_option: bool = False) -> dict[str, str]:
    row = {col: ("Y" if name in privileges else "N") for col, name in COLUMNS.items()}
    row["Grant_priv"] = "Y" if grant_option else "N"
    return row


HELD_CASES = [
    (_row(), (), "nothing held"),
    (_row(*COLUMNS.values()), (ALL,), "every column: ALL"),
    (_row(*COLUMNS.values(), grant_option=True), (ALL,), "GRANT OPTION is not counted"),
    (_row("SELECT", "INSERT"), ("INSERT", "SELECT"), "sorted names"),
    (
        {k: v for k, v in _row(*COLUMNS.values()).items() if k != "Delete_history_priv"},
        (ALL,),
        "a server without a column (MySQL) still reads as ALL",
    ),
]


@pytest.mark.parametrize(("row", "expected", "reason"), HELD_CASES, ids=[c[2] for c in HELD_CASES])
def test_held_privileges(row: dict[str, str], expected: tuple[str, ...], reason: str) -> None:
    assert held_privileges(row) == expected, reason


GRANT_CASES = [
    ((ALL,), (ALL,), False, ([], []), "held: nothing to do"),
    ((), (ALL,), False, (["ALL PRIVILEGES"], []), "create: grant all"),
    (("SELECT",), ("INSERT", "SELECT"), False, (["INSERT"], []), "grant what is missing"),
    (("DROP", "SELECT"), ("SELECT",), False, ([], []), "create never revokes"),
    (("DROP", "SELECT"), ("SELECT",), True, ([], ["DROP"]), "update revokes extras"),
    ((ALL,), ("SELECT",), False, ([], []), "create: ALL covers the list"),
    ((ALL,), ("SELECT",), True, (["SELECT"], ["ALL PRIVILEGES"]), "narrowing from ALL"),
    (("SELECT",), (ALL,), True, (["ALL PRIVILEGES"], []), "widening to ALL"),
]


@pytest.mark.parametrize(
    ("held", "wanted", "revoke", "expected", "reason"), GRANT_CASES, ids=[c[4] for c in GRANT_CASES]
)
def test_grant_changes(
    held: tuple[str, ...], wanted: tuple[str, ...], revoke: bool, expected: Any, reason: str
) -> None:
    assert grant_changes(held, wanted, revoke_others=revoke) == expected, reason


def test_privileges_are_normalised_and_checked() -> None:
    assert normalise(["select", " Insert ", "SELECT"]) == ("INSERT", "SELECT")
    assert normalise(["all privileges", "select"]) == (ALL,)
    assert normalise(["create   temporary tables"]) == ("CREATE TEMPORARY TABLES",)
    for bad in (["GRANT OPTION"], ["SUPER"], ["SELECT; DROP DATABASE x"], ["FILE"]):
        with pytest.raises(ValueError, match="privileges on a database"):
            normalise(bad)


QUOTING = [
    ("plain", "`plain`", "`plain`", "nothing to escape"),
    ("a`b", "`a``b`", "`a``b`", "a backtick is doubled"),
    ("my_db", "`my_db`", "`my\\_db`", "'_' is a wildcard in a grant"),
    ("100%", "`100%`", "`100\\%`", "'%' is a wildcard in a grant"),
    ("a\\b", "`a\\b`", "`a\\\\b`", "a backslash escapes in a grant"),
]


@pytest.mark.parametrize(
    ("name", "ident", "target", "reason"), QUOTING, ids=[c[3] for c in QUOTING]
)
def test_quoting(name: str, ident: str, target: str, reason: str) -> None:
    assert identifier(name) == ident, reason
    assert grant_target(name) == target, reason


NAMES = [
    ("app", 64, None, "plain"),
    ("", 64, "is empty", "empty"),
    ("x" * 65, 64, "longer than 64", "too long"),
    ("a\x00b", 64, "control", "NUL"),
    ("a\u202eb", 64, "control, format", "RTL override"),
    ("ab ", 64, "ends with a space", "a trailing space"),
    ("🔥", 64, "Basic Multilingual Plane", "emoji (utf8mb3 catalogs)"),
    ("é" * 40, 64, None, "accents are fine"),
]


@pytest.mark.parametrize(("name", "limit", "problem", "reason"), NAMES, ids=[c[3] for c in NAMES])
def test_name_problems(name: str, limit: int, problem: str | None, reason: str) -> None:
    found = name_problem(name, limit=limit)
    assert (found is None) if problem is None else (problem in (found or "")), reason


def test_native_hash_matches_the_servers() -> None:
    # SELECT PASSWORD('password') on MariaDB/MySQL 5.x
    assert native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"


def test_server_urls() -> None:
    assert ServerUrl.parse("mysql://root@127.0.0.1/") == ServerUrl("127.0.0.1", 3306, "root", "")
    parsed = ServerUrl.parse("mariadb://adm%40x:p%2Fw@db.example:3307/ignored")
    assert parsed == ServerUrl("db.example", 3307, "adm@x", "p/w")
    for bad in ("postgresql://u:Secret@h/", "mysql://", "mysql://h:notaport/", "nonsense"):
        with pytest.raises(ProviderPermanentError) as refused:
            ServerUrl.parse(bad)
        assert "Secret" not in str(refused.value)
    assert set(url_secrets("mysql://u:p%2Fw@h/")) == {"mysql://u:p%2Fw@h/", "p%2Fw", "p/w"}


def test_config_flags() -> None:
    user, database, grant = (PROVIDER.kind(f"mysql.{k}") for k in ("user", "database", "grant"))
    assert sensitive_fields(user.config_model) == {"server", "password"}
    assert replace_fields(user.config_model) == {"name", "host"}
    assert replace_fields(database.config_model) == {"name"}
    assert replace_fields(grant.config_model) == {"user", "host", "database"}
    assert validate_config(grant, {"server": URL, "user": "u", "database": "d"})["privileges"] == [
        ALL
    ]
    server = PROVIDER.kind("mysql.local_server")
    assert server.sensitive_outputs == {"admin_url", "password"}
    assert "password" in sensitive_fields(server.config_model)


def test_the_driver_is_not_imported_to_plan() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from stackyard.providers.mysql import PROVIDER;"
        "from stackyard.providers.api import validate_config;"
        "validate_config(PROVIDER.kind('mysql.user'), {'server': 'mysql://h/', 'password': 'p'});"
        "print('pymysql' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
