"""The provider registry: providers discovered through the ``stackyard.providers`` entry points.

Built-in providers are declared in stackyard's own ``pyproject.toml`` exactly like a plugin's,
so discovery has no special case for them; only the *origin* tells them apart
(``stackyard 0.1.0 (built-in)`` versus ``acme-providers 1.2 (plugin)``).

Rules, checked for every provider:

- the entry point must load a ``Provider`` whose ``name`` equals the entry point's name;
- a provider name is lower case (``^[a-z][a-z0-9_-]*$``), without dots;
- every kind name is ``<provider>.<kind>`` and satisfies the ``Kind`` protocol.

So the entry point's name is the prefix of every kind its provider offers, and a kind's name
says which entry point to load: the registry imports a provider's module only when one of its
kinds is first asked for (a deploy imports the providers its plan touches, ``--help`` none),
and only listing imports them all. A provider that breaks one of those rules, or whose
module fails to import, is recorded as *broken* with the reason when it is loaded, and the
rest of the registry still works: listing shows it, and asking for one of its kinds raises
``ProviderPermanentError`` with the reason. Two providers with the same name are refused
outright at discovery (from metadata), naming both origins, because either choice could hand
a resource to the wrong code; the prefix rule makes two kinds with one name impossible.
"""

from __future__ import annotations

import difflib
import re
import threading
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


class _Slot:
    """One provider name: a loaded entry (given), or an entry point imported on first use."""

    __slots__ = ("_entry", "_ep", "name")

    def __init__(
        self, name: str, *, ep: metadata.EntryPoint | None = None, entry: _Entry | None = None
    ) -> None:
        self.name = name
        self._ep = ep
        self._entry = entry

    @property
    def origin(self) -> Origin:
        """Where it comes from, read from the distribution's metadata (no import)."""
        if self._entry is not None:
            return self._entry.origin
        assert self._ep is not None
        return _origin(self._ep)

    @property
    def loaded(self) -> _Entry | None:
        """The entry, if it has been loaded."""
        return self._entry

    def import_entry(self) -> _Entry:
        """Import the provider's module; a failure makes the entry *broken*. Not kept: the
        registry publishes it (``publish``) once its kinds are indexed."""
        assert self._ep is not None
        return _load(self._ep)

    def publish(self, entry: _Entry) -> None:
        """From now on ``loaded`` answers ``entry`` (lock-free readers rely on this order)."""
        self._entry = entry


#: The provider entry points, read once by ``warm_entry_points`` (the command server, before
#: it forks its children); empty: ``discover`` reads them every time.
_WARM: list[tuple[metadata.EntryPoint, ...]] = []
#: Their origins (each reads its distribution's metadata file), by the ``id`` of a warmed
#: entry point (``_WARM`` keeps them alive, so an id is never reused while it is here).
_WARM_ORIGINS: dict[int, Origin] = {}


def warm_entry_points() -> None:
    """Read the ``stackyard.providers`` entry points now, for every later ``discover`` of this
    process and of the processes it forks: reading every installed distribution's metadata
    takes about 15 ms, and each provider's origin (its distribution's name and version) a few
    more. Only for a process whose installed packages cannot change under it
    (the command server is keyed by them and replaced when they change)."""
    eps = tuple(metadata.entry_points(group=GROUP))
    _WARM_ORIGINS.clear()
    for ep in eps:
        _WARM_ORIGINS[id(ep)] = _read_origin(ep)
    _WARM[:] = [eps]


