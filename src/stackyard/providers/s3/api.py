"""The S3 and IAM HTTP APIs, signed with SigV4 over httpx: the calls the s3 kinds make.

One ``Api`` per endpoint and admin key; every method is one HTTP round trip (a listing, one
per page). Responses are XML; their namespaces are ignored, so AWS, moto and other S3
servers read alike. Errors come out as ``S3ApiError`` (the server's code and message) or
httpx's own, and become stackyard's at ``provider_errors``, the one boundary.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from stackyard.errors import ProviderError
from stackyard.lazy import lazy
from stackyard.providers import timeouts
from stackyard.providers.boundary import translate
from stackyard.providers.s3.sigv4 import EMPTY_SHA256, Credentials, sign, uri_encode

if TYPE_CHECKING:
    import httpx
else:  # imported on first use: naming and planning never talk to the server
    httpx = lazy("httpx")

__all__ = ["Api", "Clients", "Endpoint", "S3ApiError", "provider_errors"]

IAM_VERSION = "2010-05-08"
#: IAM is a global service: AWS signs it for us-east-1 whatever the bucket's region.
IAM_REGION = "us-east-1"
#: Codes a retry may cure (besides any 5xx).
TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)


class S3ApiError(ProviderError):
    """An error reply: the HTTP status, the service's code and its message. It never leaves
    the provider: ``provider_errors`` translates it into a transient or permanent error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom: an S3 endpoint, its region, an admin key and the IAM endpoint."""

    url: str
    region: str
    credentials: Credentials
    iam_url: str = ""

    @property
    def secrets(self) -> list[str]:
        """What no message may show."""
        return [self.credentials.secret_key]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(elem: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    """Every descendant of ``elem`` called ``name`` (any namespace)."""
    for node in elem.iter():
        if _local(node.tag) == name:
            yield node


def text(elem: ElementTree.Element, name: str) -> str:
    """The text of the first descendant called ``name``, or ``""``."""
    for node in children(elem, name):
        return (node.text or "").strip()
    return ""


def _parse(body: bytes) -> ElementTree.Element:
    # The reply of the configured endpoint; Python's expat resolves no external entities and
    # refuses entity expansion bombs (expat >= 2.4.1), so plain ElementTree is safe here.
    return ElementTree.fromstring(body)  # noqa: S314


def _error(response: httpx.Response) -> S3ApiError:
    code, message = "", ""
    if response.content:
        try:
            root = _parse(response.content)
        except ElementTree.ParseError:
            pass
        else:
            code, message = text(root, "Code"), text(root, "Message")
    if not code:
        code = {403: "AccessDenied", 404: "NotFound"}.get(response.status_code, "HTTPError")
    return S3ApiError(response.status_code, code, message or f"HTTP {response.status_code}")


class Api:
    """S3 and IAM calls against one endpoint with one key."""

    def __init__(self, http: httpx.Client, endpoint: Endpoint) -> None:
        self._http = http
        self.endpoint = endpoint
        parts = urlsplit(endpoint.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise S3ApiError(0, "InvalidEndpoint", "the endpoint is not an http(s) URL")
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        iam = urlsplit(endpoint.iam_url or endpoint.url)
        self._iam_base = f"{iam.scheme}://{iam.netloc}"
        self._iam_path = iam.path or "/"

    # -- the wire ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        base: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes,
        headers: Mapping[str, str],
        region: str,
        service: str,
    ) -> httpx.Response:
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        signed = sign(
            method=method,
            host=urlsplit(base).netloc,
            path=path,
            query=query,
            headers=headers,
            payload_sha256=digest,
            credentials=self.endpoint.credentials,
            region=region,
            service=service,
            now=datetime.now(UTC),
        )
        url = base + path + (f"?{_query_string(query)}" if query else "")
        response = self._http.request(
            method, url, content=body or None, headers={**headers, **signed}
        )
        if response.status_code >= 300:
            raise _error(response)
        return response

    def s3(
        self,
        method: str,
        bucket: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        key: str = "",
    ) -> httpx.Response:
        """One path-style S3 request on ``bucket`` (``""``: the service) and ``key``."""
        path = self._prefix + "/" + uri_encode(bucket) if bucket else self._prefix + "/"
        if key:
            path += "/" + uri_encode(key, keep_slash=True)
        return self._send(
            method,
            self._base,
            path,
            query=query or {},
            body=body,
            headers=headers or {},
            region=self.endpoint.region,
            service="s3",
        )

    def iam(self, action: str, **params: str) -> ElementTree.Element:
        """One IAM query-API call; its XML reply."""
        body = urlencode({"Action": action, "Version": IAM_VERSION, **params}).encode()
        response = self._send(
            "POST",
            self._iam_base,
            self._iam_path,
            query={},
            body=body,
            headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
            region=IAM_REGION,
            service="iam",
        )
        return _parse(response.content)

    # -- buckets -----------------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        """HeadBucket: True when it exists (ours to read), False when it does not."""
        try:
            self.s3("HEAD", bucket)
        except S3ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create_bucket(self, bucket: str) -> None:
        """CreateBucket in the endpoint's region; one we own already is success."""
        body = b""
        if self.endpoint.region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{escape(self.endpoint.region)}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        try:
            self.s3("PUT", bucket, body=body)
        except S3ApiError as exc:
            if exc.code != "BucketAlreadyOwnedByYou":
                raise

    def bucket_tags(self, bucket: str) -> dict[str, str]:
        """GetBucketTagging; ``{}`` when the bucket has no tags."""
        try:
            root = _parse(self.s3("GET", bucket, query={"tagging": ""}).content)
        except S3ApiError as exc:
            if exc.code == "NoSuchTagSet":
                return {}
            raise
        return {text(tag, "Key"): text(tag, "Value") for tag in children(root, "Tag")}

    def put_bucket_tags(self, bucket: str, tags: Mapping[str, str]) -> None:
        """PutBucketTagging: ``tags`` become the bucket's whole tag set."""
        body = (
            '<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>'
            + "".join(
                f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>"
                for k, v in tags.items()
            )
            + "</TagSet></Tagging>"
        ).encode()
        self.s3("PUT", bucket, query={"tagging": ""}, body=body, headers=_md5(body))

    def delete_bucket(self, bucket: str) -> None:
        """DeleteBucket; a missing bucket is success."""
        try:
            self.s3("DELETE", bucket)
        except S3ApiError as exc:
            if exc.code not in ("NoSuchBucket", "NotFound"):
                raise

    def object_keys(self, bucket: str, *, limit: int = 1000) -> list[str]:
        """Up to ``limit`` object keys of ``bucket`` (one ListObjectsV2 page)."""
        root = _parse(
            self.s3("GET", bucket, query={"list-type": "2", "max-keys": str(limit)}).content
        )
        return [text(c, "Key") for c in children(root, "Contents")]

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> None:
        """DeleteObjects (quiet) of up to 1000 keys."""
        body = (
            '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
            + "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
            + "</Delete>"
        ).encode()
        self.s3("POST", bucket, query={"delete": ""}, body=body, headers=_md5(body))

    def buckets(self) -> list[str]:
        """ListBuckets: every bucket the key can see."""
        root = _parse(self.s3("GET", "").content)
        return [text(b, "Name") for b in children(root, "Bucket")]


