"""OCI vocabulary for component builds: media types, digests, manifests and registry errors.

A component build is an OCI image manifest with ``artifactType``
``application/vnd.stackyard.component.v1``: its config blob is the component manifest as JSON
and its one layer is the archive. An attestation is a second manifest whose ``subject`` points
at the build (an OCI referrer). Both backends (``layout``, ``remote``) build manifests here,
so a build pushed to either has the same bytes and the same digest.

The error tree (all under ``StackyardError``)::

    RegistryError               a registry operation failed (.component, .registry)
    ├── InvalidReferenceError   a bad registry reference, component name or version
    ├── NotFoundError           no such component, version, manifest or blob
    ├── ImmutableTagError       the version is already published (versions are immutable)
    ├── DigestMismatchError     content does not hash to its digest (.digest, .actual)
    ├── RegistryAuthError       the registry refused our credentials (never shown)
    └── RegistryUnavailableError the registry cannot be reached or answered badly
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from stackyard.errors import StackyardError

__all__ = [
    "ANNOTATION_CREATED",
    "ANNOTATION_LIFECYCLE",
    "ANNOTATION_OWNER",
    "ANNOTATION_REF_NAME",
    "ANNOTATION_SOURCE",
    "ANNOTATION_VERSION",
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "EMPTY_CONFIG",
    "EMPTY_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "DigestMismatchError",
    "ImmutableTagError",
    "InvalidReferenceError",
    "NotFoundError",
    "Pushed",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "artifact_manifest",
    "check_digest",
    "check_name",
    "component_manifest",
    "descriptor",
    "digest_of",
    "encode",
    "is_referrers_tag",
    "parse_manifest",
    "referrer_descriptor",
    "referrers_tag",
    "tag_for",
    "verify",
    "version_of",
]

ARTIFACT_TYPE = "application/vnd.stackyard.component.v1"
CONFIG_MEDIA_TYPE = "application/vnd.stackyard.component.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.stackyard.component.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
#: The OCI "empty" blob, the config of artifacts that have no config of their own.
EMPTY_CONFIG = b"{}"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_OWNER = "dev.stackyard.owner"
ANNOTATION_LIFECYCLE = "dev.stackyard.lifecycle"

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REFERRERS_TAG = re.compile(r"^sha256-[0-9a-f]{64}$")


class RegistryError(StackyardError):
    """A registry operation failed. ``component`` and ``registry`` name the subject."""

    def __init__(
        self, message: str, *, component: str = "", registry: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.component = component
        self.registry = registry


class InvalidReferenceError(RegistryError):
    """A registry reference, component name, version or digest is malformed."""

    exit_code = 2


class NotFoundError(RegistryError):
    """The component, version, manifest or blob does not exist in the registry."""


class ImmutableTagError(RegistryError):
    """The version is already published; a published version never changes."""


class DigestMismatchError(RegistryError):
    """Content does not hash to the digest it was fetched by; it was refused."""

    def __init__(
        self, digest: str, actual: str, *, component: str = "", registry: str = ""
    ) -> None:
        super().__init__(
            f"Refused content of {digest}{f' in {component}' if component else ''}"
            f"{f' from {registry}' if registry else ''}: it hashes to {actual}",
            component=component,
            registry=registry,
            hint=(
                "The stored content is corrupt or was tampered with, and nothing was written. "
                "Publish the component again, or ask the registry's owner to check its storage."
            ),
        )
        self.digest = digest
        self.actual = actual


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (they are never part of the message)."""


class RegistryUnavailableError(RegistryError):
    """The registry cannot be reached, or answered with something that is not OCI."""


@dataclass(frozen=True, slots=True)
class Pushed:
    """A pushed manifest: its digest and its exact bytes."""

    digest: str
    manifest: bytes


def digest_of(data: bytes) -> str:
    """The OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a ``sha256:<64 hex>`` digest; the only algorithm we accept."""
    if not _DIGEST.match(digest):
        raise InvalidReferenceError(
            f"'{digest}' is not a sha256 digest",
            hint="Digests look like sha256:<64 lowercase hex digits>.",
        )
    return digest


def verify(data: bytes, digest: str, *, component: str = "", registry: str = "") -> bytes:
    """Return ``data`` if it hashes to ``digest``; raise ``DigestMismatchError`` otherwise."""
    actual = digest_of(data)
    if actual != check_digest(digest):
        raise DigestMismatchError(digest, actual, component=component, registry=registry)
    return data


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid component name."""
    if not _NAME.match(name):
        raise InvalidReferenceError(
            f"'{name}' is not a valid component name",
            component=name,
            hint="Component names match ^[a-z][a-z0-9-]{1,62}$.",
        )
    return name


def tag_for(version: str) -> str:
    """The registry tag of ``version``: SemVer build metadata ``+`` becomes ``_``.

    OCI tags cannot hold ``+``, and SemVer identifiers never hold ``_``, so the mapping is
    reversible (``version_of``); Helm uses the same convention.
    """
    tag = version.replace("+", "_")
    if not _TAG.match(tag) or is_referrers_tag(tag):
        raise InvalidReferenceError(
            f"'{version}' cannot be used as a version tag",
            hint="Versions are SemVer 2.0, for example 1.4.2 or 2.0.0-rc.1.",
        )
    return tag


def version_of(tag: str) -> str:
    """The version a tag stands for (the inverse of ``tag_for``)."""
    return tag.replace("_", "+")


def referrers_tag(digest: str) -> str:
    """The fallback tag (``sha256-<hex>``) of the referrers index of ``digest``."""
    return check_digest(digest).replace(":", "-", 1)


def is_referrers_tag(tag: str) -> bool:
    """Whether ``tag`` is a referrers fallback tag rather than a version."""
    return bool(_REFERRERS_TAG.match(tag))


def encode(document: dict[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, no whitespace) so equal builds get equal digests."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """An OCI content descriptor of ``data``."""
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def component_manifest(*, config: bytes, layer: bytes, annotations: dict[str, str]) -> bytes:
    """The image manifest of a component build (config: component manifest; layer: archive)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, layer)],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return encode(manifest)


def artifact_manifest(
    *,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str,
    subject: dict[str, Any],
    annotations: dict[str, str],
) -> bytes:
    """The image manifest of a referrer: empty config, one payload layer, ``subject`` set."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": descriptor(EMPTY_MEDIA_TYPE, EMPTY_CONFIG),
        "layers": [descriptor(payload_media_type, payload)],
        "subject": subject,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return encode(manifest)


def referrer_descriptor(manifest: bytes, document: dict[str, Any]) -> dict[str, Any]:
    """The descriptor a referrers list holds for a referrer manifest."""
    desc = descriptor(MANIFEST_MEDIA_TYPE, manifest, artifactType=document.get("artifactType"))
    if document.get("annotations"):
        desc["annotations"] = dict(document["annotations"])
    return desc


def parse_manifest(data: bytes, digest: str, *, component: str = "") -> dict[str, Any]:
    """Decode verified manifest bytes into a JSON object."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise RegistryError(f"Manifest {digest} is not JSON", component=component) from exc
    if not isinstance(document, dict):
        raise RegistryError(f"Manifest {digest} is not a JSON object", component=component)
    return document
