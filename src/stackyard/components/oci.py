"""OCI vocabulary for component builds: media types, digests, manifests and registry errors.

A component build is an OCI image manifest with ``artifactType``
``application/vnd.stackyard.component.v1``: its config blob is the component manifest as JSON
and its one layer is the archive. An attestation is a second manifest whose ``subject`` points
at the build (an OCI referrer). Both backends (``layout``, ``remote``) build manifests here,
so a build pushed to either has the same bytes and the same digest.

A registry holds other things too (images, SBOMs, signatures), and a tag is only a name:
``check_build`` refuses a manifest that is not a component build, and ``check_config``
one whose component manifest names another component or version than its tag. Every size a
manifest claims is bounded before anything is fetched (``MAX_*_BYTES``).

The error tree (all under ``StackyardError``)::

    RegistryError               a registry operation failed (.component, .registry)
    ├── InvalidReferenceError   a bad registry reference, component name or version
    ├── NotFoundError           no such component, version, manifest or blob
    ├── ImmutableTagError       the version is already published (versions are immutable)
    ├── DigestMismatchError     content does not hash to its digest (.digest, .actual)
    ├── NotAComponentError      the artifact is not a stackyard component build (.reference)
    ├── TagMismatchError        the tag names another build than the one inside (.tag, .actual)
    ├── RegistryAuthError       the registry refused our credentials (never shown)
    └── RegistryUnavailableError the registry cannot be reached or answered badly
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from stackyard.canonical import canonical_bytes
from stackyard.canonical import sha256_digest as digest_of  # the OCI name for it
from stackyard.errors import StackyardError

__all__ = [
    "ANNOTATION_CREATED",
    "ANNOTATION_LIFECYCLE",
    "ANNOTATION_OWNER",
    "ANNOTATION_REF_NAME",
    "ANNOTATION_SOURCE",
    "ANNOTATION_TITLE",
    "ANNOTATION_VERSION",
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "EMPTY_CONFIG",
    "EMPTY_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_CONFIG_BYTES",
    "MAX_LAYER_BYTES",
    "MAX_MANIFEST_BYTES",
    "DigestMismatchError",
    "ImmutableTagError",
    "InvalidReferenceError",
    "NotAComponentError",
    "NotFoundError",
    "Pushed",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailableError",
    "TagMismatchError",
    "artifact_manifest",
    "check_build",
    "check_config",
    "check_digest",
    "check_name",
    "component_manifest",
    "descriptor",
    "digest_of",
    "encode",
    "is_referrers_tag",
    "layer_title",
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
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_OWNER = "dev.stackyard.owner"
ANNOTATION_LIFECYCLE = "dev.stackyard.lifecycle"

#: A manifest is a few hundred bytes; 4 MiB is the limit registries themselves apply.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: The component manifest as JSON (``component.yaml`` is at most 1 MiB as a packaged file).
MAX_CONFIG_BYTES = 1024 * 1024
#: The compressed archive: its files are at most 10 MiB uncompressed (``package``), and
#: gzip never grows data by more than a fraction of a percent.
MAX_LAYER_BYTES = 16 * 1024 * 1024

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REFERRERS_TAG = re.compile(r"^sha256-[0-9a-f]{64}$")


class RegistryError(StackyardError):
    """A registry operation failed. ``component`` and ``registry`` name the subject."""

    exit_code = 7

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

    exit_code = 2


class ImmutableTagError(RegistryError):
    """The version is already published; a published version never changes."""

    exit_code = 2


class DigestMismatchError(RegistryError):
    """Content does not hash to the digest it was fetched by; it was refused (a failed
    verification, like a bad signature)."""

    exit_code = 8

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


class NotAComponentError(RegistryError):
    """The artifact at a reference is not a stackyard component build (another tool's
    artifact, a container image, an index, a foreign config): it is never read further."""

    exit_code = 2

    def __init__(
        self, reference: str, what: str, *, component: str = "", registry: str = ""
    ) -> None:
        super().__init__(
            f"{reference} is not a stackyard component: it is {what}",
            component=component,
            registry=registry,
            hint=(
                "Another tool pushed this tag under the component's name. Remove or move that "
                "tag in the registry, and publish components with 'stackyard component publish'."
            ),
        )
        self.reference = reference


class TagMismatchError(RegistryError):
    """A tag points at the build of another version (or component) than the tag says."""

    exit_code = 2

    def __init__(
        self, reference: str, actual: str, *, component: str = "", registry: str = ""
    ) -> None:
        super().__init__(
            f"{reference} holds the build of {actual}: the tag does not agree with the "
            "version inside the build",
            component=component,
            registry=registry,
            hint=(
                "Someone re-tagged a build by hand. Use the version the build says it is, and "
                "remove the wrong tag from the registry; publish new versions with "
                "'stackyard component publish'."
            ),
        )
        self.reference = reference
        self.tag = reference.rpartition("@")[2]
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
    return canonical_bytes(document)


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """An OCI content descriptor of ``data``."""
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def layer_title(name: str, version: str) -> str:
    """The file name of a build's archive (``org.opencontainers.image.title`` of its layer:
    what ``oras pull`` saves it as)."""
    return f"{name}-{version}.tar.gz"


def component_manifest(
    *, config: bytes, layer: bytes, annotations: dict[str, str], title: str
) -> bytes:
    """The image manifest of a component build (config: component manifest; layer: archive,
    titled ``title``)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, layer, annotations={ANNOTATION_TITLE: title})],
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
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting past any real manifest
        raise RegistryError(f"Manifest {digest} is not JSON", component=component) from exc
    if not isinstance(document, dict):
        raise RegistryError(f"Manifest {digest} is not a JSON object", component=component)
    return document


