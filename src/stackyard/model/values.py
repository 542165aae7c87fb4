"""Value markers carried through placeholders: ``Unknown`` and ``Secret``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MASK = "(sensitive)"
KNOWN_AFTER_APPLY = "(known after apply)"


@dataclass(frozen=True, slots=True)
class Unknown:
    """A value that only exists once a resource has been created (``ref`` names its source)."""

    ref: str = ""

    def __repr__(self) -> str:
        return KNOWN_AFTER_APPLY


@dataclass(frozen=True, slots=True)
class Secret:
    """A sensitive value. Renderings show ``MASK``; ``reveal`` unwraps it for a provider call."""

    value: Any

    def __repr__(self) -> str:
        return MASK

    def __str__(self) -> str:
        return MASK


def reveal(value: Any) -> Any:
    """Unwrap every ``Secret`` in a nested value (for handing config to a provider)."""
    if isinstance(value, Secret):
        return reveal(value.value)
    if isinstance(value, Mapping):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value


def mask(value: Any) -> Any:
    """Replace every ``Secret`` with ``MASK`` and every ``Unknown`` with its label (for display)."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Unknown):
        return KNOWN_AFTER_APPLY
    if isinstance(value, Mapping):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


def contains(value: Any, marker: type[Unknown] | type[Secret]) -> bool:
    """True when ``value`` holds a ``marker`` anywhere inside it."""
    if isinstance(value, marker):
        return True
    if isinstance(value, Secret):  # a Secret wrapping an Unknown is still unknown
        return contains(value.value, marker)
    if isinstance(value, Mapping):
        return any(contains(v, marker) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains(v, marker) for v in value)
    return False


def is_known(value: Any) -> bool:
    """True when no part of ``value`` is ``Unknown``."""
    return not contains(value, Unknown)
