"""The artifact repository: where component builds are published and pulled, as OCI artifacts.

``open_registry`` picks the backend: the local OCI image layout under
``$STACKYARD_HOME/registry`` (the default), or a remote registry named
``HOST[:PORT]/NAMESPACE`` that speaks the OCI distribution API. Both implement ``Registry``.

Tags are versions, and a pull resolves a tag to a digest once; everything after that is by
digest and verified. A published version is immutable. Errors are the ``RegistryError``
tree drawn in ``stackyard.components.oci``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stackyard.components.layout import LayoutRegistry
from stackyard.components.oci import (
    ANNOTATION_CREATED,
    ANNOTATION_LIFECYCLE,
    ANNOTATION_OWNER,
    ANNOTATION_SOURCE,
    ANNOTATION_VERSION,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    DigestMismatchError,
    ImmutableTagError,
    InvalidReferenceError,
    NotFoundError,
    Pushed,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)

if TYPE_CHECKING:
    from stackyard.components.remote import RemoteRegistry

__all__ = [
    "ANNOTATION_CREATED",
    "ANNOTATION_LIFECYCLE",
    "ANNOTATION_OWNER",
    "ANNOTATION_SOURCE",
    "ANNOTATION_VERSION",
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "DigestMismatchError",
    "ImmutableTagError",
    "InvalidReferenceError",
    "LayoutRegistry",
    "NotFoundError",
    "Pushed",
    "Registry",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "RemoteRegistry",
    "open_registry",
]


def __getattr__(name: str) -> Any:
    """``RemoteRegistry`` on first use: it imports httpx (and ssl), which a home on the local
    layout never needs, so a command that only opens the layout does not pay for it."""
    if name == "RemoteRegistry":
        from stackyard.components.remote import RemoteRegistry

        return RemoteRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Registry(Protocol):
    """An artifact repository of component builds.

    Reads verify every manifest and blob against its digest and raise
    ``DigestMismatchError`` (writing nothing) when content was tampered with. Writes are
    safe to repeat: pushing the same build again is a no-op, and a different build under a
    published version raises ``ImmutableTagError``.
    """

    @property
    def location(self) -> str:
        """Where the registry is, for messages (never with credentials)."""
        ...

    def push(
        self, *, name: str, version: str, config: bytes, layer: bytes, annotations: dict[str, str]
    ) -> Pushed:
        """Publish a build as an OCI image manifest tagged with ``version``."""
        ...

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
        """Attach an artifact (an attestation) to a manifest; returns the artifact's digest."""
        ...

    def names(self) -> list[str]:
        """The names of the published components."""
        ...

    def tags(self, name: str) -> list[str]:
        """The published versions of ``name``; empty when there are none."""
        ...

    def resolve(self, name: str, version: str) -> str:
        """The manifest digest of ``name@version``; ``NotFoundError`` when unpublished."""
        ...

    def manifest(self, name: str, reference: str) -> tuple[str, dict[str, Any]]:
        """The verified manifest at a version or digest, with its digest."""
        ...

    def blob(self, name: str, digest: str) -> bytes:
        """The verified content of blob ``digest``."""
        ...

    def referrers(
        self, name: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the artifacts attached to manifest ``digest``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def __enter__(self) -> Registry: ...

    def __exit__(self, *exc: object) -> None: ...


def open_registry(
    ref: str | None,
    *,
    home: Path,
    plain_http: bool = False,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Registry:
    """Open the registry ``ref`` names: None or "" is the local layout at ``home/registry``.

    ``ref`` comes from ``Settings.registry`` (``--registry`` > ``STACKYARD_REGISTRY`` > file),
    ``plain_http`` from ``Settings.registry_plain_http`` (or ``--plain-http``). An ``http://``
    prefix on ``ref`` means plain HTTP too, and an ``https://`` prefix means TLS whatever
    ``plain_http`` says. Credentials not given here are read from
    ``STACKYARD_REGISTRY_USERNAME``, ``STACKYARD_REGISTRY_PASSWORD`` and
    ``STACKYARD_REGISTRY_TOKEN``. No I/O happens until the first call.
    """
    if not ref:
        return LayoutRegistry(home / "registry")
    from stackyard.components.remote import RemoteRegistry, parse_reference

    env = os.environ if environ is None else environ
    scheme, sep, rest = ref.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        ref, plain_http = rest.rstrip("/"), scheme.lower() == "http"
    host, namespace = parse_reference(ref)
    return RemoteRegistry(
        host,
        namespace,
        cache=home / "cache" / "blobs",
        plain_http=plain_http,
        username=username or env.get("STACKYARD_REGISTRY_USERNAME") or None,
        password=password or env.get("STACKYARD_REGISTRY_PASSWORD") or None,
        token=token or env.get("STACKYARD_REGISTRY_TOKEN") or None,
    )
