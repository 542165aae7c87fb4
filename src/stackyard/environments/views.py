"""Read models: environments, deployments, releases, logs, the decision and audit logs, and
the applied policies, each behind the access check it needs.

Every function returns data (with ``to_json``) and prints nothing: the CLI renders it, and
the API of a later issue will serve the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError
from stackyard.model.environment import Deployment, DeploymentEvent, Environment
from stackyard.model.platform import STAGES
from stackyard.policy.audit import AuditEvent, Verification
from stackyard.policy.decision import Decision, PolicySet
from stackyard.policy.rbac import Action

if TYPE_CHECKING:
    # the deploy road (engine, governance, resolution) is imported only by the views that
    # need it: `env list` and `env show` read records alone
    from stackyard.environments.promotion import Release
    from stackyard.state.governance import RecentVerification

# -- the platform ------------------------------------------------------------------------------

#: Keys whose values a platform document shows masked (a binding's password, a token): a
#: component's inputs may take credentials, and ``view`` is not ``reveal``.
SECRET_KEYS = re.compile(r"password|passwd|secret|token|credential|private", re.IGNORECASE)
MASK = "***"


def platform_documents(ws: Workspace) -> list[dict[str, Any]]:
    """The applied platform documents (kind, name, spec, digest), for anyone who may ``view``
    the organisation; values under credential-like keys are masked."""
    ws.access.authorize(Action.VIEW)
    return [
        {"kind": d.kind, "name": d.name, "spec": _masked(d.spec), "digest": d.digest}
        for d in ws.records.documents()
    ]


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: MASK
            if isinstance(k, str) and SECRET_KEYS.search(k) and v not in ("", None)
            else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


# -- environments ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Environments:
    """Every environment, and the state store's clock (expiries are relative to it)."""

    environments: list[Environment]
    now: float

    def to_json(self) -> list[dict[str, Any]]:
        """A JSON-ready form."""
        return [e.to_json() for e in self.environments]


def environments(ws: Workspace) -> Environments:
    """Every environment (its reads in one read transaction)."""
    with ws.store.read_session():
        ws.access.authorize(Action.VIEW)
        return Environments(ws.records.environments(), ws.store.now())


@dataclass(frozen=True, slots=True)
class EnvironmentView:
    """One environment with its children, workloads and resource uids."""

    environment: Environment
    children: list[str]
    workloads: list[str]
    resources: list[str]
    now: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            **self.environment.to_json(),
            "children": self.children,
            "workloads": self.workloads,
            "resources": self.resources,
        }


def environment(ws: Workspace, name: str) -> EnvironmentView:
    """One environment (``InvalidInputError`` naming the known ones when there is none)."""
    with ws.store.read_session():
        env = ws.environment(name)
        ws.access.authorize(Action.VIEW, env=name)
        return EnvironmentView(
            env,
            ws.records.children(name),
            [w.name for w in ws.records.workloads(name)],
            sorted(ws.records.instances(name)),
            ws.store.now(),
        )


# -- deployments and logs ----------------------------------------------------------------------


def _readable(ws: Workspace, env: str) -> None:
    if ws.records.environment(env) is None:  # a destroyed environment keeps its history
        ws.environment(env)  # raises, naming the known environments
    ws.access.authorize(Action.VIEW, env=env)
    from stackyard.environments.deploy import settle_interrupted

    settle_interrupted(ws, env)  # a deployment whose writer died reads as interrupted


def deployments(ws: Workspace, env: str) -> list[Deployment]:
    """``env``'s deployments, newest first."""
    with ws.store.read_session():
        _readable(ws, env)
        return ws.records.deployments(env)


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """One deployment with its plan and events."""

    deployment: Deployment
    events: list[DeploymentEvent]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            **self.deployment.to_json(with_plan=True),
            "events": [e.to_json() for e in self.events],
        }


def deployment(ws: Workspace, env: str, deployment_id: str) -> DeploymentView:
    """One of ``env``'s deployments."""
    _readable(ws, env)
    dep = ws.records.deployment(deployment_id)
    if dep is None or dep.env != env:
        raise InvalidInputError(
            f"No deployment '{deployment_id}' in '{env}'", hint=f"stackyard deployments {env}"
        )
    return DeploymentView(dep, ws.records.events(dep.id))


def logs(
    ws: Workspace,
    env: str,
    workload: str,
    *,
    container: str | None = None,
    follow: bool = False,
    lines: int | None = None,
) -> Iterator[str]:
    """A workload's captured log lines (checked now, read lazily: usable after ``ws`` closes)."""
    ws.environment(env)
    ws.access.authorize(Action.LOGS_READ, env=env)
    runtime = ws.runtime(env)
    if workload not in runtime.names():
        raise InvalidInputError(
            f"No workload '{workload}' running in '{env}'",
            hint=f"Running: {', '.join(runtime.names()) or 'none'}.",
        )
    return runtime.logs(workload, container=container, follow=follow, lines=lines)


# -- releases ----------------------------------------------------------------------------------


def releases(ws: Workspace) -> list[Release]:
    """Every release, newest first."""
    from stackyard.environments.promotion import Release

    ws.access.authorize(Action.VIEW)
    return [Release(*r) for r in ws.records.releases()]


@dataclass(frozen=True, slots=True)
class ReleaseView:
    """A release and the deployments made from it."""

    release: Release
    deployments: list[Deployment]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.release.to_json(), "deployments": [d.to_json() for d in self.deployments]}


