"""Drift: observe every recorded resource and report how reality differs from the record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.engine.observe import observe_all
from stackyard.engine.plan import provider_chosen
from stackyard.errors import ProviderError
from stackyard.providers.api import sensitive_fields
from stackyard.state.api import Snapshot


@dataclass(frozen=True, slots=True)
class DriftItem:
    """One drifted resource: ``status`` is missing, changed, unmanaged or stopped."""

    address: str
    kind: str
    status: str
    fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (field names only, never values)."""
        return {
            "address": self.address,
            "kind": self.kind,
            "status": self.status,
            "fields": list(self.fields),
        }


def detect(
    snapshot: Snapshot,
    kinds: Kinds,
    events: Events,
    *,
    parallelism: int = 10,
    installation: str = "",
) -> list[DriftItem]:
    """Compare reality with the record for every resource of ``snapshot``. Reports field names,
    never values (a drifted value may be a secret)."""
    observed, _ = observe_all(
        snapshot.env,
        snapshot.resources.values(),
        kinds,
        parallelism=parallelism,
        installation=installation,
    )
    items: list[DriftItem] = []
    for address, record in sorted(snapshot.resources.items()):
        if address not in observed:
            continue
        obs = observed[address]
        if obs is None:
            items.append(DriftItem(address, record.kind, "missing"))
        elif not obs.managed:
            items.append(DriftItem(address, record.kind, "unmanaged"))
        else:
            fields = _changed(
                record.full_config(), obs.config, _chosen(kinds, record.kind, record.full_config())
            )
            if fields:
                items.append(DriftItem(address, record.kind, "changed", fields))
            elif obs.health == "stopped":
                items.append(DriftItem(address, record.kind, "stopped"))
    for item in items:
        secret = _secret_fields(kinds, item.kind)
        events.emit(
            "drift",
            item.address,
            message=f"{item.status}: "
            + ", ".join(f + (" (sensitive)" if f in secret else "") for f in item.fields),
        )
    return items


def _changed(
    recorded: Mapping[str, Any], observed: Mapping[str, Any], chosen: frozenset[str]
) -> tuple[str, ...]:
    return tuple(
        sorted(
            k for k, v in observed.items() if k in recorded and k not in chosen and recorded[k] != v
        )
    )


def _chosen(kinds: Kinds, kind: str, config: Mapping[str, Any]) -> frozenset[str]:
    try:
        return provider_chosen(kinds.kind(kind), config)
    except ProviderError:
        return frozenset()


def _secret_fields(kinds: Kinds, kind: str) -> frozenset[str]:
    try:
        return sensitive_fields(kinds.kind(kind).config_model)
    except ProviderError:
        return frozenset()
