"""Apply: execute a plan's changes through providers, journaled, fenced and in dependency order.

Every provider call is bracketed by the intent journal: ``begin`` (durable) → call →
``commit`` (record + clear intent + serial bump, one transaction). A call that fails leaves its
intent pending, and recovery reconciles it before the lock is released.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackyard.engine.events import Events
from stackyard.engine.kinds import Kinds
from stackyard.engine.lease import HeldLock
from stackyard.engine.plan import (
    KNOWN_AFTER_APPLY,
    Action,
    Change,
    Plan,
    recorded_outputs,
    secret_keys,
)
from stackyard.engine.walk import STOPPED, walk
from stackyard.errors import (
    EngineError,
    ForeignObjectError,
    LockLostError,
    ProviderError,
    ProviderPermanentError,
    StoreUnavailableError,
)
from stackyard.model.status import CHANGE, ChangeOutcome
from stackyard.model.values import Unknown, is_known, reveal
from stackyard.providers.api import (
    Applied,
    CreateRequest,
    DeleteRequest,
    Kind,
    ResourceMeta,
    UpdateRequest,
    replace_fields,
    validate_config,
)
from stackyard.resolve.graph import Graph
from stackyard.state.api import Intent, ResourceRecord, StateStore


@dataclass
class ApplyResult:
    """The outcome of one apply. ``failed`` holds root causes only; ``skipped`` names each
    skipped address's root cause."""

    plan_id: str
    env: str
    serial: int = 0
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every change succeeded."""
        return not self.failed and not self.skipped

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (never holds secrets)."""
        return {
            "plan_id": self.plan_id,
            "env": self.env,
            "ok": self.ok,
            "serial": self.serial,
            "succeeded": len(self.succeeded),
            "failed": self.failed,
            "skipped": self.skipped,
            "recovered": self.recovered,
            "duration_s": round(self.duration_s, 3),
        }


