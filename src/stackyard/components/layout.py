"""The local artifact repository: one OCI image layout directory for every component.

The layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) follows the OCI image
layout specification, so ``oras`` and ``skopeo`` can read it. A version is an ``index.json``
entry annotated ``org.opencontainers.image.ref.name: <name>:<version>``. A referrer (an
attestation) is an entry without a ref name, annotated with its subject, so ``referrers``
finds it without opening every manifest.

Crash safety: blobs are written to a temporary file, flushed and renamed into place, and only
then referenced. ``index.json`` is rewritten the same way while an ``fcntl`` lock is held, so
readers (which take no lock) always see a whole index, and two writers never lose an entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stackyard.components.oci import (
    ANNOTATION_REF_NAME,
    EMPTY_CONFIG,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_LAYER_BYTES,
    ImmutableTagError,
    NotFoundError,
    Pushed,
    RegistryError,
    artifact_manifest,
    check_digest,
    check_name,
    component_manifest,
    descriptor,
    digest_of,
    layer_title,
    parse_manifest,
    referrer_descriptor,
    tag_for,
    verify,
)

__all__ = ["LayoutRegistry", "write_atomic"]

#: Index annotations that link a referrer entry to its subject; never shown to callers.
_SUBJECT = "dev.stackyard.subject"
_COMPONENT = "dev.stackyard.component"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LayoutRegistry:
    """An OCI image layout at ``root`` (``$STACKYARD_HOME/registry`` by default).

    Reads take no lock and read files directly; ``index.json`` is parsed again only when the
    file changed (new inode, size or mtime), which keeps a warm pull to a few file reads.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index_key: tuple[int, int, int] | None = None
        self._index: list[dict[str, Any]] = []
        self._refs: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"LayoutRegistry({str(self.root)!r})"

    @property
    def location(self) -> str:
        """Where this registry is, for messages."""
        return str(self.root)

    def close(self) -> None:
        """Nothing to release; present for the ``Registry`` protocol."""

    def __enter__(self) -> LayoutRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of all components with at least one version, sorted."""
        return sorted({ref.partition(":")[0] for ref in self._load()[1]})

    def tags(self, name: str) -> list[str]:
        """The published versions of ``name`` (empty when it has none), in push order."""
        prefix = check_name(name) + ":"
        return [ref[len(prefix) :] for ref in self._load()[1] if ref.startswith(prefix)]

    def resolve(self, name: str, version: str) -> str:
        """The manifest digest of ``name@version``; ``NotFoundError`` when not published."""
        tag_for(version)
        digest = self._load()[1].get(f"{check_name(name)}:{version}")
        if digest is None:
            raise NotFoundError(
                f"{name}@{version} is not in the registry at {self.root}",
                component=name,
                registry=self.location,
                hint="Check the component name and version; only published versions can be pulled.",
            )
        return digest

    def manifest(self, name: str, reference: str) -> tuple[str, dict[str, Any]]:
        """The manifest of ``name`` at a version or digest, verified against its digest."""
        digest = reference if reference.startswith("sha256:") else self.resolve(name, reference)
        data = self.blob(name, digest)
        return digest, parse_manifest(data, digest, component=name)

    def blob(self, name: str, digest: str) -> bytes:
        """The blob ``digest``, verified; ``DigestMismatchError`` when it was tampered with.

        A file larger than any blob of a build (``MAX_LAYER_BYTES``) is refused unread.
        """
        path = self._blob_path(digest)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_LAYER_BYTES + 1)
        except FileNotFoundError:
            raise NotFoundError(
                f"Blob {digest} of {name} is missing from the registry at {self.root}",
                component=name,
                registry=self.location,
                hint="The layout is incomplete. Publish the component again.",
            ) from None
        if len(data) > MAX_LAYER_BYTES:
            raise RegistryError(
                f"Blob {digest} of {name} in {self.root} is larger than {MAX_LAYER_BYTES} "
                "bytes; refused unread",
                component=name,
                registry=self.location,
                hint="Nothing a component build holds is that large. Check what the tag points at.",
            )
        return verify(data, digest, component=name, registry=self.location)

    def referrers(
        self, name: str, digest: str, artifact_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``."""
        check_digest(digest)
        found = []
        for entry in self._load()[0]:
            notes = entry.get("annotations") or {}
            if notes.get(_SUBJECT) != digest:
                continue
            if artifact_type is not None and entry.get("artifactType") != artifact_type:
                continue
            desc = {k: v for k, v in entry.items() if k != "annotations"}
            shown = {k: v for k, v in notes.items() if k not in (_SUBJECT, _COMPONENT)}
            if shown:
                desc["annotations"] = shown
            found.append(desc)
        return found

    # -- writes -----------------------------------------------------------------------------

    def push(
        self, *, name: str, version: str, config: bytes, layer: bytes, annotations: dict[str, str]
    ) -> Pushed:
        """Publish ``name@version``. ``ImmutableTagError`` if that version holds other content.

        Pushing the very same build again is a no-op, so a push interrupted by a crash can
        simply be repeated.
        """
        check_name(name)
        tag_for(version)
        manifest = component_manifest(
            config=config, layer=layer, annotations=annotations, title=layer_title(name, version)
        )
        digest = digest_of(manifest)
        ref = f"{name}:{version}"
        self._refuse_overwrite(ref, digest)
        for data in (config, layer, manifest):
            self._put_blob(data)
        entry = descriptor(MANIFEST_MEDIA_TYPE, manifest)
        entry["artifactType"] = json.loads(manifest)["artifactType"]
        entry["annotations"] = {ANNOTATION_REF_NAME: ref}
        with self._locked_index() as index:
            self._refuse_overwrite(ref, digest, index)
            if not any(_ref(e) == ref for e in index):
                index.append(entry)
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
        """Attach an artifact to the manifest ``subject_digest``; returns its manifest digest."""
        check_name(name)
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
        if not self._blob_path(subject_digest).exists():
            raise NotFoundError(
                f"Cannot attach to {subject_digest}: no such manifest of {name} at {self.root}",
                component=name,
                registry=self.location,
            )
        for data in (EMPTY_CONFIG, payload, manifest):
            self._put_blob(data)
        entry = referrer_descriptor(manifest, json.loads(manifest))
        entry["annotations"] = {
            **entry.get("annotations", {}),
            _SUBJECT: subject_digest,
            _COMPONENT: name,
        }
        with self._locked_index() as index:
            if not any(e.get("digest") == entry["digest"] for e in index):
                index.append(entry)
        return str(entry["digest"])

    # -- internals --------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest)[len("sha256:") :]

    def _refuse_overwrite(
        self, ref: str, digest: str, index: list[dict[str, Any]] | None = None
    ) -> None:
        current = (
            self._load()[1].get(ref)
            if index is None
            else next((e.get("digest") for e in index if _ref(e) == ref), None)
        )
        if current is not None and current != digest:
            name, _, version = ref.partition(":")
            raise ImmutableTagError(
                f"{name}@{version} is already published (manifest {current})",
                component=name,
                registry=self.location,
                hint="A published version never changes. Bump the version and publish again.",
            )

    def _put_blob(self, data: bytes) -> None:
        digest = digest_of(data)
        path = self._blob_path(digest)
        # A blob already there is reused only if intact, so a push also repairs a damaged one.
        with contextlib.suppress(FileNotFoundError):
            if digest_of(path.read_bytes()) == digest:
                return
        self._init()
        write_atomic(path, data)

    def _init(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (self.root / "oci-layout").exists():
            write_atomic(self.root / "oci-layout", _LAYOUT)

    def _load(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The index entries and the ``ref name → digest`` map, re-read only on change."""
        path = self.root / "index.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return [], {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._index_key:
            document = _read_index(path)
            manifests = list(document.get("manifests") or [])
            self._refs = {ref: str(e["digest"]) for e in manifests if (ref := _ref(e))}
            self._index, self._index_key = manifests, key
        return self._index, self._refs

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[list[dict[str, Any]]]:
        """Yield the current index entries under the write lock; write them back on success."""
        self._init()
        with open(self.root / ".index.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.root / "index.json"
            document = _read_index(path) if path.exists() else {}
            manifests = list(document.get("manifests") or [])
            before = len(manifests)
            yield manifests
            if len(manifests) != before:
                document.update(schemaVersion=2, mediaType=INDEX_MEDIA_TYPE, manifests=manifests)
                write_atomic(
                    path, json.dumps(document, separators=(",", ":")).encode()
                )  # C encoder


def _ref(entry: dict[str, Any]) -> str | None:
    ref = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    return ref if isinstance(ref, str) and ":" in ref else None


def _read_index(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except ValueError as exc:
        raise RegistryError(
            f"{path} is not valid JSON",
            registry=str(path.parent),
            hint="Restore the file from a backup; the blobs themselves are intact.",
        ) from exc
    if not isinstance(document, dict):
        raise RegistryError(f"{path} is not an OCI image index", registry=str(path.parent))
    return document