def release(ws: Workspace, ident: str) -> ReleaseView:
    """A release by id or unique prefix, with where it was deployed."""
    from stackyard.environments.promotion import get_release

    ws.access.authorize(Action.VIEW)
    rel = get_release(ws, ident)
    return ReleaseView(rel, ws.records.deployments(None, release_id=rel.id, limit=100))


# -- the decision and audit logs ---------------------------------------------------------------


def decisions(
    ws: Workspace, *, env: str | None = None, limit: int = 50, decision_id: str | None = None
) -> list[dict[str, Any]]:
    """Policy decisions, newest first (one, by id)."""
    ws.access.authorize(Action.VIEW, env=env)
    rows = ws.governance.decisions(env=env, limit=limit, decision_id=decision_id)
    if decision_id and not rows:
        raise InvalidInputError(
            f"No decision '{decision_id}'", hint="'stackyard decisions' lists them, newest first."
        )
    return rows


def audit(ws: Workspace, *, since: float | None = None) -> list[AuditEvent]:
    """Audit events in chain order (from ``since``, a timestamp)."""
    ws.access.authorize(Action.AUDIT_READ)
    return ws.governance.audit(since=since)


def audit_verification(ws: Workspace) -> Verification:
    """The audit chain checked against the home's key and signed head."""
    ws.access.authorize(Action.AUDIT_READ)
    return ws.governance.verify()


#: The most events ``audit_page`` returns at once.
AUDIT_PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the audit log, newest first, and where it sits among the matching events
    (``newer``/``older``: the sequence numbers to page from, None at either end)."""

    events: list[AuditEvent]
    total: int
    newer: int | None
    older: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "events": [e.to_json() for e in self.events],
            "total": self.total,
            "newer": self.newer,
            "older": self.older,
        }


def audit_page(
    ws: Workspace,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> AuditPage:
    """Up to ``limit`` audit events, newest first, before the sequence number ``before`` (or
    just after ``after``; the newest when neither), with exactly this ``actor``, ``action``
    and ``target`` when given."""
    ws.access.authorize(Action.AUDIT_READ)
    if not 1 <= limit <= AUDIT_PAGE_MAX:
        raise InvalidInputError(
            f"Invalid audit page size {limit}", hint=f"Give 1 to {AUDIT_PAGE_MAX} events."
        )
    events, span = ws.governance.audit_page(
        before=before, after=after, limit=limit, actor=actor, action=action, target=target
    )
    newer = events[0].seq if events and events[0].seq < span["newest"] else None
    older = events[-1].seq if events and events[-1].seq > span["oldest"] else None
    return AuditPage(events, span["total"], newer, older)


def audit_recent_verification(ws: Workspace, *, full: bool = False) -> RecentVerification:
    """The audit chain checked as ``audit_verification`` does, from the head this process
    verified last (``Governance.verify_recent``; ``full``: the whole chain now)."""
    ws.access.authorize(Action.AUDIT_READ)
    return ws.governance.verify_recent(full=full)


# -- policies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policies:
    """The applied policies and their revision."""

    revision: str
    policies: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"revision": self.revision, "policies": self.policies}


def policies(ws: Workspace) -> Policies:
    """The applied policies: layer, target, stages and modules."""
    ws.access.authorize(Action.VIEW)
    rows = [
        {
            "name": p.name,
            "layer": p.layer,
            "target": p.target or None,
            "stages": list(p.stages),
            "modules": sorted(p.sources),
            "description": p.description,
        }
        for p in ws.platform().policies.values()
    ]
    return Policies(ws.governor.policies.revision, rows)


def check_stage(stage: str) -> None:
    """``InvalidInputError`` unless ``stage`` is a policy stage."""
    if stage not in STAGES:
        raise InvalidInputError(f"Unknown stage '{stage}'", hint=f"Stages: {', '.join(STAGES)}.")


def evaluate(
    ws: Workspace, stage: str, document: Mapping[str, Any], *, env: str | None = None
) -> Decision:
    """The applied policies' decision at ``stage`` for ``document`` (not logged: a dry run).

    The environment is ``env`` or the document's; its type, when the document does not say,
    that of the environment when it exists.
    """
    check_stage(stage)
    ws.access.authorize(Action.VIEW)
    environment = document.get("environment") or {}
    env_name = env or environment.get("name")
    env_type = environment.get("type")
    if env_name and not env_type and ws.records.environment(env_name):
        env_type = ws.environment(env_name).type
    return _decide(ws.governor.policies, stage, document, env_name, env_type, ws.access.actor)


def evaluate_dir(
    directory: Path, stage: str, document: Mapping[str, Any], *, env: str | None = None
) -> Decision:
    """As ``evaluate``, with the Policy documents of a platform folder (nothing applied
    needed, so no workspace and no access check)."""
    from stackyard.environments.platform import load_dir, platform_from

    check_stage(stage)
    environment = document.get("environment") or {}
    found = PolicySet(list(platform_from(load_dir(directory)).policies.values()))
    return _decide(
        found, stage, document, env or environment.get("name"), environment.get("type"), "local"
    )


def _decide(
    found: PolicySet,
    stage: str,
    document: Mapping[str, Any],
    env: str | None,
    env_type: str | None,
    actor: str,
) -> Decision:
    return found.evaluate(
        stage, {**document, "stage": stage}, env=env, env_type=env_type, actor=actor
    )
