"""Approvals: a deployment parked as ``awaiting-approval`` is approved (and then re-planned,
re-evaluated and applied) or rejected, by someone holding ``approver`` on its environment —
never by its own author unless a policy says ``allow_self_approval``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackyard.environments.deploy import DeployResult, converge
from stackyard.environments.target import target_of
from stackyard.environments.workspace import Workspace
from stackyard.errors import InvalidInputError, PermissionDeniedError
from stackyard.model.environment import Deployment
from stackyard.model.status import AuditResult, DeploymentStatus, Verdict
from stackyard.policy.rbac import Action
from stackyard.state import events

Progress = Callable[[str], None]
PENDING = DeploymentStatus.AWAITING_APPROVAL
#: What a verdict moves the parked deployment to, and the result its audit entry records.
_OUTCOME = {
    Verdict.APPROVED: (DeploymentStatus.APPROVED, AuditResult.OK),
    Verdict.REJECTED: (DeploymentStatus.REJECTED, AuditResult.REJECTED),
}


def _pending(ws: Workspace, deployment_id: str) -> Deployment:
    dep = ws.records.deployment(deployment_id)
    if dep is None:
        raise InvalidInputError(
            f"No deployment '{deployment_id}'",
            hint="'stackyard approvals' lists what awaits approval.",
        )
    if dep.status is not PENDING:
        raise InvalidInputError(
            f"Deployment {dep.id} is {dep.status}, not {PENDING}",
            hint="Only a parked deployment can be approved or rejected.",
        )
    return dep


def _check_approver(ws: Workspace, dep: Deployment, verdict: Verdict) -> None:
    ws.access.authorize(Action.APPROVE, env=dep.env, audit=True)
    if dep.actor != ws.access.actor:
        return
    found = ws.governance.decisions(decision_id=dep.decision_id) if dep.decision_id else []
    if found and found[0].get("allow_self_approval"):
        return
    ws.access.audit(
        Action.APPROVE.value,
        f"deployment:{dep.id}",
        AuditResult.DENIED,
        {"reason": "self-approval", "verdict": verdict},
    )
    raise PermissionDeniedError(
        f"{ws.access.actor} started deployment {dep.id} and may not {'approve' if verdict is Verdict.APPROVED else 'reject'} it",
        action=Action.APPROVE.value,
        hint="Another approver must decide; a policy may allow self-approval with 'allow_self_approval := true'.",
    )


def _decide(ws: Workspace, dep: Deployment, verdict: Verdict, comment: str) -> None:
    """Record ``verdict`` on the parked ``dep``: the approver checked, the deployment moved
    (once: a concurrent decision loses), the approval row and the audit entry written."""
    _check_approver(ws, dep, verdict)
    status, result = _OUTCOME[verdict]
    if not ws.records.move_deployment(dep.id, expect=PENDING, status=status):
        raise InvalidInputError(
            f"Deployment {dep.id} was decided meanwhile",
            hint=f"stackyard deployments {dep.env} {dep.id}",
        )
    ws.governance.add_approval(dep.id, actor=ws.access.actor, verdict=verdict, comment=comment)
    ws.access.audit(
        Action.APPROVE.value,
        f"deployment:{dep.id}",
        result,
        {"comment": comment, "env": dep.env},
    )
    env = ws.records.environment(dep.env)
    if env is not None:
        events.notify_deployment(
            ws.store,
            "approval.decided",
            env,
            dep,
            verdict=str(verdict),
            status=str(status),
            approver=ws.access.actor,
            comment=comment[:300],
        )


def pending(ws: Workspace, env: str | None = None) -> list[dict[str, Any]]:
    """Deployments awaiting approval, with why (the approval results of their decision)."""
    out = []
    for dep_id in ws.governance.pending(env):
        dep = ws.records.deployment(dep_id)
        if dep is None:
            continue
        if env is not None:
            ws.access.authorize(Action.VIEW, env=dep.env)
        elif not ws.access.allowed(Action.VIEW, ws.access.target(dep.env)):
            continue  # across environments: only those the actor may view
        found = ws.governance.decisions(decision_id=dep.decision_id) if dep.decision_id else []
        reasons = [r for r in (found[0]["results"] if found else []) if r["kind"] == "approval"]
        out.append(
            {
                **dep.to_json(),
                "approvals_needed": reasons,
                "approvals": ws.governance.approvals(dep.id),
            }
        )
    return out


def approve(
    ws: Workspace, deployment_id: str, *, comment: str = "", progress: Progress | None = None
) -> Any:
    """Approve and resume: re-plan, re-evaluate, and apply only an unchanged plan."""
    dep = _pending(ws, deployment_id)
    ws.environment(dep.env)
    _decide(ws, dep, Verdict.APPROVED, comment)
    request = dict(dep.request or {})
    if request.get("kind") == "destroy":
        from stackyard.environments.lifecycle import resume_destroy

        return resume_destroy(ws, dep, progress=progress)
    env = ws.environment(dep.env)
    target = target_of(ws.records, env, request)
    result: DeployResult = converge(ws, target, kind=dep.kind, resume=dep, progress=progress)
    return result


def reject(ws: Workspace, deployment_id: str, *, comment: str = "") -> Deployment:
    """Reject a parked deployment: nothing is applied, ever."""
    dep = _pending(ws, deployment_id)
    _decide(ws, dep, Verdict.REJECTED, comment)
    found = ws.records.deployment(dep.id)
    assert found is not None
    return found
