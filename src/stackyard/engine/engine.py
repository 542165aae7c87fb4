"""The engine façade: lock → recover → observe → plan, and lock → check → apply → recover.

A caller that must hold one lease across several steps (a deploy: resolve → plan → govern →
apply → record) opens ``Engine.locked(env)``; plan, recover and apply inside it reuse that
lease instead of taking the lock again."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from stackyard.diagnostics import Diagnostic, Severity
from stackyard.engine.apply import Applier, ApplyResult
from stackyard.engine.drift import DriftItem, detect
from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.engine.lease import DEFAULT_STALL_S, HeldLock, hold
from stackyard.engine.observe import observe_all
from stackyard.engine.plan import Action, Plan, graph_digest, plan, recorded_outputs
from stackyard.engine.recovery import Outcome, recover
from stackyard.engine.sweep import Swept, survey, sweep
from stackyard.errors import InvalidInputError, StalePlanError
from stackyard.model.ids import ResourceUid
from stackyard.model.values import Unknown
from stackyard.resolve.graph import Graph
from stackyard.state.api import Snapshot, StateStore

DEFAULT_LOCK_TTL_S = 30.0


def default_holder() -> str:
    """``user@host (pid N)``: who holds a lock, as other writers are told."""
    import pwd

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (containers): still name the process
        user = f"uid-{os.geteuid()}"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


class Engine:
    """Plans and applies desired graphs against one state store and provider registry."""

    def __init__(
        self,
        *,
        store: StateStore,
        kinds: Kinds,
        events: Events | None = None,
        parallelism: int = 10,
        lock_ttl_s: float = DEFAULT_LOCK_TTL_S,
        holder: str | None = None,
        retries: int = 2,
        retry_delay_s: float = 0.2,
        lock_wait_s: float = 0.0,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.events = events or Events()
        self.parallelism = parallelism
        self.lock_ttl_s = lock_ttl_s
        self.holder = holder or default_holder()
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.lock_wait_s = lock_wait_s
        self.stall_s = stall_s
        self._held: HeldLock | None = None
        #: the state read under the held lock: no other writer can change it until the block
        #: ends, so it is read once and again only after this engine wrote (recover, apply)
        self._read: Snapshot | None = None

    @contextmanager
    def locked(self, env: str) -> Iterator[HeldLock]:
        """Hold ``env``'s lock for the whole block (waiting up to ``lock_wait_s`` for it).

        Re-entrant: inside the block, ``plan``, ``recover`` and ``apply`` use this lease, and a
        nested ``locked(env)`` yields it again. Everything read inside the block is as of a
        moment no other writer can change until the block ends.
        """
        if self._held is not None:
            if self._held.env != env:
                raise InvalidInputError(
                    f"Already holding the lock on '{self._held.env}', not '{env}'",
                    hint="An engine holds one environment's lock at a time.",
                )
            yield self._held
            return
        with hold(
            self.store,
            env,
            holder=self.holder,
            ttl_s=self.lock_ttl_s,
            events=self.events,
            wait_s=self.lock_wait_s,
            stall_s=self.stall_s,
        ) as lock:
            self._held, self._read = lock, None
            try:
                yield lock
            finally:
                self._held, self._read = None, None

    @property
    def held(self) -> HeldLock | None:
        """The lock held by ``locked``, if any."""
        return self._held

    def recover(self, env: str) -> list[Outcome]:
        """Reconcile pending intents of ``env`` under its lock (a no-op when there are none)."""
        if not self.store.intents(env):
            return []
        with self.locked(env) as lock:
            self._read = None
            return recover(env, self.store, lock.lease, self.kinds, self.events)

    def _snapshot(self, env: str) -> Snapshot:
        """``env``'s recorded state: read once while this engine holds its lock (until this
        engine writes), and every time otherwise (another writer may have changed it)."""
        if self._held is None or self._held.env != env:
            return self.store.snapshot(env)
        if self._read is None:
            self._read = self.store.snapshot(env)
        return self._read

    def plan(self, env: str, graph: Graph | None, *, refresh: bool = True) -> Plan:
        """Plan converging ``env`` to ``graph`` (None: destroy everything in it)."""
        self.recover(env)
        snap = self._snapshot(env)
        observed, warnings = (
            observe_all(
                env,
                snap.resources.values(),
                self.kinds,
                parallelism=self.parallelism,
                installation=self.store.installation_id(),
            )
            if refresh
            else ({}, [])
        )
        result = plan(
            env=env, graph=graph, snapshot=snap, observed=observed, kind_of=self.kinds.kind
        )
        if result.destroy and refresh:
            found = survey(env, snap.resources.values(), store=self.store, kinds=self.kinds)
            strays = found.strays
            result = replace(result, strays=tuple(strays))
            warnings = [*warnings, *(_unlisted(where, why) for where, why in found.failed.items())]
            for stray in strays:
                self.events.emit(
                    "planned",
                    stray.address,
                    action="delete",
                    message=f"stray {stray.kind} {stray.physical_name}: labelled, not recorded",
                )
        if warnings:
            result = _with_diagnostics(result, warnings)
        for change in result.changes:
            if change.action is not Action.NOOP:
                self.events.emit(
                    "planned", change.address, action=change.action.value, message=change.reason
                )
        return result

    def apply(self, planned: Plan, graph: Graph | None) -> ApplyResult:
        """Apply a plan exactly. Refuses a plan with errors, a stale plan, and a plan applied before."""
        if not planned.ok:
            raise InvalidInputError(
                "The plan has errors and cannot be applied",
                [d for d in planned.diagnostics if d.severity == "error"],
            )
        if planned.graph_digest != graph_digest(graph):
            raise StalePlanError(
                "The plan was made for a different desired state than the one given",
                hint="Plan again and apply the new plan.",
            )
        env = planned.env
        with self.locked(env) as lock:
            self._read = None  # from here on this engine writes: what it read is stale
            recovered = recover(env, self.store, lock.lease, self.kinds, self.events)
            snap = self.store.snapshot(env)
            if self.store.was_applied(env, planned.id):
                raise StalePlanError(
                    f"Plan {planned.id} has already been applied to '{env}'", hint="Plan again."
                )
            if snap.serial != planned.serial or (
                planned.lineage and snap.lineage != planned.lineage
            ):
                raise StalePlanError(
                    f"The state of '{env}' changed since the plan was made "
                    f"(plan serial {planned.serial}, state serial {snap.serial})",
                    hint="Plan again and review the new plan before applying it.",
                )
            found = (
                survey(env, snap.resources.values(), store=self.store, kinds=self.kinds)
                if planned.destroy
                else None
            )
            unplanned = found.unplanned(planned.strays) if found is not None else []
            if unplanned:
                names = ", ".join(f"{s.kind} {s.physical_name}" for s in unplanned)
                raise StalePlanError(
                    f"Objects labelled for '{env}' appeared since the plan was made: {names}",
                    hint="Plan again: the new plan shows them, and the destroy deletes them.",
                )
            self.store.mark_applied(lock.lease, planned.id)
            swept = (
                sweep(
                    env,
                    found,
                    planned.strays,
                    store=self.store,
                    lease=lock.lease,
                    events=self.events,
                )
                if found is not None
                else Swept()
            )
            applier = Applier(
                planned,
                graph,
                store=self.store,
                lock=lock,
                kinds=self.kinds,
                events=self.events,
                parallelism=self.parallelism,
                retries=self.retries,
                retry_delay_s=self.retry_delay_s,
            )
            try:
                result = applier.run()
                result.failed.update(swept.failed)
                # Failed calls leave their intents pending: settle them now, under the lock.
                settled = recover(env, self.store, lock.lease, self.kinds, self.events)
            finally:
                self._read = None  # the apply wrote: read the state again
            result.recovered = [f"{o.address}: {o.result}" for o in (*recovered, *settled)]
        return result

    def converge(self, env: str, graph: Graph | None) -> tuple[Plan, ApplyResult]:
        """Plan and apply at once (no review step)."""
        planned = self.plan(env, graph)
        return planned, self.apply(planned, graph)

    def outputs(self, env: str, graph: Graph, uid: ResourceUid) -> dict[str, Any]:
        """An instance's component outputs from the recorded state (secrets wrapped)."""
        live = {a: recorded_outputs(r) for a, r in self._snapshot(env).resources.items()}
        return graph.instance_outputs(uid, lambda a: live.get(a, Unknown(a)))

    def drift(self, env: str) -> list[DriftItem]:
        """Observe every recorded resource of ``env`` and report differences."""
        return detect(
            self.store.snapshot(env),
            self.kinds,
            self.events,
            parallelism=self.parallelism,
            installation=self.store.installation_id(),
        )


def _unlisted(where: str, why: str) -> Diagnostic:
    return Diagnostic(
        Severity.WARNING,
        "Could not list labelled objects",
        f"Objects labelled for this environment on the backend of {where} could not be "
        f"listed ({why}); strays there, if any, are not in this plan.",
        subject=where,
    )


def _with_diagnostics(p: Plan, extra: Sequence[Diagnostic]) -> Plan:
    return replace(p, diagnostics=(*p.diagnostics, *extra))
