"""What the engine needs from the provider registry: kinds by name, and their provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stackyard.errors import ProviderError
from stackyard.providers.api import Kind, NamingRule, Provider


class Kinds(Protocol):
    """A kind lookup (implemented by ``providers.registry.ProviderRegistry``)."""

    def kind(self, name: str) -> Kind:
        """The kind called ``name``; raises ``ProviderPermanentError`` when unknown."""
        ...

    def provider_of(self, kind_name: str) -> Provider:
        """The provider that offers ``kind_name``."""
        ...


def naming_lookup(kinds: Kinds) -> Callable[[str], NamingRule | None]:
    """``naming_for`` for ``resolve.graph.expand``: a kind's naming rule, or None if unknown."""

    def naming_for(kind_name: str) -> NamingRule | None:
        try:
            return kinds.kind(kind_name).naming
        except ProviderError:
            return None

    return naming_for
