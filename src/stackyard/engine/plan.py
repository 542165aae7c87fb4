"""Plans: the pure diff of desired nodes, recorded state and observed reality.

``plan`` does no I/O. Its inputs are the expanded graph (or None to destroy everything), a
state snapshot, what ``observe`` found for each recorded resource, and a kind lookup. Values
that a create, a replace or an update will produce are ``Unknown`` ("known after apply"), so
a resource that reads them is planned as an update of those values: the plan, and the
policies that judge it, show every change apply may make. Sensitive values are wrapped in
``Secret`` inside the plan and masked in every rendering (``to_json``).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackyard.canonical import canonical_bytes
from stackyard.diagnostics import Diagnostic, error, has_errors
from stackyard.errors import PlaceholderError, ProviderError
from stackyard.model.values import Secret, Unknown, contains, is_known, mask, reveal
from stackyard.providers.api import (
    Kind,
    KindConfig,
    Observed,
    replace_fields,
    sensitive_fields,
    validate_config,
)
from stackyard.resolve.graph import Graph, topological_order
from stackyard.state.api import ResourceRecord, Snapshot

KindOf = Callable[[str], Kind]
#: The reason of an update planned only because values it reads are known after apply.
KNOWN_AFTER_APPLY = "known after apply"


class Action(enum.Enum):
    """What apply will do to one resource."""

    NOOP = "noop"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One resource's planned change. ``before``/``after`` hold ``Secret`` and ``Unknown``
    markers; render them with ``mask``."""

    address: str
    kind: str
    action: Action
    reason: str = ""
    before: Any = None
    after: Any = None
    changed: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    physical_name: str = ""
    uid: str = ""
    component: str = ""
    deletion: str = "delete"

    @property
    def retain(self) -> bool:
        """A delete that only forgets the resource (``deletion: retain``)."""
        return self.action is Action.DELETE and self.deletion == "retain"

    def to_json(self) -> dict[str, Any]:
        """The masked JSON form."""
        return {
            "address": self.address,
            "kind": self.kind,
            "action": self.action.value,
            "reason": self.reason,
            "changed": list(self.changed),
            "before": mask(self.before),
            "after": mask(self.after),
            "depends_on": list(self.depends_on),
            "physical_name": self.physical_name,
            "uid": self.uid,
            "component": self.component,
            "deletion": self.deletion,
        }


@dataclass(frozen=True, slots=True)
class Stray:
    """An object labelled with the environment that no record names (a destroy deletes it).

    A writer paused past its lease can make one after another writer took over; a destroy's
    plan lists them (``Plan.strays``) and its apply deletes exactly those (``engine/sweep``).
    """

    address: str
    kind: str
    physical_name: str

    def to_json(self) -> dict[str, str]:
        """The JSON form (names only: no config, no secret)."""
        return {"address": self.address, "kind": self.kind, "physical_name": self.physical_name}


