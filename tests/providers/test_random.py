"""Table tests of the random provider: recorded outputs + desired config → expected result."""

from __future__ import annotations

import string
from typing import Any

import pytest

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    replace_fields,
    sensitive_fields,
    validate_config,
)
from stackyard.providers.random import PROVIDER, SYMBOLS

pytestmark = pytest.mark.providers

PASSWORD = PROVIDER.kind("random.password")
RID = PROVIDER.kind("random.id")
KEEP = "kept-Value-1234567890"


def meta(kind: str) -> ResourceMeta:
    return ResourceMeta(
        address="postgres.default#app.db/password",
        kind=kind,
        env="dev",
        physical_name="dev-app-db-password-0123abcd",
    )


OBSERVE_CASES = [
    # (kind, config, recorded outputs, expected observed config or None, reason)
    ("random.password", {"length": 32}, {}, None, "nothing recorded: missing, so it is created"),
    ("random.password", {"length": 32}, {"value": ""}, None, "an empty value is no value"),
    (
        "random.password",
        {"length": 32},
        {"value": "a" * 32},
        {"length": 32, "symbols": False},
        "a recorded value exists; its config is read from the value",
    ),
    (
        "random.password",
        {"length": 40},
        {"value": "a" * 32},
        {"length": 32, "symbols": False},
        "a changed length shows as a difference against the kept value",
    ),
    (
        "random.password",
        {"symbols": True},
        {"value": "aB3-" * 8},
        {"length": 32, "symbols": True},
        "a value holding symbols was made with symbols on",
    ),
    (
        "random.id",
        {"prefix": "app-"},
        {"value": "app-abcd1234"},
        {"length": 8, "prefix": "app-"},
        "the prefix is recognised and the random part measured",
    ),
    (
        "random.id",
        {"prefix": "new-"},
        {"value": "app-abcd1234"},
        {"length": 12, "prefix": ""},
        "a value made for another prefix shows as a difference",
    ),
    ("random.id", {}, {}, None, "nothing recorded: missing"),
]


@pytest.mark.parametrize(
    ("kind", "config", "outputs", "expected", "reason"),
    OBSERVE_CASES,
    ids=[c[-1] for c in OBSERVE_CASES],
)
def test_observe(
    kind: str,
    config: dict[str, Any],
    outputs: dict[str, Any],
    expected: dict[str, Any] | None,
    reason: str,
) -> None:
    k = PROVIDER.kind(kind)
    cfg = validate_config(k, config)
    observed = k.observe(ObserveRequest(meta(kind), cfg, outputs))
    if expected is None:
        assert observed is None, reason
    else:
        assert observed is not None, reason
        assert dict(observed.config) == expected, reason
        assert dict(observed.outputs) == dict(outputs), reason


UPDATE_CASES = [
    # (kind, prior config, config, changed, keeps prior value, reason)
    (
        "random.password",
        {"length": 21},
        {"length": 21},
        frozenset(),
        True,
        "nothing changed: the value is kept",
    ),
    (
        "random.password",
        {"length": 21},
        {"length": 24},
        frozenset({"length"}),
        False,
        "length is replace-worthy: a new value of the new length",
    ),
    (
        "random.password",
        {},
        {"symbols": True},
        frozenset({"symbols"}),
        False,
        "symbols is replace-worthy",
    ),
    ("random.id", {"length": 21}, {"length": 21}, frozenset(), True, "id kept when unchanged"),
    (
        "random.id",
        {},
        {"prefix": "x-"},
        frozenset({"prefix"}),
        False,
        "a new prefix makes a new id",
    ),
]


@pytest.mark.parametrize(
    ("kind", "prior", "config", "changed", "keeps", "reason"),
    UPDATE_CASES,
    ids=[c[-1] for c in UPDATE_CASES],
)
def test_update(
    kind: str,
    prior: dict[str, Any],
    config: dict[str, Any],
    changed: frozenset[str],
    keeps: bool,
    reason: str,
) -> None:
    k = PROVIDER.kind(kind)
    req = UpdateRequest(
        meta(kind), validate_config(k, config), validate_config(k, prior), {"value": KEEP}, changed
    )
    value = k.update(req).outputs["value"]
    assert (value == KEEP) is keeps, reason
    if not keeps:
        assert len(value) == validate_config(k, config)["length"] + len(config.get("prefix", ""))


def test_update_without_a_prior_value_generates_one() -> None:
    cfg = validate_config(PASSWORD, {})
    out = PASSWORD.update(UpdateRequest(meta(PASSWORD.name), cfg, cfg, {}, frozenset()))
    assert len(out.outputs["value"]) == 32


@pytest.mark.parametrize(
    ("config", "alphabet", "reason"),
    [
        ({}, string.ascii_letters + string.digits, "default: letters and digits, URL-safe"),
        ({"length": 8}, string.ascii_letters + string.digits, "the shortest allowed"),
        (
            {"length": 256, "symbols": True},
            string.ascii_letters + string.digits + SYMBOLS,
            "the longest allowed, with symbols",
        ),
    ],
    ids=["default", "min-length", "max-length-symbols"],
)
def test_password_create_alphabet_and_classes(
    config: dict[str, Any], alphabet: str, reason: str
) -> None:
    cfg = validate_config(PASSWORD, config)
    for _ in range(50):
        value = PASSWORD.create(CreateRequest(meta(PASSWORD.name), cfg)).outputs["value"]
        assert len(value) == cfg["length"], reason
        assert set(value) <= set(alphabet), reason
        assert any(c.islower() for c in value) and any(c.isupper() for c in value), reason
        assert any(c.isdigit() for c in value), reason
        assert any(c in SYMBOLS for c in value) is cfg["symbols"], reason


def test_password_values_differ_between_creates() -> None:
    cfg = validate_config(PASSWORD, {})
    values = {
        PASSWORD.create(CreateRequest(meta(PASSWORD.name), cfg)).outputs["value"] for _ in range(20)
    }
    assert len(values) == 20


def test_id_create_is_lowercase_with_prefix() -> None:
    cfg = validate_config(RID, {"length": 10, "prefix": "pr-"})
    value = RID.create(CreateRequest(meta(RID.name), cfg)).outputs["value"]
    assert value.startswith("pr-") and len(value) == 13
    assert set(value[3:]) <= set(string.ascii_lowercase + string.digits)


@pytest.mark.parametrize(
    ("kind", "config", "reason"),
    [
        ("random.password", {"length": 7}, "below the minimum length"),
        ("random.password", {"length": 257}, "above the maximum length"),
        ("random.password", {"lenght": 32}, "unknown keys are refused"),
        ("random.id", {"prefix": "Upper"}, "id prefixes are lower case"),
        ("random.id", {"length": 0}, "an id has at least one random character"),
    ],
    ids=["short", "long", "typo", "upper-prefix", "zero-length"],
)
def test_invalid_config_is_refused(kind: str, config: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProviderPermanentError):
        validate_config(PROVIDER.kind(kind), config)


def test_flags_and_sensitivity() -> None:
    assert replace_fields(PASSWORD.config_model) == {"length", "symbols"}
    assert replace_fields(RID.config_model) == {"length", "prefix"}
    assert sensitive_fields(PASSWORD.config_model) == frozenset()
    assert PASSWORD.sensitive_outputs == {"value"}
    assert RID.sensitive_outputs == frozenset()


def test_delete_is_a_noop() -> None:
    cfg = validate_config(PASSWORD, {})
    assert PASSWORD.delete(DeleteRequest(meta(PASSWORD.name), cfg, {"value": KEEP})) is None
