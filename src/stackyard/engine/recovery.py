"""Journal recovery: reconcile pending intents left by a crash before anything else runs.

Each pending intent names an operation, an address and a deterministic physical name. The
object is observed by that name, then:

- ``create``: it exists and carries our label → adopt it (record it). It exists unlabelled at
  the journaled name (a crash between CREATE DATABASE and its COMMENT) → a repeat ``create``
  with ``resuming`` set labels it (only this journal may claim an unlabelled object), then
  it is adopted. Otherwise drop the intent.
- ``delete``: it is gone → finish the delete (remove the row); otherwise drop the intent, and
  the next plan deletes it again.
- ``update``: drop the intent; the row still holds the old config, so the next plan sees the
  difference and updates again (updates are idempotent).

Nothing is ever created twice, and nothing created is ever forgotten: zero duplicates and
zero orphans after ``kill -9`` at any point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.errors import ProviderError
from stackyard.providers.api import CreateRequest, Kind, Observed, ObserveRequest, ResourceMeta
from stackyard.state.api import Intent, Lease, ResourceRecord, StateStore


@dataclass(frozen=True, slots=True)
class Outcome:
    """What recovery did with one intent: adopted, deleted, dropped or kept (observe failed)."""

    address: str
    op: str
    result: str


def recover(
    env: str, store: StateStore, lease: Lease, kinds: Kinds, events: Events
) -> list[Outcome]:
    """Reconcile every pending intent of ``env``. Requires the environment's lease."""
    outcomes: list[Outcome] = []
    intents = list(store.intents(env))
    if not intents:
        return outcomes
    recorded = store.snapshot(env).resources
    for intent in intents:
        outcome = _one(env, intent, recorded.get(intent.address), store, lease, kinds)
        outcomes.append(outcome)
        events.emit(
            "recovered",
            intent.address,
            action=intent.op,
            message=f"pending {intent.op} of {intent.physical_name}: {outcome.result}",
        )
    return outcomes


def _one(
    env: str,
    intent: Intent,
    record: ResourceRecord | None,
    store: StateStore,
    lease: Lease,
    kinds: Kinds,
) -> Outcome:
    config = {**intent.config, **intent.secret_config}
    try:
        kind = kinds.kind(intent.kind)
        meta = ResourceMeta(
            intent.address, intent.kind, env, intent.physical_name, store.installation_id()
        )
        outputs = record.full_outputs() if record is not None else {}
        obs = kind.observe(ObserveRequest(meta, config, outputs))
        if intent.op == "create" and obs is not None and not obs.managed:
            obs = _claim_unlabelled(kind, replace(meta, resuming=True), config, store, lease)
    except ProviderError:
        return Outcome(intent.address, intent.op, "kept (could not observe; will retry)")
    if intent.op == "create":
        if obs is not None and obs.managed:
            # As in apply: outputs echoing a secret config value (a derived secret) stay secret.
            secret_out = {
                k: v
                for k, v in obs.outputs.items()
                if k in kind.sensitive_outputs or k in intent.secret_config
            }
            adopted = ResourceRecord(
                address=intent.address,
                kind=intent.kind,
                physical_name=intent.physical_name,
                physical_id=str(obs.outputs.get("id", intent.physical_name)),
                config=dict(intent.config),
                outputs={k: v for k, v in obs.outputs.items() if k not in secret_out},
                secret_config=dict(intent.secret_config),
                secret_outputs=secret_out,
                depends_on=intent.depends_on,
                uid=intent.uid,
                component=intent.component,
                deletion=intent.deletion,
            )
            store.commit(lease, intent.id, adopted, address=intent.address)
            return Outcome(intent.address, intent.op, "adopted")
        store.abandon(lease, intent.id)
        return Outcome(intent.address, intent.op, "dropped (never created)")
    if intent.op == "delete" and obs is None:
        store.commit(lease, intent.id, None, address=intent.address)
        return Outcome(intent.address, intent.op, "deleted")
    store.abandon(lease, intent.id)
    return Outcome(intent.address, intent.op, "dropped (next plan converges)")


def _claim_unlabelled(
    kind: Kind, meta: ResourceMeta, config: dict[str, Any], store: StateStore, lease: Lease
) -> Observed | None:
    """Label an object our interrupted create left unlabelled; None when it is not that."""
    obs = kind.observe(ObserveRequest(meta, config))
    if obs is None or not obs.managed:
        return None
    store.check_fence(lease)
    applied = kind.create(CreateRequest(meta, config))
    return replace(obs, outputs=applied.outputs)