@dataclass(frozen=True)
class Plan:
    """A set of changes, computed against one state serial and lineage."""

    id: str
    env: str
    lineage: str
    serial: int
    created_at: str
    changes: tuple[Change, ...]
    destroy: bool = False
    graph_digest: str = ""
    diagnostics: tuple[Diagnostic, ...] = field(default_factory=tuple)
    strays: tuple[Stray, ...] = ()  # a destroy's: labelled objects no record names

    @property
    def ok(self) -> bool:
        """True when the plan has no error diagnostics and may be applied."""
        return not has_errors(self.diagnostics)

    @property
    def has_changes(self) -> bool:
        """True when applying would change anything."""
        return bool(self.strays) or any(c.action is not Action.NOOP for c in self.changes)

    def summary(self) -> dict[str, int]:
        """Counts per action."""
        counts = {a.value: 0 for a in Action}
        for c in self.changes:
            counts[c.action.value] += 1
        return counts

    def change(self, address: str) -> Change:
        """The change for ``address``."""
        for c in self.changes:
            if c.address == address:
                return c
        raise KeyError(address)

    def to_json(self) -> dict[str, Any]:
        """The masked, serialisable plan: what ``--output json`` prints and what is saved."""
        return {
            "id": self.id,
            "env": self.env,
            "lineage": self.lineage,
            "serial": self.serial,
            "created_at": self.created_at,
            "destroy": self.destroy,
            "graph_digest": self.graph_digest,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
            "strays": [s.to_json() for s in self.strays],
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Load a saved plan. Values stay masked: apply re-resolves them from the graph."""
        changes = tuple(
            Change(
                address=c["address"],
                kind=c["kind"],
                action=Action(c["action"]),
                reason=c.get("reason", ""),
                before=c.get("before"),
                after=c.get("after"),
                changed=tuple(c.get("changed", ())),
                depends_on=tuple(c.get("depends_on", ())),
                physical_name=c.get("physical_name", ""),
                uid=c.get("uid", ""),
                component=c.get("component", ""),
                deletion=c.get("deletion", "delete"),
            )
            for c in data["changes"]
        )
        return cls(
            id=data["id"],
            env=data["env"],
            lineage=data["lineage"],
            serial=int(data["serial"]),
            created_at=data["created_at"],
            changes=changes,
            destroy=bool(data.get("destroy", False)),
            graph_digest=data.get("graph_digest", ""),
            strays=tuple(
                Stray(s["address"], s["kind"], s["physical_name"]) for s in data.get("strays", [])
            ),
        )


def graph_digest(graph: Graph | None) -> str:
    """A digest of everything in the graph that decides what apply does."""
    if graph is None:
        return ""
    h = hashlib.sha256()

    def add(value: Any) -> None:
        # spaced and ASCII: the form the first plans were digested in (see stackyard.canonical)
        h.update(canonical_bytes(value, ascii_only=True, default=str, spaced=True))

    for address, node in graph.nodes.items():
        add([address, node.kind, node.template, node.each, node.depends_on, node.physical_name])
    for uid, inst in sorted(graph.instances.items(), key=lambda kv: str(kv[0])):
        links = [inst.linked, {k: str(v) for k, v in inst.peers.items()}] if inst.linked else []
        add([str(uid), inst.inputs, inst.context, inst.external, *links])
    return h.hexdigest()


def recorded_outputs(record: ResourceRecord) -> dict[str, Any]:
    """A record's outputs with secret ones wrapped in ``Secret``."""
    out: dict[str, Any] = dict(record.outputs)
    out.update({k: Secret(v) for k, v in record.secret_outputs.items()})
    return out


def protect(config: Any, secret_fields: frozenset[str]) -> Any:
    """Wrap the kind's sensitive fields in ``Secret`` (for display and storage splitting)."""
    if not isinstance(config, Mapping):
        return config
    return {
        k: (Secret(v) if k in secret_fields and not isinstance(v, Secret) else v)
        for k, v in config.items()
    }


def plan(
    *,
    env: str,
    graph: Graph | None,
    snapshot: Snapshot,
    observed: Mapping[str, Observed | None],
    kind_of: KindOf,
    plan_id: str | None = None,
) -> Plan:
    """Compute the changes that converge ``env`` to ``graph`` (None: destroy everything).

    ``observed`` holds what ``observe`` returned for recorded resources (None: missing);
    an address absent from it is assumed to exist as recorded.
    """
    diags: list[Diagnostic] = []
    changes: list[Change] = []
    predicted: dict[str, Mapping[str, Any] | Unknown] = {}

    def outputs_of(address: str) -> Mapping[str, Any] | Unknown:
        return predicted.get(address, Unknown(address))

    if graph is not None:
        for address in graph.topological():
            node = graph.nodes[address]
            record = snapshot.resources.get(address)
            try:
                kind = kind_of(node.kind)
            except ProviderError as exc:
                diags.append(error("Unknown resource kind", exc.message, subject=address))
                predicted[address] = Unknown(address)
                continue
            try:
                desired = graph.resolve_config(address, outputs_of)
            except PlaceholderError as exc:  # the user's mistake; anything else is a bug
                diags.append(error("Invalid reference", exc.message, subject=address))
                predicted[address] = Unknown(address)
                continue
            change = _diff(node.address, kind, desired, record, observed, diags)
            change = Change(
                address=address,
                kind=node.kind,
                action=change.action,
                reason=change.reason,
                before=change.before,
                after=change.after,
                changed=change.changed,
                depends_on=node.depends_on,
                physical_name=node.physical_name,
                uid=str(node.uid),
                component=node.component,
                deletion=node.deletion,
            )
            changes.append(change)
            if change.action is not Action.NOOP or record is None:
                # what an apply writes is read back from the provider: known only after it
                predicted[address] = Unknown(address)
            else:
                predicted[address] = recorded_outputs(record)
    wanted = set(graph.nodes) if graph is not None else set()
    changes.extend(_deletes(snapshot, wanted, kind_of, diags))
    return Plan(
        id=plan_id or uuid.uuid4().hex,
        env=env,
        lineage=snapshot.lineage,
        serial=snapshot.serial,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        changes=tuple(changes),
        destroy=graph is None,
        graph_digest=graph_digest(graph),
        diagnostics=tuple(diags),
    )


def _diff(
    address: str,
    kind: Kind,
    desired: Any,
    record: ResourceRecord | None,
    observed: Mapping[str, Observed | None],
    diags: list[Diagnostic],
) -> Change:
    secret_fields = sensitive_fields(kind.config_model)
    after = protect(desired, secret_fields)
    normalised: dict[str, Any] | None = None
    if is_known(desired):
        try:
            normalised = validate_config(kind, reveal(desired))
        except ProviderError as exc:
            diags.append(error("Invalid resource config", exc.message, subject=address))
    if record is None:
        return Change(address, kind.name, Action.CREATE, "not in state", None, after)
    # Values derived from a secret are recorded as secret too (record.secret_config).
    before = protect(record.full_config(), secret_fields | frozenset(record.secret_config))
    if record.kind != kind.name:
        return Change(address, kind.name, Action.REPLACE, "kind changed", before, after, ("kind",))
    obs_missing = address in observed and observed[address] is None
    if obs_missing:
        return Change(
            address,
            kind.name,
            Action.CREATE,
            "missing in reality; will be re-created",
            before,
            after,
        )
    obs = observed.get(address)
    if obs is not None and not obs.managed:
        diags.append(
            error(
                "Object owned by someone else",
                f"'{address}' exists but carries another owner's label; stackyard will not adopt "
                f"or change it. {obs.detail}".strip(),
                subject=address,
            )
        )
    recorded = record.full_config()
    changed: list[str] = []
    drifted: list[str] = []
    unknown: list[str] = []  # values known after apply: they may or may not change
    normalised_known: dict[str, Any] | None = None  # the known part, validated
    if normalised is not None:  # fully known: plain values, compared as they are
        if normalised != recorded:
            changed = sorted(
                k for k in set(normalised) | set(recorded) if normalised.get(k) != recorded.get(k)
            )
    elif isinstance(desired, Mapping):
        unknown = sorted(k for k, v in desired.items() if not is_known(v))
        changed, normalised_known = _known_changes(kind, desired, recorded, unknown)
    basis = normalised if normalised is not None else normalised_known
    if obs is not None and basis is not None:
        chosen = provider_chosen(kind, basis)
        for key, value in obs.config.items():
            if (
                key in basis
                and key not in chosen
                and key not in unknown
                and value != basis[key]
                and key not in changed
            ):
                drifted.append(key)
    fields = tuple(sorted({*changed, *drifted, *unknown}))
    if fields:
        # Only a known change forces a replace: an unknown value is planned as an update, and
        # apply refuses it if it turns out to need a replace (the plan did not show that).
        replace = sorted(set(changed) & replace_fields(kind.config_model))
        if drifted and not changed and not unknown:
            reason = "drift: " + ", ".join(drifted)
        elif unknown and not changed and not drifted:
            reason = f"{KNOWN_AFTER_APPLY}: {', '.join(unknown)}"
        else:
            reason = "config changed"
        if replace:
            return Change(
                address,
                kind.name,
                Action.REPLACE,
                f"{', '.join(replace)} cannot change in place",
                before,
                after,
                fields,
            )
        return Change(address, kind.name, Action.UPDATE, reason, before, after, fields)
    if obs is not None and obs.health == "stopped":
        return Change(address, kind.name, Action.UPDATE, "stopped; will be started", before, after)
    if obs is not None and obs.health == "degraded":  # half made (a killed create), say
        why = f"degraded ({obs.detail})" if obs.detail else "degraded"
        return Change(address, kind.name, Action.UPDATE, f"{why}; will be converged", before, after)
    return Change(address, kind.name, Action.NOOP, "", before, after)


def _known_changes(
    kind: Kind, desired: Mapping[str, Any], recorded: Mapping[str, Any], unknown: list[str]
) -> tuple[list[str], dict[str, Any] | None]:
    """The fields of a partly unknown config that differ from the recorded one for sure, and
    the config validated with the unknown fields taken as recorded (None if it is invalid).

    Validating as apply will compares a field left out (its default) too; apply later checks
    the unknown ones.
    """
    probe = {k: (recorded.get(k) if k in unknown else reveal(v)) for k, v in desired.items()}
    try:
        known = validate_config(kind, probe)
    except ProviderError:  # compare what was given, as given
        given = sorted(
            k for k, v in desired.items() if k not in unknown and reveal(v) != recorded.get(k)
        )
        return given, None
    differs = sorted(
        k
        for k in set(known) | set(recorded)
        if k not in unknown and known.get(k) != recorded.get(k)
    )
    return differs, known


def _deletes(
    snapshot: Snapshot, wanted: set[str], kind_of: KindOf, diags: list[Diagnostic]
) -> list[Change]:
    doomed = {a: r for a, r in snapshot.resources.items() if a not in wanted}
    if not doomed:
        return []
    # Reverse dependency order: a resource goes before the resources it depended on.
    order = topological_order(
        {a: tuple(d for d in r.depends_on if d in doomed) for a, r in doomed.items()}
    )
    out: list[Change] = []
    for address in reversed(order):
        record = doomed[address]
        try:
            secret_fields = sensitive_fields(kind_of(record.kind).config_model)
        except ProviderError:
            secret_fields = frozenset(record.secret_config)
        if record.deletion == "protect":
            diags.append(
                error(
                    "Protected resource",
                    f"'{address}' is protected (deletion: protect) and would be deleted. Keep it in "
                    "the desired state, or change the component's deletion policy first.",
                    subject=address,
                )
            )
        reason = "kept: deletion is retain" if record.deletion == "retain" else "no longer desired"
        out.append(
            Change(
                address=address,
                kind=record.kind,
                action=Action.DELETE,
                reason=reason,
                before=protect(
                    record.full_config(), secret_fields | frozenset(record.secret_config)
                ),
                after=None,
                depends_on=record.depends_on,
                physical_name=record.physical_name,
                uid=record.uid,
                component=record.component,
                deletion=record.deletion,
            )
        )
    return out


def secret_keys(config: Mapping[str, Any], kind: Kind) -> frozenset[str]:
    """Config keys to store encrypted: the kind's sensitive fields and any value derived from a secret."""
    return sensitive_fields(kind.config_model) | {
        k for k, v in config.items() if contains(v, Secret)
    }


def provider_chosen(kind: Kind, config: Mapping[str, Any]) -> frozenset[str]:
    """Fields left empty for the provider to choose (a name, a free port, a generated password).

    A field whose desired value is its model's empty default (``""``, ``0`` or ``None``) is
    chosen by the provider at create time, so what ``observe`` reads there is never drift.
    """
    return frozenset(
        name
        for name, default in _empty_defaults(kind.config_model)
        if name in config and config[name] == default
    )


@functools.cache
def _empty_defaults(model: type[KindConfig]) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (name, info.default)
        for name, info in model.model_fields.items()
        if not isinstance(info.default, bool) and info.default in ("", 0, None)
    )