class Applier:
    """Runs one plan under a held lock."""

    def __init__(
        self,
        plan: Plan,
        graph: Graph | None,
        *,
        store: StateStore,
        lock: HeldLock,
        kinds: Kinds,
        events: Events,
        parallelism: int = 10,
        retries: int = 2,
        retry_delay_s: float = 0.2,
    ) -> None:
        self.plan = plan
        self.graph = graph
        self.store = store
        self.lock = lock
        self.kinds = kinds
        self.events = events
        self.parallelism = parallelism
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._live: dict[str, Mapping[str, Any]] = {}
        self._records: dict[str, ResourceRecord] = {}
        self._serial = plan.serial
        self._mutex = threading.Lock()
        self._limits: dict[str, threading.Semaphore] = {}
        self._outcomes: dict[str, ChangeOutcome] = {}

    def run(self) -> ApplyResult:
        """Apply every change; returns what happened (never raises for provider failures)."""
        started = time.monotonic()
        snap = self.store.snapshot(self.plan.env)
        self._records = dict(snap.resources)
        self._live = {a: recorded_outputs(r) for a, r in snap.resources.items()}
        changes = {c.address: c for c in self.plan.changes}
        deps = self._dependencies(changes)
        result = ApplyResult(plan_id=self.plan.id, env=self.plan.env)
        order = list(changes)
        walked = walk(
            order,
            deps,
            lambda a: self._run_one(changes[a]),
            parallelism=self.parallelism,
            should_stop=lambda: self.lock.lost,
            on_skip=lambda a, cause: self._outcome(
                ChangeOutcome.SKIPPED,
                a,
                action=changes[a].action,
                message=f"skipped: {cause} did not succeed",
            ),
            limiter=self._limiter(changes),
        )
        result.succeeded = walked.succeeded
        result.failed = {a: _describe(e) for a, e in walked.failed.items()}
        result.skipped = dict(walked.skipped)
        result.serial = self._serial
        result.duration_s = time.monotonic() - started
        lost = [e for e in walked.failed.values() if isinstance(e, StoreUnavailableError)]
        if lost:
            # Nothing more can be recorded: the run stops as a transient failure (a job is
            # retried), and the next run recovers the pending intents before going on.
            raise StoreUnavailableError(
                f"The state store became unavailable during apply in '{self.plan.env}'; "
                f"stopped after {len(result.succeeded)} change(s): {lost[0].message}",
                hint="Run the deployment again once the store is back; pending work is "
                "recovered first.",
            )
        if self.lock.lost and STOPPED in result.skipped.values():
            raise LockLostError(
                f"The lock on '{self.plan.env}' was lost during apply; stopped after "
                f"{len(result.succeeded)} changes.",
                hint="Run the deployment again; pending work is recovered first.",
            )
        return result

    def _dependencies(self, changes: Mapping[str, Change]) -> dict[str, tuple[str, ...]]:
        """Creates/updates wait for their dependencies; deletes wait for their dependents."""
        deps: dict[str, list[str]] = {a: [] for a in changes}
        for a, c in changes.items():
            if c.action is Action.DELETE:
                for d in c.depends_on:
                    if d in changes and changes[d].action is Action.DELETE:
                        deps[d].append(a)  # delete d only after its dependent a is gone
            else:
                deps[a].extend(d for d in c.depends_on if d in changes)
        return {a: tuple(ds) for a, ds in deps.items()}

    def _limiter(self, changes: Mapping[str, Change]) -> Any:
        for c in changes.values():
            try:
                provider = self.kinds.provider_of(c.kind)
            except ProviderError:
                continue
            if provider.parallelism and provider.name not in self._limits:
                self._limits[provider.name] = threading.Semaphore(provider.parallelism)

        def limit(address: str) -> threading.Semaphore | None:
            kind = changes[address].kind
            return self._limits.get(kind.split(".", 1)[0])

        return limit

    # -- one change -------------------------------------------------------------------------

    def _run_one(self, change: Change) -> None:
        try:
            self._execute(change)
        except BaseException as exc:
            self._outcome(
                ChangeOutcome.FAILED, change.address, action=change.action, message=_describe(exc)
            )
            raise

    def _execute(self, change: Change) -> None:
        if self.lock.lost:
            raise LockLostError("lease lost")
        kind = self.kinds.kind(change.kind)
        if change.action is Action.DELETE:
            self._emit(ChangeOutcome.STARTED, change)
            if change.retain:
                self._serial = self.store.forget(self.lock.lease, [change.address])
            else:
                self._delete(kind, change, self._records[change.address])
            self._emit(ChangeOutcome.FINISHED, change)
            return
        config = self._resolve(change)
        plain = validate_config(kind, reveal(config))
        record = self._records.get(change.address)
        action = change.action
        prior = record.full_config() if record is not None else None
        in_place = action is Action.NOOP or (action is Action.UPDATE and prior is not None)
        if in_place and not _as_planned(kind, change, prior or {}, plain):
            return
        if action is Action.UPDATE and record is None:
            action = Action.CREATE
        self._emit(ChangeOutcome.STARTED, change, action)
        if action is Action.REPLACE and record is not None:
            self._delete(kind, change, record)
            record = None
            action = Action.CREATE
        meta = ResourceMeta(
            change.address,
            change.kind,
            self.plan.env,
            change.physical_name,
            self.store.installation_id(),
        )
        # An empty sensitive field holds nothing to hide: it is stored (and costs) nothing extra.
        secrets = frozenset(k for k in secret_keys(config, kind) if plain.get(k) not in (None, ""))
        if action is Action.CREATE:
            self._call(
                change, "create", plain, secrets, lambda: kind.create(CreateRequest(meta, plain))
            )
        else:
            assert record is not None
            prior = record.full_config()
            changed = frozenset(k for k in set(prior) | set(plain) if prior.get(k) != plain.get(k))
            self._call(
                change,
                "update",
                plain,
                secrets,
                lambda: kind.update(
                    UpdateRequest(meta, plain, prior, record.full_outputs(), changed)
                ),
            )
        self._emit(ChangeOutcome.FINISHED, change, action)

    def _resolve(self, change: Change) -> Any:
        if self.graph is None or change.address not in self.graph.nodes:
            raise EngineError(
                f"'{change.address}' is not in the desired graph; the plan does not match it"
            )

        def outputs_of(address: str) -> Mapping[str, Any] | Unknown:
            return self._live.get(address, Unknown(address))

        config = self.graph.resolve_config(change.address, outputs_of)
        if not is_known(config):
            raise EngineError(f"'{change.address}' still has values known only after apply")
        return config

    def _call(
        self,
        change: Change,
        op: str,
        plain: dict[str, Any],
        secrets: frozenset[str],
        call: Any,
    ) -> None:
        kind = self.kinds.kind(change.kind)
        intent = Intent(
            id=uuid.uuid4().hex,
            env=self.plan.env,
            op=op,
            address=change.address,
            kind=change.kind,
            physical_name=change.physical_name,
            config={k: v for k, v in plain.items() if k not in secrets},
            secret_config={k: v for k, v in plain.items() if k in secrets},
            depends_on=change.depends_on,
            uid=change.uid,
            component=change.component,
            deletion=change.deletion,
        )
        self.store.begin(self.lock.lease, intent)
        try:
            applied: Applied = self._with_retries(change, call)
        except ForeignObjectError:
            # Refused before any write: nothing to reconcile, and recovery must not take the
            # object at this name for one an interrupted create of ours made.
            self.store.abandon(self.lock.lease, intent.id)
            raise
        secret_out = {
            k: v for k, v in applied.outputs.items() if k in kind.sensitive_outputs or k in secrets
        }
        record = ResourceRecord(
            address=change.address,
            kind=change.kind,
            physical_name=change.physical_name,
            physical_id=applied.physical_id or change.physical_name,
            config=intent.config,
            outputs={k: v for k, v in applied.outputs.items() if k not in secret_out},
            secret_config=intent.secret_config,
            secret_outputs=secret_out,
            depends_on=change.depends_on,
            uid=change.uid,
            component=change.component,
            deletion=change.deletion,
        )
        serial = self.store.commit(self.lock.lease, intent.id, record, address=change.address)
        with self._mutex:
            self._serial = max(self._serial, serial)
            self._records[change.address] = record
            self._live[change.address] = recorded_outputs(record)

    def _delete(self, kind: Kind, change: Change, record: ResourceRecord) -> None:
        intent = Intent(
            id=uuid.uuid4().hex,
            env=self.plan.env,
            op="delete",
            address=change.address,
            kind=record.kind,
            physical_name=record.physical_name,
            config=dict(record.config),
            secret_config=dict(record.secret_config),
            depends_on=record.depends_on,
            uid=record.uid,
            component=record.component,
            deletion=record.deletion,
        )
        self.store.begin(self.lock.lease, intent)
        meta = ResourceMeta(
            change.address,
            record.kind,
            self.plan.env,
            record.physical_name,
            self.store.installation_id(),
        )
        self._with_retries(
            change,
            lambda: kind.delete(DeleteRequest(meta, record.full_config(), record.full_outputs())),
        )
        serial = self.store.commit(self.lock.lease, intent.id, None, address=change.address)
        with self._mutex:
            self._serial = max(self._serial, serial)
            self._records.pop(change.address, None)
            self._live.pop(change.address, None)

    def _with_retries(self, change: Change, call: Any) -> Any:
        attempt = 0
        while True:
            # Fenced right before each attempt: a writer paused past its lease (and taken
            # over) must not reach the backend; its state writes are fenced anyway.
            self.store.check_fence(self.lock.lease)
            try:
                return call()
            except ProviderError as exc:
                if not exc.transient or attempt >= self.retries or self.lock.lost:
                    raise
                attempt += 1
                self._outcome(
                    ChangeOutcome.RETRYING,
                    change.address,
                    action=change.action,
                    message=f"attempt {attempt + 1}: {exc.message}",
                )
                time.sleep(self.retry_delay_s * (2 ** (attempt - 1)))
            except (LockLostError, EngineError):
                raise
            except Exception as exc:  # a provider broke its contract; contain it here
                raise ProviderPermanentError(
                    f"{type(exc).__name__} escaped provider for {change.kind}: {exc}",
                    address=change.address,
                ) from exc

    def _emit(self, outcome: ChangeOutcome, change: Change, action: Action | None = None) -> None:
        action = action or change.action
        self._outcome(
            outcome,
            change.address,
            action=action,
            message=f"{action.value} {change.kind} {change.physical_name}",
        )

    def _outcome(
        self, outcome: ChangeOutcome, address: str, *, action: Action, message: str
    ) -> None:
        """Move ``address`` to ``outcome`` as ``status.CHANGE`` allows, and emit it."""
        with self._mutex:
            self._outcomes[address] = CHANGE.check(
                self._outcomes.get(address), outcome, subject=address
            )
        self.events.emit(outcome, address, action=action.value, message=message)


