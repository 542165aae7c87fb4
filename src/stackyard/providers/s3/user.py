"""``s3.user``: an IAM user whose inline policy reaches one bucket only, and its access key.

The user is created with its owner tags in one request (``CreateUser`` with ``Tags``), so it
is never unlabelled. An access key's secret is readable only when it is made, so it lives in
the resource's outputs: ``update`` keeps the recorded key while it exists, and a ``create``
that finds our user (a crash after it) replaces the user's keys with one new key. The user
never holds more than one key made by stackyard.

The policy names each action twice where moto and AWS differ (moto checks ``s3:HeadBucket``
and ``s3:ListObjectsV2`` where AWS checks ``s3:ListBucket``); AWS ignores names it does not
know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import unquote

import pydantic

from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    KindConfig,
    Labelled,
    NamingRule,
    Observed,
    ObserveRequest,
    ResourceMeta,
    UpdateRequest,
    config_field,
)
from stackyard.providers.s3.api import CLIENTS, Api, Clients, S3ApiError, children, provider_errors
from stackyard.providers.s3.api import text as xml_text
from stackyard.providers.s3.bucket import check_bucket_name
from stackyard.providers.s3.common import (
    AdminConfig,
    label_of,
    label_tags,
    ownership,
    parse,
    refuse,
    refuse_foreign,
)

__all__ = ["POLICY_DRIFTED", "POLICY_NAME", "USER_PATH", "UserConfig", "UserKind", "policy_for"]

#: Every user stackyard makes lives under this IAM path, so a sweep lists only those.
USER_PATH = "/stackyard/"
POLICY_NAME = "stackyard-bucket-access"
#: What observe reports as the bucket when the user's policy is not the one stackyard wrote.
POLICY_DRIFTED = "<policy changed outside stackyard>"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
NAMING = NamingRule(max_length=64, allowed="a-z0-9", separator="-")

BUCKET_READ = ["s3:ListBucket", "s3:GetBucketLocation", "s3:HeadBucket", "s3:ListObjects",
               "s3:ListObjectsV2"]  # fmt: skip
BUCKET_WRITE = ["s3:ListBucketMultipartUploads"]
OBJECT_READ = ["s3:GetObject", "s3:GetObjectTagging", "s3:HeadObject"]
OBJECT_WRITE = ["s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging",
                "s3:DeleteObjectTagging", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                "s3:DeleteObjects"]  # fmt: skip


def policy_for(bucket: str, *, read_only: bool) -> dict[str, Any]:
    """The inline policy: the bucket's listing and its objects, nothing else."""
    bucket_actions = BUCKET_READ if read_only else [*BUCKET_READ, *BUCKET_WRITE]
    object_actions = OBJECT_READ if read_only else [*OBJECT_READ, *OBJECT_WRITE]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Bucket",
                "Effect": "Allow",
                "Action": bucket_actions,
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Sid": "Objects",
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def _valid_name(value: str) -> str:
    if value and not NAME_PATTERN.fullmatch(value):
        raise ValueError("a user name is 1-64 letters, digits or '+=,.@_-'")
    return value


def _valid_bucket(value: str) -> str:
    why = check_bucket_name(value)
    if why:
        raise ValueError(why)
    return value


class UserConfig(AdminConfig):
    """Config of ``s3.user``."""

    name: str = config_field(
        "", replace_on_change=True, description="IAM user name; empty means the physical name."
    )
    bucket: str = config_field(..., description="The one bucket the user may reach.")
    read_only: bool = config_field(False, description="List and read only; no writes.")

    _name = pydantic.field_validator("name")(_valid_name)
    _bucket = pydantic.field_validator("bucket")(_valid_bucket)


