"""Type contracts: packaged JSON Schemas following Score's output conventions."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from stackyard.model.contracts import (
    contract_for,
    known_types,
    output_properties,
    required_outputs,
    secret_outputs,
)

pytestmark = pytest.mark.unit

CASES = [
    # (type, required outputs, secret outputs, reason)
    (
        "postgres",
        ["host", "port", "name", "database", "username", "password"],
        ["password"],
        "Score's postgres outputs",
    ),
    (
        "mysql",
        ["host", "port", "name", "database", "username", "password"],
        ["password"],
        "Score's mysql outputs",
    ),
    ("redis", ["host", "port", "username", "password"], ["password"], "Score's redis outputs"),
    (
        "amqp",
        ["host", "port", "vhost", "username", "password"],
        ["password"],
        "Score's amqp outputs",
    ),
    (
        "s3",
        ["endpoint", "region", "bucket", "access_key_id", "secret_key"],
        ["secret_key", "aws_secret_key"],
        "score-compose's s3 outputs",
    ),
    ("volume", ["source"], [], "a volume is mounted from its source"),
    ("dns", ["host"], [], "Score's dns outputs: a host name"),
    ("route", [], [], "Score's route provisioners output nothing; ours add host, path, url"),
    (
        "service-port",
        ["hostname", "port"],
        [],
        "score-compose's service-port outputs: where the other workload listens",
    ),
    (
        "proxy-instance",
        ["host", "port", "url", "admin_url"],
        [],
        "a proxy: admin_url is how route components configure it",
    ),
    (
        "postgres-instance",
        ["host", "port", "admin_url"],
        ["admin_url", "password"],
        "a server: admin_url is how components provision on it",
    ),
    (
        "amqp-instance",
        ["host", "port", "admin_url"],
        ["admin_url", "password"],
        "a server: admin_url (the management API's) is how components provision on it",
    ),
    (
        "s3-instance",
        ["endpoint", "iam_endpoint", "region", "admin_access_key_id", "admin_secret_key"],
        ["admin_secret_key"],
        "a server: an admin key is how components provision buckets and users on it",
    ),
    (
        "mysql-instance",
        ["host", "port", "admin_url"],
        ["admin_url", "password"],
        "a server: admin_url is how components provision on it",
    ),
    (
        "redis-instance",
        ["host", "port", "admin_url"],
        ["admin_url", "password", "url"],
        "a server: admin_url is how components provision on it",
    ),
]


@pytest.mark.parametrize(
    ("type_", "required", "secrets", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_contract_outputs(type_: str, required: list[str], secrets: list[str], reason: str) -> None:
    assert required_outputs(type_) == required, reason
    assert sorted(secret_outputs(type_)) == sorted(secrets), reason


def test_known_types_are_exactly_the_packaged_contracts() -> None:
    assert known_types() == sorted(c[0] for c in CASES)


@pytest.mark.parametrize("type_", [c[0] for c in CASES])
def test_every_contract_is_a_valid_json_schema(type_: str) -> None:
    schema = contract_for(type_)
    assert schema is not None
    Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize(
    ("type_", "reason"),
    [
        ("postgress", "a typo has no contract"),
        ("../contracts/postgres", "a type name never becomes a path"),
        ("", "the empty name"),
    ],
    ids=["typo", "path-traversal", "empty"],
)
def test_unknown_types_have_no_contract(type_: str, reason: str) -> None:
    assert contract_for(type_) is None, reason
    assert required_outputs(type_) == []
    assert secret_outputs(type_) == []
    assert output_properties(type_) == {}


def test_contract_for_returns_a_private_copy() -> None:
    first = contract_for("postgres")
    assert first is not None
    first["required"].append("changed")  # type: ignore[attr-defined]
    assert "changed" not in required_outputs("postgres")


@pytest.mark.parametrize(
    ("value", "ok"),
    [(5432, True), ("5432", True), (0, False), (70000, False), ("54a", False), ([5432], False)],
    ids=["int", "digit-string", "zero", "too-big", "not-digits", "list"],
)
def test_port_accepts_an_integer_or_its_decimal_string(value: object, ok: bool) -> None:
    schema = contract_for("postgres")
    assert schema is not None
    validator = Draft202012Validator(schema["properties"]["port"])
    assert validator.is_valid(value) is ok
