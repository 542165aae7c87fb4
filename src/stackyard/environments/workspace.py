"""The workspace: what every environment operation works with, opened once per command.

It bundles the settings, the state store and its records, the component registry (read
through a per-workspace cache, since published builds are immutable), the provider kinds,
the applied platform configuration and the local runtime of each environment.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from stackyard.environments.platform import Platform, stored_platform
from stackyard.errors import InvalidInputError
from stackyard.model.component import ComponentManifest, manifest_from_data
from stackyard.model.environment import Environment
from stackyard.settings import Settings

if TYPE_CHECKING:
    from stackyard.components.registry import Registry
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.runtime.local import LocalRuntime
    from stackyard.state.records import Records
    from stackyard.state.sql import SqlStateStore


class Workspace:
    """Opened with ``Workspace.open(settings)``; close it (or use ``with``)."""

    def __init__(
        self,
        settings: Settings,
        store: SqlStateStore,
        registry: Registry,
        kinds: ProviderRegistry,
    ) -> None:
        from stackyard.state.records import Records

        self.settings = settings
        self.store = store
        self.records: Records = Records(store)
        self.registry = registry
        self.kinds = kinds
        self._manifests: dict[tuple[str, str], tuple[ComponentManifest, str]] = {}
        self._versions: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        """Open the store, the registry and the provider kinds named by ``settings``."""
        from stackyard.components.registry import open_registry
        from stackyard.providers.registry import ProviderRegistry
        from stackyard.state import open_store

        if not (settings.home / "state.db").exists() and settings.database_url.startswith("sqlite"):
            raise InvalidInputError(
                f"No stackyard home at {settings.home}",
                hint="Run 'stackyard init' (or 'stackyard quickstart') first.",
            )
        store = open_store(settings)
        try:
            registry = open_registry(settings.registry, home=settings.home)
        except BaseException:
            store.close()
            raise
        return cls(settings, store, registry, ProviderRegistry.discover())

    def close(self) -> None:
        """Release the store and the registry."""
        try:
            self.registry.close()
        finally:
            self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- platform and environments --------------------------------------------------------

    def platform(self) -> Platform:
        """The applied platform configuration."""
        return stored_platform(self.records.documents())

    def environment(self, name: str) -> Environment:
        """A live (or declared) environment, or ``InvalidInputError`` with the known names."""
        env = self.records.environment(name)
        if env is None or env.status == "destroyed":
            names = [e.name for e in self.records.environments()]
            raise InvalidInputError(
                f"No environment '{name}'",
                hint=f"Known environments: {', '.join(names) or 'none'}. Create one with 'stackyard env create'.",
            )
        return env

    def chain(self, env: Environment) -> list[Environment]:
        """``env`` and its ancestors, nearest first."""
        out = [env]
        seen = {env.name}
        while out[-1].parent:
            parent = self.records.environment(out[-1].parent)
            if parent is None or parent.name in seen:
                break
            seen.add(parent.name)
            out.append(parent)
        return out

    def env_dir(self, env: str) -> Path:
        """The environment's folder under the home (runtime files, logs)."""
        return self.settings.home / "envs" / env

    def runtime(self, env: str) -> LocalRuntime:
        """The environment's local runtime."""
        from stackyard.runtime.local import LocalRuntime

        return LocalRuntime(self.env_dir(env) / "workloads")

    # -- components -----------------------------------------------------------------------

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
            digest, _, doc = config(self.registry, name, version)
            hit = (manifest_from_data(doc), digest)
            with self._lock:
                self._manifests[key] = hit
        return hit