class UserKind:
    """``s3.user``: outputs username, access_key_id and secret_key (sensitive)."""

    name: ClassVar[str] = "s3.user"
    config_model: ClassVar[type[KindConfig]] = UserConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset({"secret_key"})
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients = CLIENTS) -> None:
        self._clients = clients

    def _open(self, meta: ResourceMeta, config: Mapping[str, Any]) -> tuple[UserConfig, str]:
        cfg = parse(UserConfig, meta, config)
        user = cfg.name or meta.physical_name
        if not NAME_PATTERN.fullmatch(user):
            refuse(meta, "The physical name is not a valid IAM user name")
        return cfg, user

    def _read(self, api: Api, user: str) -> tuple[bool, str | None]:
        """Whether the user exists, and its label (GetUser, then ListUserTags)."""
        try:
            api.iam("GetUser", UserName=user)
        except S3ApiError as exc:
            if exc.code == "NoSuchEntity":
                return False, None
            raise
        tags = api.iam("ListUserTags", UserName=user)
        return True, label_of({xml_text(m, "Key"): xml_text(m, "Value") for m in _members(tags)})

    def _policy(self, api: Api, user: str) -> dict[str, Any] | None:
        try:
            reply = api.iam("GetUserPolicy", UserName=user, PolicyName=POLICY_NAME)
        except S3ApiError as exc:
            if exc.code == "NoSuchEntity":
                return None
            raise
        document = xml_text(reply, "PolicyDocument")
        for candidate in (document, unquote(document)):  # AWS sends it URL-encoded
            try:
                parsed = json.loads(candidate)
            except ValueError:
                continue
            return parsed if isinstance(parsed, dict) else None
        return None

    def _keys(self, api: Api, user: str) -> dict[str, str]:
        """The user's access key ids and their status."""
        reply = api.iam("ListAccessKeys", UserName=user)
        return {xml_text(m, "AccessKeyId"): xml_text(m, "Status") for m in _members(reply)}

    def observe(self, req: ObserveRequest) -> Observed | None:
        """GetUser, ListUserTags, GetUserPolicy and ListAccessKeys; no writes.

        A policy other than the one stackyard wrote is drift (``bucket`` reads
        ``POLICY_DRIFTED``); a recorded access key that is gone or inactive makes the user
        ``degraded``, which the next deploy converges (a new key).
        """
        cfg, user = self._open(req.meta, req.config)
        secret = str(req.outputs.get("secret_key", ""))
        with provider_errors(req.meta.address, secrets=[cfg.secret_key, secret]):
            api = cfg.api(self._clients)
            exists, label = self._read(api, user)
            if not exists:
                return None
            managed, why = ownership(req.meta, "IAM user", user, label)
            if not managed:
                return Observed(config={}, managed=False, detail=why)
            policy = self._policy(api, user)
            keys = self._keys(api, user)
        same = policy == policy_for(cfg.bucket, read_only=cfg.read_only)
        key_id = str(req.outputs.get("access_key_id", ""))
        outputs = {"username": user, "access_key_id": key_id, "secret_key": secret}
        health, detail = "ok", ""
        if not key_id or keys.get(key_id) != "Active":
            health, detail = "degraded", "its access key is gone or inactive"
        return Observed(
            config={
                "name": cfg.name,
                "bucket": cfg.bucket if same else POLICY_DRIFTED,
                "read_only": cfg.read_only if same else not cfg.read_only,
            },
            outputs=outputs,
            health=health,
            detail=detail,
        )

    def create(self, req: CreateRequest) -> Applied:
        """CreateUser (with its owner tags), PutUserPolicy, CreateAccessKey.

        Our user already there (a repeat call, or a crash after it): its policy is re-put
        and its keys are replaced by one new key, since no secret of theirs is known. A user
        labelled otherwise, or unlabelled, is refused before anything is written.
        """
        return self._ensure(req.meta, req.config, {})

    def update(self, req: UpdateRequest) -> Applied:
        """Re-put the policy; keep the recorded key while it is active, else replace the
        user's keys with a new one. Safe to repeat."""
        return self._ensure(req.meta, req.config, req.prior_outputs)

    def _ensure(
        self, meta: ResourceMeta, config: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> Applied:
        cfg, user = self._open(meta, config)
        key_id, secret = str(prior.get("access_key_id", "")), str(prior.get("secret_key", ""))
        with provider_errors(meta.address, secrets=[cfg.secret_key, secret]):
            api = cfg.api(self._clients)
            exists, label = self._read(api, user)
            if exists:
                managed, why = ownership(meta, "IAM user", user, label)
                if not managed:
                    refuse_foreign(meta, "IAM user", user, why)
            else:
                api.iam("CreateUser", UserName=user, Path=USER_PATH, **_tag_params(meta.label))
            document = json.dumps(policy_for(cfg.bucket, read_only=cfg.read_only))
            api.iam("PutUserPolicy", UserName=user, PolicyName=POLICY_NAME, PolicyDocument=document)
            keys = self._keys(api, user)
            if not (key_id and secret and keys.get(key_id) == "Active"):
                for old in keys:
                    api.iam("DeleteAccessKey", UserName=user, AccessKeyId=old)
                reply = api.iam("CreateAccessKey", UserName=user)
                key_id = xml_text(reply, "AccessKeyId")
                secret = xml_text(reply, "SecretAccessKey")
        return Applied(
            outputs={"username": user, "access_key_id": key_id, "secret_key": secret},
            physical_id=user,
        )

    def delete(self, req: DeleteRequest) -> None:
        """Delete the user's keys (cutting its access first), its inline policies, then the
        user; missing is success, foreign refused. A crash half way leaves the labelled
        user, which a repeat call finishes."""
        cfg, user = self._open(req.meta, req.config)
        secret = str(req.outputs.get("secret_key", ""))
        with provider_errors(req.meta.address, secrets=[cfg.secret_key, secret]):
            api = cfg.api(self._clients)
            exists, label = self._read(api, user)
            if not exists:
                return
            managed, why = ownership(req.meta, "IAM user", user, label)
            if not managed:
                refuse_foreign(req.meta, "IAM user", user, why)
            for key in self._keys(api, user):
                api.iam("DeleteAccessKey", UserName=user, AccessKeyId=key)
            policies = api.iam("ListUserPolicies", UserName=user)
            for node in children(policies, "member"):
                api.iam("DeleteUserPolicy", UserName=user, PolicyName=(node.text or "").strip())
            try:
                api.iam("DeleteUser", UserName=user)
            except S3ApiError as exc:
                if exc.code != "NoSuchEntity":
                    raise

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The IAM endpoint and admin key: users are listed once per account."""
        iam = config.get("iam_endpoint") or config.get("endpoint", "")
        return f"{iam} {config.get('access_key_id', '')}"

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Users under ``USER_PATH`` whose label starts with ``prefix`` (ListUsers, then each
        one's tags); no writes."""
        meta = ResourceMeta("sweep", self.name, "", "sweep")
        cfg = parse(UserConfig, meta, {**config, "name": ""})
        found: list[Labelled] = []
        with provider_errors("sweep", secrets=[cfg.secret_key]):
            api = cfg.api(self._clients)
            marker = ""
            while len(found) < limit:
                params = {"PathPrefix": USER_PATH, **({"Marker": marker} if marker else {})}
                reply = api.iam("ListUsers", **params)
                for member in _members(reply):
                    user = xml_text(member, "UserName")
                    exists, label = self._read(api, user)
                    if exists and label is not None and label.startswith(prefix):
                        found.append(Labelled(user, label, cfg.model_dump()))
                marker = xml_text(reply, "Marker")
                if xml_text(reply, "IsTruncated") != "true" or not marker:
                    break
        return found[:limit]


def _members(reply: Any) -> list[Any]:
    """The ``member`` elements of a list reply (tags, keys, users), not their children."""
    return [m for m in children(reply, "member") if len(m)]


def _tag_params(label: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for i, (key, value) in enumerate(label_tags(label).items(), start=1):
        params[f"Tags.member.{i}.Key"] = key
        params[f"Tags.member.{i}.Value"] = value
    return params
