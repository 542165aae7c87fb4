"""The redis provider against a real Redis: ACL users, confinement, drift and labels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.exceptions

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
from stackyard.providers.redis import (
    LABELS_KEY,
    PASSWORD_DRIFTED,
    RULES_KEY,
    Clients,
    make_provider,
)
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "redis.default#checkout.cache"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    clients = Clients()
    yield make_provider(clients)
    clients.close()


class Harness:
    def __init__(self, provider: Provider, url: str, env: str) -> None:
        self.kind: Kind = provider.kind("redis.acl_user")
        self.url = url
        self.env = env
        self.admin = redis.Redis.from_url(url, decode_responses=True)

    def meta(self, resource: str = "user") -> ResourceMeta:
        return ResourceMeta(
            address=f"{UID}/{resource}",
            kind="redis.acl_user",
            env=self.env,
            physical_name=physical_name(self.env, UID, resource, self.kind.naming),
        )

    def config(self, **values: Any) -> dict[str, Any]:
        return validate_config(self.kind, {"server": self.url, **values})

    def create(self, meta: ResourceMeta, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self.kind.create(CreateRequest(meta, config)).outputs)

    def update(self, meta: ResourceMeta, config: dict[str, Any]) -> dict[str, Any]:
        req = UpdateRequest(meta, config, config, {}, frozenset(config))
        return dict(self.kind.update(req).outputs)

    def observe(
        self, meta: ResourceMeta, config: dict[str, Any], outputs: dict[str, Any] | None = None
    ) -> Any:
        return self.kind.observe(ObserveRequest(meta, config, outputs or {}))

    def delete(self, meta: ResourceMeta, config: dict[str, Any]) -> None:
        self.kind.delete(DeleteRequest(meta, config, {}))

    def getuser(self, name: str) -> Any:
        return self.admin.execute_command("ACL", "GETUSER", name)

    def login(self, user: str, password: str) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, username=user, password=password, decode_responses=True
        )


@pytest.fixture
def rd(provider: Provider, redis_url: str, sweeper: Sweeper) -> Iterator[Harness]:  # noqa: F811
    h = Harness(provider, redis_url, sweeper.env)
    yield h
    h.admin.close()


def test_acl_user_lifecycle_and_confinement(rd: Harness) -> None:
    meta = rd.meta()
    cfg = rd.config(password="s3cret")
    out = rd.create(meta, cfg)
    name = out["username"]
    assert name == meta.physical_name
    assert out["prefix"] == f"{name}:" and out["host"] == "127.0.0.1" and out["port"] == 6379
    user = rd.getuser(name)
    assert user["keys"] == f"~{name}:*" and user["channels"] == f"&{name}:*"
    assert "on" in user["flags"]
    assert rd.admin.hget(LABELS_KEY, name) == meta.label

    assert rd.create(meta, cfg) == out
    assert rd.getuser(name) == user
    observed = rd.observe(meta, cfg)
    assert observed.managed
    assert observed.config == {
        "name": "",
        "password": "s3cret",
        "prefix": "",
        "commands": "+@all -@admin -@dangerous",
        "enabled": True,
    }

    client = rd.login(name, "s3cret")
    try:
        assert client.set(f"{name}:x", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("other:x", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hget(LABELS_KEY, name)
        assert client.publish(f"{name}:events", "hi") == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish("other:events", "hi")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("ACL", "LIST")
    finally:
        client.close()
        rd.admin.delete(f"{name}:x")

    readonly = rd.config(password="s3cret", commands="+@read +ping")
    rd.update(meta, readonly)
    after = rd.getuser(name)
    rd.update(meta, readonly)
    assert rd.getuser(name) == after
    assert rd.observe(meta, readonly).config["commands"] == "+@read +ping"

    rd.delete(meta, readonly)
    rd.delete(meta, readonly)
    assert rd.observe(meta, readonly) is None
    assert rd.getuser(name) is None
    assert rd.admin.hget(LABELS_KEY, name) is None
    assert rd.admin.hget(RULES_KEY, name) is None

    rd.create(meta, cfg)
    rd.delete(meta, cfg)


def test_delete_removes_the_users_keys_and_nothing_else(rd: Harness) -> None:
    meta = rd.meta("cache")
    cfg = rd.config(password="s3cret")
    name = rd.create(meta, cfg)["username"]
    client = rd.login(name, "s3cret")
    try:
        for i in range(1200):  # more than one SCAN/UNLINK batch
            client.set(f"{name}:k{i}", "v")
    finally:
        client.close()
    neighbour = f"{rd.env}-neighbour:k"
    rd.admin.set(neighbour, "keep")
    try:
        rd.delete(meta, cfg)
        assert list(rd.admin.scan_iter(match=f"{name}:*")) == []
        assert rd.admin.get(neighbour) == "keep"
    finally:
        rd.admin.delete(neighbour)


def test_out_of_band_edits_are_drift_and_reapply_fixes_them(rd: Harness) -> None:
    meta = rd.meta()
    cfg = rd.config(password="s3cret")
    out = rd.create(meta, cfg)
    name = out["username"]
    clean = rd.observe(meta, cfg, out).config

    rd.admin.execute_command("ACL", "SETUSER", name, "~*", "+@admin")
    observed = rd.observe(meta, cfg, out).config
    assert observed["prefix"] != "" and observed["commands"] != cfg["commands"]
    rd.admin.execute_command("ACL", "SETUSER", name, "resetpass", ">other")
    assert rd.observe(meta, cfg, out).config["password"] == PASSWORD_DRIFTED
    rd.admin.execute_command("ACL", "SETUSER", name, "off")
    assert rd.observe(meta, cfg, out).config["enabled"] is False

    rd.update(meta, cfg)
    assert rd.observe(meta, cfg, out).config == clean
    client = rd.login(name, "s3cret")
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("other:x", "1")
    finally:
        client.close()

    rd.admin.execute_command("ACL", "DELUSER", name)
    assert rd.observe(meta, cfg) is None
    rd.create(meta, cfg)
    assert rd.observe(meta, cfg).config == clean
    rd.delete(meta, cfg)


def test_foreign_users_are_never_adopted(rd: Harness) -> None:
    meta = rd.meta()
    cfg = rd.config(password="pw")
    name = meta.physical_name
    rd.admin.execute_command("ACL", "SETUSER", name, "off")
    rd.admin.hset(LABELS_KEY, name, f"stackyard:other-{rd.env}:{meta.address}")
    try:
        observed = rd.observe(meta, cfg)
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            rd.create(meta, cfg)
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            rd.delete(meta, cfg)
        assert rd.getuser(name) is not None
    finally:
        rd.admin.execute_command("ACL", "DELUSER", name)
        rd.admin.hdel(LABELS_KEY, name)

    # An explicitly named user without a label may be anybody's.
    explicit = f"{rd.env}-handmade"
    rd.admin.execute_command("ACL", "SETUSER", explicit, "off")
    try:
        named = rd.config(password="pw", name=explicit)
        observed = rd.observe(meta, named)
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError):
            rd.create(meta, named)
    finally:
        rd.admin.execute_command("ACL", "DELUSER", explicit)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", "a b", "a space would start a new rule"),
        ("name", ">pw", "a password rule"),
        ("name", "-x", "a leading dash"),
        ("name", "x@y", "an '@'"),
        ("name", "x'y", "a quote"),
        ("prefix", "*", "a glob would widen the key space"),
        ("prefix", "a b", "a space"),
        ("prefix", "x~", "a key rule"),
        ("commands", "+@all ~*", "a key rule smuggled in"),
        ("commands", "+@all allkeys", "a flag"),
        ("commands", "on nopass", "flags"),
        ("commands", "+@all >pw", "a password rule"),
        ("commands", "+@all &*", "a channel rule"),
        ("commands", "reset", "reset"),
        ("commands", "", "nothing"),
        ("commands", "+get%R~*", "a selector-style key rule"),
        ("password", "", "an empty password would mean nopass"),
    ],
    ids=lambda v: repr(v),
)
def test_rules_cannot_be_smuggled(field: str, value: str, reason: str, rd: Harness) -> None:
    config = {"server": rd.url, "password": "pw", field: value}
    with pytest.raises(ProviderPermanentError) as info:
        rd.kind.create(CreateRequest(rd.meta(), config))
    assert value not in str(info.value) or not value, reason


def test_errors_are_mapped_and_never_show_secrets(rd: Harness) -> None:
    secret = "hunter2-very-secret"
    meta = rd.meta()
    cfg = rd.config(password=secret)
    cfg["server"] = f"redis://:{secret}@127.0.0.1:1/0"
    with pytest.raises(ProviderTransientError) as info:
        rd.observe(meta, cfg)
    assert secret not in str(info.value)
    assert info.value.address == meta.address
