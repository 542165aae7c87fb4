"""The ``s3`` provider: buckets, IAM users that reach one bucket, and a local S3 server.

Kinds: ``s3.bucket`` (a bucket tagged with its owner), ``s3.user`` (an IAM user, its inline
policy on one bucket and its access key) and ``s3.local_server`` (moto, supervised on
127.0.0.1 with IAM authentication on). The S3 and IAM APIs are spoken over httpx with SigV4
signatures computed here (``sigv4``): no AWS SDK is needed to talk to a server. See
docs/adr/0005-s3-server.md.
"""

from __future__ import annotations

from stackyard import __version__
from stackyard.providers.api import Provider
from stackyard.providers.s3.api import CLIENTS, Clients
from stackyard.providers.s3.bucket import BucketKind
from stackyard.providers.s3.server import S3Server
from stackyard.providers.s3.user import UserKind

__all__ = ["PROVIDER", "BucketKind", "S3Server", "UserKind", "make_provider"]


def make_provider(clients: Clients | None = None) -> Provider:
    """An s3 provider whose kinds share one connection pool."""
    shared = clients if clients is not None else CLIENTS
    return Provider(
        name="s3",
        version=__version__,
        kinds=(BucketKind(shared), UserKind(shared), S3Server()),
        description="S3 buckets, IAM users confined to one bucket, and a local S3 server (moto).",
        parallelism=10,
    )


#: The entry point ``stackyard.providers: s3``.
PROVIDER = make_provider()
