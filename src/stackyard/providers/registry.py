"""The provider registry: providers discovered through the ``stackyard.providers`` entry points.

Built-in providers are declared in stackyard's own ``pyproject.toml`` exactly like a plugin's,
so discovery has no special case for them; only the *origin* tells them apart
(``stackyard 0.1.0 (built-in)`` versus ``acme-providers 1.2 (plugin)``).

Rules, checked for every provider:

- the entry point must load a ``Provider`` whose ``name`` equals the entry point's name;
- a provider name is lower case (``^[a-z][a-z0-9_-]*$``), without dots;
- every kind name is ``<provider>.<kind>`` and satisfies the ``Kind`` protocol.

A provider that breaks one of those rules, or whose module fails to import, is recorded as
*broken* with the reason, and the rest of the registry still works: listing shows it, and
asking for one of its kinds raises ``ProviderPermanentError`` with the reason. Two providers
(or two kinds) with the same name are refused outright, naming both origins, because either
choice could hand a resource to the wrong code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

from stackyard.errors import ProviderPermanentError
from stackyard.providers.api import Kind, KindConfig, Provider

GROUP = "stackyard.providers"
BUILTIN_DISTRIBUTION = "stackyard"

_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_HINT_CONFLICT = "Uninstall one of the two distributions, or ask its author to rename the provider."


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a provider came from: its distribution, and the entry point's object reference."""

    distribution: str
    version: str
    module: str  # the entry point value, e.g. ``stackyard.providers.random:PROVIDER``
    source: str  # "built-in", "plugin" or "given" (``ProviderRegistry.from_providers``)

    def __str__(self) -> str:
        if self.source == "given":
            return f"{self.module} (given)"
        return f"{self.distribution} {self.version} ({self.source})".replace("  ", " ")


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """One row of ``stackyard providers list``; ``error`` is empty unless the provider is broken."""

    name: str
    version: str
    kinds: tuple[str, ...]
    origin: str
    module: str
    description: str = ""
    error: str = ""

    @property
    def broken(self) -> bool:
        """True when the provider could not be loaded or failed a registry rule."""
        return bool(self.error)

    def to_json(self) -> dict[str, object]:
        """The JSON shape of ``stackyard providers list --output json``."""
        return {
            "name": self.name,
            "version": self.version,
            "kinds": list(self.kinds),
            "origin": self.origin,
            "module": self.module,
            "description": self.description,
            "error": self.error or None,
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    origin: Origin
    provider: Provider | None
    error: str = ""


class ProviderRegistry:
    """The providers known to this process, and the kinds they offer. Immutable once built."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        by_name: dict[str, _Entry] = {}
        kinds: dict[str, tuple[Kind, _Entry]] = {}
        for entry in entries:
            other = by_name.get(entry.name)
            if other is not None:
                raise ProviderPermanentError(
                    f"Two providers are named '{entry.name}': one from {other.origin} "
                    f"({other.origin.module}) and one from {entry.origin} "
                    f"({entry.origin.module})",
                    hint=_HINT_CONFLICT,
                )
            by_name[entry.name] = entry
            if entry.provider is None:
                continue
            for kind in entry.provider.kinds:
                seen = kinds.get(kind.name)
                if seen is not None:
                    raise ProviderPermanentError(
                        f"Kind '{kind.name}' is defined twice: by provider '{seen[1].name}' from "
                        f"{seen[1].origin} ({seen[1].origin.module}) and by provider "
                        f"'{entry.name}' from {entry.origin} ({entry.origin.module})",
                        hint=_HINT_CONFLICT,
                    )
                kinds[kind.name] = (kind, entry)
        self._entries = dict(sorted(by_name.items()))
        self._kinds = kinds

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def discover(cls) -> ProviderRegistry:
        """Load every entry point in ``stackyard.providers``; a failing one becomes *broken*."""
        return cls(_load(ep) for ep in metadata.entry_points(group=GROUP))

    @classmethod
    def from_providers(cls, providers: Iterable[Provider]) -> ProviderRegistry:
        """A registry of the given providers (for tests). A rule violation raises at once."""
        entries = []
        for provider in providers:
            if not isinstance(provider, Provider):
                raise ProviderPermanentError(f"{provider!r} is not a stackyard Provider")
            problem = _check(provider, provider.name)
            if problem:
                raise ProviderPermanentError(f"Provider '{provider.name}' is invalid: {problem}")
            module = type(provider.kinds[0]).__module__ if provider.kinds else provider.name
            entries.append(_Entry(provider.name, Origin("", "", module, "given"), provider))
        return cls(entries)

    # -- queries --------------------------------------------------------------------------

    def providers(self) -> list[ProviderInfo]:
        """Every provider, broken ones included, sorted by name."""
        out = []
        for entry in self._entries.values():
            p = entry.provider
            out.append(
                ProviderInfo(
                    name=entry.name,
                    version=p.version if p else "",
                    kinds=tuple(sorted(k.name for k in p.kinds)) if p else (),
                    origin=str(entry.origin),
                    module=entry.origin.module,
                    description=p.description if p else "",
                    error=entry.error,
                )
            )
        return out

    def kind_names(self) -> list[str]:
        """The names of every kind of every working provider, sorted."""
        return sorted(self._kinds)

    def kind(self, name: str) -> Kind:
        """The kind called ``name`` (``<provider>.<kind>``).

        Raises ``ProviderPermanentError`` when no provider offers it: with the import error when
        its provider is broken, and with a did-you-mean suggestion otherwise.
        """
        return self._lookup(name)[0]

    def provider_of(self, kind_name: str) -> Provider:
        """The provider that offers the kind called ``kind_name``; errors as ``kind``."""
        provider = self._lookup(kind_name)[1].provider
        assert provider is not None  # only working providers' kinds are indexed
        return provider

    def _lookup(self, name: str) -> tuple[Kind, _Entry]:
        found = self._kinds.get(name)
        if found is not None:
            return found
        entry = self._entries.get(name.split(".", 1)[0])
        if entry is not None and entry.error:
            raise ProviderPermanentError(
                f"Kind '{name}' belongs to provider '{entry.name}', which is broken: {entry.error}",
                hint=(
                    f"Fix or reinstall {entry.origin} ({entry.origin.module}); "
                    "'stackyard providers list' shows every provider's status."
                ),
            )
        close = difflib.get_close_matches(name, list(self._kinds), n=1, cutoff=0.6)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        raise ProviderPermanentError(
            f"Unknown resource kind '{name}'.{suggestion}",
            hint="Run 'stackyard providers list' to see every provider and its kinds.",
        )


def _origin(ep: metadata.EntryPoint) -> Origin:
    dist = ep.dist
    if dist is None:
        return Origin("unknown", "", ep.value, "plugin")
    dist_name = dist.name or "unknown"
    builtin = _normalise(dist_name) == BUILTIN_DISTRIBUTION
    return Origin(dist_name, dist.version, ep.value, "built-in" if builtin else "plugin")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _load(ep: metadata.EntryPoint) -> _Entry:
    origin = _origin(ep)
    try:
        obj = ep.load()
    except Exception as exc:  # any import-time failure: the plugin is broken, not the registry
        return _Entry(
            ep.name, origin, None, f"cannot import {ep.value}: {type(exc).__name__}: {exc}"
        )
    if not isinstance(obj, Provider):
        return _Entry(
            ep.name,
            origin,
            None,
            f"{ep.value} is a {type(obj).__name__}, not a stackyard.providers.api.Provider",
        )
    problem = _check(obj, ep.name)
    if problem:
        return _Entry(ep.name, origin, None, problem)
    return _Entry(ep.name, origin, obj)


def _check(provider: Provider, expected_name: str) -> str:
    """The first rule ``provider`` breaks, or ``""``."""
    if provider.name != expected_name:
        return (
            f"the entry point is named '{expected_name}' but its provider is named "
            f"'{provider.name}'; they must match"
        )
    if not _PROVIDER_NAME.match(provider.name):
        return f"provider name '{provider.name}' must match {_PROVIDER_NAME.pattern}"
    seen: set[str] = set()
    for kind in provider.kinds:
        if not isinstance(kind, Kind):
            return f"{kind!r} does not implement the Kind protocol"
        name = str(kind.name)
        if not name.startswith(provider.name + ".") or name == provider.name + ".":
            return f"kind '{name}' must be named '{provider.name}.<kind>'"
        if not (isinstance(kind.config_model, type) and issubclass(kind.config_model, KindConfig)):
            return f"kind '{name}' has a config_model that is not a KindConfig subclass"
        if name in seen:
            return f"kind '{name}' is defined twice"
        seen.add(name)
    return ""
