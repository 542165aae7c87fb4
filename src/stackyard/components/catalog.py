"""Catalog reads over a registry: list, show, pull and verify published component builds."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackyard.components import attest
from stackyard.components.keys import Keyring
from stackyard.components.package import check_destination, unpack
from stackyard.components.registry import Registry
from stackyard.errors import StackyardError
from stackyard.resolve.versions import Version


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of ``component list``."""

    name: str
    latest: str
    owner: str
    lifecycle: str
    provides: str
    sla: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "latest": self.latest,
            "owner": self.owner,
            "lifecycle": self.lifecycle,
            "provides": self.provides,
            "sla": self.sla,
        }


def versions(registry: Registry, name: str) -> list[str]:
    """Published versions of ``name``, lowest first (non-version tags are skipped)."""
    parsed = []
    for tag in registry.tags(name):
        try:
            parsed.append(Version.parse(tag))
        except ValueError:
            continue
    return [str(v) for v in sorted(parsed)]


def config(
    registry: Registry, name: str, version: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(manifest digest, OCI manifest, component manifest document)`` of ``name@version``."""
    digest, manifest = registry.manifest(name, version)
    doc = json.loads(registry.blob(name, manifest["config"]["digest"]))
    return digest, manifest, doc


def entries(registry: Registry) -> list[Entry]:
    """Every published component at its latest version."""
    out: list[Entry] = []
    for name in sorted(registry.names()):
        vs = versions(registry, name)
        if not vs:
            continue
        _, _, doc = config(registry, name, vs[-1])
        meta, spec = doc.get("metadata", {}), doc.get("spec", {})
        out.append(
            Entry(
                name=name,
                latest=vs[-1],
                owner=str(meta.get("owner", "")),
                lifecycle=str(meta.get("lifecycle", "")),
                provides=str(spec.get("provides", {}).get("type", "")),
                sla=dict(spec.get("sla", {})),
            )
        )
    return out


def verify(registry: Registry, ring: Keyring, name: str, version: str) -> attest.Statement:
    """Verify ``name@version``'s attestation; raises an ``AttestationError`` when it fails."""
    digest = registry.resolve(name, version)
    found = registry.referrers(name, digest, attest.ARTIFACT_TYPE)
    if not found:
        raise attest.MissingAttestationError(f"{name}@{version}", digest=digest)
    trusted = [key for _, key in ring.trusted()]
    last: StackyardError | None = None
    for descriptor in found:
        _, art = registry.manifest(name, descriptor["digest"])
        payload = registry.blob(name, art["layers"][0]["digest"])
        try:
            return attest.verify(
                payload, trusted, expect_digest=digest, expect_name=name, expect_version=version
            )
        except attest.AttestationError as exc:
            last = exc
    assert last is not None
    raise last


def details(registry: Registry, ring: Keyring, name: str, version: str | None) -> dict[str, Any]:
    """Everything ``component show`` prints."""
    vs = versions(registry, name)
    if not vs:
        from stackyard.components.registry import NotFoundError

        raise NotFoundError(
            f"No published component '{name}' in {registry.location}",
            component=name,
            registry=registry.location,
        )
    chosen = version or vs[-1]
    digest, manifest, doc = config(registry, name, chosen)
    meta, spec = doc.get("metadata", {}), doc.get("spec", {})
    archive = registry.blob(name, manifest["layers"][0]["digest"])
    try:
        verify(registry, ring, name, chosen)
        status = "verified"
    except attest.AttestationError as exc:
        status = f"not verified: {exc.message}"
    outputs = spec.get("outputs", {})
    return {
        "name": name,
        "version": chosen,
        "digest": digest,
        "archive_digest": manifest["layers"][0]["digest"],
        "description": str(meta.get("description", "")),
        "owner": str(meta.get("owner", "")),
        "lifecycle": str(meta.get("lifecycle", "")),
        "provides": str(spec.get("provides", {}).get("type", "")),
        "sla": spec.get("sla", {}),
        "versions": vs,
        "inputs": sorted(spec.get("inputs", {}).get("properties", {})),
        "outputs": sorted(outputs),
        "secret_outputs": sorted(
            k for k, v in outputs.items() if isinstance(v, dict) and v.get("secret")
        ),
        "cost": spec.get("cost"),
        "attestation": status,
        "deprecated": deprecation(registry, name, chosen),
        "readme": _readme(archive),
    }


def pull(registry: Registry, name: str, version: str, dest: Path) -> tuple[str, list[str]]:
    """Download ``name@version`` (digests verified) and unpack it safely into ``dest``."""
    check_destination(dest)
    digest, manifest = registry.manifest(name, version)
    archive = registry.blob(name, manifest["layers"][0]["digest"])
    return digest, unpack(archive, dest)


def _readme(archive: bytes) -> str:
    # The archive's digest was verified on pull; README.md is read without extracting anything.
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        try:
            member = tar.getmember("README.md")
        except KeyError:
            return ""
        fh = tar.extractfile(member)
        return fh.read(1024 * 1024).decode("utf-8", "replace") if fh else ""


DEPRECATION_TYPE = "application/vnd.stackyard.deprecation.v1"
DEPRECATION_MEDIA_TYPE = "application/vnd.stackyard.deprecation.v1+json"


def deprecate(registry: Registry, name: str, version: str, *, reason: str, actor: str) -> str:
    """Mark ``name@version`` deprecated. Published builds are immutable, so the notice is a
    referrer attached to the build; returns its digest."""
    digest, manifest = registry.manifest(name, version)
    from datetime import UTC, datetime

    notice = json.dumps(
        {
            "component": name,
            "version": version,
            "reason": reason,
            "by": actor,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        sort_keys=True,
    ).encode()
    size = len(json.dumps(manifest, separators=(",", ":")).encode())
    return registry.push_referrer(
        name=name,
        subject_digest=digest,
        subject_size=size,
        artifact_type=DEPRECATION_TYPE,
        payload=notice,
        payload_media_type=DEPRECATION_MEDIA_TYPE,
        annotations={},
    )


def deprecation(registry: Registry, name: str, version: str) -> dict[str, Any] | None:
    """The deprecation notice of ``name@version``, if any (the newest one)."""
    digest = registry.resolve(name, version)
    notices = []
    for descriptor in registry.referrers(name, digest, DEPRECATION_TYPE):
        _, art = registry.manifest(name, descriptor["digest"])
        notices.append(json.loads(registry.blob(name, art["layers"][0]["digest"])))
    return max(notices, key=lambda n: str(n.get("at", "")), default=None)
