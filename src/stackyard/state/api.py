"""The state store's contract: per-environment resource rows, the intent journal and the lock.

State is kept per environment as one row per provider resource (writes are O(change)), a
*serial* that moves on every committed change, a *lineage* fixed when the environment's state
is first created, an intent journal and a lease lock. ``sql.py`` implements this protocol for
SQLite and PostgreSQL; the contract tests in ``tests/integration/test_state_contract.py`` run
against both.

Secret values (config fields and outputs flagged sensitive) are handed to the store in the
clear, inside ``ResourceRecord.secret_config`` / ``secret_outputs``; the store encrypts them at
rest and decrypts them on read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ResourceRecord(NamedTuple):
    """One provider resource as recorded after a successful create or update.

    ``config`` and ``outputs`` hold the non-secret values; ``secret_config`` and
    ``secret_outputs`` the secret ones (merged on use). ``depends_on`` keeps the addresses
    this resource depended on, so destroy order survives the resource leaving the desired graph.

    A ``NamedTuple`` rather than a frozen dataclass: a snapshot builds one per resource, and
    a frozen dataclass's ``__init__`` made that the most expensive step of a re-plan.
    """

    address: str
    kind: str
    physical_name: str
    physical_id: str
    config: Mapping[str, Any]
    outputs: Mapping[str, Any]
    secret_config: Mapping[str, Any] = _EMPTY
    secret_outputs: Mapping[str, Any] = _EMPTY
    depends_on: tuple[str, ...] = ()
    uid: str = ""
    component: str = ""
    deletion: str = "delete"
    serial: int = 0

    def full_config(self) -> dict[str, Any]:
        """Config with secret fields merged back in."""
        return {**self.config, **self.secret_config}

    def full_outputs(self) -> dict[str, Any]:
        """Outputs with secret fields merged back in."""
        return {**self.outputs, **self.secret_outputs}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An environment's state at one serial."""

    env: str
    lineage: str
    serial: int
    resources: Mapping[str, ResourceRecord]


@dataclass(frozen=True, slots=True)
class Intent:
    """A journal entry written *before* a provider call: ``pending <op> <address> <name>``.

    ``config`` is the config the call was made with (secrets inside ``secret_config``), so
    recovery can observe the object by its deterministic name.
    """

    id: str
    env: str
    op: str  # create | update | delete
    address: str
    kind: str
    physical_name: str
    config: Mapping[str, Any]
    secret_config: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    uid: str = ""
    component: str = ""
    deletion: str = "delete"
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """A held environment lock.

    ``token`` is the fencing token: it grows with every acquisition, and every write made under
    the lease is refused once a newer token exists.
    """

    env: str
    lock_id: str
    holder: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds an environment's lock (for ``state lock`` and error messages)."""

    env: str
    lock_id: str
    holder: str
    token: int
    acquired_at: float
    expires_at: float


class StateStore(Protocol):
    """Persistence for state, journal and locks. Every method is one transaction."""

    def snapshot(self, env: str) -> Snapshot:
        """The environment's state; an empty one (serial 0, fresh lineage) if none exists."""
        ...

    def acquire(self, env: str, *, holder: str, ttl_s: float) -> Lease:
        """Take the environment's lock, or raise ``LockHeldError`` naming the holder.

        An expired lease is taken over. Fails closed (``StoreUnavailableError``).
        """
        ...

    def heartbeat(self, lease: Lease, *, ttl_s: float) -> Lease:
        """Extend the lease; ``LockLostError`` if it expired and was taken, or was released."""
        ...

    def release(self, lease: Lease) -> None:
        """Release the lease (a no-op if it is no longer ours)."""
        ...

    def force_unlock(self, env: str, lock_id: str) -> None:
        """Break a lock, given its id; raises ``StateError`` if the id does not match."""
        ...

    def lock_info(self, env: str) -> LockInfo | None:
        """The current lock, if any (expired or not)."""
        ...

    def installation_id(self) -> str:
        """This installation's identity: a short id made once per state store.

        Every process sharing the store reads the same id. Physical names hash it and
        ownership labels carry it, so two installations on one server never compute the same
        name nor take each other's objects for their own.
        """
        ...

    def check_fence(self, lease: Lease) -> None:
        """Raise ``LockLostError`` unless ``lease`` is still the environment's live lease.

        One cheap read, made right before every provider call: a writer that was paused past
        its lease (and taken over) does not reach the backend.
        """
        ...

    def begin(self, lease: Lease, intent: Intent) -> None:
        """Durably record an intent before a provider call (fenced by the lease)."""
        ...

    def commit(
        self, lease: Lease, intent_id: str, record: ResourceRecord | None, *, address: str
    ) -> int:
        """Write ``record``, clear the intent and bump the serial, in one transaction.

        When ``record`` is None the row for ``address`` is deleted instead.

        Returns the new serial.
        """
        ...

    def abandon(self, lease: Lease, intent_id: str) -> None:
        """Clear an intent whose call failed with nothing to record."""
        ...

    def intents(self, env: str) -> Sequence[Intent]:
        """Pending intents, oldest first."""
        ...

    def forget(self, lease: Lease, addresses: Sequence[str]) -> int:
        """Drop rows without touching reality (``deletion: retain``); returns the serial."""
        ...

    def mark_applied(self, lease: Lease, plan_id: str) -> None:
        """Record that a plan was applied, so it can never be applied again."""
        ...

    def was_applied(self, env: str, plan_id: str) -> bool:
        """True when ``plan_id`` has been applied to ``env``."""
        ...

    def environments(self) -> Sequence[str]:
        """Every environment that has state."""
        ...

    def now(self) -> float:
        """The store's clock in epoch seconds: TTLs, expiry and claims are measured by it,
        never by the client's clock."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
