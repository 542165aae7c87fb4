"""The s3 provider against the local S3 server (moto, IAM authentication on): buckets, users
confined to one bucket, drift, foreign objects, hostile names and the sweeper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _sweeper import Sweeper, sweeper, sweeper_checks  # noqa: F401  (fixtures)
from stackyard.errors import ProviderError, ProviderPermanentError
from stackyard.providers.api import (
    CreateRequest,
    DeleteRequest,
    Kind,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    validate_config,
)
from stackyard.providers.s3 import make_provider
from stackyard.providers.s3.api import Api, Clients, Endpoint, S3ApiError
from stackyard.providers.s3.bucket import check_bucket_name
from stackyard.providers.s3.common import OWNER_TAG, label_of, label_tags
from stackyard.providers.s3.sigv4 import Credentials
from stackyard.providers.s3.user import POLICY_DRIFTED, POLICY_NAME, USER_PATH
from stackyard.resolve.naming import physical_name

pytestmark = pytest.mark.integration

UID = "s3.default#app.files"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local S3 server (``s3.local_server``) in a throw-away home."""
    kind = make_provider().kind("s3.local_server")
    home = tmp_path_factory.mktemp("s3-home")
    meta = ResourceMeta("tests/s3", kind.name, "tests", "tests-s3")
    config = {"home": str(home)}
    try:
        applied = kind.create(CreateRequest(meta, config))
    except ProviderError as exc:
        from _services import require_or_skip

        require_or_skip(f"no local S3 server: {exc}")
        return
    try:
        yield {"outputs": dict(applied.outputs), "kind": kind, "meta": meta, "config": config}
    finally:
        kind.delete(DeleteRequest(meta, config, {}))


@pytest.fixture(scope="module")
def clients() -> Iterator[Clients]:
    shared = Clients()
    yield shared
    shared.close()


class Harness:
    def __init__(self, outputs: dict[str, Any], env: str, clients: Clients) -> None:
        self.clients = clients
        provider = make_provider(self.clients)
        self.bucket_kind: Kind = provider.kind("s3.bucket")
        self.user_kind: Kind = provider.kind("s3.user")
        self.env = env
        self.admin_config = {
            "endpoint": outputs["endpoint"],
            "region": outputs["region"],
            "access_key_id": outputs["admin_access_key_id"],
            "secret_key": outputs["admin_secret_key"],
        }
        self.admin = self.api(outputs["admin_access_key_id"], outputs["admin_secret_key"])

    def api(self, key_id: str, secret: str) -> Api:
        return self.clients.api(
            Endpoint(self.admin_config["endpoint"], "us-east-1", Credentials(key_id, secret))
        )

    def meta(self, kind: Kind, resource: str, *, resuming: bool = False) -> ResourceMeta:
        name = physical_name(self.env, UID, resource, kind.naming)
        return ResourceMeta(
            f"{UID}/{resource}", kind.name, self.env, name, "inst01", resuming=resuming
        )

    def config(self, kind: Kind, **values: Any) -> dict[str, Any]:
        return validate_config(kind, {**self.admin_config, **values})


def _leaked(h: Harness) -> Any:
    def check(env: str) -> list[str]:
        out = []
        for bucket in h.admin.buckets():
            label = label_of(h.admin.bucket_tags(bucket)) or ""
            if f":{env}:" in label or bucket.startswith(env):
                out.append(f"s3 bucket {bucket}")
        users = h.admin.iam("ListUsers")
        from stackyard.providers.s3.api import children, text

        for member in children(users, "member"):
            name = text(member, "UserName")
            if name.startswith(env):
                out.append(f"s3 user {name}")
        return out

    return check


@pytest.fixture
def s3(server: dict[str, Any], clients: Clients, sweeper: Sweeper) -> Harness:  # noqa: F811
    h = Harness(server["outputs"], sweeper.env, clients)
    sweeper.add_check(_leaked(h))
    return h


def _denied(call: Any) -> str:
    with pytest.raises(S3ApiError) as info:
        call()
    assert info.value.status == 403
    return info.value.code


