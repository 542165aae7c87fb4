"""The service layer: operations the CLI (and later the API and portal) call. No rendering here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackyard import library
from stackyard.model.status import AuditResult
from stackyard.settings import Settings

Progress = Callable[[str], None]


@dataclass
class InitResult:
    """What ``stackyard init`` did."""

    home: str
    database: str
    registry: str
    key_id: str
    published: list[dict[str, Any]] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "home": self.home,
            "database": self.database,
            "registry": self.registry,
            "key_id": self.key_id,
            "published": self.published,
            "already_published": self.already,
        }


def init_home(settings: Settings, *, progress: Progress | None = None) -> InitResult:
    """Create the home (state database, local registry, signing key) and publish the built-in
    library through the full pipeline, attested. Idempotent: what exists is kept, and library
    versions already published are skipped."""
    from stackyard.components.catalog import versions
    from stackyard.components.keys import Keyring
    from stackyard.components.pipeline import publish
    from stackyard.components.registry import open_registry
    from stackyard.home import enforce_private
    from stackyard.model.component import load_component
    from stackyard.providers.registry import ProviderRegistry
    from stackyard.state import open_store

    say = progress or (lambda _msg: None)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    enforce_private(settings.home)  # also a home made by hand, or by an older version
    store = open_store(settings)
    try:
        from stackyard.state.governance import Governance

        gov = Governance(store, home=settings.home)
        if gov.bootstrap(settings.actor):
            gov.append(
                actor=settings.actor,
                action="access.manage",
                target=f"user:{settings.actor}",
                result=AuditResult.OK,
                detail={"grant": {"role": "admin", "scope": "org"}, "bootstrap": True},
            )
            say(f"granted admin to {settings.actor} (the first user of this home)")
    finally:
        store.close()
    ring = Keyring(settings.home)
    if not ring.has_signing_key():
        ring.generate()
        say(f"generated signing key {ring.key_id()}")
    registry = open_registry(
        settings.registry, home=settings.home, plain_http=settings.registry_plain_http
    )
    result = InitResult(str(settings.home), store.url, registry.location, ring.key_id())
    kinds = ProviderRegistry.discover()
    try:
        for name in library.names():
            manifest = load_component(library.path(name))
            if manifest.version in versions(registry, manifest.name):
                result.already.append(manifest.ref)
                say(f"{manifest.ref} already published")
                continue
            say(f"publishing {manifest.ref}")
            published = publish(
                library.path(name),
                registry=registry,
                keyring=ring,
                kinds=kinds,
            )
            result.published.append(
                {"name": published.name, "version": published.version, "digest": published.digest}
            )
    finally:
        registry.close()
    return result
