"""An environment's recorded state, for people: its lock, its resources and its pending
intents (each a read that needs ``view``), and breaking a lock whose holder is gone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stackyard.environments.workspace import Workspace
from stackyard.policy.rbac import Action
from stackyard.state.api import LockInfo


def iso(ts: float) -> str:
    """A timestamp as RFC 3339 to the second, in UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Lock:
    """Who holds an environment's lock (``info`` None: nobody), by the store's clock."""

    env: str
    info: LockInfo | None
    now: float

    @property
    def expired(self) -> bool:
        """The lease ran out (by the store's clock): the next writer takes it over."""
        return self.info is not None and self.info.expires_at <= self.now

    def to_json(self) -> dict[str, Any] | None:
        """A JSON-ready form (None when unlocked)."""
        if self.info is None:
            return None
        return {
            "env": self.info.env,
            "lock_id": self.info.lock_id,
            "holder": self.info.holder,
            "token": self.info.token,
            "acquired_at": iso(self.info.acquired_at),
            "expires_at": iso(self.info.expires_at),
            "expired": self.expired,
        }


def lock(ws: Workspace, env: str) -> Lock:
    """``env``'s lock holder."""
    ws.access.authorize(Action.VIEW, env=env)
    return Lock(env, ws.store.lock_info(env), ws.store.now())  # leases run out by its clock


@dataclass(frozen=True, slots=True)
class Resources:
    """An environment's recorded resources (addresses and names, never their secrets)."""

    env: str
    serial: int
    lineage: str
    resources: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "env": self.env,
            "serial": self.serial,
            "lineage": self.lineage,
            "resources": self.resources,
        }


def resources(ws: Workspace, env: str) -> Resources:
    """``env``'s recorded resources, by address."""
    ws.access.authorize(Action.VIEW, env=env)
    snap = ws.store.snapshot(env)
    rows = [
        {"address": r.address, "kind": r.kind, "physical_name": r.physical_name}
        for r in sorted(snap.resources.values(), key=lambda r: r.address)
    ]
    return Resources(env, snap.serial, snap.lineage, rows)


@dataclass(frozen=True, slots=True)
class Intents:
    """An environment's pending intents: provider calls that may not have finished."""

    env: str
    intents: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"env": self.env, "intents": self.intents}


def intents(ws: Workspace, env: str) -> Intents:
    """``env``'s pending intents (without their configs, which may hold secrets)."""
    ws.access.authorize(Action.VIEW, env=env)
    rows = [
        {
            "id": i.id,
            "op": i.op,
            "address": i.address,
            "kind": i.kind,
            "physical_name": i.physical_name,
            "created_at": i.created_at,
        }
        for i in ws.store.intents(env)
    ]
    return Intents(env, rows)


def force_unlock(ws: Workspace, env: str, lock_id: str) -> None:
    """Break ``env``'s lock ``lock_id`` (``state.unlock``, audited); its holder, if alive,
    fails on its next write. Ask first (``confirmation.force_unlock``)."""
    with ws.access.act(Action.STATE_UNLOCK, env=env, detail={"lock_id": lock_id}):
        ws.store.force_unlock(env, lock_id)