def test_bucket_and_user_reach_only_their_bucket(s3: Harness) -> None:
    bk, uk = s3.bucket_kind, s3.user_kind
    bmeta, umeta = s3.meta(bk, "bucket"), s3.meta(uk, "user")
    bcfg = s3.config(bk)
    out = dict(bk.create(CreateRequest(bmeta, bcfg)).outputs)
    bucket = out["bucket"]
    assert bucket == bmeta.physical_name
    assert out == {"bucket": bucket, "endpoint": s3.admin_config["endpoint"], "region": "us-east-1"}
    assert dict(bk.create(CreateRequest(bmeta, bcfg)).outputs) == out  # idempotent
    assert s3.admin.buckets().count(bucket) == 1
    assert label_of(s3.admin.bucket_tags(bucket)) == bmeta.label
    observed = bk.observe(ObserveRequest(bmeta, bcfg))
    assert observed is not None and observed.managed and observed.config == {"name": ""}

    ucfg = s3.config(uk, bucket=bucket)
    applied = dict(uk.create(CreateRequest(umeta, ucfg)).outputs)
    assert applied["username"] == umeta.physical_name
    key = s3.api(applied["access_key_id"], applied["secret_key"])

    # its own bucket: write, read, list, delete
    key.s3("PUT", bucket, key="dir/a b.txt", body=b"hello")
    assert key.s3("GET", bucket, key="dir/a b.txt").content == b"hello"
    assert key.object_keys(bucket) == ["dir/a b.txt"]
    key.s3("DELETE", bucket, key="dir/a b.txt")

    # another bucket, the bucket list, IAM: refused
    other = f"{s3.env}-other"
    s3.admin.create_bucket(other)
    try:
        s3.admin.s3("PUT", other, key="secret.txt", body=b"no")
        _denied(lambda: key.object_keys(other))
        _denied(lambda: key.s3("GET", other, key="secret.txt"))
        _denied(lambda: key.s3("PUT", other, key="x", body=b"1"))
        _denied(lambda: key.buckets())
        _denied(lambda: key.iam("ListUsers"))
        _denied(lambda: key.put_bucket_tags(bucket, {}))  # it cannot wipe its bucket's label
        _denied(lambda: key.delete_bucket(bucket))
    finally:
        s3.admin.delete_objects(other, ["secret.txt"])
        s3.admin.delete_bucket(other)
    # a wrong secret is refused
    code = _denied(lambda: s3.api(applied["access_key_id"], "x" * 40).object_keys(bucket))
    assert code == "SignatureDoesNotMatch"

    # update keeps the key; read_only takes writes away
    prior = dict(applied)
    ro = s3.config(uk, bucket=bucket, read_only=True)
    req = UpdateRequest(umeta, ro, ucfg, prior, frozenset({"read_only"}))
    assert dict(uk.update(req).outputs) == applied
    _denied(lambda: key.s3("PUT", bucket, key="y", body=b"1"))
    assert key.object_keys(bucket) == []
    observed = uk.observe(ObserveRequest(umeta, ro, applied))
    assert observed is not None and observed.health == "ok"
    assert observed.config == {"name": "", "bucket": bucket, "read_only": True}

    # delete both (the bucket with an object in it), twice; then re-create
    s3.admin.s3("PUT", bucket, key="left-over", body=b"1")
    uk.delete(DeleteRequest(umeta, ro, applied))
    uk.delete(DeleteRequest(umeta, ro, applied))
    assert uk.observe(ObserveRequest(umeta, ro, applied)) is None
    _denied(lambda: key.object_keys(bucket))
    bk.delete(DeleteRequest(bmeta, bcfg, out))
    bk.delete(DeleteRequest(bmeta, bcfg, out))
    assert bk.observe(ObserveRequest(bmeta, bcfg)) is None
    assert bucket not in s3.admin.buckets()

    bk.create(CreateRequest(bmeta, bcfg))
    again = dict(uk.create(CreateRequest(umeta, ucfg)).outputs)
    assert again["access_key_id"] != applied["access_key_id"]
    uk.delete(DeleteRequest(umeta, ucfg, again))
    bk.delete(DeleteRequest(bmeta, bcfg, out))


