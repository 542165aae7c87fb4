"""The rabbitmq provider against a real RabbitMQ: vhosts, users, permissions, over AMQP too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from test_hostile_names import HOSTILE

from _rabbitmq import RabbitTarget, rabbitmq, rabbitmq_leaked  # noqa: F401  (fixture)
from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ForeignObjectError, ProviderPermanentError, ProviderTransientError
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
from stackyard.providers.rabbitmq import PASSWORD_DRIFTED, Clients, make_provider
from stackyard.providers.rabbitmq.client import segment
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "amqp.default#orders.bus"
INSTALLATION = "abcdef0123"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    clients = Clients()
    yield make_provider(clients)
    clients.close()


class Harness:
    def __init__(self, provider: Provider, target: RabbitTarget, env: str) -> None:
        self.target = target
        self.url = target.admin_url
        self.env = env
        self.vhost: Kind = provider.kind("rabbitmq.vhost")
        self.user: Kind = provider.kind("rabbitmq.user")
        self.permission: Kind = provider.kind("rabbitmq.permission")
        self.api = target.api()

    def meta(self, kind: Kind, resource: str, env: str | None = None) -> ResourceMeta:
        env = env or self.env
        return ResourceMeta(
            address=f"{UID}/{resource}",
            kind=kind.name,
            env=env,
            physical_name=physical_name(env, UID, resource, kind.naming),
            installation=INSTALLATION,
        )

    def config(self, kind: Kind, **values: Any) -> dict[str, Any]:
        return validate_config(kind, {"server": self.url, **values})

    def make(self, password: str = "s3cret-pw") -> dict[str, Any]:
        """A vhost, a user and its permission; returns what the steps need."""
        mv, mu = self.meta(self.vhost, "vhost"), self.meta(self.user, "user")
        cv, cu = self.config(self.vhost), self.config(self.user, password=password)
        vhost = self.vhost.create(CreateRequest(mv, cv)).outputs["name"]
        user = self.user.create(CreateRequest(mu, cu)).outputs["username"]
        mp = self.meta(self.permission, "permission")
        cp = self.config(self.permission, vhost=vhost, user=user)
        self.permission.create(CreateRequest(mp, cp))
        return {"mv": mv, "mu": mu, "mp": mp, "cv": cv, "cu": cu, "cp": cp, "v": vhost, "u": user}

    def destroy(self, o: dict[str, Any]) -> None:
        self.permission.delete(DeleteRequest(o["mp"], o["cp"], {}))
        self.user.delete(DeleteRequest(o["mu"], o["cu"], {}))
        self.vhost.delete(DeleteRequest(o["mv"], o["cv"], {}))

    def connect(self, vhost: str, user: str, password: str) -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            host=self.target.host,
            port=self.target.amqp_port,
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password),
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=5,
        )
        return pika.BlockingConnection(params)

    def raw(self, path: str, *names: str) -> Any:
        response = self.api.get("/" + "/".join([path, *(segment(n) for n in names)]))
        return None if response.status_code == 404 else response.json()


@pytest.fixture
def rq(
    provider: Provider,
    rabbitmq: RabbitTarget,  # noqa: F811
    sweeper: Sweeper,  # noqa: F811
) -> Iterator[Harness]:
    sweeper.add_check(rabbitmq_leaked(rabbitmq))
    h = Harness(provider, rabbitmq, sweeper.env)
    yield h
    h.api.close()


def test_lifecycle_and_amqp_confinement(rq: Harness) -> None:
    o = rq.make()
    vhost, user = o["v"], o["u"]
    assert vhost == o["mv"].physical_name and user == o["mu"].physical_name
    assert rq.raw("vhosts", vhost)["description"] == o["mv"].label
    before = rq.raw("users", user)
    assert before["tags"] == [o["mu"].label]  # a plain label travels unencoded

    # idempotent: a repeat changes nothing (not even the password's salt)
    rq.vhost.create(CreateRequest(o["mv"], o["cv"]))
    rq.user.create(CreateRequest(o["mu"], o["cu"]))
    rq.permission.create(CreateRequest(o["mp"], o["cp"]))
    assert rq.raw("users", user) == before
    observed = rq.user.observe(ObserveRequest(o["mu"], o["cu"]))
    assert observed is not None and observed.managed
    assert observed.config == {"name": "", "password": "s3cret-pw", "tags": []}
    assert rq.permission.observe(ObserveRequest(o["mp"], o["cp"])).config == {
        "vhost": vhost,
        "user": user,
        "configure": ".*",
        "write": ".*",
        "read": ".*",
    }

    # the user publishes and consumes in its vhost...
    conn = rq.connect(vhost, user, "s3cret-pw")
    try:
        channel = conn.channel()
        channel.queue_declare("jobs")
        channel.basic_publish("", "jobs", b"hello")
        for _ in range(50):
            method, _props, body = channel.basic_get("jobs", auto_ack=True)
            if method is not None:
                break
        assert body == b"hello"
    finally:
        conn.close()
    # ...and reaches no other vhost, nor logs in with another password
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        rq.connect("/", user, "s3cret-pw")
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        rq.connect(vhost, user, "wrong")

    # an update narrows the rights: reading is refused now
    narrow = rq.config(rq.permission, vhost=vhost, user=user, read="^$")
    rq.permission.update(UpdateRequest(o["mp"], narrow, o["cp"], {}, frozenset({"read"})))
    conn = rq.connect(vhost, user, "s3cret-pw")
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            conn.channel().basic_get("jobs")
    finally:
        if conn.is_open:
            conn.close()

    # delete twice, observe missing, re-create
    o["cp"] = narrow
    rq.destroy(o)
    rq.destroy(o)
    assert rq.vhost.observe(ObserveRequest(o["mv"], o["cv"])) is None
    assert rq.user.observe(ObserveRequest(o["mu"], o["cu"])) is None
    assert rq.permission.observe(ObserveRequest(o["mp"], o["cp"])) is None
    again = rq.make()
    assert rq.raw("queues", again["v"], "jobs") is None  # the old vhost's queue went with it
    rq.destroy(again)


def test_out_of_band_changes_are_drift_and_reapply_fixes_them(rq: Harness) -> None:
    o = rq.make()
    vhost, user = o["v"], o["u"]
    rq.api.put(
        f"/users/{segment(user)}",
        json={"password": "changed", "tags": f"{o['mu'].label},administrator"},
    ).raise_for_status()
    rq.api.put(
        f"/permissions/{segment(vhost)}/{segment(user)}",
        json={"configure": "", "write": "", "read": ".*"},
    ).raise_for_status()
    drifted = rq.user.observe(ObserveRequest(o["mu"], o["cu"])).config
    assert drifted["password"] == PASSWORD_DRIFTED and drifted["tags"] == ["administrator"]
    assert rq.permission.observe(ObserveRequest(o["mp"], o["cp"])).config["write"] == ""

    rq.user.update(UpdateRequest(o["mu"], o["cu"], o["cu"], {}, frozenset()))
    rq.permission.update(UpdateRequest(o["mp"], o["cp"], o["cp"], {}, frozenset()))
    assert rq.user.observe(ObserveRequest(o["mu"], o["cu"])).config["password"] == "s3cret-pw"
    assert rq.raw("users", user)["tags"] == [o["mu"].label]
    assert rq.permission.observe(ObserveRequest(o["mp"], o["cp"])).config["write"] == ".*"
    rq.connect(vhost, user, "s3cret-pw").close()

    # deleted behind our back: observed missing, created again
    rq.api.delete(f"/vhosts/{segment(vhost)}").raise_for_status()
    assert rq.vhost.observe(ObserveRequest(o["mv"], o["cv"])) is None
    rq.vhost.create(CreateRequest(o["mv"], o["cv"]))
    rq.permission.create(CreateRequest(o["mp"], o["cp"]))
    rq.connect(vhost, user, "s3cret-pw").close()

    # an edited description is no longer our label: foreign, never deleted
    rq.api.put(f"/vhosts/{segment(vhost)}", json={"description": "mine now"}).raise_for_status()
    observed = rq.vhost.observe(ObserveRequest(o["mv"], o["cv"]))
    assert observed is not None and not observed.managed
    with pytest.raises(ForeignObjectError):
        rq.vhost.delete(DeleteRequest(o["mv"], o["cv"], {}))
    rq.api.delete(f"/vhosts/{segment(vhost)}").raise_for_status()
    rq.destroy(o)


def test_foreign_objects_are_refused_and_untouched(rq: Harness) -> None:
    vhost, user = f"{rq.env}-handmade", f"{rq.env}-handmade"
    rq.api.put(f"/vhosts/{segment(vhost)}", json={"description": "not stackyard's"})
    rq.api.put(f"/users/{segment(user)}", json={"password": "theirs", "tags": ""})
    try:
        mv, mu = rq.meta(rq.vhost, "vhost"), rq.meta(rq.user, "user")
        cv = rq.config(rq.vhost, name=vhost)
        cu = rq.config(rq.user, name=user, password="ours")
        assert not rq.vhost.observe(ObserveRequest(mv, cv)).managed
        assert not rq.user.observe(ObserveRequest(mu, cu)).managed
        for call in (
            lambda: rq.vhost.create(CreateRequest(mv, cv)),
            lambda: rq.vhost.delete(DeleteRequest(mv, cv, {})),
            lambda: rq.user.create(CreateRequest(mu, cu)),
            lambda: rq.user.delete(DeleteRequest(mu, cu, {})),
        ):
            with pytest.raises(ForeignObjectError, match="not managed by this environment"):
                call()
        # no permission is granted on (or to) someone else's object
        mp = rq.meta(rq.permission, "permission")
        cp = rq.config(rq.permission, vhost=vhost, user=user)
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            rq.permission.create(CreateRequest(mp, cp))
        assert rq.raw("permissions", vhost, user) is None
        # labelled by another environment of this installation: foreign too
        other = rq.meta(rq.vhost, "vhost", env=f"{rq.env}x")
        rq.vhost.create(CreateRequest(other, rq.config(rq.vhost)))
        mine = ResourceMeta(other.address, other.kind, rq.env, other.physical_name, INSTALLATION)
        with pytest.raises(ForeignObjectError):
            rq.vhost.create(CreateRequest(mine, rq.config(rq.vhost)))
        rq.vhost.delete(DeleteRequest(other, rq.config(rq.vhost), {}))
        assert rq.raw("users", user)["tags"] == []
        assert rq.raw("vhosts", vhost)["description"] == "not stackyard's"
    finally:
        rq.api.delete(f"/vhosts/{segment(vhost)}")
        rq.api.delete(f"/users/{segment(user)}")


def test_the_sweeper_lists_exactly_this_environments_objects(rq: Harness) -> None:
    o = rq.make()
    prefix = label_prefix(INSTALLATION, rq.env)
    vhosts = rq.vhost.labelled(o["cv"], prefix, limit=10)
    users = rq.user.labelled(o["cu"], prefix, limit=10)
    assert [(v.physical_name, v.label) for v in vhosts] == [(o["v"], o["mv"].label)]
    assert [(u.physical_name, u.label) for u in users] == [(o["u"], o["mu"].label)]
    assert rq.vhost.labelled(o["cv"], label_prefix(INSTALLATION, rq.env + "x"), limit=10) == []
    # what the engine does with a stray: delete through the kind, with the listed config
    rq.permission.delete(DeleteRequest(o["mp"], o["cp"], {}))
    for kind, found, meta in ((rq.user, users, o["mu"]), (rq.vhost, vhosts, o["mv"])):
        address = found[0].label[len(prefix) :]
        stray = ResourceMeta(address, kind.name, rq.env, found[0].physical_name, INSTALLATION)
        assert stray.label == meta.label
        kind.delete(DeleteRequest(stray, found[0].config, {}))
    assert rq.vhost.labelled(o["cv"], prefix, limit=10) == []
    assert rq.user.labelled(o["cu"], prefix, limit=10) == []


def _snapshot(rq: Harness) -> dict[str, Any]:
    vhosts = rq.api.get("/vhosts", params={"columns": "name,description"}).json()
    users = rq.api.get("/users").json()
    out = {f"vhost:{v['name']}": v.get("description") for v in vhosts}
    out |= {f"user:{u['name']}": (u["password_hash"], tuple(u["tags"])) for u in users}
    return out


def test_hostile_names_are_refused_or_made_exactly(rq: Harness) -> None:
    before = {
        k: v
        for k, v in _snapshot(rq).items()
        if "stackyard" not in str(v)  # other runs' objects come and go
    }
    outcomes: dict[str, list[str]] = {}
    for i, (text, reason) in enumerate(HOSTILE):
        # derived names are always valid
        meta = ResourceMeta(f"{UID}/{text}", rq.vhost.name, rq.env, "", INSTALLATION)
        name = physical_name(rq.env, f"amqp.default#{text}.{text}", text, rq.vhost.naming)
        meta = ResourceMeta(meta.address, meta.kind, rq.env, name, INSTALLATION)
        cv = rq.config(rq.vhost)
        assert rq.vhost.create(CreateRequest(meta, cv)).outputs["name"] == name, reason
        rq.vhost.delete(DeleteRequest(meta, cv, {}))
        # the raw text as the vhost's and the user's name
        mv = ResourceMeta(f"{UID}/raw{i}", rq.vhost.name, rq.env, "unused", INSTALLATION)
        mu = ResourceMeta(f"{UID}/rawu{i}", rq.user.name, rq.env, "unused", INSTALLATION)
        cv = {"server": rq.url, "name": text}
        cu = {"server": rq.url, "name": text, "password": f"pw-{i}"}
        made: dict[str, bool] = {}
        for what, kind, meta, config, key in (
            ("vhost", rq.vhost, mv, cv, "name"),
            ("user", rq.user, mu, cu, "username"),
        ):
            try:
                made[what] = kind.create(CreateRequest(meta, config)).outputs[key] == text
            except ProviderPermanentError as exc:  # a bad name, or a foreign object ('/')
                assert "\x00" not in exc.message
                outcomes.setdefault(f"{what} refused", []).append(reason)
            else:
                assert made[what], reason
                outcomes.setdefault(f"{what} created exactly", []).append(reason)
        try:
            if made.get("vhost"):
                assert rq.raw("vhosts", text)["description"] == mv.label, reason
            if made.get("vhost") and made.get("user"):
                mp = ResourceMeta(f"{UID}/rawp{i}", rq.permission.name, rq.env, "x", INSTALLATION)
                cp = {"server": rq.url, "vhost": text, "user": text}
                rq.permission.create(CreateRequest(mp, cp))
                assert rq.raw("permissions", text, text)["user"] == text
        finally:
            if made.get("user"):
                rq.user.delete(DeleteRequest(mu, cu, {}))
                assert rq.user.observe(ObserveRequest(mu, cu)) is None
            if made.get("vhost"):
                rq.vhost.delete(DeleteRequest(mv, cv, {}))
                assert rq.vhost.observe(ObserveRequest(mv, cv)) is None
    after = _snapshot(rq)
    for key, value in before.items():
        assert after.get(key) == value, f"{key} changed"
    assert set(outcomes) == {
        "vhost refused",
        "vhost created exactly",
        "user refused",
        "user created exactly",
    }, outcomes
    assert "dot dot" in outcomes["vhost refused"] and "dot dot" in outcomes["user refused"]
    assert "path traversal" in outcomes["vhost created exactly"]
    assert "slash" in outcomes["vhost refused"]  # '/' is the server's default vhost
    assert "slash" in outcomes["user created exactly"]


def test_errors_are_mapped_and_never_show_secrets(rq: Harness) -> None:
    secret = "hunter2-very-secret"
    meta = rq.meta(rq.user, "user")
    bad_login = rq.url.replace("guest:guest", f"guest:{secret}").replace(
        "stackyard-admin:", f"stackyard-admin:{secret}x"
    )
    with pytest.raises(ProviderPermanentError) as info:
        rq.user.observe(ObserveRequest(meta, {"server": bad_login, "password": secret}))
    assert "401" in info.value.message and secret not in str(info.value)
    down = f"http://guest:{secret}@127.0.0.1:1"
    with pytest.raises(ProviderTransientError) as transient:
        rq.vhost.observe(ObserveRequest(meta, {"server": down}))
    assert secret not in str(transient.value) and transient.value.address == meta.address
    with pytest.raises(ProviderPermanentError) as invalid:
        rq.vhost.observe(ObserveRequest(meta, {"server": f"ftp://x:{secret}@h"}))
    assert secret not in str(invalid.value)
