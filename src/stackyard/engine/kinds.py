"""What the engine needs from the provider registry: kinds by name, and their provider."""

from __future__ import annotations

from typing import Protocol

from stackyard.providers.api import Kind, Provider


class Kinds(Protocol):
    """A kind lookup (implemented by ``providers.registry.ProviderRegistry``)."""

    def kind(self, name: str) -> Kind:
        """The kind called ``name``; raises ``ProviderPermanentError`` when unknown."""
        ...

    def provider_of(self, kind_name: str) -> Provider:
        """The provider that offers ``kind_name``."""
        ...