def test_drift_is_found_and_fixed(s3: Harness) -> None:
    bk, uk = s3.bucket_kind, s3.user_kind
    bmeta, umeta = s3.meta(bk, "bucket"), s3.meta(uk, "user")
    bcfg = s3.config(bk)
    bucket = bk.create(CreateRequest(bmeta, bcfg)).outputs["bucket"]
    ucfg = s3.config(uk, bucket=bucket)
    out = dict(uk.create(CreateRequest(umeta, ucfg)).outputs)
    user = out["username"]
    try:
        # a widened policy
        wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
        s3.admin.iam("PutUserPolicy", UserName=user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(wide))  # fmt: skip
        observed = uk.observe(ObserveRequest(umeta, ucfg, out))
        assert observed is not None and observed.config["bucket"] == POLICY_DRIFTED
        # a deleted access key
        s3.admin.iam("DeleteAccessKey", UserName=user, AccessKeyId=out["access_key_id"])
        observed = uk.observe(ObserveRequest(umeta, ucfg, out))
        assert observed is not None and observed.health == "degraded"
        fixed = dict(uk.update(UpdateRequest(umeta, ucfg, ucfg, out, frozenset())).outputs)
        assert fixed["access_key_id"] != out["access_key_id"]
        observed = uk.observe(ObserveRequest(umeta, ucfg, fixed))
        assert observed is not None and observed.health == "ok"
        assert observed.config["bucket"] == bucket
        key = s3.api(fixed["access_key_id"], fixed["secret_key"])
        _denied(lambda: key.buckets())

        # the bucket's label wiped: no longer ours, never deleted
        s3.admin.put_bucket_tags(bucket, {"team": "x"})
        observed = bk.observe(ObserveRequest(bmeta, bcfg))
        assert observed is not None and not observed.managed
        with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
            bk.delete(DeleteRequest(bmeta, bcfg, {}))
        # ...unless the journal shows our create interrupted between create and tag
        resumed = s3.meta(bk, "bucket", resuming=True)
        bk.create(CreateRequest(resumed, bcfg))
        assert label_of(s3.admin.bucket_tags(bucket)) == bmeta.label
        # a bucket deleted out of band is missing, and create brings it back
        uk.delete(DeleteRequest(umeta, ucfg, fixed))
        bk.delete(DeleteRequest(bmeta, bcfg, {}))
        assert bk.observe(ObserveRequest(bmeta, bcfg)) is None
        bk.create(CreateRequest(bmeta, bcfg))
        assert bk.observe(ObserveRequest(bmeta, bcfg)) is not None
    finally:
        uk.delete(DeleteRequest(umeta, ucfg, {}))
        bk.delete(DeleteRequest(bmeta, bcfg, {}))


def test_foreign_objects_are_never_adopted(s3: Harness) -> None:
    bk, uk = s3.bucket_kind, s3.user_kind
    bmeta, umeta = s3.meta(bk, "bucket"), s3.meta(uk, "user")
    bucket, user = bmeta.physical_name, umeta.physical_name
    foreign = f"stackyard:other:{s3.env}:{bmeta.address}"
    s3.admin.create_bucket(bucket)
    s3.admin.put_bucket_tags(bucket, label_tags(foreign))
    s3.admin.iam("CreateUser", UserName=user, Path=USER_PATH)  # unlabelled
    try:
        bcfg, ucfg = s3.config(bk), s3.config(uk, bucket=bucket)
        observed = bk.observe(ObserveRequest(bmeta, bcfg))
        assert observed is not None and not observed.managed
        observed = uk.observe(ObserveRequest(umeta, ucfg))
        assert observed is not None and not observed.managed
        for call in (
            lambda: bk.create(CreateRequest(bmeta, bcfg)),
            lambda: bk.delete(DeleteRequest(bmeta, bcfg, {})),
            lambda: uk.create(CreateRequest(umeta, ucfg)),
            lambda: uk.delete(DeleteRequest(umeta, ucfg, {})),
        ):
            with pytest.raises(ProviderPermanentError, match="not managed by this environment"):
                call()
        assert label_of(s3.admin.bucket_tags(bucket)) == foreign
        assert s3.admin.iam("GetUser", UserName=user) is not None
    finally:
        s3.admin.delete_bucket(bucket)
        s3.admin.iam("DeleteUser", UserName=user)


def test_sweep_finds_unrecorded_objects(s3: Harness) -> None:
    bk, uk = s3.bucket_kind, s3.user_kind
    bmeta, umeta = s3.meta(bk, "stray-bucket"), s3.meta(uk, "stray-user")
    bcfg = s3.config(bk)
    bucket = bk.create(CreateRequest(bmeta, bcfg)).outputs["bucket"]
    ucfg = s3.config(uk, bucket=bucket)
    uk.create(CreateRequest(umeta, ucfg))
    prefix = f"stackyard:inst01:{s3.env}:"
    buckets = bk.labelled(bcfg, prefix, limit=100)  # type: ignore[attr-defined]
    users = uk.labelled(ucfg, prefix, limit=100)  # type: ignore[attr-defined]
    assert [(b.physical_name, b.label) for b in buckets] == [(bucket, bmeta.label)]
    assert [(u.physical_name, u.label) for u in users] == [(umeta.physical_name, umeta.label)]
    assert bk.labelled(bcfg, "stackyard:inst01:nobody:", limit=100) == []  # type: ignore[attr-defined]
    for found, kind in ((users[0], uk), (buckets[0], bk)):
        meta = ResourceMeta(found.label[len(prefix) :], kind.name, s3.env, found.physical_name, "inst01")  # fmt: skip
        kind.delete(DeleteRequest(meta, found.config, {}))
    assert bk.observe(ObserveRequest(bmeta, bcfg)) is None
    assert uk.observe(ObserveRequest(umeta, ucfg)) is None


