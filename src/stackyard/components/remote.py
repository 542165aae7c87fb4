"""A remote artifact repository: any registry that speaks the OCI distribution API.

A small ``httpx`` client (see ``docs/adr/0002-oci-client.md``): push (monolithic blob upload,
then the manifest by tag), pull (manifests and blobs, every one verified against its digest
before it is used or cached), tag listing, ``_catalog`` and referrers, with the fallback tag
scheme (``sha256-<hex>``, an OCI image index) for registries without the referrers API, such
as CNCF Distribution 2.8. Authentication is HTTP basic, or bearer tokens obtained through the
``WWW-Authenticate`` challenge. Credentials never appear in messages.

Verified blobs and manifests are cached by digest under ``$STACKYARD_HOME/cache/blobs``, so a
warm pull by digest makes no request at all. A cached file is verified again when read.

Every body is read with a bound (``MAX_MANIFEST_BYTES`` for JSON, ``MAX_LAYER_BYTES`` for a
blob) and never inflated: we ask for ``identity`` and the transport ignores a
``Content-Encoding`` a registry sends anyway, so such bytes fail their digest instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import stackyard
from stackyard.components.auth import AUTH_HINT, RegistryAuth
from stackyard.components.layout import write_atomic
from stackyard.components.oci import (
    EMPTY_CONFIG,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_LAYER_BYTES,
    MAX_MANIFEST_BYTES,
    DigestMismatchError,
    ImmutableTagError,
    InvalidReferenceError,
    NotFoundError,
    Pushed,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    artifact_manifest,
    check_digest,
    check_name,
    component_manifest,
    digest_of,
    encode,
    is_referrers_tag,
    layer_title,
    parse_manifest,
    referrer_descriptor,
    referrers_tag,
    tag_for,
    verify,
    version_of,
)

__all__ = ["PLAIN_HTTP_HINT", "RemoteRegistry", "parse_reference"]

#: How every command reaches a registry without TLS (the ``component`` commands also take
#: ``--plain-http``, but deploy, env create and quickstart read settings only).
PLAIN_HTTP_HINT = (
    "For a registry without TLS, set STACKYARD_REGISTRY_PLAIN_HTTP=1 (or registry_plain_http "
    "in config.yaml), or write the registry as http://HOST[:PORT]/NAMESPACE."
)

_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(rf"^(?P<host>{_HOST}(?::[0-9]{{1,5}})?)/(?P<ns>{_PATH}(?:/{_PATH})*)$")
_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}"
_PAGE = 1000


def parse_reference(ref: str) -> tuple[str, str]:
    """Split ``HOST[:PORT]/NAMESPACE`` into host and namespace."""
    match = _REFERENCE.match(ref)
    if not match:
        raise InvalidReferenceError(
            f"'{ref}' is not a registry reference",
            registry=ref,
            hint=(
                "Name a remote registry as [http://|https://]HOST[:PORT]/NAMESPACE, for example "
                "registry.example.com/platform. " + PLAIN_HTTP_HINT
            ),
        )
    return match["host"], match["ns"]


class RemoteRegistry:
    """Components under ``<namespace>/<name>`` on the registry at ``host``."""

    def __init__(
        self,
        host: str,
        namespace: str,
        *,
        cache: Path,
        plain_http: bool = False,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.namespace = namespace
        self.cache = cache
        self.plain_http = plain_http
        self._referrers_api: bool | None = None
        self._client = httpx.Client(
            base_url=f"{'http' if plain_http else 'https'}://{host}",
            auth=RegistryAuth(username, password, token),
            timeout=timeout,
            follow_redirects=True,
            headers={
                "User-Agent": f"stackyard/{stackyard.__version__}",
                "Accept-Encoding": "identity",
            },
            transport=_Undecoded(httpx.HTTPTransport(verify=_tls_context())),
        )

    def __repr__(self) -> str:
        return f"RemoteRegistry({self.location!r})"

    @property
    def location(self) -> str:
        """Where this registry is, for messages (never with credentials)."""
        return f"{self.host}/{self.namespace}"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> RemoteRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Component names under the namespace, from ``/v2/_catalog`` (not every registry has it)."""
        prefix = self.namespace + "/"
        repos = self._paged("/v2/_catalog", "repositories", what="the repository catalog")
        return sorted(
            r[len(prefix) :] for r in repos if r.startswith(prefix) and "/" not in r[len(prefix) :]
        )

    def tags(self, name: str) -> list[str]:
        """The published versions of ``name`` (empty when it has none)."""
        try:
            tags = self._paged(f"/v2/{self._repo(name)}/tags/list", "tags", what=name)
        except NotFoundError:
            return []
        return [version_of(t) for t in tags if not is_referrers_tag(t)]

    def resolve(self, name: str, version: str) -> str:
        """The manifest digest of ``name@version``, asked of the registry (tags move nowhere)."""
        return self.manifest(name, version)[0]

    def manifest(self, name: str, reference: str) -> tuple[str, dict[str, Any]]:
        """The manifest at a version or digest, verified; by digest it may come from the cache."""
        if not reference.startswith("sha256:"):
            return self._fetch_manifest(name, tag_for(reference), shown=f"{name}@{reference}")
        data = self._cached(check_digest(reference), name)
        if data is None:
            return self._fetch_manifest(name, reference, shown=f"{name}@{reference}")
        return reference, parse_manifest(data, reference, component=name)

    def blob(self, name: str, digest: str) -> bytes:
        """The blob ``digest``, verified before it is returned or cached."""
        data = self._cached(check_digest(digest), name)
        if data is not None:
            return data
        response = self._request(
            "GET", f"/v2/{self._repo(name)}/blobs/{digest}", what=digest, limit=MAX_LAYER_BYTES
        )
        data = verify(response.body, digest, component=name, registry=self.location)
        self._store(digest, data)
        return data

    def referrers(
        self, name: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``."""
        check_digest(digest)
        found: list[dict[str, Any]] | None = None
        if self._referrers_api is not False:
            params = {"artifactType": artifact_type} if artifact_type else None
            response = self._request(
                "GET",
                f"/v2/{self._repo(name)}/referrers/{digest}",
                what=digest,
                params=params,
                ok=(200, 404),
            )
            if response.status_code == 200 and _media_type(response) == INDEX_MEDIA_TYPE:
                self._referrers_api = True
                found = [
                    d
                    for d in self._json(response, what=digest).get("manifests") or []
                    if isinstance(d, dict)
                ]
            else:
                self._referrers_api = False
        if found is None:
            found = self._fallback_index(name, digest)
        return [d for d in found if artifact_type is None or d.get("artifactType") == artifact_type]

    # -- writes -----------------------------------------------------------------------------

    def push(
        self, *, name: str, version: str, config: bytes, layer: bytes, annotations: dict[str, str]
    ) -> Pushed:
        """Publish ``name@version``. ``ImmutableTagError`` if that version holds other content.

        The check and the tag write are two requests (the distribution API has no
        conditional tag write), so two publishers racing on one version is caught only by the
        publish pipeline's version rules. Pushing the same build again is a no-op.
        """
        tag = tag_for(version)
        manifest = component_manifest(
            config=config, layer=layer, annotations=annotations, title=layer_title(name, version)
        )
        digest = digest_of(manifest)
        head = self._request(
            "HEAD",
            f"/v2/{self._repo(name)}/manifests/{tag}",
            what=f"{name}@{version}",
            headers={"Accept": _ACCEPT},
            ok=(200, 404),
        )
        if head.status_code == 200:
            current = head.headers.get("Docker-Content-Digest", "another manifest")
            if current == digest:
                return Pushed(digest, manifest)
            raise ImmutableTagError(
                f"{name}@{version} is already published in {self.location} (manifest {current})",
                component=name,
                registry=self.location,
                hint="A published version never changes. Bump the version and publish again.",
            )
        for data in (config, layer):
            self._put_blob(name, data)
        self._put_manifest(name, tag, manifest, MANIFEST_MEDIA_TYPE)
        return Pushed(digest, manifest)

    def push_referrer(
        self,
        *,
        name: str,
        subject_digest: str,
        subject_size: int,
        artifact_type: str,
        payload: bytes,
        payload_media_type: str,
        annotations: dict[str, str],
    ) -> str:
        """Attach an artifact to ``subject_digest``; returns the artifact's manifest digest.

        When the registry does not answer the push with ``OCI-Subject`` (no referrers API),
        the fallback index at tag ``sha256-<hex>`` is read, extended and written back.
        """
        subject = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": check_digest(subject_digest),
            "size": subject_size,
        }
        manifest = artifact_manifest(
            artifact_type=artifact_type,
            payload=payload,
            payload_media_type=payload_media_type,
            subject=subject,
            annotations=annotations,
        )
        digest = digest_of(manifest)
        for data in (EMPTY_CONFIG, payload):
            self._put_blob(name, data)
        response = self._put_manifest(name, digest, manifest, MANIFEST_MEDIA_TYPE)
        if response.headers.get("OCI-Subject"):
            self._referrers_api = True
            return digest
        index = self._fallback_index(name, subject_digest)
        if not any(d.get("digest") == digest for d in index):
            index.append(referrer_descriptor(manifest, json.loads(manifest)))
            document = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": index}
            self._put_manifest(
                name, referrers_tag(subject_digest), encode(document), INDEX_MEDIA_TYPE
            )
        return digest

    # -- internals --------------------------------------------------------------------------

    def _repo(self, name: str) -> str:
        return f"{self.namespace}/{check_name(name)}"

    def _fallback_index(self, name: str, digest: str) -> list[dict[str, Any]]:
        try:
            _, index = self._fetch_manifest(name, referrers_tag(digest), shown=digest)
        except NotFoundError:
            return []
        entries = index.get("manifests")
        return (
            [dict(d) for d in entries if isinstance(d, dict)] if isinstance(entries, list) else []
        )

    def _fetch_manifest(self, name: str, ref: str, *, shown: str) -> tuple[str, dict[str, Any]]:
        """GET the manifest at tag or digest ``ref``, verify it and cache it by digest."""
        response = self._request(
            "GET",
            f"/v2/{self._repo(name)}/manifests/{ref}",
            what=shown,
            headers={"Accept": _ACCEPT},
        )
        data = response.body
        # By digest, our own reference is the claim to check. By tag, the registry's
        # Docker-Content-Digest is the only claim there is (a tag is trust in the registry).
        claimed = ref if ref.startswith("sha256:") else None
        claimed = claimed or response.headers.get("Docker-Content-Digest") or digest_of(data)
        verify(data, claimed, component=name, registry=self.location)
        self._store(claimed, data)
        return claimed, parse_manifest(data, claimed, component=name)

    def _put_blob(self, name: str, data: bytes) -> None:
        digest = digest_of(data)
        repo = self._repo(name)
        head = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", what=digest, ok=(200, 404))
        if head.status_code == 200:
            return
        started = self._request("POST", f"/v2/{repo}/blobs/uploads/", what=name, ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RegistryUnavailableError(
                f"{self.host} started an upload without a Location", registry=self.location
            )
        self._request(
            "PUT",
            # The Location carries the upload's state in its query; keep it and add ours.
            str(httpx.URL(location).copy_merge_params({"digest": digest})),
            what=digest,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )

    def _put_manifest(self, name: str, ref: str, data: bytes, media_type: str) -> _Reply:
        response = self._request(
            "PUT",
            f"/v2/{self._repo(name)}/manifests/{ref}",
            what=f"{name}:{ref}",
            content=data,
            headers={"Content-Type": media_type},
            ok=(201,),
        )
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != digest_of(data):
            raise DigestMismatchError(
                digest_of(data), stored, component=name, registry=self.location
            )
        return response

    def _paged(self, path: str, key: str, *, what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        params: dict[str, Any] | None = {"n": _PAGE}
        while url:
            response = self._request("GET", url, what=what, params=params)
            page = self._json(response, what=what).get(key) or []
            items.extend(str(item) for item in page if isinstance(item, str))
            url, params = _next_link(response.headers.get("Link", "")), None
        return items

    def _json(self, response: _Reply, *, what: str) -> dict[str, Any]:
        """A JSON object answer (tags, catalog, referrers); anything else is not OCI."""
        with contextlib.suppress(ValueError, RecursionError):
            document = json.loads(response.body)
            if isinstance(document, dict):
                return document
        raise RegistryUnavailableError(
            f"The registry at {self.host} answered for {what} with something that is not "
            "an OCI JSON document",
            registry=self.location,
        )

    def _cached(self, digest: str, name: str) -> bytes | None:
        path = self._cache_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return verify(data, digest, component=name)
        except DigestMismatchError:
            # Our own cache went bad (disk error, hand edit): drop it and fetch again.
            path.unlink(missing_ok=True)
            return None

    def _store(self, digest: str, data: bytes) -> None:
        path = self._cache_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)

    def _cache_path(self, digest: str) -> Path:
        return self.cache / "sha256" / digest[len("sha256:") :]

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200,),
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> _Reply:
        """Send one request and read at most ``limit`` bytes of its answer; the only place
        httpx errors become ``RegistryError``s."""
        try:
            request = self._client.build_request(
                method, url, params=params, content=content, headers=headers
            )
            streamed = self._client.send(request, stream=True)
            try:
                body = b"" if method == "HEAD" else _read_limited(streamed, limit)
            finally:
                streamed.close()
        except RegistryError:
            raise
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(
                f"Cannot reach the registry at {self.host}: {_why(exc, self.plain_http)}",
                registry=self.location,
                hint="Check the registry address and that it is running. " + PLAIN_HTTP_HINT,
            ) from None
        if body is None:
            raise RegistryUnavailableError(
                f"The registry at {self.host} answered {method} for {what} with more than "
                f"{limit} bytes; refused without reading the rest",
                registry=self.location,
                hint="Nothing a component build holds is that large. Check what the tag points at.",
            )
        response = _Reply(streamed.status_code, streamed.headers, body)
        if response.status_code in ok:
            return response
        reason = _oci_errors(response)
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"The registry at {self.host} refused access to {what}{reason}",
                registry=self.location,
                hint=AUTH_HINT,
            )
        if response.status_code == 404:
            raise NotFoundError(
                f"{what} is not in the registry at {self.location}{reason}",
                registry=self.location,
                hint="Check the component name and version; only published versions can be pulled.",
            )
        raise RegistryUnavailableError(
            f"The registry at {self.host} answered {method} for {what} with HTTP "
            f"{response.status_code}{reason}",
            registry=self.location,
        )


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', header)
    return str(match[1]) if match else None


@dataclass(frozen=True, slots=True)
class _Reply:
    """An answer, its body read within a bound."""

    status_code: int
    headers: httpx.Headers
    body: bytes


class _Undecoded(httpx.BaseTransport):
    """A transport whose answers are never inflated: a ``Content-Encoding`` is dropped, so
    httpx hands over the bytes as sent (a registry compressing against our ``identity`` then
    fails the digest check instead of expanding a bomb in memory)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport; drop the answer's encoding."""
        response = self._inner.handle_request(request)
        response.headers.pop("Content-Encoding", None)
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()


def _read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The body of a streamed answer, or None once it passes ``limit`` bytes (the rest is
    never read). ``_Undecoded`` dropped any ``Content-Encoding``: nothing is inflated here."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _why(exc: httpx.HTTPError, plain_http: bool) -> str:
    """Why a registry could not be reached; a TLS handshake with a plain-HTTP server says so."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError) and not plain_http:
            return (
                f"the TLS handshake failed ({cause.reason or type(cause).__name__}); it may be "
                "a registry without TLS"
            )
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _media_type(response: _Reply) -> str:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip()


def _oci_errors(response: _Reply) -> str:
    """The registry's own error codes, e.g. ': MANIFEST_UNKNOWN (manifest unknown)'."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
        errors = json.loads(response.body).get("errors") or []
        parts = [f"{e.get('code', '')} ({e.get('message', '')})" for e in errors[:3]]
        if parts:
            return ": " + "; ".join(parts)
    return ""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~50 ms per client."""
    return ssl.create_default_context()