def check_build(
    document: dict[str, Any], *, reference: str, component: str = "", registry: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config and layer descriptors of a component build's manifest, checked.

    ``NotAComponentError`` (saying what the artifact is instead) unless the manifest is an
    image manifest of ``ARTIFACT_TYPE`` whose config is ``CONFIG_MEDIA_TYPE`` and whose one
    layer is ``LAYER_MEDIA_TYPE``, each with a sha256 digest and a size within bounds. Does
    no I/O: it runs before any blob is fetched.
    """
    what = _foreign(document)
    if what:
        raise NotAComponentError(reference, what, component=component, registry=registry)
    config, (layer,) = document["config"], document["layers"]
    for desc, limit, role in (
        (config, MAX_CONFIG_BYTES, "config"),
        (layer, MAX_LAYER_BYTES, "layer"),
    ):
        size, digest = desc.get("size"), desc.get("digest")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise NotAComponentError(
                reference,
                f"a build whose {role} has no sha256 digest",
                component=component,
                registry=registry,
            )
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
            raise NotAComponentError(
                reference,
                f"a build whose {role} claims {size!r} bytes (at most {limit} are read)",
                component=component,
                registry=registry,
            )
    return config, layer


def check_config(
    document: object,
    *,
    name: str,
    version: str | None,
    reference: str,
    registry: str = "",
) -> dict[str, Any]:
    """The component manifest (config blob, parsed) of ``reference``, checked against its tag.

    ``NotAComponentError`` unless it is an object with ``metadata.name`` and
    ``metadata.version``; ``TagMismatchError`` unless they are ``name`` and ``version`` (the
    version a tag stands for; None when the build was asked for by digest).
    """
    meta = document.get("metadata") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(meta, dict):
        raise NotAComponentError(
            reference,
            "a build whose config holds no component manifest",
            component=name,
            registry=registry,
        )
    inside = (meta.get("name"), meta.get("version"))
    if not all(isinstance(x, str) and x for x in inside):
        raise NotAComponentError(
            reference,
            "a build whose component manifest has no metadata.name and metadata.version",
            component=name,
            registry=registry,
        )
    if inside[0] != name or (version is not None and inside[1] != version):
        raise TagMismatchError(
            reference, f"{inside[0]}@{inside[1]}", component=name, registry=registry
        )
    return document


def _foreign(document: dict[str, Any]) -> str:
    """What a manifest is when it is not a component build ("" when it is one)."""
    media_type = document.get("mediaType")
    if media_type == INDEX_MEDIA_TYPE or "manifests" in document:
        return "an image index (a multi-platform image or a list of artifacts)"
    if media_type not in (None, MANIFEST_MEDIA_TYPE):
        return f"a manifest of media type {media_type!r}"
    config = document.get("config")
    layers = document.get("layers")
    artifact = document.get("artifactType")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    if artifact != ARTIFACT_TYPE:
        if artifact:
            return f"an artifact of type {artifact!r}"
        if isinstance(config_type, str) and config_type != EMPTY_MEDIA_TYPE:
            if config_type in _IMAGE_CONFIGS:
                return "a container image"
            return f"an artifact whose config is {config_type!r}"
        return "an artifact that is not a component build"
    if config_type != CONFIG_MEDIA_TYPE:
        return f"an artifact typed as a build, whose config is {config_type!r}, not a component manifest"
    if not isinstance(layers, list) or len(layers) != 1:
        count = len(layers) if isinstance(layers, list) else 0
        return f"an artifact typed as a build, with {count} layers (a build has exactly one)"
    layer_type = layers[0].get("mediaType") if isinstance(layers[0], dict) else None
    if layer_type != LAYER_MEDIA_TYPE:
        return (
            f"an artifact typed as a build, whose layer is {layer_type!r}, not a component archive"
        )
    return ""


_IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