HOSTILE = [
    ('x"; DROP TABLE y; --', "injection"),
    ("../../etc/passwd", "path traversal"),
    ("a\nb\x00c", "control characters"),
    ("аdmin", "Cyrillic a"),
    ("🔥💥", "emoji"),
    ("xn--abc", "punycode prefix"),
    ("192.168.1.1", "an IP address"),
    ("UPPER.case", "upper case"),
    ("a..b", "two dots"),
    ("ab", "too short"),
    ("a" * 64, "too long"),
    ("sthree-x", "reserved prefix"),
    ("x-s3alias", "reserved suffix"),
    ("?tagging", "a sub-resource"),
    ("<Tag>", "XML"),
    ("%2e%2e", "encoded dots"),
]


@pytest.mark.parametrize(("text", "reason"), HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_names(s3: Harness, text: str, reason: str) -> None:
    bk, uk = s3.bucket_kind, s3.user_kind
    uid = f"s3.default#{text}.{text}"
    before = set(s3.admin.buckets())
    # derived: always a valid bucket and user name, created and deleted exactly
    meta = ResourceMeta(f"{uid}/{text}", bk.name, s3.env, physical_name(text, uid, text, bk.naming), "inst01")  # fmt: skip
    bcfg = s3.config(bk)
    bucket = bk.create(CreateRequest(meta, bcfg)).outputs["bucket"]
    assert (
        check_bucket_name(bucket) is None and label_of(s3.admin.bucket_tags(bucket)) == meta.label
    )
    umeta = ResourceMeta(f"{uid}/{text}", uk.name, s3.env, physical_name(text, uid, text, uk.naming), "inst01")  # fmt: skip
    ucfg = s3.config(uk, bucket=bucket)
    out = uk.create(CreateRequest(umeta, ucfg)).outputs
    uk.delete(DeleteRequest(umeta, ucfg, out))
    bk.delete(DeleteRequest(meta, bcfg, {}))
    # raw: refused at validation, before any request
    with pytest.raises(ProviderPermanentError):
        validate_config(bk, {**s3.admin_config, "name": text})
    with pytest.raises(ProviderPermanentError):
        bk.create(CreateRequest(meta, {**s3.admin_config, "name": text}))
    assert set(s3.admin.buckets()) == before


def test_owner_tags_hold_any_label() -> None:
    for label in ("stackyard:i:e:s3.default#a.b/c", 'x"; é🔥 =41 \x00\n', "a" * 600):
        tags = label_tags(label)
        assert label_of(tags) == label
        assert all(len(v) <= 256 for v in tags.values())
        assert OWNER_TAG in tags


def test_local_server_admin_rotation_and_restart(
    server: dict[str, Any],
    tmp_path: Path,
    sweeper: Sweeper,  # noqa: F811
) -> None:
    kind, meta, config = server["kind"], server["meta"], server["config"]
    outputs = server["outputs"]
    assert outputs["endpoint"].startswith("http://127.0.0.1:")
    clients = Clients()
    try:
        admin = clients.api(
            Endpoint(
                outputs["endpoint"],
                "us-east-1",
                Credentials(outputs["admin_access_key_id"], outputs["admin_secret_key"]),
            )
        )
        admin.buckets()
        observed = kind.observe(ObserveRequest(meta, config))
        assert observed is not None and observed.health == "ok"
        # a new admin password: the running server takes it without a restart
        rotated = {**config, "password": "N3w-admin-secret-0123456789"}
        out = dict(kind.update(UpdateRequest(meta, rotated, config, outputs, frozenset({"password"}))).outputs)  # fmt: skip
        assert out["admin_access_key_id"] == outputs["admin_access_key_id"]
        new = clients.api(
            Endpoint(
                out["endpoint"],
                "us-east-1",
                Credentials(out["admin_access_key_id"], out["admin_secret_key"]),
            )
        )
        new.buckets()
        with pytest.raises(S3ApiError):
            admin.buckets()
        # back to the fixture's password, so the other tests keep working
        back = dict(kind.update(UpdateRequest(meta, {**config, "password": outputs["admin_secret_key"]}, rotated, out, frozenset({"password"}))).outputs)  # fmt: skip
        assert back == outputs
        admin.buckets()
    finally:
        clients.close()
