"""``s3.bucket``: a bucket labelled with its owner (tag ``stackyard-owner``).

Creating a bucket and tagging it are two requests, so a crash between them leaves an
unlabelled bucket: like a PostgreSQL database, it is claimed only when the engine's journal
shows that very create interrupted (``meta.resuming``). Deleting empties the bucket first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

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
from stackyard.providers.s3.api import CLIENTS, Api, Clients, S3ApiError, provider_errors
from stackyard.providers.s3.common import (
    AdminConfig,
    label_of,
    label_tags,
    ownership,
    parse,
    refuse,
    refuse_foreign,
)

__all__ = ["BUCKET_PATTERN", "BucketConfig", "BucketKind", "check_bucket_name", "derived_name"]

#: 3-63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit.
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: At most this many objects are deleted by one ``delete`` (a bigger bucket fails, and a
#: re-run goes on where it stopped).
MAX_DELETED = 100_000
NAMING = NamingRule(max_length=63, allowed="a-z0-9", separator="-")


def check_bucket_name(name: str) -> str | None:
    """Why ``name`` is not a valid bucket name, or ``None`` when it is."""
    if not BUCKET_PATTERN.fullmatch(name):
        return (
            "a bucket name is 3-63 lower-case letters, digits, '-' and '.', starting and "
            "ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return "a bucket name has no '..', '.-' or '-.'"
    if _IP_LIKE.fullmatch(name):
        return "a bucket name is not an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "a bucket name may not use a prefix or suffix that S3 reserves"
    return None


def derived_name(physical: str) -> str:
    """The bucket of a physical name: itself, unless it starts with a prefix S3 reserves
    (an environment called ``sthree``), whose first letter then becomes ``b``."""
    if physical.startswith(_RESERVED_PREFIXES):
        return "b" + physical[1:]
    return physical


def _valid_name(value: str) -> str:
    why = check_bucket_name(value) if value else None
    if why:
        raise ValueError(why)
    return value


class BucketConfig(AdminConfig):
    """Config of ``s3.bucket``."""

    name: str = config_field(
        "", replace_on_change=True, description="Bucket name; empty means the physical name."
    )

    _name = pydantic.field_validator("name")(_valid_name)


class BucketKind:
    """``s3.bucket``: outputs bucket, endpoint and region."""

    name: ClassVar[str] = "s3.bucket"
    config_model: ClassVar[type[KindConfig]] = BucketConfig
    sensitive_outputs: ClassVar[frozenset[str]] = frozenset()
    naming: ClassVar[NamingRule] = NAMING

    def __init__(self, clients: Clients = CLIENTS) -> None:
        self._clients = clients

    def _open(self, meta: ResourceMeta, config: Mapping[str, Any]) -> tuple[BucketConfig, str]:
        cfg = parse(BucketConfig, meta, config)
        bucket = cfg.name or derived_name(meta.physical_name)
        why = check_bucket_name(bucket)
        if why:
            refuse(meta, f"The physical name is not a valid bucket name: {why}")
        return cfg, bucket

    def _label(self, api: Api, bucket: str) -> tuple[bool, str | None]:
        """Whether the bucket exists, and its label (HeadBucket, then GetBucketTagging)."""
        if not api.bucket_exists(bucket):
            return False, None
        return True, label_of(api.bucket_tags(bucket))

    def observe(self, req: ObserveRequest) -> Observed | None:
        """HeadBucket and GetBucketTagging; no writes. Missing: ``None``; labelled by another
        owner or unlabelled: ``managed=False``."""
        cfg, bucket = self._open(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=[cfg.secret_key]):
            api = cfg.api(self._clients)
            exists, label = self._label(api, bucket)
        if not exists:
            return None
        managed, why = ownership(req.meta, "bucket", bucket, label)
        return Observed(
            config={"name": cfg.name}, outputs=_outputs(cfg, bucket), managed=managed, detail=why
        )

    def create(self, req: CreateRequest) -> Applied:
        """CreateBucket, then tag it; converges on our own bucket (a repeat call, or a crash
        after the create). A bucket labelled otherwise, or unlabelled (unless the journal
        shows our create interrupted there), is refused before anything is written.
        """
        return self._ensure(req.meta, req.config)

    def update(self, req: UpdateRequest) -> Applied:
        """Nothing changes in place but the label, which is re-applied; safe to repeat."""
        return self._ensure(req.meta, req.config)

    def _ensure(self, meta: ResourceMeta, config: Mapping[str, Any]) -> Applied:
        cfg, bucket = self._open(meta, config)
        with provider_errors(meta.address, secrets=[cfg.secret_key]):
            api = cfg.api(self._clients)
            exists, label = self._label(api, bucket)
            if exists:
                managed, why = ownership(meta, "bucket", bucket, label)
                if not managed and not (label is None and meta.resuming):
                    refuse_foreign(meta, "bucket", bucket, why)
            else:
                api.create_bucket(bucket)
            if label != meta.label:
                api.put_bucket_tags(bucket, label_tags(meta.label))
        return Applied(outputs=_outputs(cfg, bucket), physical_id=bucket)

    def delete(self, req: DeleteRequest) -> None:
        """Delete every object, then the bucket; missing is success, foreign refused. A
        crash half way leaves the labelled bucket, which a repeat call finishes."""
        cfg, bucket = self._open(req.meta, req.config)
        with provider_errors(req.meta.address, secrets=[cfg.secret_key]):
            api = cfg.api(self._clients)
            exists, label = self._label(api, bucket)
            if not exists:
                return
            managed, why = ownership(req.meta, "bucket", bucket, label)
            if not managed:
                refuse_foreign(req.meta, "bucket", bucket, why)
            deleted = 0
            while keys := api.object_keys(bucket):
                if deleted >= MAX_DELETED:
                    refuse(req.meta, f"bucket '{bucket}' holds more than {MAX_DELETED} objects")
                api.delete_objects(bucket, keys)
                deleted += len(keys)
            api.delete_bucket(bucket)

    def sweep_scope(self, config: Mapping[str, Any]) -> str:
        """The endpoint and admin key: buckets are listed once per account."""
        return f"{config.get('endpoint', '')} {config.get('access_key_id', '')}"

    def labelled(self, config: Mapping[str, Any], prefix: str, *, limit: int) -> list[Labelled]:
        """Buckets whose label starts with ``prefix`` (ListBuckets, then each one's tags);
        no writes."""
        meta = ResourceMeta("sweep", self.name, "", "sweep")
        cfg = parse(BucketConfig, meta, {**config, "name": ""})
        found: list[Labelled] = []
        with provider_errors("sweep", secrets=[cfg.secret_key]):
            api = cfg.api(self._clients)
            for bucket in api.buckets():
                if len(found) >= limit:
                    break
                try:
                    label = label_of(api.bucket_tags(bucket))
                except S3ApiError as exc:  # gone meanwhile, or another account's
                    if exc.status in (403, 404):
                        continue
                    raise
                if label is not None and label.startswith(prefix):
                    delete = cfg.model_dump()
                    found.append(Labelled(bucket, label, delete))
        return found


def _outputs(cfg: BucketConfig, bucket: str) -> dict[str, Any]:
    return {"bucket": bucket, "endpoint": cfg.endpoint, "region": cfg.region}
