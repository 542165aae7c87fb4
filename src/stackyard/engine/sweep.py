"""Sweeping: destroy also deletes objects labelled with the environment that state never recorded.

A writer paused past its lease can create an object after another writer took over; its
commit is fenced, so the object is labelled with the environment but recorded nowhere. A
destroy's plan asks every kind that can list objects by label (``Sweepable``), once per
backend the environment's records name, for objects carrying this installation's and
environment's label prefix; those that no record names are the plan's **strays** (``survey``),
shown and governed like its other changes. The apply lists again: a stray the plan did not
show makes the plan stale (``StalePlanError``: plan again, so it is shown and decided), and
otherwise, before the planned deletes run, exactly the planned strays are deleted (``sweep``)
through the kind's ``delete`` (which re-checks the label), each call fenced.

Bounds: only backends named by a record of a sweepable kind are listed (a backend the
environment no longer records anything on is not visited), and at most ``MAX_SWEPT`` objects
per backend are taken per destroy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.engine.plan import Stray
from stackyard.errors import ProviderError
from stackyard.providers.api import (
    DeleteRequest,
    Kind,
    Labelled,
    ResourceMeta,
    Sweepable,
    label_prefix,
)
from stackyard.state.api import Lease, ResourceRecord, StateStore

MAX_SWEPT = 1000


@dataclass
class Survey:
    """What listing the backends found: each stray with what deleting it needs, and the
    backends that could not be listed (by record)."""

    entries: list[tuple[Stray, Labelled, Kind]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def strays(self) -> list[Stray]:
        """The strays found."""
        return [stray for stray, _obj, _kind in self.entries]

    def unplanned(self, planned: Iterable[Stray]) -> list[Stray]:
        """The strays found that ``planned`` does not list."""
        wanted = {(s.kind, s.physical_name) for s in planned}
        return [s for s in self.strays if (s.kind, s.physical_name) not in wanted]


@dataclass
class Swept:
    """What a sweep did: labels of deleted objects, and failures by label."""

    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def survey(
    env: str, records: Iterable[ResourceRecord], *, store: StateStore, kinds: Kinds
) -> Survey:
    """Every object labelled for ``env`` by this installation that no record names (read-only:
    one listing per backend the records name)."""
    installation = store.installation_id()
    prefix = label_prefix(installation, env)
    records = list(records)
    recorded = {(r.kind, r.physical_name) for r in records}
    addresses = {r.address for r in records}
    out = Survey()
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
            out.entries.append((Stray(address, record.kind, obj.physical_name), obj, kind))
    return out


def sweep(
    env: str,
    found: Survey,
    planned: Iterable[Stray],
    *,
    store: StateStore,
    lease: Lease,
    events: Events,
) -> Swept:
    """Delete the strays of ``found`` that ``planned`` lists, each call fenced (the caller
    refused the apply when ``found`` holds strays the plan did not show)."""
    installation = store.installation_id()
    wanted = {(s.kind, s.physical_name) for s in planned}
    out = Swept()
    for where, why in found.failed.items():  # the plan warned already; not a failed delete
        events.emit("sweep-skipped", where, message=f"could not list labelled objects there: {why}")
    for stray, obj, kind in found.entries:
        if (stray.kind, stray.physical_name) not in wanted:
            continue
        meta = ResourceMeta(stray.address, stray.kind, env, stray.physical_name, installation)
        try:
            store.check_fence(lease)
            kind.delete(DeleteRequest(meta, obj.config, {}))
        except ProviderError as exc:
            out.failed[obj.label] = exc.message
            continue
        out.deleted.append(obj.label)
        events.emit(
            "swept",
            stray.address,
            action="delete",
            message=f"deleted {stray.kind} {stray.physical_name}: labelled for '{env}' "
            "but not recorded",
        )
    return out
