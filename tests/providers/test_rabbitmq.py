"""Table tests of the rabbitmq provider's pure parts: names, labels, passwords, config."""

from __future__ import annotations

from typing import Any

import pytest

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import (
    ObserveRequest,
    ResourceMeta,
    replace_fields,
    sensitive_fields,
    validate_config,
)
from stackyard.providers.rabbitmq import PROVIDER
from stackyard.providers.rabbitmq.client import (
    hash_password,
    label_of_tag,
    name_problem,
    ownership,
    segment,
    tag_of_label,
    verify_password,
)

pytestmark = pytest.mark.providers

META = ResourceMeta("amqp.default#w.bus/vhost", "rabbitmq.vhost", "dev", "dev-w-bus-1", "inst")


@pytest.mark.parametrize(
    ("name", "ok", "reason"),
    [
        ("orders", True, "a plain name"),
        ("/", True, "the slash is sent encoded, one segment"),
        ("a/../b", True, "a traversal inside one encoded segment is just text"),
        ("...", True, "three dots are no dot segment"),
        ("é🔥", True, "unicode is fine"),
        ("", False, "empty"),
        (".", False, "the HTTP server normalises a dot segment away"),
        ("..", False, "the HTTP server normalises a dot segment away"),
        ("x\x00y", False, "NUL"),
        ("a\u202eb", False, "a format character (RTL override)"),
        ("line\nbreak", False, "a control character"),
        ("x" * 256, False, "longer than 255 bytes"),
        ("é" * 128, False, "256 bytes in 128 characters"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_names(name: str, ok: bool, reason: str) -> None:
    assert (name_problem(name) is None) is ok, reason


@pytest.mark.parametrize(
    ("name", "encoded", "reason"),
    [
        ("orders-1_x~", "orders-1_x~", "unreserved characters stay"),
        ("/", "%2F", "a slash cannot split the path"),
        ("..a", "%2E%2Ea", "dots are encoded too"),
        ("%2F", "%252F", "a percent is encoded, so nothing is decoded twice"),
        ("é", "%C3%A9", "UTF-8 bytes"),
        ("a b?c#d", "a%20b%3Fc%23d", "query and fragment delimiters"),
    ],
    ids=lambda v: repr(v),
)
def test_segment(name: str, encoded: str, reason: str) -> None:
    assert segment(name) == encoded, reason


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("stackyard:inst:dev:amqp.default#w.bus/user", "plain: unchanged"),
        ("stackyard:inst:dev:amqp.default#a,b.c/user", "a comma would split the tags"),
        ("stackyard:inst:dev:amqp.default#é 🔥.x/user", "tags are Latin-1 atoms"),
        ("stackyard:inst:dev:amqp.default#%41.x/user", "a percent survives the round trip"),
    ],
    ids=lambda v: repr(v),
)
def test_label_tags_round_trip(label: str, reason: str) -> None:
    tag = tag_of_label(label)
    assert tag.isascii() and "," not in tag and " " not in tag, reason
    assert label_of_tag(["management", tag]) == label, reason


@pytest.mark.parametrize(
    ("label", "managed", "reason"),
    [
        (META.label, True, "exactly our label"),
        (None, False, "no label: someone else's"),
        ("", False, "an empty description: someone else's"),
        ("stackyard:other:dev:amqp.default#w.bus/vhost", False, "another installation"),
        ("stackyard:inst:prod:amqp.default#w.bus/vhost", False, "another environment"),
        ("Default virtual host", False, "RabbitMQ's own"),
    ],
    ids=lambda v: repr(v),
)
def test_ownership(label: str | None, managed: bool, reason: str) -> None:
    assert ownership(META, "x", label)[0] is managed, reason


def test_password_hashes_verify_and_are_salted() -> None:
    one, two = hash_password("pw"), hash_password("pw")
    assert one != two
    algorithm = "rabbit_password_hashing_sha256"
    assert verify_password("pw", one, algorithm) and verify_password("pw", two, algorithm)
    assert not verify_password("other", one, algorithm)
    assert not verify_password("pw", one, "rabbit_password_hashing_unknown")
    assert not verify_password("pw", "not base64!", algorithm)


@pytest.mark.parametrize(
    ("kind", "replace", "sensitive", "reason"),
    [
        ("rabbitmq.vhost", {"name"}, {"server"}, "a vhost cannot be renamed"),
        ("rabbitmq.user", {"name"}, {"server", "password"}, "a user cannot be renamed"),
        ("rabbitmq.permission", {"vhost", "user"}, {"server"}, "a grant names its subjects"),
        ("rabbitmq.local_server", {"name", "port", "home"}, {"password"}, "a server's place"),
    ],
    # sorted: a set's repr follows the hash seed, and every pytest-xdist worker must collect
    # the same ids
    ids=lambda v: repr(sorted(v)) if isinstance(v, set) else repr(v),
)
def test_field_flags(kind: str, replace: set[str], sensitive: set[str], reason: str) -> None:
    model = PROVIDER.kind(kind).config_model
    assert replace_fields(model) == replace, reason
    assert sensitive_fields(model) == sensitive, reason


@pytest.mark.parametrize(
    ("kind", "config", "reason"),
    [
        ("rabbitmq.user", {"password": ""}, "an empty password"),
        ("rabbitmq.user", {"password": "x", "tags": ["Admin"]}, "a tag that is no word"),
        ("rabbitmq.user", {"password": "x", "tags": ["stackyard:x"]}, "a forged label tag"),
        ("rabbitmq.user", {"password": "x", "tags": ["a,b"]}, "a comma would add a tag"),
        ("rabbitmq.permission", {"vhost": "v"}, "no user"),
        ("rabbitmq.permission", {"vhost": "v", "user": "u", "read": "x" * 2000}, "too long"),
        ("rabbitmq.vhost", {"extra": 1}, "unknown keys"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_bad_configs_are_refused(kind: str, config: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProviderPermanentError):
        validate_config(PROVIDER.kind(kind), {"server": "http://a:b@127.0.0.1:15672", **config})


def test_a_bad_server_url_is_refused_without_echoing_it() -> None:
    vhost = PROVIDER.kind("rabbitmq.vhost")
    for url in ("ftp://admin:hunter2@host", "http://admin:hunter2@host:99999", "hunter2"):
        with pytest.raises(ProviderPermanentError) as info:
            vhost.observe(ObserveRequest(META, {"server": url}))
        assert "hunter2" not in str(info.value)
