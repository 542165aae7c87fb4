"""Every status stackyard records or reports, as closed enums, with each one's allowed moves.

Each vocabulary is a ``StrEnum`` whose values are the strings stored in the database and
printed in JSON, so records written before the enums existed read back unchanged. Each has
one ``Lifecycle``: the statuses a new record may start in and, for every member, the
statuses it may move to. Writing the same status again is not a move (a record changing
other fields keeps its status); a member mapped to ``frozenset()`` never moves.

The record layer checks every status change with ``transition`` before writing it, so a
change that is not in its table is refused (``InvalidTransitionError``) and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from stackyard.errors import InvalidStatusError, InvalidTransitionError

__all__ = [
    "AUDIT",
    "CHANGE",
    "DECISION",
    "DEPLOYMENT",
    "ENVIRONMENT",
    "LIFECYCLES",
    "VERDICT",
    "WORKLOAD",
    "AuditResult",
    "ChangeOutcome",
    "DecisionOutcome",
    "DeliveryStatus",
    "DeploymentStatus",
    "EnvironmentStatus",
    "Lifecycle",
    "Verdict",
    "WorkloadState",
    "parse",
    "transition",
]


class EnvironmentStatus(StrEnum):
    """Where an environment is in its life (``environments.status``)."""

    DECLARED = "declared"  # in the platform configuration only; nothing exists yet
    CREATING = "creating"  # its core is being deployed
    READY = "ready"  # takes deployments
    FAILED = "failed"  # its core failed to deploy; create retries, destroy cleans up
    DESTROYING = "destroying"  # a destroy (or the reaper's claim) is under way
    DESTROYED = "destroyed"  # gone; the name may be used again

    @property
    def is_live(self) -> bool:
        """True from creation until destroyed: the environment holds its name and objects."""
        return self not in (EnvironmentStatus.DECLARED, EnvironmentStatus.DESTROYED)


class DeploymentStatus(StrEnum):
    """How one attempt to converge an environment stands (``deployments.status``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PLANNED = "planned"  # a plan-only run: decided and recorded, nothing applied
    CANCELLED = "cancelled"  # the user declined the confirmation
    DENIED = "denied"  # a policy denied the plan
    AWAITING_APPROVAL = "awaiting-approval"  # parked until an approver decides
    APPROVED = "approved"  # an approver approved it; it is planned again and applied
    REJECTED = "rejected"  # an approver rejected it; nothing is ever applied
    INTERRUPTED = "interrupted"  # its writer was killed or lost its lease

    @property
    def is_finished(self) -> bool:
        """True when nothing more happens to the deployment (its table entry is empty)."""
        return not DEPLOYMENT.moves[self]


class WorkloadState(StrEnum):
    """What a runtime reports of a workload and of each of its containers."""

    STARTING = "starting"
    READY = "ready"
    UNREADY = "unready"  # was ready, its readiness probe fails now
    CRASHED = "crashed"  # exited (or could not start); restarted after a back-off
    STOPPED = "stopped"


class ChangeOutcome(StrEnum):
    """What became of one change of a plan during an apply (the engine's event types)."""

    STARTED = "started"
    RETRYING = "retrying"  # a transient provider failure; the call is repeated
    FINISHED = "finished"
    FAILED = "failed"
    SKIPPED = "skipped"  # something it depends on did not succeed, or the apply stopped


class DecisionOutcome(StrEnum):
    """What the policies decided at one stage, as the decision log keeps it."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL = "approval"  # allowed once an approver approves


class DeliveryStatus(StrEnum):
    """Where one webhook delivery is (``webhook_deliveries.status``)."""

    PENDING = "pending"  # due at ``next_at`` (a first attempt, or a retry)
    DELIVERING = "delivering"  # a worker claimed it (until its lease runs out)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # the last attempt failed, or it can never be sent


class Verdict(StrEnum):
    """An approver's decision on a parked deployment (``approvals.verdict``)."""

    APPROVED = "approved"
    REJECTED = "rejected"


class AuditResult(StrEnum):
    """The result of an audited action (``audit_events.result``).

    An audited deployment records its own status, ``ok`` standing for ``succeeded``
    (``AuditResult.of``), so every other deployment status is a member too.
    """

    OK = "ok"
    UNCHANGED = "unchanged"  # nothing to do (a grant that already existed, say)
    DENIED = "denied"  # RBAC or a policy refused it
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting-approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    PLANNED = "planned"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    RUNNING = "running"

    @classmethod
    def of(cls, status: DeploymentStatus) -> AuditResult:
        """How a deployment that ended with ``status`` is audited."""
        status = DeploymentStatus(status)
        return cls.OK if status is DeploymentStatus.SUCCEEDED else cls(status.value)


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Lifecycle(Generic[S]):
    """One vocabulary's allowed moves: ``initial`` statuses and ``moves`` per member."""

    enum: type[S]
    initial: frozenset[S]
    moves: Mapping[S, frozenset[S]]

    def allows(self, old: S | None, new: S) -> bool:
        """Whether a record may go from ``old`` (None: a new record) to ``new``."""
        if old is None:
            return new in self.initial
        return old == new or new in self.moves[old]

    def check(self, old: S | None, new: S, *, subject: str = "") -> S:
        """``new``, or ``InvalidTransitionError`` when ``old`` may not move to it."""
        if not self.allows(old, new):
            raise InvalidTransitionError(self.enum.__name__, old, new, subject=subject)
        return new

    def sources(self, new: S) -> frozenset[S]:
        """The statuses that may move to ``new`` (itself included)."""
        return frozenset(s for s, to in self.moves.items() if new in to) | {new}

    def parse(self, value: object, *, subject: str = "") -> S:
        """``value`` (as stored) as a member; ``InvalidStatusError`` when it is none."""
        if isinstance(value, self.enum):
            return value
        if isinstance(value, str):
            try:
                return self.enum(value)
            except ValueError:
                pass
        raise InvalidStatusError(self.enum.__name__, str(value), subject=subject)


def _table(moves: Mapping[S, Iterable[S]]) -> Mapping[S, frozenset[S]]:
    return MappingProxyType({k: frozenset(v) for k, v in moves.items()})


_E = EnvironmentStatus
ENVIRONMENT: Lifecycle[EnvironmentStatus] = Lifecycle(
    EnvironmentStatus,
    initial=frozenset({_E.DECLARED, _E.CREATING}),
    moves=_table(
        {
            _E.DECLARED: {_E.CREATING, _E.DESTROYED},  # created; its declaration removed
            _E.CREATING: {_E.READY, _E.FAILED, _E.DESTROYING},
            _E.READY: {_E.DESTROYING},
            _E.FAILED: {_E.CREATING, _E.DESTROYING},  # create retries; destroy cleans up
            # A finished destroy ends destroyed (declared when a declaration names it); one
            # that fails ends failed; a destroy the gate stops (or the reaper skips) gives
            # the environment back to the status it had.
            _E.DESTROYING: {_E.DESTROYED, _E.DECLARED, _E.FAILED, _E.READY, _E.CREATING},
            _E.DESTROYED: {_E.CREATING, _E.DECLARED},  # a destroyed name is reusable
        }
    ),
)

_D = DeploymentStatus
DEPLOYMENT: Lifecycle[DeploymentStatus] = Lifecycle(
    DeploymentStatus,
    # The gate records a denied or parked deployment before it runs; a destroy records only
    # its end.
    initial=frozenset(
        {_D.RUNNING, _D.PLANNED, _D.CANCELLED, _D.DENIED, _D.AWAITING_APPROVAL}
        | {_D.SUCCEEDED, _D.FAILED}
    ),
    moves=_table(
        {
            _D.RUNNING: {_D.SUCCEEDED, _D.FAILED, _D.INTERRUPTED},
            _D.AWAITING_APPROVAL: {_D.APPROVED, _D.REJECTED},
            # Approved: planned again and gated again (a changed plan parks again, a deny
            # denies), then applied.
            _D.APPROVED: {_D.RUNNING, _D.AWAITING_APPROVAL, _D.DENIED, _D.SUCCEEDED, _D.FAILED},
            # Marked interrupted while its writer was only slow: the writer still records
            # how it really ended.
            _D.INTERRUPTED: {_D.FAILED, _D.SUCCEEDED},
            _D.SUCCEEDED: set(),
            _D.FAILED: set(),
            _D.PLANNED: set(),
            _D.CANCELLED: set(),
            _D.DENIED: set(),
            _D.REJECTED: set(),
        }
    ),
)

_W = WorkloadState
#: The moves of one container, as its supervisor makes them (a workload's own state is
#: derived from its containers').
WORKLOAD: Lifecycle[WorkloadState] = Lifecycle(
    WorkloadState,
    initial=frozenset({_W.STARTING}),
    moves=_table(
        {
            _W.STARTING: {_W.READY, _W.CRASHED, _W.STOPPED},
            _W.READY: {_W.UNREADY, _W.CRASHED, _W.STOPPED},
            _W.UNREADY: {_W.READY, _W.CRASHED, _W.STOPPED},
            _W.CRASHED: {_W.STARTING, _W.STOPPED},  # restarted after its back-off
            _W.STOPPED: set(),
        }
    ),
)

_C = ChangeOutcome
#: The outcomes of one change within one apply. A change fails without starting when its
#: config cannot be resolved or the lease is gone.
CHANGE: Lifecycle[ChangeOutcome] = Lifecycle(
    ChangeOutcome,
    initial=frozenset({_C.STARTED, _C.FAILED, _C.SKIPPED}),
    moves=_table(
        {
            _C.STARTED: {_C.RETRYING, _C.FINISHED, _C.FAILED},
            _C.RETRYING: {_C.FINISHED, _C.FAILED},
            _C.FINISHED: set(),
            _C.FAILED: set(),
            _C.SKIPPED: set(),
        }
    ),
)


def _recorded_once(enum: type[S]) -> Lifecycle[S]:
    """A value recorded once and never changed (an entry in an append-only log)."""
    return Lifecycle(enum, initial=frozenset(enum), moves=_table({m: set() for m in enum}))


DECISION: Lifecycle[DecisionOutcome] = _recorded_once(DecisionOutcome)
VERDICT: Lifecycle[Verdict] = _recorded_once(Verdict)
AUDIT: Lifecycle[AuditResult] = _recorded_once(AuditResult)

#: Every vocabulary's lifecycle, by enum.
LIFECYCLES: Mapping[type[StrEnum], Lifecycle[Any]] = MappingProxyType(
    {
        EnvironmentStatus: ENVIRONMENT,
        DeploymentStatus: DEPLOYMENT,
        WorkloadState: WORKLOAD,
        ChangeOutcome: CHANGE,
        DecisionOutcome: DECISION,
        Verdict: VERDICT,
        AuditResult: AUDIT,
    }
)


def transition(old: S | None, new: S, *, subject: str = "") -> S:
    """Check that a record may move from ``old`` (None: new) to ``new``; returns ``new``.

    Raises ``InvalidTransitionError`` (an internal error: the caller has a bug) otherwise.
    """
    lifecycle: Lifecycle[S] = LIFECYCLES[type(new)]
    if old is not None and type(old) is not type(new):
        raise InvalidTransitionError(type(new).__name__, old, new, subject=subject)
    return lifecycle.check(old, new, subject=subject)


def parse(enum: type[S], value: object, *, subject: str = "") -> S:
    """A stored ``value`` as a member of ``enum``; ``InvalidStatusError`` names an unknown one."""
    lifecycle: Lifecycle[S] = LIFECYCLES[enum]
    return lifecycle.parse(value, subject=subject)
