"""Environments and what is recorded about them: deployments, events, workloads, instances."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stackyard.model.platform import Binding
from stackyard.model.status import (
    DEPLOYMENT,
    ENVIRONMENT,
    AuditResult,
    DeploymentStatus,
    EnvironmentStatus,
)


@dataclass(frozen=True, slots=True)
class Environment:
    """An environment instance."""

    name: str
    type: str
    status: EnvironmentStatus  # its moves: ``status.ENVIRONMENT``
    parent: str | None = None
    owner: str | None = None
    declared: bool = False
    created_at: float | None = None
    created_by: str | None = None
    expires_at: float | None = None
    claimed_at: float | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    bindings: tuple[Binding, ...] = ()

    def __post_init__(self) -> None:
        # Held as a member even when built from a stored string (unknown: InvalidStatusError).
        object.__setattr__(self, "status", ENVIRONMENT.parse(self.status, subject=self.name))

    @property
    def live(self) -> bool:
        """True once created and until destroyed."""
        return self.status.is_live

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "parent": self.parent,
            "owner": self.owner,
            "declared": self.declared,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "variables": dict(self.variables),
            "labels": dict(self.labels),
            "bindings": [b.to_json() for b in self.bindings],
        }


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One progress event of a deployment."""

    seq: int
    at: float
    kind: str
    address: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "address": self.address,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Deployment:
    """One attempt to converge an environment: deploy, create (core) or destroy."""

    id: str
    env: str
    kind: str  # deploy | create | destroy | promote | remove
    status: DeploymentStatus  # its moves: ``status.DEPLOYMENT``
    actor: str
    created_at: float
    release_id: str | None = None
    finished_at: float | None = None
    workloads: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] | None = None
    error: str | None = None
    request: Mapping[str, Any] | None = None  # what to re-plan when approved
    decision_id: str | None = None

    def __post_init__(self) -> None:
        # Held as a member even when built from a stored string (unknown: InvalidStatusError).
        object.__setattr__(
            self, "status", DEPLOYMENT.parse(self.status, subject=f"deployment {self.id}")
        )

    @classmethod
    def start(
        cls,
        *,
        env: str,
        kind: str,
        actor: str,
        release_id: str | None = None,
        workloads: tuple[str, ...] = (),
    ) -> Deployment:
        """A new, running deployment with a fresh id."""
        return cls(
            id=uuid.uuid4().hex[:12],
            env=env,
            kind=kind,
            status=DeploymentStatus.RUNNING,
            actor=actor,
            created_at=time.time(),
            release_id=release_id,
            workloads=workloads,
        )

    def audit_detail(self) -> dict[str, str]:
        """How this deployment ends up in an audit event: its id and result."""
        return {"deployment": self.id, "result": AuditResult.of(self.status)}

    def finished(self, status: DeploymentStatus, **changes: Any) -> Deployment:
        """This deployment ended with ``status`` now (plus any other field ``changes``)."""
        return replace(self, status=status, finished_at=time.time(), **changes)

    def to_json(self, *, with_plan: bool = False) -> dict[str, Any]:
        """A JSON-ready form (the plan only on request: it can be large)."""
        out: dict[str, Any] = {
            "id": self.id,
            "env": self.env,
            "kind": self.kind,
            "status": self.status,
            "actor": self.actor,
            "release": self.release_id,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "workloads": list(self.workloads),
            "summary": dict(self.summary),
            "error": self.error,
            "decision": self.decision_id,
        }
        if with_plan:
            out["plan"] = self.plan
        return out


@dataclass(frozen=True, slots=True)
class WorkloadRecord:
    """A workload deployed in an environment: its Score spec (files inlined) and its uids."""

    env: str
    name: str
    deployment_id: str
    spec: Mapping[str, Any]
    uids: tuple[str, ...]
    release_id: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A component instance as last applied: the pinned build, inputs and outputs.

    ``outputs`` hold every output, secrets included (the store seals those at rest).
    """

    env: str
    uid: str
    component: str  # name@version
    digest: str
    core: bool
    params: Mapping[str, Any]
    requires: Mapping[str, str]
    outputs: Mapping[str, Any]
    secret_keys: tuple[str, ...] = ()
    updated_at: float = 0.0
    monthly_cost: str | None = None  # decimal text
    currency: str | None = None