def _as_planned(
    kind: Kind, change: Change, prior: Mapping[str, Any], plain: Mapping[str, Any]
) -> bool:
    """Check a planned no-op or update against the final config (OpenTofu's "inconsistent
    final plan" rule): apply never makes a change its plan did not show. Returns whether a
    provider call is still needed; raises ``EngineError`` (nothing written) otherwise.
    """
    differs = {k for k in set(prior) | set(plain) if prior.get(k) != plain.get(k)}
    if change.action is Action.NOOP:
        if not differs:
            return False
        shown = "no change"
    else:
        beyond = differs - set(change.changed)
        if not beyond and not differs & replace_fields(kind.config_model):
            # an update of values known after apply that came out unchanged: nothing to do
            return bool(differs) or not change.reason.startswith(KNOWN_AFTER_APPLY)
        shown = "an update of " + (", ".join(change.changed) or "nothing")
    raise EngineError(
        f"Inconsistent final plan for '{change.address}': the plan showed {shown}, but the "
        f"apply would change {', '.join(sorted(differs))}"
        + (
            " (a replace)"
            if differs & replace_fields(kind.config_model) and change.action is Action.UPDATE
            else ""
        )
        + "; nothing was changed for it.",
        hint="Plan again and review the new plan before applying it.",
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderError | EngineError | LockLostError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
