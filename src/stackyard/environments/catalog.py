"""The component catalog of one workspace: published builds, read through a cache (a published
build is immutable), and what the policies know of each (lifecycle, deprecation, attestation)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.components.checked import CheckedBuilds
from stackyard.model.component import ComponentManifest, manifest_from_data

if TYPE_CHECKING:
    from stackyard.components.keys import Keyring
    from stackyard.components.registry import Registry


class Catalog:
    """Reads ``registry``; attestations are verified with the keyring under ``home``.

    Resolution fetches builds from several threads: the caches are guarded by a lock.
    """

    def __init__(self, registry: Registry, *, home: Path) -> None:
        self.registry = registry
        self._home = home
        self._lock = threading.Lock()
        self._versions: dict[str, list[str]] = {}
        self._manifests: dict[tuple[str, str], tuple[ComponentManifest, str]] = {}
        self._facts: dict[tuple[str, str], dict[str, Any]] = {}
        self._checked = CheckedBuilds(home)  # schema checks passed by earlier commands

    @property
    def keyring(self) -> Keyring:
        """The home's keyring: the keys whose attestations are trusted."""
        from stackyard.components.keys import Keyring

        return Keyring(self._home)

    def versions(self, name: str) -> list[str]:
        """Published versions of a component (cached for the workspace's life)."""
        from stackyard.components.catalog import versions

        with self._lock:
            cached = self._versions.get(name)
        if cached is None:
            cached = versions(self.registry, name)
            with self._lock:
                self._versions[name] = cached
        return cached

    def manifest(self, name: str, version: str) -> tuple[ComponentManifest, str]:
        """A published component build's manifest and digest (cached: builds are immutable)."""
        from stackyard.components.catalog import config

        key = (name, version)
        with self._lock:
            hit = self._manifests.get(key)
        if hit is None:
            digest, _, doc = config(self.registry, name, version, checked=self._checked)
            hit = (manifest_from_data(doc), digest)
            with self._lock:
                self._manifests[key] = hit
        return hit

    def facts(self, name: str, version: str, digest: str) -> dict[str, Any]:
        """Lifecycle, deprecation and attestation of a published build (cached), as the
        policies see them (``release.lock`` and ``attestations`` of DESIGN §6)."""
        from stackyard.components import catalog
        from stackyard.components.attest import AttestationError
        from stackyard.errors import StackyardError

        key = (name, version)
        with self._lock:
            hit = self._facts.get(key)
        if hit is not None:
            return hit
        manifest, _ = self.manifest(name, version)
        try:
            notice = catalog.deprecation(self.registry, name, version)
        except StackyardError:
            notice = None
        try:
            catalog.verify(self.registry, self.keyring, name, version)
            verified, reason = True, "signature verified by a trusted key"
        except AttestationError as exc:
            verified, reason = False, exc.message
        except StackyardError as exc:
            verified, reason = False, exc.message
        facts = {
            "component": name,
            "version": version,
            "digest": digest,
            "lifecycle": manifest.lifecycle,
            "deprecated": notice is not None,
            "deprecation": (notice or {}).get("reason"),
            "owner": manifest.owner,
            "verified": verified,
            "attestation": reason,
        }
        with self._lock:  # a racing thread computes the same facts: harmless
            self._facts[key] = facts
        return facts
