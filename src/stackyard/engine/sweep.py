"""Sweeping: destroy also deletes objects labelled with the environment that state never recorded.

A writer paused past its lease can create an object after another writer took over; its
commit is fenced, so the object is labelled with the environment but recorded nowhere. Before
a destroy's planned deletes run, every kind that can list objects by label (``Sweepable``) is
asked, once per backend the environment's records name, for objects carrying this
installation's and environment's label prefix; those that no record names are deleted through
the kind's ``delete`` (which re-checks the label), each call fenced.

Bounds: only backends named by a record of a sweepable kind are listed (a backend the
environment no longer records anything on is not visited), and at most ``MAX_SWEPT`` objects
per backend are taken per destroy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.errors import ProviderError
from stackyard.providers.api import DeleteRequest, ResourceMeta, Sweepable, label_prefix
from stackyard.state.api import Lease, ResourceRecord, StateStore

MAX_SWEPT = 1000


@dataclass
class Swept:
    """What a sweep did: labels of deleted objects, and failures by label."""

    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def sweep(
    env: str,
    records: Iterable[ResourceRecord],
    *,
    store: StateStore,
    lease: Lease,
    kinds: Kinds,
    events: Events,
) -> Swept:
    """Delete objects labelled for ``env`` by this installation that no record names."""
    installation = store.installation_id()
    prefix = label_prefix(installation, env)
    records = list(records)
    recorded = {(r.kind, r.physical_name) for r in records}
    addresses = {r.address for r in records}
    out = Swept()
    seen: set[tuple[str, str]] = set()
    for record in reversed(records):
        try:
            kind = kinds.kind(record.kind)
        except ProviderError:
            continue
        if not isinstance(kind, Sweepable):
            continue
        config = record.full_config()
        scope = (record.kind, kind.sweep_scope(config))
        if scope in seen:
            continue
        seen.add(scope)
        try:
            found = kind.labelled(config, prefix, limit=MAX_SWEPT)
        except ProviderError as exc:
            out.failed[f"{record.kind} on {record.address}"] = exc.message
            continue
        for obj in found:
            address = obj.label[len(prefix) :]
            if address in addresses or (record.kind, obj.physical_name) in recorded:
                continue  # recorded (maybe under a configured name): the plan owns it
            meta = ResourceMeta(address, record.kind, env, obj.physical_name, installation)
            try:
                store.check_fence(lease)
                kind.delete(DeleteRequest(meta, obj.config, {}))
            except ProviderError as exc:
                out.failed[obj.label] = exc.message
                continue
            out.deleted.append(obj.label)
            events.emit(
                "swept",
                address,
                action="delete",
                message=f"deleted {record.kind} {obj.physical_name}: labelled for '{env}' "
                "but not recorded",
            )
    return out