def _md5(body: bytes) -> dict[str, str]:
    # S3 requires Content-MD5 (or a checksum) on tagging and multi-object delete; MD5 is
    # the protocol's integrity check here, not a security measure.
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    return {"content-md5": base64.b64encode(digest).decode()}


def _query_string(query: Mapping[str, str]) -> str:
    return "&".join(
        f"{uri_encode(k)}={uri_encode(v)}" if v else uri_encode(k) for k, v in sorted(query.items())
    )


def _transient(exc: Exception) -> bool:
    if isinstance(exc, S3ApiError):
        return exc.status >= 500 or exc.code in TRANSIENT_CODES
    return isinstance(exc, httpx.TransportError)


def _note(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f" (the server did not answer in time; limit: {timeouts.OPERATION_ENV})"
    return ""


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPError) and not str(exc):
        return type(exc).__name__
    return str(exc)


def provider_errors(address: str, *, secrets: Iterable[str] = ()) -> AbstractContextManager[None]:
    """The one boundary where the API's errors become stackyard's (``boundary.translate``).

    Lost connections, timeouts, 5xx replies and throttling are transient; refused keys,
    denied access, invalid names and anything else are permanent. Messages are redacted of
    ``secrets`` (the admin secret key, a user's secret key).
    """
    return translate(
        address,
        service="S3",
        catch=(S3ApiError, httpx.HTTPError),
        transient=_transient,
        describe=_describe,
        note=_note,
        secrets=secrets,
    )


class Clients:
    """One httpx client (a connection pool shared by threads) and an ``Api`` per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    def api(self, endpoint: Endpoint) -> Api:
        """The calls for ``endpoint``."""
        with self._lock:
            if self._http is None:
                limits = timeouts.current()
                self._http = httpx.Client(
                    timeout=httpx.Timeout(limits.operation, connect=limits.connect)
                )
            http = self._http
        return Api(http, endpoint)

    def close(self) -> None:
        """Close the connection pool."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()


CLIENTS = Clients()
atexit.register(CLIENTS.close)
