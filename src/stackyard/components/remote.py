"""A remote artifact repository: any registry that speaks the OCI distribution API.

A small ``httpx`` client (see ``docs/adr/0002-oci-client.md``): push (monolithic blob upload,
then the manifest by tag), pull (manifests and blobs, every one verified against its digest
before it is used or cached), tag listing, ``_catalog`` and referrers, with the fallback tag
scheme (``sha256-<hex>``, an OCI image index) for registries without the referrers API, such
as CNCF Distribution 2.8. Authentication is HTTP basic, or bearer tokens obtained through the
``WWW-Authenticate`` challenge. Credentials never appear in messages.

Verified blobs and manifests are cached by digest under ``$STACKYARD_HOME/cache/blobs``, so a
warm pull by digest makes no request at all. A cached file is verified again when read.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import ssl
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
    parse_manifest,
    referrer_descriptor,
    referrers_tag,
    tag_for,
    verify,
    version_of,
)

__all__ = ["RemoteRegistry", "parse_reference"]

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
                "Name a remote registry as HOST[:PORT]/NAMESPACE, for example "
                "registry.example.com/platform; add --plain-http for a registry without TLS."
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
        self._referrers_api: bool | None = None
        self._client = httpx.Client(
            base_url=f"{'http' if plain_http else 'https'}://{host}",
            auth=RegistryAuth(username, password, token),
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": f"stackyard/{stackyard.__version__}"},
            verify=_tls_context(),
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
        response = self._request("GET", f"/v2/{self._repo(name)}/blobs/{digest}", what=digest)
        data = verify(response.content, digest, component=name, registry=self.location)
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
                found = list(response.json().get("manifests") or [])
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
        manifest = component_manifest(config=config, layer=layer, annotations=annotations)
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
        return [dict(d) for d in index.get("manifests") or []]

    def _fetch_manifest(self, name: str, ref: str, *, shown: str) -> tuple[str, dict[str, Any]]:
        """GET the manifest at tag or digest ``ref``, verify it and cache it by digest."""
        response = self._request(
            "GET",
            f"/v2/{self._repo(name)}/manifests/{ref}",
            what=shown,
            headers={"Accept": _ACCEPT},
        )
        data = response.content
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

    def _put_manifest(self, name: str, ref: str, data: bytes, media_type: str) -> httpx.Response:
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
            items.extend(response.json().get(key) or [])
            url, params = _next_link(response.headers.get("Link", "")), None
        return items

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
    ) -> httpx.Response:
        """Send one request; the only place httpx errors become ``RegistryError``s."""
        try:
            response = self._client.request(
                method, url, params=params, content=content, headers=headers
            )
        except RegistryError:
            raise
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(
                f"Cannot reach the registry at {self.host}: {type(exc).__name__}",
                registry=self.location,
                hint=(
                    "Check the registry address and that it is running. Add --plain-http for "
                    "a registry without TLS."
                ),
            ) from None
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


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip()


def _oci_errors(response: httpx.Response) -> str:
    """The registry's own error codes, e.g. ': MANIFEST_UNKNOWN (manifest unknown)'."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        errors = response.json().get("errors") or []
        parts = [f"{e.get('code', '')} ({e.get('message', '')})" for e in errors[:3]]
        if parts:
            return ": " + "; ".join(parts)
    return ""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~50 ms per client."""
    return ssl.create_default_context()