class ProviderRegistry:
    """The providers known to this process, and the kinds they offer.

    Discovery reads the entry points' metadata only. A provider's module is imported the
    first time one of its kinds is asked for: the entry point's name is the provider's name,
    and every kind's name starts with it (``postgres.role`` belongs to the ``postgres`` entry
    point), so a lookup imports exactly one provider. The same rule keeps kind names unique
    across providers. Listing (``providers``, ``kind_names``) and the did-you-mean of an
    unknown kind import every provider. Safe to share between threads.
    """

    def __init__(self, slots: Iterable[_Slot]) -> None:
        by_name: dict[str, _Slot] = {}
        for slot in slots:
            other = by_name.get(slot.name)
            if other is not None:
                first, second = other.origin, slot.origin
                raise ProviderPermanentError(
                    f"Two providers are named '{slot.name}': one from {first} "
                    f"({first.module}) and one from {second} ({second.module})",
                    hint=_HINT_CONFLICT,
                )
            by_name[slot.name] = slot
        self._slots = dict(sorted(by_name.items()))
        self._kinds: dict[str, tuple[Kind, _Entry]] = {}
        self._lock = threading.Lock()
        for slot in self._slots.values():
            if slot.loaded is not None:
                self._index(slot.loaded)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def discover(cls) -> ProviderRegistry:
        """The entry points in ``stackyard.providers``, none imported yet.

        Two entry points with the same name are refused here, from metadata alone; a provider
        that fails to import (or breaks a rule) becomes *broken* when it is first loaded.
        """
        found = _WARM[0] if _WARM else metadata.entry_points(group=GROUP)
        return cls(_Slot(ep.name, ep=ep) for ep in found)

    @classmethod
    def from_providers(cls, providers: Iterable[Provider]) -> ProviderRegistry:
        """A registry of the given providers (for tests). A rule violation raises at once."""
        slots = []
        for provider in providers:
            if not isinstance(provider, Provider):
                raise ProviderPermanentError(f"{provider!r} is not a stackyard Provider")
            problem = _check(provider, provider.name)
            if problem:
                raise ProviderPermanentError(f"Provider '{provider.name}' is invalid: {problem}")
            module = type(provider.kinds[0]).__module__ if provider.kinds else provider.name
            entry = _Entry(provider.name, Origin("", "", module, "given"), provider)
            slots.append(_Slot(provider.name, entry=entry))
        return cls(slots)

    # -- queries --------------------------------------------------------------------------

    def providers(self) -> list[ProviderInfo]:
        """Every provider, broken ones included, sorted by name (imports every provider)."""
        out = []
        for slot in self._slots.values():
            entry = self._loaded(slot)
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
        """The names of every kind of every working provider, sorted (imports every provider)."""
        for slot in self._slots.values():
            self._loaded(slot)
        return sorted(self._kinds)

    def kind(self, name: str) -> Kind:
        """The kind called ``name`` (``<provider>.<kind>``), importing its provider if need be.

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
        slot = self._slots.get(name.split(".", 1)[0])
        if slot is not None:
            entry = self._loaded(slot)
            if entry.error:
                raise ProviderPermanentError(
                    f"Kind '{name}' belongs to provider '{entry.name}', which is broken: "
                    f"{entry.error}",
                    hint=(
                        f"Fix or reinstall {entry.origin} ({entry.origin.module}); "
                        "'stackyard providers list' shows every provider's status."
                    ),
                )
            found = self._kinds.get(name)
            if found is not None:
                return found
        close = difflib.get_close_matches(name, self.kind_names(), n=1, cutoff=0.6)
        suggestion = f" Did you mean '{close[0]}'?" if close else ""
        raise ProviderPermanentError(
            f"Unknown resource kind '{name}'.{suggestion}",
            hint="Run 'stackyard providers list' to see every provider and its kinds.",
        )

    def _loaded(self, slot: _Slot) -> _Entry:
        entry = slot.loaded
        if entry is not None:
            return entry
        with self._lock:  # one import per provider, even when engine workers race for it
            entry = slot.loaded
            if entry is None:
                entry = slot.import_entry()
                self._index(entry)  # its kinds first: a reader that sees it loaded finds them
                slot.publish(entry)
        return entry

    def _index(self, entry: _Entry) -> None:
        if entry.provider is not None:
            for kind in entry.provider.kinds:
                self._kinds[kind.name] = (kind, entry)


def _origin(ep: metadata.EntryPoint) -> Origin:
    warmed = _WARM_ORIGINS.get(id(ep))  # one of the warmed entry points: read already
    return warmed if warmed is not None else _read_origin(ep)


def _read_origin(ep: metadata.EntryPoint) -> Origin:
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
    try:
        problem = _check(obj, ep.name)
    except Exception as exc:  # a malformed Provider (kinds=None, a raising property)
        problem = f"{ep.value} is invalid: {type(exc).__name__}: {exc}"
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
